"""The CLI over SSH, in process: netmiko's pluribus driver, exec, keys, completion, host key."""
from __future__ import annotations

import asyncio
import stat

import asyncssh
import pytest

from agent.auth import Authenticator, UserEntry, hash_password
from agent.cli.ssh import HOST_KEY_FILE, CliSshServer

from .conftest import PASSWORDS

netmiko = pytest.importorskip("netmiko")


@pytest.fixture
async def ssh(ds, authenticator):
    server = CliSshServer(ds, authenticator, "127.0.0.1:0")
    await server.start()
    yield server
    await server.stop()


def _connect(server, user="admin", **kwargs):
    return asyncssh.connect("127.0.0.1", server.port, username=user, known_hosts=None, **kwargs)


async def test_netmiko_round_trip(ssh, ds):
    def session() -> dict:
        conn = netmiko.ConnectHandler(device_type="pluribus", host="127.0.0.1", port=ssh.port,
                                      username="admin", password=PASSWORDS["admin"])
        try:
            out = {"prompt": conn.find_prompt(), "vports": conn.send_command("vport-show hostname server1")}
            out["create"] = conn.send_command("k8s-connection-create cluster-name pluribus "
                                              "kube-config /root/.kube/config enable")
            out["modify"] = conn.send_command("k8s-connection-modify create-vport")
            out["show"] = conn.send_command("k8s-connection-show format cluster-name,enable,create-vport")
            out["again"] = conn.send_command("k8s-connection-create cluster-name pluribus kube-config /x")
            out["delete"] = conn.send_command("k8s-connection-delete cluster-name pluribus")
            out["after"] = conn.send_command("k8s-connection-show")
            return out
        finally:
            conn.disconnect()

    out = await asyncio.to_thread(session)
    assert out["prompt"] == "CLI (admin@leaf1) >"
    lines = out["vports"].splitlines()
    assert lines[0].split()[:4] == ["owner", "mac", "vlan", "ip"] and set(lines[1]) == {"-", " "}
    assert [line.split()[6] for line in lines[2:]] == ["pod-B", "coredns-1"]
    assert out["create"] == "" and out["modify"] == ""
    assert out["show"].splitlines() == ["cluster-name enable create-vport", "------------ ------ ------------",
                                        "pluribus     yes    yes"]
    assert out["again"] == "k8s-connection-create: cluster-name pluribus already exists"
    assert out["delete"] == "" and out["after"] == ""
    assert ds.read_node("/kubefabric-k8s:k8s/connection", ("pluribus",)) is None


async def test_exec_runs_one_command_as_the_user(ssh, ds):
    async with _connect(ssh, password=PASSWORDS["admin"]) as conn:
        result = await conn.run("k8s-cni-show cluster-name pluribus")
        assert result.exit_status == 0
        assert result.stdout.splitlines()[2].split() == ["pluribus", "flannel", "host-gw", "underlay"]
        result = await conn.run("vport-show bogus")
        assert result.exit_status == 1
        assert result.stderr == "vport-show: unknown parameter 'bogus' (type 'vport-show ?' for its parameters)\n"
    async with _connect(ssh, "viewer", password=PASSWORDS["viewer"]) as conn:
        result = await conn.run("k8s-connection-create cluster-name a kube-config /a")
        assert result.exit_status == 1
        assert result.stderr.startswith("k8s-connection-create: permission denied: user 'viewer' (read-only) may not run "
                                        "edit-config (NACM)")
        assert (await conn.run("vport-show format entity")).exit_status == 0
    assert ds.read_node("/kubefabric-k8s:k8s/connection", ("a",)) is None


async def test_wrong_password_is_refused(ssh):
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(ssh, password="nope"):
            pass
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(ssh, "nobody", password="nope"):
            pass


async def test_public_key_login_with_the_users_role(ds, tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    other = asyncssh.generate_private_key("ssh-ed25519")
    auth = Authenticator([
        UserEntry("ops", "", "network-admin", (key.export_public_key().decode().strip(),)),
        UserEntry("eve", hash_password("eve-Secret-1"), "read-only", (other.export_public_key().decode().strip(),)),
    ])
    server = CliSshServer(ds, auth, "127.0.0.1:0")
    await server.start()
    try:
        async with _connect(server, "ops", client_keys=[key]) as conn:
            result = await conn.run("k8s-connection-create cluster-name k1 kube-config /k")
            assert result.exit_status == 0, result.stderr
        async with _connect(server, "eve", client_keys=[other]) as conn:
            result = await conn.run("k8s-connection-delete cluster-name k1")
            assert "permission denied" in result.stderr
        with pytest.raises(asyncssh.PermissionDenied):  # a key that is not the user's
            async with _connect(server, "ops", client_keys=[other]):
                pass
    finally:
        await server.stop()
    assert ds.read_node("/kubefabric-k8s:k8s/connection", ("k1",))["owner"] == "leaf1"


async def _read_until(stream, text: str, timeout: float = 5.0) -> str:
    data = ""
    async def read():
        nonlocal data
        while text not in data:
            chunk = await stream.read(4096)
            if not chunk:
                break
            data += chunk
    await asyncio.wait_for(read(), timeout)
    return data


async def test_interactive_prompt_completion_and_help(ssh):
    async with _connect(ssh, password=PASSWORDS["admin"]) as conn:
        process = await conn.create_process(term_type="vt100", term_size=(200, 50))
        await _read_until(process.stdout, "CLI (admin@leaf1) > ")
        process.stdin.write("vport-sh\t")
        assert "vport-show " in await _read_until(process.stdout, "vport-show ")
        process.stdin.write("host\t")  # hostname and host-network: completes the common part
        await _read_until(process.stdout, "host")
        process.stdin.write("name server2 format entity\r")
        out = await _read_until(process.stdout, "CLI (admin@leaf1) > ")
        assert "pod-A" in out and "pod-B" not in out
        process.stdin.write("k8s-cni-show ?")
        out = await _read_until(process.stdout, "network-type")
        assert "cni-plugin" in out
        process.stdin.write("\x03")  # Ctrl-C: drop the line, keep the session
        await _read_until(process.stdout, "^C")
        process.stdin.write("nosuch-command\r")
        assert "unknown command 'nosuch-command'" in await _read_until(process.stdout, "help for the list")
        process.stdin.write("exit\r")
        await asyncio.wait_for(process.wait_closed(), 5)


async def test_host_key_is_generated_once(ds, authenticator, tmp_path):
    fingerprints = []
    for _ in range(2):
        server = CliSshServer(ds, authenticator, "127.0.0.1:0")
        await server.start()
        try:
            async with _connect(server, password=PASSWORDS["admin"]) as conn:
                fingerprints.append(conn.get_server_host_key().get_fingerprint())
        finally:
            await server.stop()
    assert fingerprints[0] == fingerprints[1]
    mode = (ds.data_dir / HOST_KEY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


async def test_stop_closes_open_sessions(ds, authenticator):
    server = CliSshServer(ds, authenticator, "127.0.0.1:0")
    await server.start()
    conn = await _connect(server, password=PASSWORDS["admin"])
    process = await conn.create_process(term_type="vt100")
    await _read_until(process.stdout, "> ")
    await asyncio.wait_for(server.stop(), 5)
    await asyncio.wait_for(conn.wait_closed(), 5)
