"""`kubefabric cli` and the SSH shell against a real `kubefabric run` process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.cli.engine import Engine
from agent.cli.gnmi_backend import GnmiBackend
from tests.agentproc import REPO, USERS, AgentProcess, free_port

pytest.importorskip("agent.gnmi.server")
netmiko = pytest.importorskip("netmiko")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One agent with gNMI (no TLS) and the CLI over SSH on loopback."""
    proc = AgentProcess(tmp_path_factory.mktemp("cli-agent"),
                        extra_args=["--cli-ssh-addr", f"127.0.0.1:{free_port()}"])
    proc.start()
    yield proc
    proc.stop()


def cli(agent, *words, user="admin", password=None, stdin=None, env=None, flags=None):
    """Run `kubefabric cli` as a user; (exit code, stdout, stderr)."""
    environ = {**os.environ, "KUBEFABRIC_PASSWORD": password or USERS[user][0], **(env or {})}
    args = flags if flags is not None else ["--gnmi-addr", agent.gnmi_addr, "--insecure", "--username", user]
    result = subprocess.run([sys.executable, "-m", "agent.main", "cli", *args, *words], input=stdin,
                            env=environ, capture_output=True, text=True, cwd=REPO, timeout=60)
    return result.returncode, result.stdout, result.stderr


async def _engine(agent, user: str = "admin") -> Engine:
    """The CLI engine over gNMI to the agent process, in this process (no subprocess per command)."""
    backend = GnmiBackend(agent.gnmi_addr, user, USERS[user][0], insecure=True)
    return Engine(await backend.connect())


def ssh_port(agent) -> int:
    return int(agent.extra_args[1].rpartition(":")[2])


def test_one_shot_config_and_show(agent):
    assert cli(agent, "k8s-connection-create", "cluster-name", "pluribus", "kube-config", "/root/.kube/config",
               "enable") == (0, "", "")
    assert cli(agent, "k8s-connection-modify", "create-vport")[0] == 0
    code, out, err = cli(agent, "k8s-connection-show", "format", "cluster-name,enable,create-vport,owner")
    assert code == 0, err
    assert out.splitlines() == ["cluster-name enable create-vport owner", "------------ ------ ------------ -----",
                                "pluribus     yes    yes          leaf1"]
    code, out, _ = cli(agent, "--json", "k8s-connection-show")
    row = json.loads(out)[0]
    assert row["cluster-name"] == "pluribus" and row["create-vport"] is True and "status" in row
    code, out, _ = cli(agent, "fabric-node-show", "--json")
    assert json.loads(out)[0]["name"] == "leaf1"
    assert cli(agent, "connection-stats-settings-modify", "enable", "idle-timeout", "45")[0] == 0
    code, out, _ = cli(agent, "connection-stats-settings-show", "format", "enable,idle-timeout", "parsable-delim", ",")
    assert out == "enable,idle-timeout\nyes,45\n"
    assert cli(agent, "k8s-connection-delete", "cluster-name", "pluribus") == (0, "", "")


def test_errors_are_one_line_on_stderr(agent):
    code, out, err = cli(agent, "k8s-connection-create", "cluster-name", "x", "kube-config", "/x", user="viewer")
    assert code == 1 and out == ""
    assert err.startswith("k8s-connection-create: permission denied") and err.count("\n") == 1
    code, _, err = cli(agent, "vport-show", "bogus")
    assert code == 1 and err == "vport-show: unknown parameter 'bogus' (type 'vport-show ?' for its parameters)\n"
    code, _, err = cli(agent, "vport-show", password="wrong")
    assert code == 1 and err.startswith("kubefabric cli: authentication failed for user admin")
    code, _, err = cli(agent, "vport-show", flags=["--gnmi-addr", f"127.0.0.1:{free_port()}", "--insecure",
                                                   "--username", "admin", "--timeout", "2"])
    assert code == 1 and err.startswith("kubefabric cli: cannot reach the agent at 127.0.0.1:")
    assert "Traceback" not in err


async def test_fifth_connection_shows_the_agents_message(agent):
    engine = await _engine(agent)
    try:
        for name in "abcd":
            assert (await engine.run(f"k8s-connection-create cluster-name {name} kube-config /{name}")).ok
        error = (await engine.run("k8s-connection-create cluster-name e kube-config /e")).error
        assert error.startswith("k8s-connection-create: ") and "at most four" in error
    finally:
        for name in "abcd":
            await engine.run(f"k8s-connection-delete cluster-name {name}")
        await engine.backend.close()


def test_environment_replaces_flags_and_interactive_mode(agent):
    env = {"KUBEFABRIC_GNMI_ADDR": agent.gnmi_addr, "KUBEFABRIC_USERNAME": "viewer"}
    code, out, err = cli(agent, flags=["--insecure"], user="viewer", env=env,
                         stdin="fabric-node-show format name\nvport-show ?\nbogus\nexit\n")
    assert code == 0, err
    assert out.startswith("CLI (viewer@leaf1) > ")
    assert "name\n-----\nleaf1\n" in out and "within-last" in out and "unknown command 'bogus'" in out


def test_time_machine_through_the_agent(agent):
    code, out, err = cli(agent, "vport-history-show", "within-last", "1h")
    assert code == 0 and out == "", err
    code, out, err = cli(agent, "vport-history-show", "snapshot-time", "1h")
    assert code == 0 and out == "", err


def test_netmiko_against_the_agent(agent):
    conn = netmiko.ConnectHandler(device_type="pluribus", host="127.0.0.1", port=ssh_port(agent),
                                  username="admin", password=USERS["admin"][0])
    try:
        assert conn.find_prompt() == "CLI (admin@leaf1) >"
        assert conn.send_command("k8s-connection-create cluster-name k8s01 kube-config /root/.kube/config") == ""
        assert conn.send_command("k8s-connection-modify cluster-name k8s01 overlay-vxlan-analytics") == ""
        shown = conn.send_command("k8s-connection-show format cluster-name,overlay-vxlan-analytics")
        assert shown.splitlines()[2].split() == ["k8s01", "yes"]
        assert conn.send_command("k8s-connection-delete cluster-name k8s01") == ""
    finally:
        conn.disconnect()
    # the SSH write went through the same write path: gNMI sees it gone, and the audit log names the face
    assert cli(agent, "k8s-connection-show", "format", "cluster-name,kube-config", "enable")[1] == ""
    assert "config change by admin via cli" in agent.log()


async def test_recreate_right_after_delete(agent):
    """A deleted connection's lingering state never makes a new create look like a duplicate."""
    engine = await _engine(agent)
    try:
        for _ in range(3):
            assert (await engine.run("k8s-connection-create cluster-name again kube-config /a")).ok
            assert (await engine.run("k8s-connection-delete cluster-name again")).ok
    finally:
        await engine.backend.close()


def test_tls_and_mutual_tls(tmp_path):
    """`--tls-ca` (and a client certificate for mutual TLS) against an agent serving gNMI over TLS."""
    make_pki = pytest.importorskip("sim.k8s_apiserver").make_pki
    pki = make_pki(tmp_path / "pki")
    proc = AgentProcess(tmp_path, insecure=False, extra_args=[
        "--tls-cert", str(pki["server.crt"]), "--tls-key", str(pki["server.key"]),
        "--tls-client-ca", str(pki["ca.crt"])])
    proc.start()
    try:
        base = ["--gnmi-addr", proc.gnmi_addr, "--username", "admin", "--tls-ca", str(pki["ca.crt"]), "--timeout", "5"]
        code, out, err = cli(proc, "fabric-node-show", "format", "name", flags=base + [
            "--tls-cert", str(pki["client.crt"]), "--tls-key", str(pki["client.key"])])
        assert (code, out) == (0, "name\n-----\nleaf1\n"), err
        code, _, err = cli(proc, "fabric-node-show", flags=base)  # no client certificate
        assert code == 1 and err.startswith("kubefabric cli: ") and "Traceback" not in err
        code, _, err = cli(proc, "fabric-node-show", flags=base + ["--tls-cert", str(pki["client.crt"])])
        assert code == 2 and "--tls-cert and --tls-key go together" in err
    finally:
        proc.stop()
