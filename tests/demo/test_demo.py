"""`kubefabric demo` as a user runs it: a subprocess, its banner, its agents answering, nothing left behind."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.agentproc import REPO

pytest.importorskip("agent.gnmi.server", reason="the gNMI face has not landed yet")

BANNER_END = "Ctrl-C stops everything."


class Demo:
    """A `kubefabric demo` child process whose output is collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "demo", "--base-port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                if text in self.output:
                    return
                raise AssertionError(f"demo exited with {self.proc.returncode} before {text!r}:\n{self.output}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} after {timeout}s:\n{self.output}")

    def finish(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(5)
        return code


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            out.append(f"{entry.name}: {cmdline}")
    return out


def cluster_pod_ips(kubeconfig: str) -> set[str]:
    """Pod IPs straight from the simulated API server (the way kubectl would ask)."""
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    token = doc["users"][0]["user"]["token"]
    request = urllib.request.Request(server + "/api/v1/pods", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        items = json.load(r)["items"]
    return {p["status"]["podIP"] for p in items if p.get("status", {}).get("podIP")}


def gnmi_get(state: dict, index: int, path: str) -> dict:
    from pygnmi.client import gNMIclient

    node = state["nodes"][index]
    with gNMIclient(target=("127.0.0.1", node["gnmi"]), username=state["username"], password=state["password"],
                    insecure=True) as gc:
        return gc.get(path=[path], encoding="json_ietf")


def rows(reply: dict, leaf: str) -> list[dict]:
    """Every JSON object in a Get reply that has `leaf` (one per list entry)."""
    out: list[dict] = []

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            if leaf in value:
                keys = dict(re.findall(r"\[([^=\]]+)=([^\]]*)\]", path))
                out.append({**keys, **value})
            for v in value.values():
                walk(v, path)
        elif isinstance(value, list):
            for v in value:
                walk(v, path)

    for notification in reply.get("notification") or []:
        for update in notification.get("update") or []:
            walk(update.get("val"), str(update.get("path", "")))
    return out


def poll(fn, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out: {what} (last: {last!r})")


def test_demo_runs_the_fabric_answers_and_leaves_nothing_behind(tmp_path):
    workdir = tmp_path / "demo"
    demo = Demo("--duration", "15", "--workdir", str(workdir))
    try:
        demo.wait_for(BANNER_END)
        out = demo.output
        # the first screen a new user sees: no warning spam (asyncssh's DSA CryptographyDeprecationWarning)
        assert "Warning" not in out.split(BANNER_END)[0], out
        password = re.search(r"password: (\S+)", out).group(1)
        assert len(password) >= 12
        assert "leaf1" in out and "leaf2" in out and "leaf3" in out
        assert "kubefabric cli --insecure --gnmi-addr 127.0.0.1:" in out
        assert "gNMIclient" in out and "web page:  http://127.0.0.1:" in out and "/metrics" in out
        state = json.loads((workdir / "demo.json").read_text())
        assert state["password"] == password
        assert oct((workdir / "demo.json").stat().st_mode & 0o777) == "0o600"
        # the agents' users: list holds the scrypt hash, never the password
        settings = (workdir / "leaf1.yaml").read_text()
        assert "scrypt$" in settings and password not in settings

        if state["kubeconfig"]:
            assert "3-member etcd" in out and "simulated cluster 'sim'" in out
            # the demo's etcd is the secure default: TLS, a client certificate per agent, auth on the prefix
            assert state["etcd"] and all(e.startswith("https://") for e in state["etcd"])
            assert "as client certificate CN=leaf1 issued by CN=kubefabric-demo-etcd CA" in \
                (workdir / "leaf1.log").read_text()
            assert_etcd_least_privilege(workdir, state)
            pods = cluster_pod_ips(state["kubeconfig"])
            assert len(pods) >= 20

            def vports_on_owner():
                ips = {r["ip"] for r in rows(gnmi_get(state, 0, "/kubefabric-vport:vports"), "hostname")}
                return ips if len(ips & pods) >= 0.8 * len(pods) else None

            vports = poll(vports_on_owner, what="pods of the simulated cluster in leaf1's vPort table")
            assert vports <= pods | cluster_pod_ips(state["kubeconfig"]) | vports  # churn may move a few
            # the vPorts live on the owner node; leaf2 sees the replicated connection as "remote"
            assert not rows(gnmi_get(state, 1, "/kubefabric-vport:vports"), "hostname")
            conns = rows(gnmi_get(state, 1, "/kubefabric-k8s:k8s"), "kube-config")
            assert conns and conns[0].get("owner") == "leaf1"

            if "simulated switch" in out:
                def pod_to_pod():
                    found = rows(gnmi_get(state, 0, "/kubefabric-connection:connections"), "cur-state")
                    current = cluster_pod_ips(state["kubeconfig"]) | pods
                    inner = [c for c in found if c.get("src-ip") in current and c.get("dst-ip") in current]
                    return inner or None

                inner = poll(pod_to_pod, what="inner pod-to-pod flows in leaf1's connection table")
                assert any(str(c.get("dst-port")) == "8080" for c in inner)
                assert any(c.get("src-pod") for c in inner), inner[:3]
                assert {c.get("encapsulation") for c in inner} <= {"vxlan", None}

            metrics = urllib.request.urlopen(f"http://127.0.0.1:{state['nodes'][0]['metrics']}/metrics", timeout=5)
            text = metrics.read().decode()
            assert 'kubefabric_k8s_connection_status{cluster_name="sim",status="connected"} 1.0' in text
            assert 'kubefabric_fabric_nodes{state="online"} 3.0' in text
        code = demo.finish(timeout=60)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
    assert code == 0, demo.output
    assert "--duration 15s reached" in demo.output and "demo stopped" in demo.output
    pids = [n["pid"] for n in state["nodes"]] + state["etcd-pids"]
    assert pids and not [p for p in pids if alive(p)]
    assert not processes_mentioning(str(workdir))


def test_sigint_stops_everything_and_removes_the_temporary_workdir():
    demo = Demo("--pods", "9", "--churn", "0")
    try:
        demo.wait_for(BANNER_END)
        workdir = Path(re.search(r"logs and data: (\S+) \(removed at exit\)", demo.output).group(1))
        state = json.loads((workdir / "demo.json").read_text())
        pids = [n["pid"] for n in state["nodes"]] + state["etcd-pids"]
        assert all(alive(p) for p in pids)
        demo.proc.send_signal(signal.SIGINT)
        code = demo.finish(timeout=60)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
    assert code == 0, demo.output
    assert "SIGINT received" in demo.output
    assert not workdir.exists()
    assert not [p for p in pids if alive(p)]
    assert not processes_mentioning(str(workdir))


def test_a_killed_demo_takes_its_children_with_it(tmp_path):
    """SIGKILL leaves the demo no chance to clean up: the kernel's parent-death signal does it."""
    workdir = tmp_path / "killed"
    demo = Demo("--pods", "6", "--churn", "0", "--workdir", str(workdir))
    try:
        demo.wait_for(BANNER_END)
        state = json.loads((workdir / "demo.json").read_text())
        pids = [n["pid"] for n in state["nodes"]] + state["etcd-pids"]
        demo.proc.kill()
        demo.finish(timeout=10)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
    poll(lambda: not [p for p in pids if alive(p)], timeout=15, what="children gone after SIGKILL")
    assert not processes_mentioning(str(workdir))


def test_busy_ports_are_refused_with_a_clear_line():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        base = port - 9  # the simulated API server's port in the layout
        if not 1024 <= base <= 65535 - 40:
            pytest.skip("the kernel gave a port outside this layout's range")
        result = subprocess.run([sys.executable, "-m", "agent.main", "demo", "--base-port", str(base)],
                                capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 1
    assert "ports already in use on 127.0.0.1:" in result.stderr and str(port) in result.stderr
    assert "--base-port" in result.stderr


def assert_etcd_least_privilege(workdir: Path, state: dict) -> None:
    """leaf1's certificate reads its fabric's prefix and nothing else; no certificate, no answer."""
    from agent.demo.etcd import etcd_binary

    pki = workdir / "pki"
    ctl = [str(Path(etcd_binary()).with_name("etcdctl")), "--endpoints", ",".join(state["etcd"]),
           "--cacert", str(pki / "kubefabric-demo-etcd-ca.pem"), "--command-timeout", "5s", "--dial-timeout", "3s"]
    leaf1 = ["--cert", str(pki / "agent-leaf1.pem"), "--key", str(pki / "agent-leaf1-key.pem")]
    env = {**os.environ, "ETCDCTL_API": "3"}

    def ctl_run(*args):
        return subprocess.run([*ctl, *args], capture_output=True, text=True, timeout=30, env=env)

    own = ctl_run(*leaf1, "get", "--prefix", "--keys-only", f"/kubefabric/{state['fabric']}/")
    assert own.returncode == 0 and f"/kubefabric/{state['fabric']}/config" in own.stdout, own.stderr
    other = ctl_run(*leaf1, "put", "/kubefabric/other-fabric/config", "{}")
    assert other.returncode != 0 and "permission denied" in other.stderr, other
    anonymous = ctl_run("get", "--prefix", "/kubefabric/")
    assert anonymous.returncode != 0, anonymous
