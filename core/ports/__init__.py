"""The ports: what producers, faces and the fabric store may ask of the core, as typed Protocols.

Every part outside ``core`` meets the core here and nowhere else:

- :mod:`core.ports.state`    producers write operational state (``StateWriter``),
                             follow the running config (``ConfigFollower``) and the
                             change feed (``ChangeSource``); faces write config
                             (``ConfigWriter``).
- :mod:`core.ports.fabric`   the replicated fabric store (``FabricStore``), the
                             membership view with its lock (``FabricMembership``)
                             and per-node state (``NodeStateChannel``).
- :mod:`core.ports.history`  the time machine: recording versions (``HistoryWriter``)
                             and typed, row-limited queries (``History``).
- :mod:`core.ports.flows`    the neutral flow observation a flow source hands to
                             a flow consumer (``FlowObservation``, ``FlowSink``).
- :mod:`core.ports.stats`    the statistics a component exposes (``ComponentStats``).
- :mod:`core.ports.topology` interface data a flow source hands to the topology
                             producer (``InterfaceSink``), and where nodes are
                             plugged in (``NodeLocator``).

This package imports nothing heavy (no yangson, no gRPC), so an sFlow
worker process may import it.
"""
from .fabric import FabricEvents, FabricMembership, FabricStore, MemberInfo, NodeStateChannel
from .flows import FlowObservation, FlowSink, address_text, make_observation
from .history import DEFAULT_LIMIT, History, HistoryChange, HistoryWriter, Page, Row, Version
from .state import ChangeSource, ConfigFollower, ConfigListener, ConfigWriter, EditFn, StateReader, StateWriter
from .stats import ComponentStats, StatsSource
from .topology import (Endpoint, InterfaceCounters, InterfaceSink, LocationChange, NodeLocation, NodeLocator,
                       SourceSighting)

__all__ = [
    "ChangeSource", "ComponentStats", "ConfigFollower", "ConfigListener", "ConfigWriter", "DEFAULT_LIMIT", "EditFn",
    "FabricEvents", "FabricMembership", "FabricStore", "FlowObservation", "FlowSink", "History", "HistoryChange", "address_text", "make_observation",
    "HistoryWriter", "MemberInfo", "Page", "Row", "StateReader", "StateWriter", "StatsSource", "Version",
    "NodeStateChannel", "Endpoint", "InterfaceCounters", "InterfaceSink", "LocationChange", "NodeLocation",
    "NodeLocator", "SourceSighting",
]
