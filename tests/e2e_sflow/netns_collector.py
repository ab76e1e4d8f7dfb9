"""A datastore + SflowCollector process for the end-to-end test, run inside a network namespace.

    python -m tests.e2e_sflow.netns_collector SETUP.json

SETUP holds {addr, data_dir, out, vports: {ip: [pod, namespace]}, cluster,
workers, fake_cluster} and optionally {capture: [interface, ...],
no_response_timeout, services: [{name, namespace, port, target_port}]}: the
control-packet capture (collectors.capture) wired to the same connection
table, and more services of the fake cluster.  The process enables connection statistics and
declares the cluster with overlay-vxlan-analytics, then either

* writes the vPort rows itself (``fake_cluster`` false: attribution from the
  live vPort table), or
* starts a fake Kubernetes API server (sim.k8s_apiserver, Flannel VXLAN
  scenario) holding those pods and a ClusterIP service ``web`` in front of
  the pods labelled app=web, and the real K8sManager watching it
  (attribution from ``ds.history``, the time machine, and the service rows);

starts the collector, prints "ready PORT" and then every 0.3 s writes the
connection table and statistics to ``out`` (JSON, atomically) until SIGTERM.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from core.datastore import Datastore
from core.history import HistoryStore
from collectors.conntrack.table import SERVICE_STATS_PATH
from collectors.conntrack.tracker import CONNECTIONS_PATH
from collectors.sflow.collector import EXPORTER_PATH, STATS_PATH
from fabric_sync.embedded import EmbeddedFabricStore
from tests.flowpipeline import FlowPipeline

VPORT = "/kubefabric-vport:vports/vport"
CAPTURE_STATE_PATH = "/kubefabric-capture:capture-state/interface"


async def main(setup: dict) -> None:
    data_dir = Path(setup["data_dir"])
    ds = Datastore("e2e", data_dir, EmbeddedFabricStore(data_dir, "e2e"))
    await ds.start()
    cluster = setup["cluster"]
    fake = setup.get("fake_cluster", False)
    server = manager = history = None
    kubeconfig = "/nonexistent/kubeconfig"
    if fake:
        from collectors.k8s.manager import K8sManager
        from sim.k8s_apiserver import FakeApiServer

        server = FakeApiServer(bookmark_interval=0.5)
        server.load_scenario("flannel-vxlan", nodes=2)
        for index, (ip, (pod, namespace)) in enumerate(setup["vports"].items()):
            server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            app = pod.rsplit("-", 1)[0]
            server.add_pod(pod, namespace, ip=ip, node=server.node_names[index % 2], labels={"app": app})
        for namespace in {ns for _, ns in setup["vports"].values()}:
            server.add_service("web", namespace, selector={"app": "web"}, port=80, target_port=8080)
        for extra in setup.get("services", []):
            server.add_service(extra["name"], extra["namespace"], selector={"app": "web"}, port=extra["port"],
                               target_port=extra["target_port"])
        await server.start()
        kubeconfig = str(server.write_kubeconfig(data_dir / "kubeconfig", cluster_name=cluster))
        history = HistoryStore(data_dir / "k8s" / "history.sqlite3")
        ds.history.attach(history)
        manager = K8sManager(ds.state, ds, history, ds.node_name, data_dir / "k8s")
        await manager.start()

    def edit(tree):
        tree["kubefabric-connection:connection-stats-settings"] = {
            "enable": True, "idle-timeout": 600, "no-response-timeout": setup.get("no_response_timeout", 5)}
        tree["kubefabric-k8s:k8s"] = {"connection": [{
            "cluster-name": cluster, "kube-config": kubeconfig, "enable": fake,
            "overlay-vxlan-analytics": True}]}
        return tree

    await ds.propose(edit, user="e2e", face="test")
    if fake:
        state = "/kubefabric-k8s:k8s/connection/state"
        for _ in range(300):
            history.flush()  # the agent's HistoryUpkeep does this every second; attribution reads the database
            if (ds.state.get(state, (cluster,)) or {}).get("status") == "connected" and \
                    ds.state.entries("/kubefabric-k8s:k8s/service") and \
                    all(history.pod_at(ip) is not None for ip in setup["vports"]):
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit(f"fake cluster not connected: {ds.state.get(state, (cluster,))}")
    else:
        for ip, (pod, namespace) in setup["vports"].items():
            ds.state.upsert(VPORT, (ip,), {"entity": pod, "namespace": namespace, "svc-name": cluster})
    collector = FlowPipeline(ds, setup["addr"], workers=setup.get("workers", 1), history=history,
                             publish_interval=0.1)
    await collector.start()
    capture = None
    if setup.get("capture"):
        from collectors.capture.source import CaptureSource

        capture = CaptureSource(ds.state, ds, ds.feed, collector.table, interfaces=setup["capture"])
        await capture.start()
        for _ in range(200):
            if all(c.capturing for c in capture.interfaces.values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit(f"capture not started: {[c.error for c in capture.interfaces.values()]}")
    print(f"ready {collector.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    out = Path(setup["out"])
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.3)
        except asyncio.TimeoutError:
            pass
        collector.flush()
        if capture is not None:
            capture.publish()
        snapshot = {
            "connections": [{**row} for row in ds.state.entries(CONNECTIONS_PATH).values()],
            "statistics": ds.state.get(STATS_PATH),
            "exporters": [{**row} for row in ds.state.entries(EXPORTER_PATH).values()],
            "tracker": collector.tracker.stats().as_leaves(),
            "history": ds.history.available,
            "vxlan_ports": sorted(collector.vxlan_ports),
            "service_stats": [{**row, "service": key[0], "port": key[1]}
                              for key, row in ds.state.entries(SERVICE_STATS_PATH).items()],
            "capture": [{**row, "name": key[0]} for key, row in ds.state.entries(CAPTURE_STATE_PATH).items()],
        }
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        os.replace(tmp, out)
    if capture is not None:
        await capture.stop()
    await collector.stop()
    if manager is not None:
        await manager.stop()
    if history is not None:
        ds.history.detach()
        history.close()
    if server is not None:
        await server.stop()
    await ds.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
