"""vport-history-show: the time machine through the in-process backend."""
from __future__ import annotations

import pytest

from core.history.store import HistoryStore

from .conftest import NOW, fail, run

ROW_A = {"owner": "switch", "svc-name": "pluribus", "hostname": "server2", "entity": "pod-A", "power": "Running",
         "portgroup": "app:web", "status": "host,pod,k8s"}
ROW_B = {**ROW_A, "hostname": "server1", "entity": "pod-B"}


@pytest.fixture
def history(ds, tmp_path):
    """pod-A from NOW-3h (moved to server3 at NOW-1h), pod-B from NOW-2h to NOW-30m."""
    store = HistoryStore(tmp_path / "history.db")
    store.set("vport", "pluribus", "10.244.1.5", "", ROW_A, t=NOW - 3 * 3600)
    store.set("vport", "pluribus", "10.244.2.7", "", ROW_B, t=NOW - 2 * 3600)
    store.set("vport", "pluribus", "10.244.1.5", "", {**ROW_A, "hostname": "server3"}, t=NOW - 3600)
    store.end("vport", "pluribus", "10.244.2.7", "", t=NOW - 1800)
    store.flush()
    ds.history.attach(store)
    yield store
    ds.history.detach()
    store.close()


async def test_snapshot_at_a_time_or_ago(admin, history):
    text = await run(admin, "vport-history-show snapshot-time 2026-11-22T09:30:00 format ip,entity,hostname")
    assert text.splitlines()[2:] == ["10.244.1.5 pod-A  server2"]
    text = await run(admin, "vport-history-show snapshot-time 90m format ip,entity,hostname")
    assert [line.split() for line in text.splitlines()[2:]] == [["10.244.1.5", "pod-A", "server2"],
                                                               ["10.244.2.7", "pod-B", "server1"]]
    text = await run(admin, "vport-history-show format ip,hostname")  # now
    assert [line.split() for line in text.splitlines()[2:]] == [["10.244.1.5", "server3"]]
    text = await run(admin, "vport-history-show snapshot-time 90m hostname server1 format entity")
    assert text.splitlines()[2:] == ["pod-B"]
    assert await run(admin, "vport-history-show snapshot-time 2026-01-01T00:00:00") == ""


async def test_changes_in_a_window(admin, history):
    text = await run(admin, "vport-history-show within-last 2h30m")
    lines = text.splitlines()
    assert lines[0].split() == ["time", "change", "ip", "svc-name", "hostname", "entity", "power", "portgroup"]
    assert [line.split()[:5] for line in lines[2:]] == [
        ["2026-11-22T10:00:00", "update", "10.244.2.7", "pluribus", "server1"],
        ["2026-11-22T11:00:00", "update", "10.244.1.5", "pluribus", "server3"],
        ["2026-11-22T11:30:00", "delete", "10.244.2.7", "pluribus", "server1"],
    ]
    text = await run(admin, "vport-history-show start-time 2026-11-22T10:30:00 end-time 2026-11-22T11:15:00 "
                            "format change,entity,hostname")
    assert text.splitlines()[2:] == ["update pod-A  server3"]
    text = await run(admin, "vport-history-show within-last 1d change delete format entity")
    assert text.splitlines()[2:] == ["pod-B"]
    text = await run(admin, "vport-history-show older-than 90m sort-desc time format time,entity parsable-delim ,")
    assert text.splitlines()[1:] == ["2026-11-22T10:00:00,pod-B", "2026-11-22T09:00:00,pod-A"]


async def test_without_a_history_store(admin):
    error = await fail(admin, "vport-history-show snapshot-time 1h")
    assert error == "vport-history-show: this agent keeps no history (no time-machine store is running)"


async def test_bad_snapshot_time(admin, history):
    assert "invalid snapshot-time 'soon'" in await fail(admin, "vport-history-show snapshot-time soon")
