"""Services and their backends (k8s/service rows and k8s/service/backend entries).

A service's backends are the endpoints of every EndpointSlice labelled
``kubernetes.io/service-name=<service>`` in its namespace: one entry per
address and port, as data (namespace, pod, ip, node, port, protocol,
port-name and the endpoint conditions ready/serving/terminating), never a
packed string.  Conditions follow the API's documented defaults: ready
unset counts as true, serving unset as ready's value, terminating unset as
false.  The service row's ``backend-count`` counts the ready ones.
"""
from __future__ import annotations

from sys import intern
from typing import Mapping

__all__ = ["service_row", "slice_members", "member_id", "ServiceIndex", "SERVICE_NAME_LABEL"]

#: a backend's identity: (ip, port)
BackendKey = tuple[str, int]

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


def slice_members(eps: Mapping) -> tuple[str, dict[BackendKey, dict]]:
    """(service name, {(ip, port): backend leaves}) of an EndpointSlice's endpoints."""
    meta = eps.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    service = str((meta.get("labels") or {}).get(SERVICE_NAME_LABEL) or "")
    ports = [(int(p.get("port") or 0), str(p.get("protocol") or "TCP"), str(p.get("name") or ""))
             for p in eps.get("ports") or ()] or [(0, "TCP", "")]
    members: dict[BackendKey, dict] = {}
    for endpoint in eps.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready") is not False
        serving = conditions.get("serving")
        serving = ready if serving is None else bool(serving)
        terminating = bool(conditions.get("terminating"))
        ref = endpoint.get("targetRef") or {}
        pod = str(ref.get("name")) if ref.get("kind", "Pod") == "Pod" and ref.get("name") else ""
        pod_ns = str(ref.get("namespace") or ns) if pod else ns
        node = intern(str(endpoint.get("nodeName") or ""))
        for ip in endpoint.get("addresses") or []:
            for port, protocol, port_name in ports:
                row = {"ip": str(ip), "port": port, "protocol": protocol, "namespace": pod_ns}
                if port_name:
                    row["port-name"] = port_name
                if pod:
                    row["pod"] = pod
                if node:
                    row["node"] = node
                row.update({"ready": ready, "serving": serving, "terminating": terminating})
                members[(str(ip), port)] = row
    return service, members


def member_id(key: BackendKey) -> str:
    """The time machine's member name of a backend: "ip/port" (the key of its k8s/service/backend entry)."""
    return f"{key[0]}/{key[1]}"


class ServiceIndex:
    """Services and slices of one cluster, joined into rows."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], dict] = {}                  # (ns, name) -> row (no backends)
        self._slices: dict[tuple[str, str], tuple[str, dict[BackendKey, dict]]] = {}  # (ns, slice) -> (service, members)
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

    def backends(self, namespace: str, name: str) -> dict[BackendKey, dict]:
        """Backends of a service over all its slices: {(ip, port): backend leaves}."""
        out: dict[BackendKey, dict] = {}
        for slice_name in self._by_service.get((namespace, name), ()):
            out.update(self._slices[(namespace, slice_name)][1])
        return out

    def row(self, namespace: str, name: str) -> dict | None:
        """The k8s/service row (backend-count included), or None when the service is unknown."""
        base = self.services.get((namespace, name))
        if base is None:
            return None
        ready = sum(1 for b in self.backends(namespace, name).values() if b["ready"])
        return {**base, "backend-count": ready}

    def slice_keys(self) -> list[tuple[str, str]]:
        return list(self._slices)
