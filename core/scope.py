"""Which config is fabric-wide and which stays on the node.

Netvisor gives k8s-connection-* fabric scope: every switch holds the same
list.  connection-stats-settings is a per-switch setting.  The split is by
top-level container so a replicated write never carries node-local data.
"""
from __future__ import annotations

FABRIC_SCOPE = frozenset({"kubefabric-k8s:k8s", "kubefabric-fabric:fabric", "kubefabric-sflow:sflow-collector"})


def split(tree: dict) -> tuple[dict, dict]:
    """(fabric-scope part, local-scope part) of an RFC 7951 config tree."""
    fabric = {k: v for k, v in tree.items() if k in FABRIC_SCOPE}
    local = {k: v for k, v in tree.items() if k not in FABRIC_SCOPE}
    return fabric, local


def fill_owner(candidate: dict, base: dict, node_name: str) -> None:
    """A new k8s connection without an owner is owned by the node that created it."""
    before = {c.get("cluster-name") for c in base.get("kubefabric-k8s:k8s", {}).get("connection", [])}
    for conn in candidate.get("kubefabric-k8s:k8s", {}).get("connection", []):
        if "owner" not in conn and conn.get("cluster-name") not in before:
            conn["owner"] = node_name
