"""A stand-in with the datastore contract's methods (core.datastore.Datastore), for producer tests."""
from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from typing import Callable, Iterator


class FakeState:
    def __init__(self, ds: "FakeDatastore") -> None:
        self._ds = ds
        self.nodes: dict[str, dict[tuple, dict]] = {}
        self.changes: list[tuple[float, str, tuple, dict | None]] = []   # (monotonic time, path, key, values)

    def upsert(self, path: str, key: tuple, values: dict, ts: int | None = None) -> None:
        table = self.nodes.setdefault(path, {})
        if table.get(key) == values:
            return
        table[key] = dict(values)
        self._changed(path, key, values)

    def merge(self, path: str, key: tuple, values: dict, ts: int | None = None) -> None:
        table = self.nodes.setdefault(path, {})
        table.setdefault(key, {}).update(values)
        self._changed(path, key, values)

    def delete(self, path: str, key: tuple = (), ts: int | None = None) -> bool:
        if self.nodes.get(path, {}).pop(key, None) is not None:
            self._changed(path, key, None)
            return True
        return False

    def replace_where(self, path: str, rows: dict, where=None) -> None:
        for key in [k for k, v in self.nodes.get(path, {}).items() if k not in rows and (where is None or where(k, v))]:
            self.delete(path, key)
        for key, values in rows.items():
            self.upsert(path, key, values)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        yield

    def get(self, path: str, key: tuple = ()) -> dict | None:
        row = self.nodes.get(path, {}).get(key)
        return dict(row) if row is not None else None

    def entries(self, path: str) -> dict[tuple, dict]:
        return {k: dict(v) for k, v in self.nodes.get(path, {}).items()}

    def _changed(self, path: str, key: tuple, values: dict | None) -> None:
        now = time.monotonic()
        self.changes.append((now, path, key, values))
        for waiter in list(self._ds.waiters):
            waiter()


class FakeDatastore:
    def __init__(self, node_name: str = "leaf1", running: dict | None = None) -> None:
        self.node_name = node_name
        self.running = running or {}
        self.state = FakeState(self)
        #: the time machine the test's agent keeps (tests.historyview.HistoryView), set by the fixture
        self.history = None
        self.waiters: list[Callable[[], None]] = []
        self._callbacks: list[Callable[[dict], None]] = []

    def on_config(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        callback(copy.deepcopy(self.running))

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def set_config(self, running: dict) -> None:
        self.running = running
        for cb in self._callbacks:
            cb(copy.deepcopy(running))

    def set_connections(self, *connections: dict) -> None:
        full = []
        for conn in connections:
            full.append({"enable": True, "create-vport": False, "overlay-vxlan-analytics": False, **conn})
        self.set_config({"kubefabric-k8s:k8s": {"connection": full}})

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0):
        """Wait until predicate() is truthy (re-checked on every state change and every 50 ms)."""
        deadline = time.monotonic() + timeout
        event = asyncio.Event()
        waiter = event.set
        self.waiters.append(waiter)
        try:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"condition not met within {timeout} s")
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), min(0.05, remaining))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.waiters.remove(waiter)
