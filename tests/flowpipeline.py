"""The sFlow collector wired to the connection table, as agent.runtime wires them, for tests."""
from __future__ import annotations

from collectors.conntrack.table import ConnectionTable
from collectors.sflow.collector import SflowCollector


class FlowPipeline:
    """``FlowPipeline(ds, addr, workers=1, history=None, **collector_options)``: collector -> FlowSink -> table.

    Attributes not defined here are the collector's (``port``, ``stats``...);
    ``flush()`` writes the collector's counters and the table's rows and
    statistics now.
    """

    def __init__(self, ds, addr: str, workers: int = 1, history=None, **options) -> None:
        self.table = ConnectionTable(ds.state, ds, ds.feed, history)
        self.collector = SflowCollector(ds.state, ds, ds.feed, self.table, addr, workers=workers, **options)

    def __getattr__(self, name):
        return getattr(self.collector, name)

    @property
    def tracker(self):
        return self.table.tracker

    async def start(self) -> None:
        await self.table.start()
        try:
            await self.collector.start()
        except BaseException:
            await self.table.stop()
            raise

    async def stop(self) -> None:
        await self.collector.stop()
        await self.table.stop()

    def flush(self) -> None:
        self.collector.flush()
        self.table.flush()
        self.table.publish_stats()
