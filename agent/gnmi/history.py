"""The gNMI History extension (gnmi-history.md) over the agent's time machine.

`ds.history` (set by the Kubernetes collector) keeps every version of the
vPort table; this module turns its answers into datastore-shaped rows so
the normal read and encode code serves them:

- `snapshot_time` (Get, Subscribe ONCE): the table as it was at that time;
- `range` (Subscribe STREAM): the table at `start`, then every change in
  `[start, end)` with its own timestamp, then the RPC ends.

Only /kubefabric-vport:vports has history; other paths are UNIMPLEMENTED.
The history store's interface is duck-typed: `vports_at(t_seconds) ->
{ip: row}` and `changes(start_s, end_s, kinds=[...]) -> [{time, op, path,
keys, data}]`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .paths import PathError, Selector
from agent.datastore import schema_paths

VPORTS = schema_paths.VPORTS
VPORT = schema_paths.VPORT


@dataclass(frozen=True)
class HistoryRequest:
    """What the client asked for: a snapshot time or a [start, end) range, in ns."""

    snapshot_ns: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def is_range(self) -> bool:
        return self.start_ns is not None


def from_extensions(extensions) -> HistoryRequest | None:
    """The History extension of a request, or None."""
    for ext in extensions:
        if ext.WhichOneof("ext") != "history":
            continue
        h = ext.history
        which = h.WhichOneof("request")
        if which == "snapshot_time":
            return HistoryRequest(snapshot_ns=h.snapshot_time)
        if which == "range":
            if h.range.start > h.range.end:
                raise PathError("INVALID_ARGUMENT", "history range start is after its end")
            return HistoryRequest(start_ns=h.range.start, end_ns=h.range.end)
        raise PathError("INVALID_ARGUMENT", "history extension without snapshot_time or range")
    return None


def check(ds, request: HistoryRequest, selectors: list[Selector]) -> None:
    """Refuse what the history store cannot answer."""
    if ds.history is None:
        raise PathError("UNIMPLEMENTED", "no history store on this agent")
    for sel in selectors:
        if not (sel.node.path == VPORTS or sel.node.path.startswith(VPORTS + "/")):
            raise PathError("UNIMPLEMENTED", f"history is kept for {VPORTS} only, not {sel.node.path}")
    now = time.time_ns()
    t = request.snapshot_ns if request.snapshot_ns is not None else request.start_ns
    if t > now + 1_000_000_000:
        raise PathError("UNIMPLEMENTED", "history times in the future are not served")


def rows_at(ds, t_ns: int):
    """A `rows(path)` function for read.collect: the vPort table at t."""
    table = ds.history.vports_at(t_ns / 1e9)

    def rows(path: str):
        if path != VPORT:
            return ()
        return (((ip,), {**row, "ip": row.get("ip", ip)}, t_ns) for ip, row in table.items())

    return rows


def changes(ds, start_ns: int, end_ns: int) -> list[tuple[str, tuple, dict | None, int]]:
    """(path, key, leaves or None for a delete, ts ns) of every vPort change in [start, end)."""
    end_s = min(end_ns, time.time_ns() + 10**9 * 3600 * 24 * 365) / 1e9
    out = []
    for ch in ds.history.changes(start_ns / 1e9, end_s, kinds=["vport"]):
        if ch.get("path") != VPORT or not ch.get("keys"):
            continue
        ts = int(ch["time"] * 1e9)
        if ch["op"] == "delete":
            out.append((VPORT, tuple(ch["keys"]), None, ts))
        else:
            out.append((VPORT, tuple(ch["keys"]), dict(ch["data"]), ts))
    return out
