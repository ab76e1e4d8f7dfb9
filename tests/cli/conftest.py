"""Fixtures for the CLI tests: an in-process datastore holding the seed's tables.

State tables (vPorts, connections, CNI, services) are written here the way
their producers write them, so rendering and filters are tested without a
Kubernetes cluster or sFlow; `NOW` is the fixed "now" time filters use.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from agent.auth import Authenticator, User, UserEntry, hash_password
from agent.cli.backend import DatastoreBackend
from agent.cli.engine import Engine
from core.datastore import Datastore
from fabric_sync.embedded import EmbeddedFabricStore

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc).timestamp()
ADMIN = User("admin", "network-admin")
VIEWER = User("viewer", "read-only")
PASSWORDS = {"admin": "admin-Secret-1", "viewer": "viewer-Secret-1"}

VPORT = "/kubefabric-vport:vports/vport"
VPORTS = {
    "10.244.1.5": {"owner": "switch", "mac": "88:88:88:bf:5d:be", "vlan": 4090, "svc-name": "pluribus",
                   "hostname": "server2", "entity": "pod-A", "power": "Running", "portgroup": "app:hello-world",
                   "status": "host,pod,k8s", "namespace": "default", "node-ip": "192.168.1.2",
                   "first-seen": "2026-11-20T10:00:00Z", "last-seen": "2026-11-22T11:00:00Z"},
    "10.244.2.7": {"owner": "switch", "mac": "88:88:88:bf:2e:ac", "vlan": 4090, "svc-name": "pluribus",
                   "hostname": "server1", "entity": "pod-B", "power": "Running", "portgroup": "app:hello-world",
                   "status": "host,pod,k8s", "namespace": "default", "node-ip": "192.168.1.1",
                   "first-seen": "2026-11-22T11:30:00Z", "last-seen": "2026-11-22T11:50:00Z"},
    "10.244.2.10": {"owner": "switch", "mac": "88:88:88:bf:2e:0a", "vlan": 4090, "svc-name": "k8s02",
                    "hostname": "server1", "entity": "coredns-1", "power": "Pending", "portgroup": "k8s-app:kube-dns",
                    "status": "host,pod,k8s", "namespace": "kube-system", "node-ip": "192.168.1.1",
                    "first-seen": "2026-11-01T00:00:00Z", "last-seen": "2026-11-02T00:00:00Z"},
}
CNI = {
    "pluribus": {"cni-plugin": "flannel", "backend": "host-gw", "network-type": "underlay",
                 "pod-network": ["10.244.0.0/16"], "source": "ConfigMap kube-flannel-cfg"},
    "k8s02": {"cni-plugin": "calico", "backend": "vxlan", "udp-port": 4789, "vxlan": 4096,
              "network-type": "overlay", "pod-network": ["10.245.0.0/16"], "source": "IPPool default"},
}
SERVICES = {
    ("pluribus", "default", "web"): {"type": "ClusterIP", "cluster-ips": ["10.96.0.10"], "ports": ["80/TCP->8080"],
                                     "backend-count": 2},
    ("k8s02", "kube-system", "kube-dns"): {"type": "ClusterIP", "cluster-ips": ["10.97.0.10"],
                                           "ports": ["53/UDP->53", "53/TCP->53"], "backend-count": 1},
}
BACKEND = "/kubefabric-k8s:k8s/service/backend"
BACKENDS = {
    ("pluribus", "default", "web", "10.244.1.5", 8080): {
        "protocol": "TCP", "namespace": "default", "pod": "pod-A", "node": "server1", "ready": True,
        "serving": True, "terminating": False},
    ("pluribus", "default", "web", "10.244.2.7", 8080): {
        "protocol": "TCP", "namespace": "default", "pod": "pod-B", "node": "server1", "ready": True,
        "serving": True, "terminating": False},
    ("k8s02", "kube-system", "kube-dns", "10.244.2.10", 53): {
        "protocol": "UDP", "namespace": "kube-system", "pod": "coredns-1", "node": "server1", "ready": False,
        "serving": True, "terminating": True},
}
CONNECTION = "/kubefabric-connection:connections/connection"
CONNECTIONS = {
    (0, 1, "10.244.1.5", "10.244.2.7", 40000, 8080, 6): {
        "switch": "switch", "cur-state": "syn-ack", "latency": 4010000, "age": 9, "packets": 10, "bytes": 1536,
        "src-pod": "pod-A", "dst-pod": "pod-B", "cluster-name": "pluribus", "encapsulation": "vxlan",
        "first-seen": "2026-11-22T11:59:51Z", "last-seen": "2026-11-22T11:59:59Z"},
    (0, 0, "10.244.2.7", "10.97.0.10", 53000, 53, 17): {
        "switch": "switch", "cur-state": "active", "age": 5400, "packets": 3, "bytes": 300,
        "src-pod": "pod-B", "service": "kube-system/kube-dns", "cluster-name": "k8s02", "encapsulation": "none",
        "first-seen": "2026-11-22T10:30:00Z", "last-seen": "2026-11-22T10:31:00Z"},
}


def fill(ds: Datastore) -> None:
    """Write the sample state the producers would write."""
    for ip, row in VPORTS.items():
        ds.state.upsert(VPORT, (ip,), row)
    for name, row in CNI.items():
        ds.state.upsert("/kubefabric-k8s:k8s/cni", (name,), row)
    for key, row in SERVICES.items():
        ds.state.upsert("/kubefabric-k8s:k8s/service", key, row)
    for key, row in BACKENDS.items():
        ds.state.upsert(BACKEND, key, {"ip": key[3], "port": key[4], **row})
    for key, row in CONNECTIONS.items():
        ds.state.upsert(CONNECTION, key, row)


@pytest.fixture
async def ds(tmp_path):
    """A started in-process datastore with the sample state."""
    store = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await store.start()
    fill(store)
    yield store
    await store.stop()


@pytest.fixture
def admin(ds) -> Engine:
    """The engine as a network-admin, with the fixed NOW."""
    return Engine(DatastoreBackend(ds, ADMIN), now=lambda: NOW)


@pytest.fixture
def viewer(ds) -> Engine:
    """The engine as a read-only user."""
    return Engine(DatastoreBackend(ds, VIEWER), now=lambda: NOW)


@pytest.fixture(scope="session")
def authenticator() -> Authenticator:
    """The test users (scrypt hashes computed once)."""
    return Authenticator([
        UserEntry("admin", hash_password(PASSWORDS["admin"]), "network-admin"),
        UserEntry("viewer", hash_password(PASSWORDS["viewer"]), "read-only"),
    ])


async def run(engine: Engine, line: str) -> str:
    """Run a line that must succeed; its output."""
    outcome = await engine.run(line)
    assert outcome.ok, outcome.error
    return outcome.output


async def fail(engine: Engine, line: str) -> str:
    """Run a line that must fail; its one error line."""
    outcome = await engine.run(line)
    assert not outcome.ok, outcome.output
    assert "\n" not in outcome.error and "Traceback" not in outcome.error
    return outcome.error
