#!/usr/bin/env python3
"""Create, modify, show and delete Kubernetes connections over NETCONF with ncclient.

    kubefabric run --netconf-addr 127.0.0.1:8830 ...            # the agent
    python examples/ncclient/k8s_connections.py --port 8830 --user admin --password '...'

The same steps as examples/ansible, in Python: edit-config through the
candidate with a confirmed commit, a merge on running, a filtered get
(config and state), a refused change (the fabric rules), and delete.
"""
from __future__ import annotations

import argparse
import os

from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError

K8S = "urn:kubefabric:yang:kubefabric-k8s"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


def connection(name: str, kube_config: str | None = None, op: str | None = None, **leaves: object) -> str:
    attr = f' xmlns:nc="{NC}" nc:operation="{op}"' if op else ""
    body = f"<cluster-name>{name}</cluster-name>"
    if kube_config:
        body += f"<kube-config>{kube_config}</kube-config>"
    for leaf, value in leaves.items():
        value = str(value).lower() if isinstance(value, bool) else value
        body += f"<{leaf.replace('_', '-')}>{value}</{leaf.replace('_', '-')}>"
    return f'<config><k8s xmlns="{K8S}"><connection{attr}>{body}</connection></k8s></config>'


def show(m: manager.Manager) -> None:
    reply = m.get(filter=("subtree", f'<k8s xmlns="{K8S}"><connection/></k8s>'))
    for conn in reply.data.iterfind(f".//{{{K8S}}}connection"):
        leaves = {etree.QName(e).localname: e.text for e in conn if e.text}
        status = conn.findtext(f"{{{K8S}}}state/{{{K8S}}}status") or "-"
        print(f"  {leaves.pop('cluster-name')}: status={status} {leaves}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("KUBEFABRIC_NETCONF_PORT", 830)))
    p.add_argument("--user", default=os.environ.get("KUBEFABRIC_USER", "admin"))
    p.add_argument("--password", default=os.environ.get("KUBEFABRIC_PASSWORD"))
    args = p.parse_args()

    with manager.connect(host=args.host, port=args.port, username=args.user, password=args.password,
                         hostkey_verify=False, look_for_keys=False, allow_agent=False) as m:
        print(f"session {m.session_id}; candidate: {':candidate' in m.server_capabilities}")

        # create: candidate, locked, validated, confirmed commit (rolled back unless confirmed)
        with m.locked("candidate"):
            m.edit_config(target="candidate", config=connection("prod", "/etc/kubefabric/prod.kubeconfig",
                                                                overlay_vxlan_analytics=True))
            m.edit_config(target="candidate", config=connection("staging", "/etc/kubefabric/staging.kubeconfig"))
            m.validate(source="candidate")
            m.commit(confirmed=True, timeout="60")
            m.commit()  # confirm
        print("created:")
        show(m)

        # modify straight on running
        m.edit_config(target="running", config=connection("staging", create_vport=True))

        # the fabric rules hold whichever face writes: one overlay-analytics connection per fabric
        try:
            m.edit_config(target="running", config=connection("staging", overlay_vxlan_analytics=True))
        except RPCError as err:
            print(f"refused: {err.tag} ({err.xml.findtext('{*}error-app-tag')}) at {err.path}: {err.message}")

        print("after modify:")
        show(m)

        # delete
        for name in ("prod", "staging"):
            m.edit_config(target="running", config=connection(name, op="delete"))
        print("deleted; left:", m.get_config("running", filter=("subtree", f'<k8s xmlns="{K8S}"/>')).data_xml)


if __name__ == "__main__":
    main()
