"""The gNMI backend against the agent's real gNMI face, in process (same data, same output)."""
from __future__ import annotations

import pytest

from agent.cli.engine import Engine
from agent.cli.gnmi_backend import GnmiBackend
from tests.agentproc import free_port

from .conftest import NOW, PASSWORDS, fail, run
from .test_history import history  # noqa: F401  (fixture)

pytest.importorskip("agent.gnmi.server")

SAME_OUTPUT = [
    "vport-show",
    "vport-show hostname server1 format all",
    "vport-show within-last 1h sort-desc entity",
    "vport-show older-than 1d parsable-delim ,",
    "k8s-cni-show",
    "k8s-cni-show format all layout vertical",
    "connection-show format all",
    "connection-show protocol udp",
    "service-show format all",
    "service-show cluster-ips 10.96.0.10",
    "fabric-node-show format name,state,role",
    "connection-stats-settings-show",
    "k8s-connection-show format all",
]


@pytest.fixture
async def gnmi(ds, authenticator):
    """The gNMI face of the test datastore, on loopback without TLS."""
    from agent.gnmi.server import GnmiServer

    server = GnmiServer(ds, authenticator, addr=f"127.0.0.1:{free_port()}", insecure=True)
    await server.start()
    yield server
    await server.stop()


async def _backend(server, user="admin") -> GnmiBackend:
    return await GnmiBackend(server.address, user, PASSWORDS[user], insecure=True).connect()


async def test_every_show_prints_the_same_over_gnmi(gnmi, ds, admin):
    await run(admin, "k8s-connection-create cluster-name pluribus kube-config /root/.kube/config create-vport")
    backend = await _backend(gnmi)
    assert backend.node == "leaf1"
    remote = Engine(backend, now=lambda: NOW)
    try:
        for line in SAME_OUTPUT:
            assert await run(remote, line) == await run(admin, line), line
    finally:
        await backend.close()


async def test_json_over_gnmi_has_typed_values(gnmi):
    backend = await _backend(gnmi)
    try:
        import json

        rows = json.loads(await run(Engine(backend, as_json=True, now=lambda: NOW),
                                    "connection-show protocol tcp format latency,bytes,age"))
        assert rows == [{"latency": 4010000, "bytes": 1536, "age": 9}]  # 64-bit leaves arrive as strings
    finally:
        await backend.close()


async def test_config_commands_over_gnmi(gnmi, ds):
    backend = await _backend(gnmi)
    engine = Engine(backend, now=lambda: NOW)
    try:
        await run(engine, "k8s-connection-create cluster-name pluribus kube-config /root/.kube/config enable")
        await run(engine, "k8s-connection-modify create-vport")
        await run(engine, "connection-stats-settings-modify enable idle-timeout 30")
        conn = ds.read_node("/kubefabric-k8s:k8s/connection", ("pluribus",))
        assert conn["create-vport"] is True and conn["enable"] is True
        assert ds.read_node("/kubefabric-connection:connection-stats-settings")["idle-timeout"] == 30
        assert "already exists" in await fail(engine, "k8s-connection-create cluster-name pluribus kube-config /x")
        await run(engine, "k8s-connection-delete cluster-name pluribus")
        assert ds.read_node("/kubefabric-k8s:k8s/connection", ("pluribus",)) is None
    finally:
        await backend.close()


async def test_time_machine_over_gnmi(gnmi, admin, history):  # noqa: F811
    backend = await _backend(gnmi)
    remote = Engine(backend, now=lambda: NOW)
    try:
        for line in ("vport-history-show snapshot-time 90m format ip,entity,hostname",
                     "vport-history-show snapshot-time 2026-11-22T09:30:00",
                     "vport-history-show within-last 2h30m",
                     "vport-history-show within-last 1d change delete format entity"):
            assert await run(remote, line) == await run(admin, line), line
    finally:
        await backend.close()


async def test_unimplemented_history_is_one_clear_line(gnmi):
    backend = await _backend(gnmi)
    try:
        error = await fail(Engine(backend), "vport-history-show snapshot-time 1h")
        assert error.startswith("vport-history-show: the agent at 127.0.0.1:")
        assert "History extension UNIMPLEMENTED" in error
    finally:
        await backend.close()


async def test_read_only_user_over_gnmi(gnmi, ds):
    backend = await _backend(gnmi, "viewer")
    try:
        error = await fail(Engine(backend), "k8s-connection-create cluster-name a kube-config /a")
        assert error.startswith("k8s-connection-create: permission denied") and "read-only" in error
        assert ds.read_node("/kubefabric-k8s:k8s/connection", ("a",)) is None
    finally:
        await backend.close()


async def test_bad_password_and_unreachable_agent(gnmi):
    from agent.cli.errors import CliError

    with pytest.raises(CliError, match="authentication failed for user admin"):
        await GnmiBackend(gnmi.address, "admin", "wrong", insecure=True).connect()
    backend = GnmiBackend(f"127.0.0.1:{free_port()}", "admin", "x", insecure=True, timeout=2)
    with pytest.raises(CliError, match="cannot reach the agent at 127.0.0.1:"):
        await backend.connect()
    await backend.close()
