"""The time machine: versions of pods, vPorts, services and CNI rows over time.

- :mod:`.store`        ``HistoryStore``: SQLite, implements the ``HistoryWriter``
                       and ``History`` ports (``core.ports.history``)
- :mod:`.upkeep`       ``HistoryUpkeep``: the background flush and retention jobs
- :mod:`.timemachine`  ``TimeMachine``: the faces' async view of a ``History``
"""
from .store import HistoryStore
from .timemachine import HistoryUnavailable, TimeMachine
from .upkeep import HistoryUpkeep

__all__ = ["HistoryStore", "HistoryUnavailable", "HistoryUpkeep", "TimeMachine"]
