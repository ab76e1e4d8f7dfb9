"""A real `kubefabric run --sflow-addr` process: sFlow in over loopback, rows out over gNMI (pygnmi)."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.agentproc import REPO, SHARED, free_port

PMACCT = SHARED / "testdata" / "sflow" / "pmacct_sfprobe_vxlan8472_4789.pcap"

pytestmark = [
    pytest.mark.skipif(not (REPO / "agent" / "gnmi" / "server.py").exists(), reason="the gNMI face is not built yet"),
    pytest.mark.skipif(not PMACCT.exists(), reason="shared captures not found"),
]


def _updates(response) -> list[dict]:
    out = []
    for notification in response.get("notification", []):
        out.extend(notification.get("update", []))
    return out


def _get(gc, path: str):
    return _updates(gc.get(path=[path], encoding="json_ietf"))


@pytest.mark.parametrize("workers", [1, 2])
def test_connection_table_and_statistics_over_gnmi(agent_factory, workers):
    from pygnmi.client import gNMIclient

    from collectors.sflow.pcap import iter_sflow_payloads

    port = free_port(socket.SOCK_DGRAM)
    agent = agent_factory(extra_args=["--sflow-addr", f"127.0.0.1:{port}", "--sflow-workers", str(workers)])
    assert f"sFlow listening on 127.0.0.1:{port}" in agent.log()
    payloads = list(iter_sflow_payloads(PMACCT))
    with gNMIclient(**agent.gnmi_kwargs()) as gc:
        gc.set(update=[("/kubefabric-connection:connection-stats-settings", {"enable": True})], encoding="json_ietf")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in payloads[:200] + payloads[205:]:  # 5 datagrams lost on the way
                s.sendto(p, ("127.0.0.1", port))
        deadline = time.monotonic() + 15
        while True:
            stats = _get(gc, "/kubefabric-sflow:sflow-collector/statistics")
            body = stats[0]["val"] if stats else {}
            if isinstance(body, str):
                body = json.loads(body)
            flat = json.dumps(body)
            if '"lost"' in flat and int(_find(body, "datagrams") or 0) == len(payloads) - 5:
                break
            assert time.monotonic() < deadline, (stats, agent.log()[-3000:])
            time.sleep(0.3)
        assert int(_find(body, "lost")) == 5 and int(_find(body, "malformed")) == 0
        rows = _get(gc, "/kubefabric-connection:connections/connection[vxlan=4096]")
        text = json.dumps(rows)
        assert "10.245.0.10" in text and "closed" in text and "vxlan" in text


def _find(tree, leaf: str):
    """The first value of a leaf (with or without module prefix) anywhere in an RFC 7951 tree."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == leaf or k.endswith(f":{leaf}"):
                if not isinstance(v, (dict, list)):
                    return v
            found = _find(v, leaf)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for item in tree:
            found = _find(item, leaf)
            if found is not None:
                return found
    return None


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_worker_processes_exit_when_the_agent_is_killed(agent_factory):
    port = free_port(socket.SOCK_DGRAM)
    agent = agent_factory(extra_args=["--sflow-addr", f"127.0.0.1:{port}", "--sflow-workers", "2"])
    workers = [p for p in _children(agent.proc.pid)
               if b"collectors.sflow.workers" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 2
    agent.kill()  # SIGKILL: no chance to stop them
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers):
        assert time.monotonic() < deadline, "orphaned sFlow workers kept running"
        time.sleep(0.05)
