"""The topology lab's Kubernetes API server (sim.k8s_apiserver), run in the lab's management namespace.

    python -m tests.topology.lab_apiserver SETUP.json

SETUP: {host, kubeconfig, nodes: [[name, internal_ip, pod_cidr]], pods: [[name, node, host_network]]}.
Writes the kubeconfig when it serves, and serves until SIGTERM.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from sim.k8s_apiserver import FakeApiServer


async def main(setup: dict) -> None:
    server = FakeApiServer(host=setup["host"], port=0, bookmark_interval=0.5)
    server.load_scenario("flannel-vxlan", nodes=0)
    for name, address, cidr in setup["nodes"]:
        server.add_node(name, address, cidr)
    for name, node, host_network in setup["pods"]:
        server.add_pod(name, "default", node=node, host_network=host_network, labels={"app": name.rsplit("-", 1)[0]})
    await server.start()
    kubeconfig = Path(setup["kubeconfig"])
    tmp = kubeconfig.with_suffix(".tmp")
    server.write_kubeconfig(tmp, cluster_name="lab")
    tmp.rename(kubeconfig)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"serving at {server.url}", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
