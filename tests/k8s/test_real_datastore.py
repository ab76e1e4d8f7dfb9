"""The manager against the agent's real Datastore: config through propose(), rows and change feed."""
import time

from core.datastore import Datastore
from core.history import HistoryStore
from collectors.k8s.manager import K8sManager
from fabric_sync.embedded import EmbeddedFabricStore
from tests.k8s.conftest import FAST

K8S = "kubefabric-k8s:k8s"
STATE = "/kubefabric-k8s:k8s/connection/state"
VPORT = "/kubefabric-vport:vports/vport"


async def test_rows_and_feed_through_the_real_datastore(apiserver_factory, tmp_path):
    srv = await apiserver_factory("flannel-vxlan", pods=40)
    kc = srv.write_kubeconfig(tmp_path / "kc", cluster_name="k8s01")
    ds = Datastore("leaf1", tmp_path / "ds", EmbeddedFabricStore(tmp_path / "ds", "leaf1"))
    await ds.start()
    feed: list = []
    ds.feed.subscribe(lambda batch: feed.extend((time.monotonic(), c) for c in batch))
    history = HistoryStore(tmp_path / "k8s" / "history.sqlite3")
    ds.history.attach(history)
    manager = K8sManager(ds.state, ds, history, ds.node_name, tmp_path / "k8s", membership=ds.fabric, writer=ds,
                         watch_options=FAST)
    await manager.start()
    try:
        def add(tree):
            tree.setdefault(K8S, {}).setdefault("connection", []).append(
                {"cluster-name": "k8s01", "kube-config": str(kc), "create-vport": True})
            return tree

        await ds.propose(add, user="admin", face="test")
        deadline = time.monotonic() + 15
        while (ds.state.get(STATE, ("k8s01",)) or {}).get("status") != "connected":
            assert time.monotonic() < deadline, ds.state.get(STATE, ("k8s01",))
            await __import__("asyncio").sleep(0.05)
        assert ds.history.available
        assert (await ds.history.rows_at(VPORT, time.time())).items  # the time machine saw the vPorts
        assert len(ds.state.entries(VPORT)) == 40
        merged = ds.read_node("/kubefabric-k8s:k8s/connection", ("k8s01",))
        assert merged["owner"] == "leaf1" and merged["create-vport"] is True
        assert ds.state.get("/kubefabric-k8s:k8s/cni", ("k8s01",))["udp-port"] == 8472

        start = time.monotonic()
        ip = srv.add_pod("feed-check", labels={"app": "web0"})["status"]["podIP"]
        while not any(c.path == VPORT and c.key == (ip,) for _, c in feed):
            assert time.monotonic() - start < 5
            await __import__("asyncio").sleep(0.005)
        arrived = next(t for t, c in feed if c.path == VPORT and c.key == (ip,))
        assert arrived - start < 0.5
        assert ds.state.get(VPORT, (ip,))["entity"] == "feed-check"

        def drop(tree):
            tree[K8S]["connection"] = []
            return tree

        await ds.propose(drop, user="admin", face="test")
        await manager.settle()
        assert ds.state.entries(VPORT) == {} and ds.state.get(STATE, ("k8s01",)) is None
    finally:
        await manager.stop()
        ds.history.detach()
        history.close()
        await ds.stop()
