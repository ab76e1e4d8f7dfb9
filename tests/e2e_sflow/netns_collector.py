"""A datastore + SflowCollector process for the end-to-end test, run inside a network namespace.

    python -m tests.e2e_sflow.netns_collector SETUP.json

SETUP holds {addr, data_dir, out, vports: {ip: [pod, namespace]}, cluster,
workers}.  The process enables connection statistics, declares the
cluster with overlay-vxlan-analytics, writes the vPort rows, starts the
collector, prints "ready PORT" and then every 0.3 s writes the connection
table and statistics to ``out`` (JSON, atomically) until SIGTERM.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from agent.datastore import Datastore
from collectors.conntrack.tracker import CONNECTIONS_PATH
from collectors.sflow.collector import EXPORTER_PATH, STATS_PATH, SflowCollector
from fabric_sync.embedded import EmbeddedFabricStore

VPORT = "/kubefabric-vport:vports/vport"


async def main(setup: dict) -> None:
    data_dir = Path(setup["data_dir"])
    ds = Datastore("e2e", data_dir, EmbeddedFabricStore(data_dir, "e2e"))
    await ds.start()
    cluster = setup["cluster"]

    def edit(tree):
        tree["kubefabric-connection:connection-stats-settings"] = {"enable": True, "idle-timeout": 600}
        tree["kubefabric-k8s:k8s"] = {"connection": [{
            "cluster-name": cluster, "kube-config": "/nonexistent/kubeconfig", "enable": False,
            "overlay-vxlan-analytics": True}]}
        return tree

    await ds.propose(edit, user="e2e", face="test")
    for ip, (pod, namespace) in setup["vports"].items():
        ds.state.upsert(VPORT, (ip,), {"entity": pod, "namespace": namespace, "svc-name": cluster})
    collector = SflowCollector(ds, setup["addr"], workers=setup.get("workers", 1), publish_interval=0.1)
    await collector.start()
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
        snapshot = {
            "connections": [{**row} for row in ds.state.entries(CONNECTIONS_PATH).values()],
            "statistics": ds.state.get(STATS_PATH),
            "exporters": [{**row} for row in ds.state.entries(EXPORTER_PATH).values()],
            "tracker": collector.tracker.stats(),
        }
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        os.replace(tmp, out)
    await collector.stop()
    await ds.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
