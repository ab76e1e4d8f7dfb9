"""Fabric-wide answers from any member: real `kubefabric run` agents on a real three-member etcd.

A gNMI Get whose prefix target is `*` (or a member's name) is answered by the members, each
notification carrying its member's name as target; a forwarded Set writes that member's node-local
config; the caller's identity and role travel with the request, so a read-only user stays read-only;
a forged or tampered assertion is refused; a member that is down is reported as such, never left out;
and the CLI's `switch NAME|*` prefix gives the same answers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import grpc
import pytest
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from tests.agentproc import REPO, USERS
from tests.fabric.agents import start_agents

SETTINGS = "kubefabric-connection:connection-stats-settings"


def stub(agent):
    channel = grpc.insecure_channel(agent.gnmi_addr)
    return channel, gnmi_pb2_grpc.gNMIStub(channel)


def creds(user="admin"):
    return (("username", user), ("password", USERS[user][0]))


def settings_request(target, encoding="JSON_IETF"):
    return gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target),
                               path=[gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=SETTINGS)])],
                               encoding=gnmi_pb2.Encoding.Value(encoding))


def _plain(value):
    if isinstance(value, dict):
        return {k.split(":")[-1]: _plain(v) for k, v in value.items()}
    return value


def by_target(response) -> dict[str, dict]:
    """target -> {path: value (module prefixes dropped)} of a GetResponse."""
    out: dict[str, dict] = {}
    for n in response.notification:
        leaves = out.setdefault(n.prefix.target, {})
        for u in n.update:
            names = "/".join(e.name.split(":")[-1] + "".join(f"[{k}={v}]" for k, v in e.key.items())
                             for e in u.path.elem)
            leaves[names] = _plain(json.loads(u.val.json_ietf_val))
    return out


def leaf_of(leaves: dict, name: str):
    """A leaf of a connection-stats-settings answer, whatever level the update is at."""
    for path, value in leaves.items():
        if path.endswith(name):
            return value
        if isinstance(value, dict):
            value = value.get("connection-stats-settings", value)
            if name in value:
                return value[name]
    return None


def limit_of(leaves: dict):
    return leaf_of(leaves, "max-connections")


def wait_fabric_ready(agents, timeout=60.0):
    """Every agent sees every member online and can forward to each (their keys are published)."""
    deadline = time.monotonic() + timeout
    names = sorted(a.node_name for a in agents)
    while True:
        ok = True
        for a in agents:
            channel, s = stub(a)
            try:
                got = by_target(s.Get(settings_request("*"), metadata=creds(), timeout=10))
                ok &= sorted(got) == names and not any("forward-error" in " ".join(v) for v in got.values())
            except grpc.RpcError:
                ok = False
            finally:
                channel.close()
        if ok:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fabric not ready: {got}")
        time.sleep(0.3)


def cli(agent, *words, user="admin"):
    env = {**os.environ, "KUBEFABRIC_PASSWORD": USERS[user][0]}
    return subprocess.run([sys.executable, "-m", "agent.main", "cli", "--gnmi-addr", agent.gnmi_addr, "--insecure",
                           "--username", user, *words], capture_output=True, text=True, cwd=REPO, env=env, timeout=60)


@pytest.fixture
def fabric(etcd, fabric_name, tmp_path):
    agents = start_agents(tmp_path, ["A", "B", "C"], etcd, fabric_name)
    try:
        wait_fabric_ready(agents)
        yield agents
    finally:
        for a in agents:
            a.stop()


def test_get_and_set_across_the_fabric_with_the_callers_identity(fabric):
    a, b, c = fabric
    channel, s = stub(a)
    try:
        # admin on A sets B's and C's node-local settings through A
        for member, limit in (("B", 2000), ("C", 3000)):
            request = gnmi_pb2.SetRequest(prefix=gnmi_pb2.Path(target=member), update=[gnmi_pb2.Update(
                path=gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=SETTINGS), gnmi_pb2.PathElem(name="max-connections")]),
                val=gnmi_pb2.TypedValue(json_ietf_val=b"%d" % limit))])
            s.Set(request, metadata=creds(), timeout=10)
        got = by_target(s.Get(settings_request("*"), metadata=creds("viewer"), timeout=10))
        assert sorted(got) == ["A", "B", "C"]
        limits = {t: limit_of(leaves) for t, leaves in got.items()}
        assert limits["B"] == 2000 and limits["C"] == 3000 and limits["A"] != 2000
        # one member by name
        only = by_target(s.Get(settings_request("C"), metadata=creds("viewer"), timeout=10))
        assert list(only) == ["C"]
        # the audit log of B names the caller, not A's agent
        assert "config change by admin via gnmi" in b.log() and "via fabric member A" in b.log()
        # a read-only user stays read-only on the member (the member refuses, as the asserted role says)
        request = gnmi_pb2.SetRequest(prefix=gnmi_pb2.Path(target="B"), update=[gnmi_pb2.Update(
            path=gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=SETTINGS), gnmi_pb2.PathElem(name="enable")]),
            val=gnmi_pb2.TypedValue(json_ietf_val=b"true"))])
        before = leaf_of(by_target(s.Get(settings_request("B"), metadata=creds(), timeout=10))["B"], "enable")
        with pytest.raises(grpc.RpcError) as denied:
            s.Set(request, metadata=creds("viewer"), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED and "viewer" in denied.value.details()
        star = gnmi_pb2.SetRequest()
        star.CopyFrom(request)
        star.prefix.target = "*"
        with pytest.raises(grpc.RpcError) as denied_all:
            s.Set(star, metadata=creds("viewer"), timeout=10)
        assert denied_all.value.code() == grpc.StatusCode.PERMISSION_DENIED
        after = by_target(s.Get(settings_request("B"), metadata=creds(), timeout=10))["B"]
        assert before is False and leaf_of(after, "enable") is False
        # an unknown member is NOT_FOUND
        with pytest.raises(grpc.RpcError) as unknown:
            s.Get(settings_request("nobody"), metadata=creds(), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "A, B, C" in unknown.value.details()
    finally:
        channel.close()


def test_pygnmi_get_with_target_star_agrees_from_every_member(fabric):
    answers = []
    for agent in fabric:
        with gNMIclient(**agent.gnmi_kwargs("viewer")) as gc:
            reply = gc.get(path=[f"/{SETTINGS}"], target="*", encoding="json_ietf")
        answers.append(sorted(json.dumps(u["val"], sort_keys=True) for n in reply["notification"]
                              for u in n.get("update") or []))
    assert len(answers[0]) == 3 and answers[0] == answers[1] == answers[2]


def test_forged_and_tampered_assertions_are_refused(fabric):
    a, b, _ = fabric
    channel, s = stub(b)
    try:
        forged = (("kubefabric-forwarded-by", "A"), ("kubefabric-assertion", "eyJ2IjoxfQ"),
                  ("kubefabric-signature", "AAAA"))
        with pytest.raises(grpc.RpcError) as refused:
            s.Get(settings_request("B"), metadata=forged, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "does not match A's published key" in refused.value.details() or "decode" in refused.value.details()
        with pytest.raises(grpc.RpcError) as nokey:
            s.Get(settings_request("B"), metadata=(("kubefabric-forwarded-by", "mallory"),) + forged[1:], timeout=10)
        assert "no forwarding key is published for fabric member 'mallory'" in nokey.value.details()
        with pytest.raises(grpc.RpcError) as sub:
            next(iter(s.Subscribe(iter([gnmi_pb2.SubscribeRequest()]), metadata=forged, timeout=10)))
        assert sub.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    assert "refused a forwarded Get from A" in b.log()


def test_a_member_that_is_down_is_reported_never_left_out(fabric):
    a, b, c = fabric
    c.kill()
    channel, s = stub(a)
    try:
        got = by_target(s.Get(settings_request("*"), metadata=creds(), timeout=15))
        assert sorted(got) == ["A", "B", "C"]
        assert limit_of(got["B"]) is not None
        down = got["C"]
        assert "fabric/node[name=C]/forward-error" in down and limit_of(down) is None
        with pytest.raises(grpc.RpcError) as single:
            s.Get(settings_request("C"), metadata=creds(), timeout=15)
        assert single.value.code() == grpc.StatusCode.UNAVAILABLE and "C" in single.value.details()
        # once the lease is gone the member table says offline, and so does the answer
        deadline = time.monotonic() + 30
        while by_target(s.Get(settings_request("*"), metadata=creds(), timeout=15))["C"].get(
                "fabric/node[name=C]/state") != "offline":
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        channel.close()
    out = cli(a, "switch", "*", "connection-stats-settings-show")
    assert out.returncode == 0, out.stderr
    assert "switch C: no answer" in out.stdout and "offline" in out.stdout
    assert "A " in out.stdout and "B " in out.stdout


def test_cli_switch_prefix(fabric):
    a, b, c = fabric
    out = cli(a, "switch", "B", "connection-stats-settings-modify", "max-connections", "4242")
    assert out.returncode == 0, out.stderr
    shown = cli(b, "connection-stats-settings-show")
    assert "4242" in shown.stdout
    star = cli(b, "switch", "*", "topology-source-show", "name", "netlink", "--json")
    assert star.returncode == 0, star.stderr
    rows = json.loads(star.stdout)
    assert sorted(r["switch"] for r in rows) == ["A", "B", "C"] and all(r["name"] == "netlink" for r in rows)
    connections = cli(c, "switch", "*", "connection-show", "--json")
    assert connections.returncode == 0 and json.loads(connections.stdout or "[]") == []   # every member answered
    denied = cli(a, "switch", "B", "connection-stats-settings-modify", "max-connections", "5", user="viewer")
    assert denied.returncode == 1 and "viewer" in denied.stderr
