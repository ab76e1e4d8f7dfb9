"""examples/kubernetes/rbac.yaml grants exactly what the watchers request: read-only, every resource covered."""
from pathlib import Path

import yaml

from collectors.k8s.cluster import CNI_RESOURCES, CORE_RESOURCES

RBAC = Path(__file__).resolve().parents[2] / "examples" / "kubernetes" / "rbac.yaml"


def load():
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d["rules"] for d in docs if d["kind"] == "Role"}
    bound = {(d["metadata"]["namespace"], d["roleRef"]["name"]) for d in docs if d["kind"] == "RoleBinding"}
    return docs, cluster_rules, roles, bound


def allows(rules, group, plural, verb, name=None):
    for rule in rules:
        if group in rule["apiGroups"] and plural in rule["resources"] and verb in rule["verbs"]:
            if "resourceNames" not in rule or (name is not None and name in rule["resourceNames"]):
                return True
    return False


def test_every_watched_resource_is_granted_list_and_watch():
    _, cluster_rules, roles, bound = load()
    for res in (*CORE_RESOURCES, *CNI_RESOURCES):
        for verb in ("list", "watch"):
            ok = allows(cluster_rules, res.group, res.plural, verb)
            if not ok and res.namespace:
                ok = any(allows(rules, res.group, res.plural, verb, res.name)
                         for (ns, role), rules in roles.items() if ns == res.namespace and (ns, role) in bound)
            assert ok, f"{verb} {res.label} is not granted"


def test_read_only_and_no_secrets():
    docs, cluster_rules, roles, _ = load()
    for rules in [cluster_rules, *roles.values()]:
        for rule in rules:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}
            assert "secrets" not in rule["resources"] and "*" not in rule["resources"]
    configmap_rules = [r for rules in roles.values() for r in rules if "configmaps" in r["resources"]]
    assert configmap_rules and all(r.get("resourceNames") for r in configmap_rules)
    assert not any("configmaps" in r["resources"] for r in cluster_rules)
