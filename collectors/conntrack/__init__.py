"""Connection tracking (Netvisor's connection-show) from flow observations of any source.

    ConnectionTracker   observations -> connection entries (tracker.py)
    Attributor          pods, namespaces, service, cluster of a connection (attribution.py)
    ConnectionTable     the producer: tracker + attribution -> /kubefabric-connection rows;
                        a FlowSink that flow sources feed (table.py)

The tracker takes ``core.ports.flows.FlowObservation`` records and imports
no flow source: ``agent.runtime`` wires the sFlow collector to the table.
"""
from .attribution import Attributor
from .table import ConnectionTable
from .tracker import CONNECTIONS_PATH, Connection, ConnectionTracker, TrackerStats

__all__ = ["Attributor", "ConnectionTable", "ConnectionTracker", "Connection", "CONNECTIONS_PATH", "TrackerStats"]
