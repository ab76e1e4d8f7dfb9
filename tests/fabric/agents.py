"""Real `kubefabric run --etcd ... --fabric ...` agent processes and the
pygnmi calls the fabric tests and the benchmark make against them."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
from pygnmi.client import gNMIclient, gNMIException

from tests.agentproc import AgentProcess

CONN = "/k8s/connection"


def start_agents(workdir: Path, names, cluster, fabric: str, owner_grace: float = 10.0,
                 timeout: float = 60.0) -> list[AgentProcess]:
    """Start one agent per name on the etcd `cluster`, all at once; wait until every one is ready."""
    agents = [fabric_agent(workdir, n, cluster, fabric, owner_grace) for n in names]
    for a in agents:
        a.start(expect_ready=False)
    for a in agents:
        wait_ready(a, timeout)
    return agents


def fabric_agent(workdir: Path, name: str, cluster, fabric: str, owner_grace: float = 10.0) -> AgentProcess:
    """An agent on `cluster`; on a TLS cluster with its own client certificate (CN = `name`, its etcd user)."""
    cert = cluster.client_cert(name) if getattr(cluster, "tls", False) else None
    etcd_args = cluster.agent_args(cert) if hasattr(cluster, "agent_args") else ["--etcd", cluster.endpoints_arg]
    return AgentProcess(workdir, node_name=name, extra_args=[
        *etcd_args, "--fabric", fabric, "--owner-grace", str(owner_grace), "--role", "leaf",
    ])


def wait_ready(agent: AgentProcess, timeout: float = 60.0) -> AgentProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"agent {agent.node_name} ready" in agent.log():
            return agent
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent {agent.node_name} exited with {agent.proc.returncode}:\n{agent.log()}")
        time.sleep(0.05)
    raise TimeoutError(f"agent {agent.node_name} not ready after {timeout}s:\n{agent.log()[-4000:]}")


def client(agent: AgentProcess) -> gNMIclient:
    """A connected pygnmi client for `agent` (use as a context manager)."""
    return gNMIclient(**agent.gnmi_kwargs())


def conn_value(name: str, **leaves) -> dict:
    return {"cluster-name": name, "kube-config": "/etc/kubefabric/kubeconfig", **leaves}


def create(gc: gNMIclient, name: str, **leaves):
    return gc.set(update=[(f"{CONN}[cluster-name={name}]", conn_value(name, **leaves))], encoding="json_ietf")


def set_leaf(gc: gNMIclient, name: str, leaf: str, value):
    return gc.set(update=[(f"{CONN}[cluster-name={name}]/{leaf}", value)], encoding="json_ietf")


def status_of(exc: gNMIException) -> grpc.StatusCode | None:
    orig = getattr(exc, "orig_exc", None)
    return orig.code() if isinstance(orig, grpc.RpcError) else None


def plain(value):
    """A JSON_IETF value with the module prefixes of its member names dropped (RFC 7951 qualifies them)."""
    if isinstance(value, dict):
        return {k.split(":", 1)[-1]: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def get_json(gc: gNMIclient, path: str):
    """The value at `path` (JSON_IETF, member names without module prefixes), None when absent."""
    reply = gc.get(path=[path], encoding="json_ietf")
    for notif in reply.get("notification", []):
        for upd in notif.get("update") or []:
            return plain(upd.get("val"))
    return None


def connections(gc: gNMIclient) -> dict[str, dict]:
    """cluster-name -> config leaves of every Kubernetes connection on that agent (per-node state left out)."""
    reply = gc.get(path=[CONN], encoding="json_ietf")
    found = {}
    for notif in reply.get("notification", []):
        for upd in notif.get("update") or []:
            val = plain(upd.get("val"))
            rows = val if isinstance(val, list) else [val]
            for row in rows:
                if isinstance(row, dict) and "cluster-name" in row:
                    found[row["cluster-name"]] = {k: v for k, v in row.items() if k != "state"}
    return found


def fabric_state(gc: gNMIclient) -> dict:
    return get_json(gc, "/fabric") or {}


class OnChange:
    """A pygnmi STREAM/ON_CHANGE subscription whose updates are timestamped on arrival."""

    def __init__(self, gc: gNMIclient, path: str) -> None:
        self.sub = gc.subscribe2(subscribe={
            "subscription": [{"path": path, "mode": "on_change"}], "mode": "stream", "encoding": "json_ietf",
        })
        self.updates: queue.Queue = queue.Queue()
        self.synced = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                update = self.sub.get_update(timeout=0.5)
            except Exception:  # queue.Empty or the stream ended
                if self._stop:
                    return
                continue
            now = time.perf_counter()
            if update.get("sync_response"):
                self.synced.set()
                continue
            self.updates.put((now, update))

    def wait_synced(self, timeout: float = 10.0) -> None:
        if not self.synced.wait(timeout):
            raise TimeoutError("no sync_response")

    def next(self, timeout: float = 5.0):
        """(arrival perf_counter, update dict) of the next update."""
        return self.updates.get(timeout=timeout)

    def wait_for(self, predicate, timeout: float = 5.0):
        """The first update for which predicate(update) holds; (arrival time, update)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching update")
            at, update = self.updates.get(timeout=left)
            if predicate(update):
                return at, update

    def close(self) -> None:
        self._stop = True
        try:
            self.sub.close()
        except Exception:
            pass


def update_paths(update: dict) -> list[tuple[str, object]]:
    """(path, val) pairs of a pygnmi stream update."""
    body = update.get("update", {})
    return [(u.get("path", ""), plain(u.get("val"))) for u in body.get("update", [])]
