"""Subscribe against the real server in-process, with a producer writing state."""
from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from agent.gnmi_proto import gnmi_ext_pb2

from agent.gnmi.subscribe import Limits
from tests.gnmi.helpers import END, VIEWER, VPORT, Harness, flat, ip, vport_row
from core.ports.history import HistoryChange, Page, Row

STATS = "/kubefabric-sflow:sflow-collector/statistics"
CONN_STATE = "/kubefabric-k8s:k8s/connection/state"


@pytest.fixture
async def h(tmp_path):
    harness = await Harness(tmp_path, Limits(counter_sample_ns=200_000_000)).start()
    yield harness
    await harness.stop()


async def test_on_change_snapshot_sync_updates_and_list_entry_deletes(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    sub = h.subscribe(["/vports/vport"])
    initial, _ = flat(await sub.until_sync())
    assert initial["/vports/vport[ip=10.0.0.1]"]["entity"] == "pod-1"
    h.ds.state.merge(VPORT, ("10.0.0.1",), {"power": "Failed"})
    h.ds.state.upsert(VPORT, ("10.0.0.2",), vport_row(2))
    got = await sub.collect(0.3)
    updates, deletes = flat(got)
    assert updates["/vports/vport[ip=10.0.0.1]"] == {"power": "Failed"}
    assert updates["/vports/vport[ip=10.0.0.2]"]["entity"] == "pod-2"
    h.ds.state.delete(VPORT, ("10.0.0.1",))
    got = await sub.collect(0.3)
    assert [list(map(str, n.delete)) != [] for n in got] == [True]
    _, deletes = flat(got)
    assert deletes == ["/vports/vport[ip=10.0.0.1]"]  # the list-entry path, not its leaves
    assert h.srv.stats["sessions"] == 1 and h.srv.stats["subscriptions"] == 1
    sub.cancel()


async def test_path_that_does_not_exist_yet_stays_open_and_delivers(h):
    sub = h.subscribe(["/k8s/cni[cluster-name=c9]"])
    assert await sub.until_sync() == []
    assert await sub.collect(0.2) == []
    h.ds.state.upsert("/kubefabric-k8s:k8s/cni", ("c9",), {"cni-plugin": "flannel", "udp-port": 8472})
    h.ds.state.upsert("/kubefabric-k8s:k8s/cni", ("other",), {"cni-plugin": "calico"})
    updates, _ = flat(await sub.collect(0.3))
    assert updates == {"/k8s/cni[cluster-name=c9]": {"cni-plugin": "flannel", "udp-port": 8472, "cluster-name": "c9"}}


async def test_updates_only_sends_sync_first_then_changes(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    sub = h.subscribe(["/vports"], updates_only=True)
    assert await sub.until_sync() == []
    h.ds.state.merge(VPORT, ("10.0.0.1",), {"power": "Pending"})
    updates, _ = flat(await sub.collect(0.3))
    assert updates == {"/vports/vport[ip=10.0.0.1]": {"power": "Pending"}}


async def test_leaf_subscription_gets_leaf_paths_only(h):
    h.ds.state.upsert(CONN_STATE, ("a",), {"status": "connecting", "pod-count": 1, "events": 5})
    sub = h.subscribe(["/k8s/connection[cluster-name=a]/state/status"])
    initial, _ = flat(await sub.until_sync())
    assert initial == {"/k8s/connection[cluster-name=a]/state/status": "connecting"}
    h.ds.state.merge(CONN_STATE, ("a",), {"pod-count": 7})
    h.ds.state.merge(CONN_STATE, ("a",), {"status": "connected"})
    updates, _ = flat(await sub.collect(0.3))
    assert updates == {"/k8s/connection[cluster-name=a]/state/status": "connected"}


async def test_json_ietf_64bit_as_strings_and_proto_scalars(h):
    h.ds.state.upsert(CONN_STATE, ("a",), {"status": "connected", "events": 2**40, "pod-count": 3})
    ietf = h.subscribe(["/k8s/connection/state"], mode="ONCE")
    got = await ietf.until_sync()
    raw = json.loads(got[0].update[0].val.json_ietf_val)
    assert raw["kubefabric-k8s:events"] == str(2**40)  # RFC 7951: qualified top-level members, 64-bit as strings
    updates, _ = flat(got)
    assert updates["/k8s/connection[cluster-name=a]/state"] == {"status": "connected", "events": str(2**40), "pod-count": 3}
    proto = h.subscribe(["/k8s/connection/state"], mode="ONCE", encoding="PROTO")
    got = await proto.until_sync()
    vals = {str(u.path.elem[-1].name): u.val for n in got for u in n.update}
    assert vals["events"].uint_val == 2**40 and vals["status"].string_val == "connected"
    assert vals["pod-count"].uint_val == 3
    assert await proto.next() is END  # ONCE closes after sync_response


async def test_once_and_poll_send_sync_after_every_round(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    once = h.subscribe(["/vports/vport"], mode="ONCE")
    assert len(flat(await once.until_sync())[0]) == 1
    assert await once.next() is END and once.error is None
    poll = h.subscribe(["/vports/vport"], mode="POLL")
    assert len(flat(await poll.until_sync())[0]) == 1  # initial state
    h.ds.state.upsert(VPORT, ("10.0.0.2",), vport_row(2))
    assert await poll.collect(0.2) == []  # nothing until polled
    poll.poll()
    assert set(flat(await poll.until_sync())[0]) == {"/vports/vport[ip=10.0.0.1]", "/vports/vport[ip=10.0.0.2]"}
    poll.poll()
    assert len(flat(await poll.until_sync())[0]) == 2
    poll.half_close()
    assert await poll.next() is END and poll.error is None


async def test_poll_request_on_stream_is_invalid(h):
    sub = h.subscribe(["/vports"])
    await sub.until_sync()
    sub.poll()
    assert await sub.next() is END
    assert sub.error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_outlives_half_close_and_ends_when_cancelled(h):
    """gNMI 3.5.1.5: a STREAM subscription lasts until the client cancels; half-close only ends the request side."""
    sub = h.subscribe(["/vports"])
    await sub.until_sync()
    sub.half_close()
    assert await sub.collect(0.5) == []  # the stream is still open, and quiet
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    assert "/vports/vport[ip=10.0.0.1]" in flat(await sub.collect(0.5))[0]  # ...and still delivering
    assert h.srv.stats["sessions"] == 1
    sub.cancel()
    for _ in range(100):
        if h.srv.stats["sessions"] == 0 and h.ds.feed.listener_count == 0:
            break
        await asyncio.sleep(0.05)
    assert h.srv.stats["sessions"] == 0 and h.ds.feed.listener_count == 0


async def test_sample_suppress_redundant_and_heartbeat(h):
    h.ds.state.upsert(STATS, (), {"datagrams": 1, "samples": 1, "malformed": 0, "lost": 0})
    sub = h.subscribe([("/sflow-collector/statistics", {"mode": "SAMPLE", "sample_interval": 100_000_000,
                                                         "suppress_redundant": True})])
    initial, _ = flat(await sub.until_sync())
    assert initial["/sflow-collector/statistics"]["datagrams"] == "1"
    assert await sub.collect(0.25) == []  # nothing changed: suppressed
    h.ds.state.merge(STATS, (), {"datagrams": 2})
    updates, _ = flat(await sub.collect(0.25))
    assert updates == {"/sflow-collector/statistics": {"datagrams": "2"}}  # only the changed leaf
    sub.cancel()
    plain = h.subscribe([("/sflow-collector/statistics", {"mode": "SAMPLE", "sample_interval": 50_000_000})])
    await plain.until_sync()
    assert len(await plain.collect_for(0.17)) >= 2  # every sample, changed or not
    plain.cancel()
    hb = h.subscribe([("/sflow-collector/statistics", {"mode": "ON_CHANGE", "heartbeat_interval": 50_000_000})])
    await hb.until_sync()
    beats = await hb.collect_for(0.17)
    assert len(beats) >= 2 and flat(beats)[0]["/sflow-collector/statistics"]["datagrams"] == "2"


async def test_sample_interval_zero_samples_every_second_and_too_small_is_invalid(h):
    """sample_interval 0: "the lowest interval possible for the target" (1 s here), periodic, not on change."""
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    sub = h.subscribe([("/vports", {"mode": "SAMPLE", "sample_interval": 0})])
    assert "/vports/vport[ip=10.0.0.1]" in flat(await sub.until_sync())[0]
    started = asyncio.get_running_loop().time()
    samples = [n for n in await sub.collect_for(3.6) if n.update]  # nothing changes meanwhile
    assert 2 <= len(samples) <= 4, [n.timestamp for n in samples]
    assert all("/vports/vport[ip=10.0.0.1]" in flat([n])[0] for n in samples)
    gaps = [(b.timestamp - a.timestamp) / 1e9 for a, b in zip(samples, samples[1:])]
    assert all(0.7 < g < 1.6 for g in gaps), gaps
    assert asyncio.get_running_loop().time() - started < 6
    bad = h.subscribe([("/vports", {"mode": "SAMPLE", "sample_interval": 1000})])
    assert await bad.next() is END and bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sample_interval" in bad.error.details()
    # TARGET_DEFINED picks its own interval: one given by the client is INVALID_ARGUMENT (3.5.1.5.2)
    td = h.subscribe([("/vports", {"mode": "TARGET_DEFINED", "sample_interval": 10**9})])
    assert await td.next() is END and td.error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_target_defined_samples_counters_and_streams_events(h):
    h.ds.state.upsert(STATS, (), {"datagrams": 1, "samples": 1})
    h.ds.state.upsert(CONN_STATE, ("a",), {"status": "connecting", "events": 1})
    sub = h.subscribe(["/sflow-collector", "/k8s/connection[cluster-name=a]/state"], sub_mode="TARGET_DEFINED")
    initial, _ = flat(await sub.until_sync())
    assert initial["/sflow-collector/statistics"]["datagrams"] == "1"
    t0 = time.monotonic()
    h.ds.state.merge(CONN_STATE, ("a",), {"status": "connected", "events": 2})
    h.ds.state.merge(STATS, (), {"datagrams": 5})
    first = await sub.next()
    assert time.monotonic() - t0 < 0.15  # the event leaf arrives on change ...
    assert flat([first.update])[0] == {"/k8s/connection[cluster-name=a]/state": {"status": "connected"}}
    later, _ = flat(await sub.collect_for(0.5))  # ... the counters with the next sample
    assert later["/sflow-collector/statistics"]["datagrams"] == "5"
    assert later["/k8s/connection[cluster-name=a]/state"] == {"events": "2"}


async def test_burst_is_packed_into_few_notifications(h):
    sub = h.subscribe(["/vports/vport"])
    await sub.until_sync()
    with h.ds.state.batch():
        for i in range(3000):
            h.ds.state.upsert(VPORT, (ip(i),), vport_row(i))
    got = await sub.collect(0.5)
    assert sum(len(n.update) for n in got) == 3000
    assert len(got) <= 5


async def test_slow_subscriber_coalesces_and_never_blocks_others(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    slow = h.subscribe(["/vports/vport"])
    fast = h.subscribe(["/vports/vport"])
    await slow.until_sync()
    await fast.until_sync()
    big = "x" * 4000
    # the slow client reads nothing while 3,000 changes of one node flow (~12 MB)
    slow.task.cancel()
    t0 = time.monotonic()
    for n in range(3000):
        h.ds.state.merge(VPORT, ("10.0.0.1",), {"portgroup": f"{n}{big}"})
        if n % 100 == 0:
            await asyncio.sleep(0)
    assert time.monotonic() - t0 < 2.0  # producers never waited for the slow client
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = await fast.next()
        seen += [u for u in r.update.update]
        if flat([r.update])[0].get("/vports/vport[ip=10.0.0.1]", {}).get("portgroup", "").startswith("2999"):
            break
    assert flat([r.update])[0]["/vports/vport[ip=10.0.0.1]"]["portgroup"].startswith("2999")
    assert h.srv.stats["coalesced"] > 0  # the slow client's queue merged intermediate values
    slow.cancel()


async def test_config_changes_reach_subscribers(h):
    sub = h.subscribe(["/k8s/connection"])
    assert await sub.until_sync() == []

    def add(tree):
        tree.setdefault("kubefabric-k8s:k8s", {}).setdefault("connection", []).append(
            {"cluster-name": "c1", "kube-config": "/etc/kube/c1"})
        return tree

    await h.ds.propose(add, user="admin", face="test")
    updates, _ = flat(await sub.collect(0.3))
    assert updates["/k8s/connection[cluster-name=c1]"]["kube-config"] == "/etc/kube/c1"
    def drop_owner(tree):
        del tree["kubefabric-k8s:k8s"]["connection"][0]["owner"]
        tree["kubefabric-k8s:k8s"]["connection"][0]["owner"] = "leaf2"
        return tree

    await h.ds.propose(drop_owner, user="admin", face="test")
    updates, _ = flat(await sub.collect(0.3))
    assert updates == {"/k8s/connection[cluster-name=c1]": {"owner": "leaf2"}}
    await h.ds.propose(lambda t: {}, user="admin", face="test")
    _, deletes = flat(await sub.collect(0.3))
    assert deletes == ["/k8s/connection[cluster-name=c1]"]


async def test_removed_leaf_is_a_leaf_delete_and_cancel_cleans_up(h):
    h.ds.state.upsert(VPORT, ("10.0.0.1",), vport_row(1))
    sub = h.subscribe(["/vports/vport"])
    await sub.until_sync()
    row = vport_row(1)
    del row["portgroup"]
    h.ds.state.upsert(VPORT, ("10.0.0.1",), row)
    _, deletes = flat(await sub.collect(0.3))
    assert deletes == ["/vports/vport[ip=10.0.0.1]/portgroup"]
    assert h.ds.feed.listener_count == 1
    sub.cancel()
    for _ in range(50):
        if h.ds.feed.listener_count == 0:
            break
        await asyncio.sleep(0.02)
    assert h.ds.feed.listener_count == 0 and h.srv.stats["sessions"] == 0


async def test_bad_subscriptions(h):
    for paths, kw, code in [
        # paths the target does not implement: UNIMPLEMENTED (spec 3.5.2.4's table)
        (["/vports/nothing"], {}, grpc.StatusCode.UNIMPLEMENTED),
        (["nomodule:/vports"], {}, grpc.StatusCode.UNIMPLEMENTED),
        (["/vports"], {"encoding": "ASCII"}, grpc.StatusCode.UNIMPLEMENTED),
        (["/sflow-collector/statistics/exporter[sub-agent-id=abc]"], {}, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        sub = h.subscribe(paths, **kw)
        assert await sub.next() is END, paths
        assert sub.error.code() == code, (paths, sub.error)
    unauth = h.subscribe(["/vports"], metadata=[("username", "admin"), ("password", "nope")])
    assert await unauth.next() is END and unauth.error.code() == grpc.StatusCode.UNAUTHENTICATED
    viewer = h.subscribe(["/vports"], metadata=VIEWER, mode="ONCE")
    assert await viewer.until_sync() == []


class FakeHistory:
    """The History port (core.ports.history) the gNMI face uses, over a list of vPort versions."""

    retention_days = 30.0

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.events = [  # (time s, op, ip, row)
            (t0 + 1, "update", "10.9.0.1", {"entity": "old-1"}),
            (t0 + 2, "update", "10.9.0.2", {"entity": "old-2"}),
            (t0 + 3, "delete", "10.9.0.1", {"entity": "old-1"}),
            (t0 + 4, "update", "10.9.0.2", {"entity": "new-2"}),
        ]

    def history_paths(self):
        return frozenset({VPORT})

    def rows_at(self, path, t, *, cluster=None, limit=100_000):
        table = {}
        for ts, op, addr, row in self.events:
            if ts <= t:
                if op == "delete":
                    table.pop(addr, None)
                else:
                    table[addr] = {**row, "ip": addr}
        return Page([Row((addr,), row) for addr, row in table.items()] if path == VPORT else [])

    def changes(self, start, end, *, kinds=None, cluster=None, limit=100_000):
        return Page([HistoryChange(ts, op, "vport", "c", addr, "", {**row, "ip": addr}, VPORT, (addr,))
                     for ts, op, addr, row in self.events if start <= ts < end])


def _history(**fields):
    ext = gnmi_ext_pb2.Extension()
    if "snapshot" in fields:
        ext.history.snapshot_time = fields["snapshot"]
    else:
        ext.history.range.start, ext.history.range.end = fields["range"]
    return [ext]


async def test_history_snapshot_and_range(h):
    sub = h.subscribe(["/vports"], mode="ONCE", extension=_history(snapshot=1))
    assert await sub.next() is END and sub.error.code() == grpc.StatusCode.UNIMPLEMENTED  # no history store
    t0 = time.time() - 100
    h.ds.history.attach(FakeHistory(t0))
    ns = lambda s: int(s * 1e9)  # noqa: E731
    snap = h.subscribe(["/vports/vport"], mode="ONCE", extension=_history(snapshot=ns(t0 + 2.5)))
    got = await snap.until_sync()
    assert flat(got)[0] == {"/vports/vport[ip=10.9.0.1]": {"entity": "old-1", "ip": "10.9.0.1"},
                            "/vports/vport[ip=10.9.0.2]": {"entity": "old-2", "ip": "10.9.0.2"}}
    assert got[0].timestamp == ns(t0 + 2.5)
    rng = h.subscribe(["/vports/vport"], extension=_history(range=(ns(t0 + 1.5), ns(t0 + 10))))
    initial = await rng.until_sync()
    assert list(flat(initial)[0]) == ["/vports/vport[ip=10.9.0.1]"]
    rest = await rng.collect(1.0)
    assert rng.error is None  # the range replay ends the RPC cleanly
    assert [(n.timestamp, bool(n.delete)) for n in rest] == [(ns(t0 + 2), False), (ns(t0 + 3), True), (ns(t0 + 4), False)]
    for kw, code in [({"mode": "STREAM", "extension": _history(snapshot=ns(t0))}, grpc.StatusCode.INVALID_ARGUMENT),
                     ({"mode": "ONCE", "extension": _history(range=(ns(t0), ns(t0 + 1)))}, grpc.StatusCode.INVALID_ARGUMENT),
                     ({"mode": "STREAM", "extension": _history(range=(ns(t0 + 5), ns(t0)))}, grpc.StatusCode.INVALID_ARGUMENT)]:
        bad = h.subscribe(["/vports"], **kw)
        assert await bad.next() is END and bad.error.code() == code, kw
    other = h.subscribe(["/k8s"], mode="ONCE", extension=_history(snapshot=ns(t0)))
    assert await other.next() is END and other.error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_queue_that_overflows_ends_only_that_session(tmp_path):
    h = await Harness(tmp_path, Limits(max_pending=50)).start()
    try:
        slow = h.subscribe(["/vports/vport"])
        fast = h.subscribe(["/vports/vport"])
        await slow.until_sync()
        await fast.until_sync()
        slow.task.cancel()  # stops reading: its window fills, then its queue
        big = "y" * 8000
        for n in range(400):
            h.ds.state.upsert(VPORT, (ip(n),), vport_row(n, portgroup=big))
            if n % 20 == 0:
                await asyncio.sleep(0.01)
        for _ in range(100):
            if h.ds.feed.listener_count == 1:
                break
            await asyncio.sleep(0.02)
        assert h.ds.feed.listener_count == 1 and h.srv.stats["sessions"] == 1  # only the slow one ended
        got = 0
        while got < 400:
            r = await fast.next()
            got += len(r.update.update)
        assert got == 400
    finally:
        await h.stop()
