"""Resource bounds: sessions, streams, message sizes, queues, per-exporter quotas, exporter rows, history.

Each limit is checked where it is enforced, with small limits so the tests
run in seconds; docs/hardening.md lists the defaults.
"""
from __future__ import annotations

import asyncio

import asyncssh
import grpc
import pytest
from agent.gnmi_proto import gnmi_pb2, gnmi_pb2_grpc

from agent.auth import Authenticator, UserEntry
from core.datastore import Datastore
from core.changefeed import Change
from agent.gnmi.coalesce import CoalescingQueue
from agent.gnmi.server import GnmiServer, MAX_RECEIVE_BYTES
from agent.gnmi.subscribe import Limits
from collectors.conntrack.tracker import SYN, ConnectionTracker
from core.ports.flows import FlowObservation
from collectors.sflow.stats import CollectorStats
from fabric_sync.embedded import EmbeddedFabricStore
from tests.agentproc import USERS, users_config
from tests.gnmi.helpers import FakeAuth
from tests.netconf.helpers import RawClient, InProcessAgent, NC

ADMIN = (("username", "admin"), ("password", "pw"))
VIEWER = (("username", "viewer"), ("password", "pw"))


# -- gNMI ---------------------------------------------------------------------------------------------------
@pytest.fixture
async def gnmi(tmp_path):
    ds = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await ds.start()
    srv = GnmiServer(ds, FakeAuth(), addr="127.0.0.1:0", insecure=True, max_streams=3, max_streams_per_user=2,
                     limits=Limits(max_pending=50))
    await srv.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{srv.bound_port}",
                                        options=[("grpc.max_send_message_length", 64 << 20)])
    yield srv, gnmi_pb2_grpc.gNMIStub(channel), ds
    await channel.close()
    await srv.stop(0.1)
    await ds.stop()


def _stream_request(path="/fabric"):
    from agent.gnmi.paths import parse

    return gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
        mode=gnmi_pb2.SubscriptionList.STREAM, encoding=gnmi_pb2.JSON_IETF,
        subscription=[gnmi_pb2.Subscription(path=parse(path), mode=gnmi_pb2.ON_CHANGE)]))


async def _open_stream(stub, metadata, done: asyncio.Event, request=None):
    """Open a STREAM subscription and read up to sync_response; returns the call (or raises AioRpcError)."""
    request = request or _stream_request()

    async def requests():
        yield request
        await done.wait()

    call = stub.Subscribe(requests(), metadata=metadata)
    async for response in call:
        if response.sync_response:
            return call
    raise AssertionError("stream ended before sync_response")


async def test_gnmi_streams_capped_in_all_and_per_user(gnmi):
    srv, stub, _ds = gnmi
    done = asyncio.Event()
    calls = [await _open_stream(stub, ADMIN, done), await _open_stream(stub, ADMIN, done)]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _open_stream(stub, ADMIN, done)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "admin" in exc.value.details()
    calls.append(await _open_stream(stub, VIEWER, done))  # another user still gets in, up to the total
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _open_stream(stub, VIEWER, done)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many" in exc.value.details()
    calls[0].cancel()
    await asyncio.sleep(0.2)
    calls.append(await _open_stream(stub, ADMIN, done))  # a closed stream gives its slot back
    for call in calls:
        call.cancel()
    await asyncio.sleep(0.2)
    assert srv._streams == {}


async def test_gnmi_too_many_subscriptions_in_one_request(gnmi):
    _srv, stub, _ds = gnmi
    from agent.gnmi.paths import parse

    request = _stream_request()
    for _ in range(1001):
        request.subscribe.subscription.append(gnmi_pb2.Subscription(path=parse("/fabric"), mode=gnmi_pb2.ON_CHANGE))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await _open_stream(stub, ADMIN, asyncio.Event(), request)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_gnmi_message_size_cap(gnmi):
    _srv, stub, ds = gnmi
    from agent.gnmi.paths import parse

    big = gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(
        path=parse("/k8s/connection[cluster-name=a]/kube-config"),
        val=gnmi_pb2.TypedValue(json_ietf_val=b'"/' + b"a" * (MAX_RECEIVE_BYTES + 1024) + b'"'))])
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Set(big, metadata=ADMIN)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ds.config.raw == {}
    ok = await stub.Get(gnmi_pb2.GetRequest(path=[parse("/fabric")], encoding=gnmi_pb2.JSON_IETF), metadata=ADMIN)
    assert ok.notification is not None  # the server is fine


async def test_gnmi_queue_of_a_stalled_subscriber_is_bounded(gnmi):
    """Changes to distinct nodes beyond max_pending end the stream (RESOURCE_EXHAUSTED), never grow the queue."""
    srv, stub, ds = gnmi
    done = asyncio.Event()
    call = await _open_stream(stub, ADMIN, done, _stream_request("/vports/vport"))
    # many distinct nodes in one synchronous burst: the sender cannot drain in between
    with ds.state.batch():
        for i in range(500):
            ds.state.upsert("/kubefabric-vport:vports/vport", (f"10.0.{i // 250}.{i % 250}",), {"vlan": 1})
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in call:
            pass
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert srv.stats["sessions"] == 0
    done.set()


def test_coalescing_queue_holds_one_entry_per_node_and_stops_at_max():
    q = CoalescingQueue(max_nodes=100)
    for i in range(10_000):  # one node changing 10,000 times: one entry
        q.put(Change("/p", ("a",), {"x": i}, (), i))
    assert len(q) == 1 and not q.overflowed
    for i in range(1000):
        q.put(Change("/p", (str(i),), {"x": i}, (), i))
    assert len(q) == 100 and q.overflowed


# -- NETCONF ------------------------------------------------------------------------------------------------
@pytest.fixture
def netconf(tmp_path):
    agent = InProcessAgent(tmp_path, max_sessions=2, max_message=64 * 1024).start()
    yield agent
    agent.stop()


async def test_netconf_sessions_capped(netconf):
    clients = [await RawClient(netconf.port).open(), await RawClient(netconf.port).open()]
    with pytest.raises((asyncssh.ChannelOpenError, asyncio.TimeoutError, asyncssh.Error, OSError)):
        await asyncio.wait_for(RawClient(netconf.port).open(), 5)
    assert netconf.server.stats.dropped_sessions >= 1
    await clients[0].close()
    await asyncio.sleep(0.3)
    clients[0] = await RawClient(netconf.port).open()  # a slot is free again
    for c in clients:
        await c.close()


async def test_netconf_message_cap_rejects_and_keeps_the_session(netconf):
    client = await RawClient(netconf.port).open()
    filler = "<x>" + "a" * (100 * 1024) + "</x>"
    reply = await client.rpc(f"<get><filter>{filler}</filter></get>")
    text = reply.xpath("string(//nc:error-message)", namespaces={"nc": NC})
    assert "exceeds" in text and "65536" in text
    reply = await client.rpc("<get-config><source><running/></source></get-config>", message_id="2")
    assert reply.find(f"{{{NC}}}data") is not None
    await client.close()


# -- CLI over SSH -------------------------------------------------------------------------------------------
async def test_cli_ssh_sessions_capped(tmp_path):
    from agent.cli.ssh import CliSshServer

    ds = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await ds.start()
    auth = Authenticator([UserEntry(u["name"], u["password-hash"], u["role"]) for u in users_config()])
    server = CliSshServer(ds, auth, "127.0.0.1:0", max_sessions=2)
    await server.start()
    conns = []
    try:
        for _ in range(3):
            conns.append(await asyncssh.connect("127.0.0.1", server.port, username="viewer",
                                                password=USERS["viewer"][0], known_hosts=None))
        procs = [await c.create_process(term_type="xterm") for c in conns[:2]]
        for p in procs:
            await asyncio.wait_for(p.stdout.readuntil(">"), 5)
        refused = await asyncio.wait_for(conns[2].run("fabric-node-show"), 5)
        assert refused.exit_status == 1 and "too many CLI sessions" in refused.stderr
        procs[0].stdin.write("exit\n")
        await asyncio.wait_for(procs[0].wait(), 5)
        ok = await asyncio.wait_for(conns[2].run("fabric-node-show"), 5)
        assert ok.exit_status == 0, ok.stderr
    finally:
        for c in conns:
            c.close()
        await server.stop()
        await ds.stop()
    assert server.sessions == 0


# -- connection tracker quotas ------------------------------------------------------------------------------
def _sample(t, exporter, i, port=80):
    return FlowObservation(t, exporter, 1, 100, 0, 0, "none", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "10.255.0.1",
            6, 40000 + i % 20000, port, SYN)


def test_flood_from_unknown_exporter_cannot_evict_known_exporters_connections():
    tracker = ConnectionTracker(max_connections=1000, idle_timeout=300)
    known = {"192.0.2.1": 300, "192.0.2.2": 200}
    for base, (exporter, n) in enumerate(known.items()):
        for i in range(n):
            tracker.observe(_sample(1.0, exporter, base * 1000 + i))
    before = {k for k, c in tracker.table.items() if c.owner in known}
    for i in range(50_000):  # one unknown exporter floods with distinct flows
        tracker.observe(_sample(2.0 + i * 1e-5, "198.51.100.66", 100_000 + i))
    for i in range(5_000):  # and spoofed agent addresses, one flow each
        tracker.observe(_sample(3.0, f"203.0.{i >> 8 & 255}.{i & 255}", 300_000 + i))
    assert {k for k, c in tracker.table.items() if c.owner in known} == before
    assert len(tracker) == 1000 and tracker.refused == 5_000
    assert len(tracker.by_exporter["198.51.100.66"]) == 500
    # known exporters keep working: a new flow of a known exporter recycles that exporter's own oldest entry
    tracker.observe(_sample(4.0, "192.0.2.1", 999_999))
    assert len(tracker.by_exporter["192.0.2.1"]) == 300 and len(tracker.by_exporter["192.0.2.2"]) == 200


def test_exporter_quota_leaves_room_for_others():
    tracker = ConnectionTracker(max_connections=1000, exporter_quota=400)
    for i in range(5000):
        tracker.observe(_sample(1.0 + i * 1e-4, "198.51.100.66", i))
    assert len(tracker) == 400
    for i in range(500):
        tracker.observe(_sample(2.0, "192.0.2.1", 10_000 + i))
    assert len(tracker.by_exporter["192.0.2.1"]) == 400 and tracker.refused == 0
    tracker.expire(1e9)
    assert len(tracker) == 0 and tracker.by_exporter == {}


def test_second_chance_eviction_keeps_an_exporters_busy_entries():
    tracker = ConnectionTracker(max_connections=10)
    for i in range(5):
        tracker.observe(_sample(1.0, "a", i))
    for i in range(5):
        tracker.observe(_sample(1.1, "b", 100 + i))
    tracker.observe(_sample(2.0, "b", 100))  # b's first flow stays busy
    tracker.observe(_sample(3.0, "b", 200))  # table full: b recycles its least recently seen entry, not flow 100
    owned = {c.src_ip for c in tracker.by_exporter["b"].values()}
    assert "10.0.0.100" in owned and "10.0.0.101" not in owned and len(tracker.by_exporter["a"]) == 5


def test_sflow_exporter_rows_bounded():
    stats = CollectorStats(max_exporters=100)
    for i in range(10_000):
        stats.account(f"203.0.{i >> 8 & 255}.{i & 255}", 0, 1, 0, 1, False, 1.0)
    assert len(stats.exporters) == 100 and stats.untracked == 9_900 and stats.datagrams == 10_000


# -- Kubernetes history: retention and size cap -------------------------------------------------------------
def _churn(store, pods: int, versions: int, t0: float, step: float = 60.0) -> float:
    t = t0
    for v in range(versions):
        for p in range(pods):
            store.set("pod", "c1", f"10.0.{p >> 8}.{p & 255}", f"uid-{p}",
                      {"name": f"pod-{p}", "namespace": "default", "node": "n1", "phase": "Running",
                       "labels": {"app": "x" * 40, "version": str(v)}}, t)
        t += step
        store.flush()
    return t


def test_history_retention_drops_versions_closed_before_the_horizon(tmp_path):
    from core.history.store import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3", retention_days=1)
    day = 86400.0
    t = _churn(store, 50, 4, 1_000_000.0, step=day)  # versions closed 3, 2 and 1 days before the last
    total = store.count()
    removed = store.enforce_retention(t + 0.5 * day)
    assert removed > 0 and store.count() == total - removed
    # what is current stays, however old
    assert len(store.pods_at("10.0.0.1", t)) == 1
    store.close()


def test_history_size_cap_keeps_the_database_bounded_and_the_present_intact(tmp_path):
    from core.history.store import HistoryStore
    from core.schema_paths import VPORT as VPORT_PATH

    cap = 1 * 2**20
    store = HistoryStore(tmp_path / "h.sqlite3", retention_days=365, max_bytes=cap)
    t = _churn(store, 150, 40, 1_000_000.0)
    assert store.size_bytes() > cap  # the churn went past the cap ...
    removed = store.enforce_retention(t)
    assert removed > 0 and store.size_bytes() <= cap  # ... and retention brought it back under
    assert len(store.rows_at(VPORT_PATH, t)) == 0 and len(store.pods_at("10.0.0.7", t)) == 1  # current versions kept
    oldest_left = store._db.execute("SELECT min(valid_from) FROM record").fetchone()[0]
    assert oldest_left > 1_000_000.0  # the oldest history went first
    store.close()
