"""The time machine's typed queries, seen as the plain dicts the older tests were written against.

``HistoryView(store)`` answers ``pod_at`` / ``vports_at`` / ``services_at``
/ ``cni_at`` / ``service_backends`` / ``changes`` from the typed ``History``
port (``rows_at``, ``pods_at``, ``Version``, ``HistoryChange``...) of a
``core.history.HistoryStore``; every other attribute is the store's own.
The assertions stay the same; what they exercise is the typed API.
"""
from __future__ import annotations

from core import schema_paths
from core.history import HistoryStore


class HistoryView:
    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    @staticmethod
    def _pod(version) -> dict | None:
        if version is None:
            return None
        return {**version.data, "cluster": version.cluster, "valid_from": version.valid_from,
                "valid_to": version.valid_to}

    def pod_at(self, ip, t=None, cluster=None) -> dict | None:
        return self._pod(self.store.pod_at(ip, t, cluster))

    def pods_at(self, ip, t=None, cluster=None) -> list[dict]:
        return [self._pod(v) for v in self.store.pods_at(ip, t, cluster)]

    def vports_at(self, t=None, cluster=None) -> dict[str, dict]:
        return {row.key[0]: row.values for row in self.store.rows_at(schema_paths.VPORT, t, cluster=cluster)}

    def services_at(self, t=None, cluster=None) -> dict[tuple, dict]:
        return {row.key: row.values for row in self.store.rows_at(schema_paths.K8S_SERVICE, t, cluster=cluster)}

    def cni_at(self, cluster, t=None) -> dict | None:
        rows = self.store.rows_at(schema_paths.K8S_CNI, t, cluster=cluster).items
        return rows[0].values if rows else None

    def service_backends(self, cluster, namespace, name, t=None) -> list[str]:
        return [v.member for v in self.store.service_backends(cluster, namespace, name, t)]

    def service_backends_between(self, cluster, namespace, name, t1, t2) -> list[dict]:
        page = self.store.service_backends_between(cluster, namespace, name, t1, t2)
        return [{**v.data, "cluster": v.cluster, "member": v.member, "valid_from": v.valid_from,
                 "valid_to": v.valid_to} for v in page]

    def changes(self, start, end=None, kinds=None, cluster=None, limit=None) -> list[dict]:
        page = self.store.changes(start, end, kinds=kinds, cluster=cluster,
                                  **({"limit": limit} if limit is not None else {}))
        return [{"time": c.time, "op": c.op, "kind": c.kind, "cluster": c.cluster, "key": c.key,
                 "member": c.member, "data": dict(c.data), "path": c.path, "keys": c.keys} for c in page]
