"""The demo's banner: where everything listens, the password, and what to try."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .fabric import CLUSTER, FABRIC, SWITCH_ADDRESS, DemoFabric


def kubefabric_command() -> str:
    """`kubefabric` when it is on PATH, else the venv's own copy (what `make demo` ran)."""
    found = shutil.which("kubefabric")
    own = Path(sys.executable).with_name("kubefabric")
    if found and Path(found).resolve() == own.resolve():
        return "kubefabric"
    if own.exists():
        try:
            return str(own.relative_to(Path.cwd()))
        except ValueError:
            return str(own)
    return "kubefabric"


def banner(demo: DemoFabric, workdir_note: str) -> str:
    n1 = demo.leaf1
    gnmi1 = f"127.0.0.1:{n1.gnmi}"
    pw = demo.password
    lines = [
        "",
        "=" * 78,
        f" kubefabric demo: fabric {FABRIC!r}, 3 agents"
        + (", 3-member etcd (TLS, client certificates)" if demo.etcd else "")
        + (f", simulated cluster {CLUSTER!r} (Flannel VXLAN)" if demo.apiserver else "")
        + (f", simulated switch {SWITCH_ADDRESS}" if demo.exporter else ""),
        "=" * 78,
        f" user: {demo.username}   password: {pw}   (generated for this run; role network-admin)",
        "",
        f" {'node':6} {'gNMI':16} {'NETCONF':16} {'CLI (SSH)':16} {'metrics':16} {'web':16}",
    ]

    def col(part: str, port: int) -> str:
        return f"127.0.0.1:{port}" if demo.has(part) else "-"

    for n in demo.ports.nodes:
        lines.append(f" {n.name:6} {'127.0.0.1:' + str(n.gnmi):16} {col('NETCONF face', n.netconf):16} "
                     f"{col('CLI over SSH', n.cli_ssh):16} {col('metrics', n.metrics):16} {col('web page', n.web):16}")
    if demo.apiserver is not None:
        lines.append(f" leaf1 owns k8s connection {CLUSTER!r}: {demo.vport_count} vPorts; kubeconfig {demo.kubeconfig}")
    lines += ["", " Try (in another terminal):",
              f"   export KUBEFABRIC_USERNAME={demo.username} KUBEFABRIC_PASSWORD='{pw}'"]
    if demo.has("kubefabric cli"):
        kf = kubefabric_command()
        cli = f"{kf} cli --insecure --gnmi-addr {gnmi1}"
        cli2 = f"{kf} cli --insecure --gnmi-addr 127.0.0.1:{demo.ports.nodes[1].gnmi}"
        lines += [
            f"   {cli} vport-show                  # where every pod is",
            f"   {cli} switch '*' vport-show       # the same, asked of every fabric member",
            f"   {cli} attachment-show             # which switch port each Kubernetes node is plugged into",
            f"   {cli} service-show                # virtual IPs and backends",
            f"   {cli} connection-show             # pod-to-pod connections, state, latency",
            f"   {cli} vport-history-show snapshot-time 30s   # the time machine: the table 30 s ago",
            f"   {cli2} k8s-connection-show        # leaf2 sees the replicated config",
            f"   {cli2} fabric-node-show",
        ]
    if demo.has("CLI over SSH"):
        lines.append(f"   ssh -p {n1.cli_ssh} {demo.username}@127.0.0.1        # Netvisor-style CLI shell")
    if demo.has("NETCONF face"):
        lines.append(f"   NETCONF: 127.0.0.1:{n1.netconf} (ncclient: manager.connect(host='127.0.0.1', "
                     f"port={n1.netconf}, username='{demo.username}', password=..., hostkey_verify=False))")
    lines += [
        "   pygnmi:",
        "     python -c \"from pygnmi.client import gNMIclient as C; import os, json; "
        f"c = C(target=('127.0.0.1', {n1.gnmi}), username='{demo.username}', "
        "password=os.environ['KUBEFABRIC_PASSWORD'], insecure=True); c.connect(); "
        "print(json.dumps(c.get(path=['/kubefabric-vport:vports'], encoding='json_ietf'), indent=1)[:2000])\"",
    ]
    if demo.has("web page"):
        lines.append(f"   web page:  http://127.0.0.1:{n1.web}/   (user {demo.username})")
    if demo.has("metrics"):
        lines.append(f"   metrics:   http://127.0.0.1:{n1.metrics}/metrics   (Grafana: examples/grafana/kubefabric.json)")
    if demo.notes:
        lines += ["", " Not available yet:"] + [f"   - {note}" for note in demo.notes]
    lines += ["", f" logs and data: {demo.workdir} ({workdir_note})", " Ctrl-C stops everything.", "=" * 78, ""]
    return "\n".join(lines)
