"""The seed's story end to end: a real agent watching a (fake) Flannel host-gw cluster.

The fake API server (sim/k8s_apiserver.py) runs as its own process; the
agent's Kubernetes collector fills the vPort table, CNI, services and
history; the CLI reads them over gNMI and over SSH with netmiko.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from agent.cli.engine import Engine
from agent.cli.gnmi_backend import GnmiBackend
from tests.agentproc import REPO, USERS, AgentProcess, free_port

from .test_agent import cli

pytest.importorskip("agent.gnmi.server")
pytest.importorskip("sim.k8s_apiserver")
pytest.importorskip("collectors.k8s.manager")
netmiko = pytest.importorskip("netmiko")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A fake API server with Flannel host-gw, 3 nodes and 6 pods; yields its kubeconfig path."""
    workdir = tmp_path_factory.mktemp("fake-k8s")
    kubeconfig = workdir / "kubeconfig"
    log = open(workdir / "apiserver.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.k8s_apiserver", "--port", str(free_port()), "--scenario", "flannel-host-gw",
         "--nodes", "3", "--pods", "6", "--kubeconfig", str(kubeconfig), "--cluster-name", "pluribus"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not kubeconfig.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not kubeconfig.exists():
        proc.kill()
        pytest.fail("fake API server did not start:\n" + (workdir / "apiserver.log").read_text())
    yield kubeconfig
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory, cluster):
    proc = AgentProcess(tmp_path_factory.mktemp("seed-agent"), node_name="switch",
                        extra_args=["--cli-ssh-addr", f"127.0.0.1:{free_port()}"])
    proc.start()
    yield proc
    proc.stop()


async def _engine(agent, user="admin", as_json=False) -> Engine:
    backend = GnmiBackend(agent.gnmi_addr, user, USERS[user][0], insecure=True)
    return Engine(await backend.connect(), as_json=as_json)


async def _wait_rows(engine: Engine, line: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        outcome = await engine.run(line)
        rows = json.loads(outcome.output) if outcome.ok else []
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.2)
    pytest.fail(f"{line}: {len(rows)} rows after {timeout}s")


async def test_seed_story(agent, cluster):
    # CLI (network-admin@switch) > k8s-connection-create cluster-name pluribus kube-config /root/.kube/config enable
    assert cli(agent, "k8s-connection-create", "cluster-name", "pluribus", "kube-config", str(cluster),
               "enable") == (0, "", "")
    # CLI (network-admin@switch) > k8s-connection-modify create-vport
    assert cli(agent, "k8s-connection-modify", "create-vport") == (0, "", "")

    text, data = await _engine(agent), await _engine(agent, as_json=True)
    try:
        await _wait_rows(data, "k8s-cni-show", count=1)
        assert (await text.run("k8s-cni-show")).output.splitlines() == [
            "cluster-name cni-plugin backend network-type",
            "------------ ---------- ------- ------------",
            "pluribus     flannel    host-gw underlay"]

        vports = await _wait_rows(data, "vport-show", count=6)
        assert {v["svc-name"] for v in vports} == {"pluribus"} and all(v["owner"] == "switch" for v in vports)
        header = (await text.run("vport-show")).output.splitlines()[0].split()
        assert header == ["owner", "mac", "vlan", "ip", "svc-name", "hostname", "entity", "power", "portgroup",
                          "status"]
        host = vports[0]["hostname"]
        out = (await text.run(f"vport-show hostname {host} format entity no-show-headers")).output
        assert sorted(out.split()) == sorted(v["entity"] for v in vports if v["hostname"] == host)

        out = (await text.run("k8s-connection-show format cluster-name,create-vport,owner,status")).output
        assert out.splitlines()[2].split() == ["pluribus", "yes", "switch", "connected"]

        services = await _wait_rows(data, "service-show cluster-name pluribus", count=1)
        assert any(s.get("backend-count") for s in services)
        backends = await _wait_rows(data, "service-backend-show cluster-name pluribus ready true", count=1)
        assert all(b.get("pod") and b.get("ip") for b in backends)

        # the time machine: the table now, and the pods' arrival within the last hour
        now = json.loads((await data.run("vport-history-show")).output)
        assert {r["ip"] for r in now} == {v["ip"] for v in vports}
        arrivals = json.loads((await data.run("vport-history-show within-last 1h change update")).output)
        assert {r["ip"] for r in arrivals} >= {v["ip"] for v in vports}
        table = (await text.run("vport-show")).output
    finally:
        await text.backend.close()
        await data.backend.close()

    # the same table over SSH, as netmiko sees it, and the read-only role
    def over_ssh() -> tuple[str, str, str]:
        conn = netmiko.ConnectHandler(device_type="pluribus", host="127.0.0.1",
                                      port=int(agent.extra_args[1].rpartition(":")[2]),
                                      username="viewer", password=USERS["viewer"][0])
        try:
            return (conn.find_prompt(), conn.send_command("vport-show"),
                    conn.send_command("k8s-connection-delete cluster-name pluribus"))
        finally:
            conn.disconnect()

    prompt, shown, refused = await asyncio.to_thread(over_ssh)
    assert prompt == "CLI (viewer@switch) >"
    assert shown == table
    assert refused.startswith("k8s-connection-delete: permission denied")
