"""Services and their ready backends (k8s/service rows), from Service and EndpointSlice objects.

A service's backends are the ready endpoints of every EndpointSlice
labelled ``kubernetes.io/service-name=<service>`` in its namespace, named
``namespace/pod@ip`` from each endpoint's ``targetRef`` (``-`` when the
endpoint has no pod behind it).  An endpoint whose ``conditions.ready`` is
unset counts as ready, as the API documents.
"""
from __future__ import annotations

from sys import intern
from typing import Mapping

__all__ = ["service_row", "slice_members", "member_record", "ServiceIndex", "SERVICE_NAME_LABEL"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service_row(svc: Mapping) -> dict:
    """k8s/service leaves for a Service (keys cluster-name/namespace/name excluded)."""
    spec = svc.get("spec") or {}
    status = svc.get("status") or {}
    svc_type = str(spec.get("type") or "ClusterIP")
    cluster_ips = [ip for ip in (spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
                   if ip and ip != "None"]
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
        value = ingress.get("ip") or ingress.get("hostname")
        if value and value not in external:
            external.append(str(value))
    if svc_type == "ExternalName" and spec.get("externalName"):
        external.append(str(spec["externalName"]))
    ports, node_ports = [], []
    for port in spec.get("ports") or []:
        proto = str(port.get("protocol") or "TCP")
        target = port.get("targetPort", port.get("port"))
        ports.append(f"{port.get('port')}/{proto}->{target}")
        if port.get("nodePort"):
            node_ports.append(int(port["nodePort"]))
    return {"type": svc_type, "cluster-ips": cluster_ips, "external-ips": external,
            "node-ports": node_ports, "ports": ports}


def slice_members(eps: Mapping) -> tuple[str, dict[str, str]]:
    """(service name, {"ns/pod@ip": node name}) of an EndpointSlice's ready endpoints."""
    meta = eps.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    service = str((meta.get("labels") or {}).get(SERVICE_NAME_LABEL) or "")
    members: dict[str, str] = {}
    for endpoint in eps.get("endpoints") or []:
        if (endpoint.get("conditions") or {}).get("ready") is False:
            continue
        ref = endpoint.get("targetRef") or {}
        pod = str(ref.get("name")) if ref.get("kind", "Pod") == "Pod" and ref.get("name") else "-"
        node = intern(str(endpoint.get("nodeName") or ""))
        for ip in endpoint.get("addresses") or []:
            members[f"{ns}/{pod}@{ip}"] = node
    return service, members


def member_record(member: str, node: str) -> dict:
    """The time machine's record of a backend: {pod, ip, node} from "ns/pod@ip"."""
    pod, _, ip = member.split("/", 1)[-1].rpartition("@")
    return {"pod": pod, "ip": ip, "node": node}


class ServiceIndex:
    """Services and slices of one cluster, joined into rows."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], dict] = {}                  # (ns, name) -> row (no backends)
        self._slices: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}  # (ns, slice) -> (service, members)
        self._by_service: dict[tuple[str, str], set[str]] = {}           # (ns, service) -> slice names

    def set_service(self, svc: Mapping) -> tuple[str, str]:
        meta = svc.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self.services[key] = service_row(svc)
        return key

    def drop_service(self, namespace: str, name: str) -> bool:
        return self.services.pop((namespace, name), None) is not None

    def set_slice(self, eps: Mapping) -> tuple[str, str] | None:
        """Store a slice; returns the (ns, service) whose backends may have changed."""
        meta = eps.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        service, members = slice_members(eps)
        old = self._slices.get((ns, name))
        if old is not None and old[0] != service:
            self._unlink(ns, old[0], name)
        self._slices[(ns, name)] = (service, members)
        if not service:
            return None
        self._by_service.setdefault((ns, service), set()).add(name)
        return (ns, service)

    def drop_slice(self, namespace: str, name: str) -> tuple[str, str] | None:
        old = self._slices.pop((namespace, name), None)
        if old is None or not old[0]:
            return None
        self._unlink(namespace, old[0], name)
        return (namespace, old[0])

    def _unlink(self, ns: str, service: str, slice_name: str) -> None:
        names = self._by_service.get((ns, service))
        if names is not None:
            names.discard(slice_name)
            if not names:
                del self._by_service[(ns, service)]

    def backends(self, namespace: str, name: str) -> dict[str, str]:
        """Ready members of a service over all its slices: {"ns/pod@ip": node}."""
        out: dict[str, str] = {}
        for slice_name in self._by_service.get((namespace, name), ()):
            out.update(self._slices[(namespace, slice_name)][1])
        return out

    def row(self, namespace: str, name: str) -> dict | None:
        """The full k8s/service row (with backend-pods), or None when the service is unknown."""
        base = self.services.get((namespace, name))
        if base is None:
            return None
        return {**base, "backend-pods": sorted(self.backends(namespace, name))}

    def slice_keys(self) -> list[tuple[str, str]]:
        return list(self._slices)
