"""Pods -> vPort rows (Netvisor's vport-show), and who owns a contested IP.

The vPort table is built from the API, not from traffic, so ``mac`` and
``vlan`` are the dummies Netvisor shows: VLAN 4090 and a MAC in
``88:88:88:xx:xx:xx`` whose last three bytes are the low 24 bits of the pod
IP (unique inside any /8, so inside any realistic pod network, and
readable: 10.244.1.5 -> 88:88:88:f4:01:05).

One row per pod IP (``status.podIPs``, so two for a dual-stack pod).  A pod
holds its IPs only while it is not finished: Succeeded/Failed pods keep
``podIPs`` in the API but the CNI has released the address, which a new pod
may already use.

The vPort key is the IP alone, so two pods can claim the same key: a
host-network pod shares its node's IP with every other host-network pod on
that node, an IP is reused while the old pod is still terminating, two
clusters may use the same pod range.  :class:`IpTable` keeps every claim and
shows the best one; when it goes, the next best comes back:

1. a pod not being deleted beats one with ``deletionTimestamp``;
2. a pod with its own IP beats host-network pods;
3. Running beats Pending beats Unknown;
4. the most recently created pod, then the latest claim, wins.

``svc-name`` (the cluster name) tells which cluster a row came from.
"""
from __future__ import annotations

import ipaddress
import time
from sys import intern
from dataclasses import dataclass
from typing import Mapping

from core.times import format_rfc3339, try_parse_rfc3339

__all__ = ["VPORT_VLAN", "VPORT_STATUS", "TERMINAL_PHASES", "PodView", "Claim", "IpTable",
           "dummy_mac", "pod_view"]

VPORT_VLAN = 4090
VPORT_STATUS = "host,pod,k8s"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_PHASE_RANK = {"Running": 3, "Pending": 2, "Unknown": 1}


def dummy_mac(ip: str) -> str:
    """``88:88:88`` + the low 24 bits of the address."""
    parts = ip.split(".")
    if len(parts) == 4:                      # IPv4 fast path (ipaddress costs ~10x more)
        _, b, c, d = (int(p) for p in parts)
        return f"88:88:88:{b:02x}:{c:02x}:{d:02x}"
    low = int(ipaddress.ip_address(ip)) & 0xFFFFFF
    return f"88:88:88:{low >> 16:02x}:{(low >> 8) & 0xFF:02x}:{low & 0xFF:02x}"


@dataclass(slots=True)
class PodView:
    """The few fields of a pod the vPort table and the time machine need (not the whole object)."""

    namespace: str
    name: str
    uid: str
    node: str
    phase: str
    labels: str
    host_network: bool
    node_ip: str
    ips: tuple[str, ...]
    created: float
    start: float | None
    deleting: bool

    @property
    def holds_ips(self) -> bool:
        """Whether the pod currently owns its IPs (not finished)."""
        return self.phase not in TERMINAL_PHASES

    def summary(self) -> dict:
        """The time machine's pod record."""
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid, "node": self.node,
                "phase": self.phase, "labels": self.labels, "host-network": self.host_network,
                "node-ip": self.node_ip}


def pod_view(pod: Mapping) -> PodView:
    """Extract a :class:`PodView` from a raw Pod object."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ips = tuple(str(p["ip"]) for p in (status.get("podIPs") or []) if isinstance(p, Mapping) and p.get("ip"))
    if not ips and status.get("podIP"):
        ips = (str(status["podIP"]),)
    labels = meta.get("labels") or {}
    # namespace, node, phase, node IP and the label string repeat across pods: share one copy
    return PodView(
        namespace=intern(str(meta.get("namespace") or "")),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"),
        node=intern(str(spec.get("nodeName") or "")),
        phase=intern(str(status.get("phase") or "Unknown")),
        labels=intern(",".join(f"{k}:{v}" for k, v in sorted(labels.items()))),
        host_network=bool(spec.get("hostNetwork")),
        node_ip=intern(str(status.get("hostIP") or "")),
        ips=ips,
        created=try_parse_rfc3339(meta.get("creationTimestamp")) or 0.0,
        start=try_parse_rfc3339(status.get("startTime")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(slots=True)
class Claim:
    """One pod's claim on one IP, with the vPort bookkeeping."""

    cluster: str
    pod: PodView
    first_seen: float
    last_seen: float
    seq: int = 0

    def rank(self) -> tuple:
        p = self.pod
        return (not p.deleting, not p.host_network, _PHASE_RANK.get(p.phase, 0), p.created, self.seq)

    def row(self, ip: str, owner: str) -> dict:
        """The vPort row for this claim."""
        p = self.pod
        return {
            "ip": ip, "owner": owner, "mac": dummy_mac(ip), "vlan": VPORT_VLAN, "svc-name": self.cluster,
            "hostname": p.node, "entity": p.name, "power": p.phase, "portgroup": p.labels,
            "status": VPORT_STATUS, "namespace": p.namespace, "node-ip": p.node_ip,
            "host-network": p.host_network, "first-seen": format_rfc3339(self.first_seen),
            "last-seen": format_rfc3339(self.last_seen),
        }


class IpTable:
    """Every claim on every IP across all clusters; :meth:`winner` is what the vPort table shows.

    An uncontested IP (the usual case) maps straight to its claim; only
    contested IPs pay for a dict of claims.
    """

    def __init__(self) -> None:
        self._claims: dict[str, Claim | dict[tuple[str, str], Claim]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._claims)

    def claim(self, ip: str, cluster: str, pod: PodView, now: float | None = None,
              first_seen: float | None = None) -> Claim:
        """Add or refresh a pod's claim on ``ip``."""
        now = time.time() if now is None else now
        entry = self._claims.get(ip)
        key = (cluster, pod.uid)
        if isinstance(entry, Claim):
            if entry.cluster == cluster and entry.pod.uid == pod.uid:
                entry.pod = pod
                entry.last_seen = now
                return entry
            entry = {(entry.cluster, entry.pod.uid): entry}
            self._claims[ip] = entry
        elif entry is not None:
            existing = entry.get(key)
            if existing is not None:
                existing.pod = pod
                existing.last_seen = now
                return existing
        self._seq += 1
        claim = Claim(cluster, pod, first_seen if first_seen is not None else now, now, self._seq)
        if entry is None:
            self._claims[ip] = claim
        else:
            entry[key] = claim
        return claim

    def release(self, ip: str, cluster: str, uid: str) -> bool:
        """Drop a claim; returns True when it existed."""
        entry = self._claims.get(ip)
        if entry is None:
            return False
        if isinstance(entry, Claim):
            if entry.cluster == cluster and entry.pod.uid == uid:
                del self._claims[ip]
                return True
            return False
        if entry.pop((cluster, uid), None) is None:
            return False
        if len(entry) == 1:
            self._claims[ip] = next(iter(entry.values()))
        elif not entry:
            del self._claims[ip]
        return True

    def winner(self, ip: str) -> Claim | None:
        """The claim the vPort table shows for ``ip``, or None."""
        entry = self._claims.get(ip)
        if entry is None or isinstance(entry, Claim):
            return entry
        return max(entry.values(), key=Claim.rank)

    def ips_of(self, cluster: str) -> list[str]:
        """IPs with at least one claim from ``cluster``."""
        out = []
        for ip, entry in self._claims.items():
            if isinstance(entry, Claim):
                if entry.cluster == cluster:
                    out.append(ip)
            elif any(k[0] == cluster for k in entry):
                out.append(ip)
        return out
