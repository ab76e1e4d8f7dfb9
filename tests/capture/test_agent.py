"""A real `kubefabric run` process: capture turned on from the command line and from YANG config (through the
CLI), read over gNMI with pygnmi and with `kubefabric cli`; without CAP_NET_RAW the capture says why in its
state and the agent keeps serving."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from pygnmi.client import gNMIclient

from tests.agentproc import AgentProcess
from tests.cli.test_agent import cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="capturing (and dropping the capability) needs root")


class UnprivilegedAgent(AgentProcess):
    """The agent with CAP_NET_RAW removed from its capability bounding set (as a container without it)."""

    def command(self) -> list[str]:
        return ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--", *super().command()]


def _plain(value):
    """RFC 7951 member names without their module prefix."""
    if isinstance(value, dict):
        return {k.rpartition(":")[2]: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def get(agent, path: str):
    with gNMIclient(**agent.gnmi_kwargs()) as gc:
        reply = gc.get(path=[path], encoding="json_ietf")
    return _plain(reply["notification"][0]["update"][0]["val"]) if reply["notification"][0].get("update") else None


def wait_for(fetch, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.3)


def test_without_cap_net_raw_the_capture_says_why_and_the_agent_serves(tmp_path):
    agent = UnprivilegedAgent(tmp_path, extra_args=["--capture-interface", "lo", "--capture-interface", "nosuch0",
                                                    "--erspan-addr", "127.0.0.78"])
    agent.start()
    try:
        state = wait_for(lambda: get(agent, "/kubefabric-capture:capture-state"),
                         lambda v: v and len(v.get("interface", [])) == 2 and "erspan" in v)
        interfaces = {i["name"]: i for i in state["interface"]}
        assert interfaces["lo"]["status"] == "error" and "CAP_NET_RAW" in interfaces["lo"]["error"]
        assert interfaces["lo"]["source"] == "command-line"
        assert interfaces["nosuch0"]["status"] == "error" and "nosuch0" in interfaces["nosuch0"]["error"]
        erspan = state["erspan"]
        assert erspan["status"] == "error" and "CAP_NET_RAW" in erspan["error"] and erspan["address"] == "127.0.0.78"
        # everything else serves: config through gNMI, the CLI, the connection table's settings
        with gNMIclient(**agent.gnmi_kwargs()) as gc:
            gc.set(update=[("/kubefabric-connection:connection-stats-settings", {"enable": True})],
                   encoding="json_ietf")
        assert get(agent, "/kubefabric-connection:connection-stats-settings")["enable"] is True
        with gNMIclient(**agent.gnmi_kwargs()) as gc:  # a CONFIG read carries no entry of a state-only list
            config = gc.get(path=["/"], datatype="config", encoding="json_ietf")
        assert "capture-state" not in json.dumps(config) and "connection-stats-settings" in json.dumps(config)
        code, out, err = cli(agent, "capture-interface-show", "format", "name,status,error")
        assert code == 0, err
        assert "CAP_NET_RAW" in out and "nosuch0" in out
        assert agent.proc.poll() is None and "Traceback" not in agent.log()
    finally:
        agent.stop()


def _serve_once(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.recv(100)


def test_capture_configured_through_the_cli_times_loopback_handshakes(tmp_path):
    agent = AgentProcess(tmp_path)
    agent.start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    server_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]  # bound, never listening: connections are refused
    try:
        assert cli(agent, "connection-stats-settings-modify", "enable", "no-response-timeout", "2")[0] == 0
        assert cli(agent, "capture-interface-create", "name", "lo") == (0, "", "")
        assert cli(agent, "capture-interface-create", "name", "nosuch0") == (0, "", "")
        state = wait_for(lambda: get(agent, "/kubefabric-capture:capture-state"),
                         lambda v: v and {i["name"]: i["status"] for i in v.get("interface", [])}
                         == {"lo": "capturing", "nosuch0": "error"})
        missing = next(i for i in state["interface"] if i["name"] == "nosuch0")
        assert "No such device" in missing["error"]
        server = threading.Thread(target=_serve_once, args=(listener,), daemon=True)
        server.start()
        client = socket.create_connection(("127.0.0.1", server_port), timeout=5)
        client_port = client.getsockname()[1]
        client.sendall(b"hello")
        server.join(5)
        client.close()
        refused = socket.socket()
        refused_port = None
        try:
            refused.bind(("127.0.0.1", 0))
            refused_port = refused.getsockname()[1]
            refused.connect(("127.0.0.1", closed_port))
        except ConnectionRefusedError:
            pass
        finally:
            refused.close()

        def ours():
            rows = (get(agent, "/kubefabric-connection:connections") or {}).get("connection", [])
            return {r["src-port"]: r for r in rows if r["src-port"] in (client_port, refused_port)}

        rows = wait_for(ours, lambda r: len(r) == 2 and r[client_port].get("outcome") == "completed"
                        and r[refused_port].get("outcome") == "refused")
        done = rows[client_port]
        assert (done["dst-port"], done["latency-source"], done["cur-state"]) == (server_port, "capture", "closed")
        assert isinstance(int(done["latency"]), int) and done["switch"] == "lo"
        assert rows[refused_port]["dst-port"] == closed_port and "latency" not in rows[refused_port]
        code, out, err = cli(agent, "--json", "connection-service-stats-show", "port", str(closed_port))
        assert code == 0, err
        stats = wait_for(lambda: json.loads(cli(agent, "--json", "connection-service-stats-show", "port",
                                                str(closed_port))[1] or "[]"), lambda v: v)
        assert stats[0]["service"] == "127.0.0.1" and stats[0]["refused"] == 1 and stats[0]["failures"] == 1
        code, out, err = cli(agent, "connection-show", "src-port", str(client_port), "format",
                             "src-port,dst-port,cur-state,outcome,latency-source")
        assert code == 0 and "completed" in out and "capture" in out, (out, err)
        state = get(agent, "/kubefabric-capture:capture-state")
        lo = next(i for i in state["interface"] if i["name"] == "lo")
        assert lo["source"] == "config" and int(lo["kernel-drops"]) == 0 and int(lo["events"]) >= 5
        assert cli(agent, "capture-interface-delete", "name", "lo") == (0, "", "")
        wait_for(lambda: get(agent, "/kubefabric-capture:capture-state"),
                 lambda v: not v or not any(i["name"] == "lo" for i in v.get("interface", [])))
    finally:
        listener.close()
        closed.close()
        agent.stop()
