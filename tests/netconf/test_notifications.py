"""RFC 5277 notifications: config changes and vPort/connection events, filters, replay."""
from __future__ import annotations

import datetime as dt

import pytest
from lxml import etree
from ncclient.operations import RPCError

from .helpers import NSMAP, VPORT, connect, connection_xml
from core.ports.history import HistoryChange, Page

NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
EVENTS = "urn:kubefabric:yang:kubefabric-notifications"
NETMOD = "urn:ietf:params:xml:ns:netmod:notification"
VPORTS = "/kubefabric-vport:vports/vport"
CONNS = "/kubefabric-connection:connections/connection"


def _take(m, timeout=5) -> etree._Element:
    n = m.take_notification(block=True, timeout=timeout)
    assert n is not None, "no notification"
    return etree.fromstring(n.notification_xml.encode() if isinstance(n.notification_xml, str) else n.notification_xml)


def test_config_change_notification_names_user_and_target(inproc):
    with connect(inproc.port) as listener, connect(inproc.port) as writer:
        listener.create_subscription(stream_name="config")
        writer.edit_config(target="running", config=connection_xml("n1"))
        note = _take(listener)
        change = note.find(f"{{{NCN}}}netconf-config-change")
        assert change is not None
        assert change.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}username") == "admin"
        assert change.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}session-id") == writer.session_id
        targets = [e.text for e in change.iterfind(f"{{{NCN}}}edit/{{{NCN}}}target")]
        assert "/kfk8s:k8s/kfk8s:connection[kfk8s:cluster-name='n1']" in targets
        assert note.findtext(f"{{{NOTIF}}}eventTime")
        # interleave: RPCs keep working on a subscribed session
        assert listener.get_config("running").ok


def test_vport_and_connection_events_with_filter(inproc):
    with connect(inproc.port) as m:
        flt = (f'<state-change xmlns="{EVENTS}"><data><vport xmlns="{VPORT}"><namespace>prod</namespace></vport>'
               "</data></state-change>")
        m.create_subscription(filter=("subtree", flt))
        inproc.call(inproc.ds.state.upsert, VPORTS, ("10.1.0.5",),
                    {"entity": "web-1", "namespace": "dev", "svc-name": "c1"})
        inproc.call(inproc.ds.state.upsert, VPORTS, ("10.1.0.6",),
                    {"entity": "db-1", "namespace": "prod", "svc-name": "c1"})
        note = _take(m)
        vport = note.find(f".//{{{VPORT}}}vport")
        assert vport.findtext(f"{{{VPORT}}}ip") == "10.1.0.6"
        assert vport.findtext(f"{{{VPORT}}}entity") == "db-1"
        assert m.take_notification(block=True, timeout=0.5) is None  # the dev pod was filtered out
    with connect(inproc.port) as m:
        m.create_subscription(stream_name="connection")
        key = (0, 1, "10.1.0.5", "10.1.0.6", 40000, 5432, 6)
        inproc.call(inproc.ds.state.upsert, CONNS, key, {"cur-state": "established", "latency": 120})
        inproc.call(inproc.ds.state.delete, CONNS, key)
        first, second = _take(m), _take(m)
        assert first.findtext(f".//{{{EVENTS}}}operation") == "merge"
        assert "kfconn:dst-port='5432'" in first.findtext(f".//{{{EVENTS}}}target")
        assert second.findtext(f".//{{{EVENTS}}}operation") == "delete"


def test_replay_refused_without_history(inproc):
    with connect(inproc.port) as m:
        start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
        with pytest.raises(RPCError) as err:
            m.create_subscription(start_time=start)
        assert err.value.tag == "operation-failed" and "history" in err.value.message


class FakeHistory:
    """The History port's changes() over three records (core.ports.history)."""

    retention_days = 30.0

    def __init__(self, now: float) -> None:
        self.rows = [
            HistoryChange(now - 300, "update", "vport", "c", "10.9.0.1", "", {"entity": "old-pod"}, VPORTS,
                          ("10.9.0.1",)),
            HistoryChange(now - 200, "delete", "vport", "c", "10.9.0.1", "", {}, VPORTS, ("10.9.0.1",)),
            HistoryChange(now - 100, "update", "pod", "c", "10.9.0.1", "uid", {}, None, None),  # a pod record: skipped
        ]

    def history_paths(self):
        return frozenset({VPORTS})

    def changes(self, start, end, *, kinds=None, cluster=None, limit=100_000):
        return Page([r for r in self.rows if start <= r.time < end])


def test_replay_from_history_then_live(inproc):
    now = dt.datetime.now(dt.timezone.utc)
    inproc.call(inproc.ds.history.attach, FakeHistory(now.timestamp()))
    with connect(inproc.port) as m:
        m.create_subscription(stream_name="vport", start_time=(now - dt.timedelta(minutes=10)).isoformat())
        first, second, done = _take(m), _take(m), _take(m)
        assert first.findtext(f".//{{{VPORT}}}entity") == "old-pod"
        assert second.findtext(f".//{{{EVENTS}}}operation") == "delete"
        assert done.find(f"{{{NETMOD}}}replayComplete") is not None
        event_time = dt.datetime.fromisoformat(first.findtext(f"{{{NOTIF}}}eventTime").replace("Z", "+00:00"))
        assert abs((now - event_time).total_seconds() - 300) < 2
        inproc.call(inproc.ds.state.upsert, VPORTS, ("10.9.0.2",), {"entity": "new-pod"})
        assert _take(m).findtext(f".//{{{VPORT}}}entity") == "new-pod"
    with connect(inproc.port) as m:  # a window in the past ends with notificationComplete
        m.create_subscription(stream_name="vport", start_time=(now - dt.timedelta(minutes=10)).isoformat(),
                              stop_time=(now - dt.timedelta(minutes=4)).isoformat())
        first, done, complete = _take(m), _take(m), _take(m)
        assert first.findtext(f".//{{{VPORT}}}entity") == "old-pod"
        assert done.find(f"{{{NETMOD}}}replayComplete") is not None
        assert complete.find(f"{{{NETMOD}}}notificationComplete") is not None


def test_streams_are_listed_and_unknown_stream_refused(inproc):
    with connect(inproc.port) as m:
        data = m.get(filter=("subtree", f'<netconf xmlns="{NETMOD}"><streams/></netconf>')).data
        names = [e.text for e in data.iterfind(f".//{{{NETMOD}}}stream/{{{NETMOD}}}name")]
        assert names[0] == "NETCONF" and {"config", "vport", "connection"} <= set(names)
        with pytest.raises(RPCError) as err:
            m.create_subscription(stream_name="nope")
        assert err.value.tag == "invalid-value"
        m.create_subscription()
        with pytest.raises(RPCError) as err:
            m.create_subscription()
        assert err.value.tag == "operation-failed"


def test_get_merges_state_into_config(inproc):
    with connect(inproc.port) as m:
        m.edit_config(target="running", config=connection_xml("st"))
        inproc.call(inproc.ds.state.upsert, "/kubefabric-k8s:k8s/connection/state", ("st",),
                    {"status": "connected", "pod-count": 12, "events": 2**40})
        inproc.call(inproc.ds.state.upsert, VPORTS, ("10.2.0.1",), {"entity": "p", "vlan": 4090})
        data = m.get(filter=("subtree", '<k8s xmlns="urn:kubefabric:yang:kubefabric-k8s"/>')).data
        conn = data.find(".//k8s:connection", NSMAP)
        assert conn.findtext("k8s:kube-config", namespaces=NSMAP) == "/etc/kubefabric/k.conf"
        assert conn.findtext("k8s:state/k8s:status", namespaces=NSMAP) == "connected"
        assert conn.findtext("k8s:state/k8s:events", namespaces=NSMAP) == str(2**40)
        data = m.get(filter=("xpath", ({"v": VPORT}, "/v:vports/v:vport[v:ip='10.2.0.1']/v:vlan"))).data
        assert data.findtext(".//vport:vport/vport:ip", namespaces=NSMAP) == "10.2.0.1"
        assert data.findtext(".//vport:vport/vport:vlan", namespaces=NSMAP) == "4090"
        assert m.get_config("running").data.find(".//k8s:state", NSMAP) is None


def test_config_notifications_from_a_real_agent(port):
    with connect(port) as listener, connect(port) as writer:
        listener.create_subscription()
        writer.edit_config(target="candidate", config=connection_xml("live"))
        writer.commit()
        change = _take(listener).find(f"{{{NCN}}}netconf-config-change")
        assert change.findtext(f"{{{NCN}}}changed-by/{{{NCN}}}username") == "admin"
        assert "cluster-name='live'" in " ".join(e.text for e in change.iter(f"{{{NCN}}}target"))


def test_changes_from_other_faces_are_seen_and_notified(inproc):
    """gNMI and the CLI write through the same Datastore.propose: NETCONF reads it and tells subscribers."""
    with connect(inproc.port) as m:
        m.create_subscription(stream_name="config")

        def add(tree: dict) -> dict:
            tree.setdefault("kubefabric-k8s:k8s", {}).setdefault("connection", []).append(
                {"cluster-name": "via-gnmi", "kube-config": "/k"})
            return tree

        inproc.call(lambda: inproc.ds.propose(add, user="admin", face="gnmi"))
        change = _take(m).find(f"{{{NCN}}}netconf-config-change")
        assert change.find(f"{{{NCN}}}changed-by/{{{NCN}}}server") is not None
        assert "via-gnmi" in m.get_config("running").data_xml


async def test_a_client_that_stops_reading_costs_bounded_memory(inproc):
    import asyncio

    from .helpers import RawClient
    from agent.netconf.notifications import QUEUE_LIMIT

    client = await RawClient(inproc.port).open()
    reply = await client.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">'
                             "<stream>vport</stream></create-subscription>")
    assert reply.find("{urn:ietf:params:xml:ns:netconf:base:1.0}ok") is not None
    client.chan.pause_reading()

    def flood(start: int) -> None:
        with inproc.ds.state.batch():
            for i in range(start, start + 10_000):
                inproc.ds.state.upsert(VPORTS, (f"10.{i // 60000}.{i // 250 % 240}.{i % 250}",),
                                       {"entity": f"pod-{i}" + "x" * 200, "namespace": "flood"})

    for start in range(0, 40_000, 10_000):
        inproc.call(flood, start)
        await asyncio.sleep(0.2)
    session = inproc.call(lambda: next(iter(inproc.server.sessions.values())))
    sub = session.subscription
    buffered = inproc.call(lambda: session._chan.get_write_buffer_size())
    assert sub.dropped > 0 and len(sub.queue) <= QUEUE_LIMIT
    assert buffered < 512 * 1024, buffered  # asyncssh high-water mark plus one message
    client.chan.resume_reading()
    await client.close()
