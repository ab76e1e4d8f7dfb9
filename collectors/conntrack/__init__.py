"""Connection tracking from sFlow samples (Netvisor's connection-show).

    ConnectionTracker   sampled packets -> connection entries (tracker.py)
    Attributor          pods, namespaces, service, cluster of a connection (attribution.py)
    ConnectionTable     tracker + attribution -> /kubefabric-connection:connections rows (table.py)
    sample_from_record  producer FlowRecord -> the tracker's compact sample tuple
"""
from .attribution import Attributor
from .table import ConnectionTable
from .tracker import CONNECTIONS_PATH, Connection, ConnectionTracker, sample_from_record

__all__ = ["Attributor", "ConnectionTable", "ConnectionTracker", "Connection", "CONNECTIONS_PATH", "sample_from_record"]
