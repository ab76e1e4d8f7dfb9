"""Fixtures: fake API servers (real wire protocol), a datastore stand-in, and managers wired to them."""
from __future__ import annotations

import pytest

from collectors.k8s.manager import K8sManager
from core.history import HistoryStore
from sim.k8s_apiserver import FakeApiServer
from tests.historyview import HistoryView
from tests.k8s.fakeds import FakeDatastore

# Short timeouts so failure paths (half-open reads, backoff) run in a test's time.
FAST = {"read_timeout": 2.0, "watch_timeout": 30, "backoff_base": 0.05, "backoff_cap": 0.5, "absent_retry": 5.0}

STATE = "/kubefabric-k8s:k8s/connection/state"
CNI = "/kubefabric-k8s:k8s/cni"
SERVICE = "/kubefabric-k8s:k8s/service"
VPORT = "/kubefabric-vport:vports/vport"


@pytest.fixture
async def apiserver_factory():
    servers: list[FakeApiServer] = []

    async def make(scenario: str | None = "flannel-vxlan", pods: int = 0, nodes: int = 3, **kwargs) -> FakeApiServer:
        kwargs.setdefault("bookmark_interval", 0.5)
        server = FakeApiServer(**kwargs)
        if scenario:
            server.load_scenario(scenario, nodes=nodes)
        if pods:
            server.populate(pods)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def manager_factory(tmp_path):
    """A manager wired as agent.runtime wires it: state and config ports, and a time machine in its data dir."""
    started: list[tuple[K8sManager, FakeDatastore]] = []

    async def make(ds: FakeDatastore | None = None, retention_days: float = 30, data_dir=None,
                   **kwargs) -> tuple[K8sManager, FakeDatastore]:
        ds = ds or FakeDatastore("leaf1")
        data_dir = data_dir or tmp_path / f"data-{len(started)}"
        kwargs.setdefault("watch_options", FAST)
        history = HistoryStore(data_dir / "k8s-history.sqlite3", retention_days)
        ds.history = HistoryView(history)
        manager = K8sManager(ds.state, ds, history, ds.node_name, data_dir, **kwargs)
        await manager.start()
        started.append((manager, ds))
        return manager, ds

    yield make
    for manager, ds in started:
        await stop_agent(manager, ds)


async def stop_agent(manager: K8sManager, ds: FakeDatastore) -> None:
    """Stop the manager and close the time machine, as the agent does when it stops."""
    if manager._started:
        await manager.stop()
    if ds.history is not None:
        ds.history.store.close()
        ds.history = None


def state_of(ds: FakeDatastore, cluster: str) -> dict:
    return ds.state.entries(STATE).get((cluster,), {})


async def connected(ds: FakeDatastore, cluster: str, timeout: float = 15.0) -> dict:
    return await ds.wait_for(lambda: state_of(ds, cluster).get("status") == "connected" and state_of(ds, cluster),
                             timeout)


def vports(ds: FakeDatastore, cluster: str | None = None) -> dict[str, dict]:
    return {k[0]: v for k, v in ds.state.entries(VPORT).items() if cluster is None or v["svc-name"] == cluster}


def pods_by_name(ds: FakeDatastore, cluster: str | None = None) -> dict[str, dict]:
    return {v["entity"]: v for v in vports(ds, cluster).values()}
