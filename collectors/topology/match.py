"""Which Kubernetes node is plugged into which port of this switch: the matching rules.

A pure function of what one switch sees (LLDP neighbours, the neighbour
table and bridge FDB, sFlow sightings and counters) and the Kubernetes
nodes of the fabric's clusters.  A node matches a port when

1. an LLDP neighbour on the port has the node's name as its system name
   (case does not matter; a short name matches its fully qualified form);
2. one of the node's addresses resolves through the neighbour table to a
   MAC the bridge FDB learned on the port;
3. an LLDP neighbour on the port advertises one of the node's addresses as
   its management address;
4. sFlow flow samples arriving on the port (input ifIndex) have one of the
   node's addresses as their outer source.

Rules 2 and 4 see a host's traffic wherever the layer-2 domain carries it,
uplinks included, so they skip *fabric-facing* ports: ports whose LLDP
neighbour is a fabric member or a bridge/router that is no Kubernetes node,
and ports where the FDB holds more than ``max_hosts_per_port`` MACs.  A
port claimed by several nodes keeps every claim, each with a note naming
the others (a server bridging another server behind it is possible; a
cabling error is more likely: either way the operator must see it).

The result also carries *endpoints* (an address the neighbour table
resolves to a MAC the FDB learned on an edge port: the real MAC and VLAN of
host-network pods and of routed pod networks) and *hints*: why a node this
switch half-sees was not placed (its address resolves but the FDB has no
port, or only an uplink).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .lldp import LldpNeighbor
from .netlink import NetlinkSnapshot
from .sflowports import PortCounters

__all__ = ["K8sNode", "MatchResult", "SwitchView", "match", "MAX_HOSTS_PER_PORT"]

#: more learned MACs than this on one port: a trunk or uplink, not a server's port
MAX_HOSTS_PER_PORT = 32


@dataclass(frozen=True, slots=True)
class K8sNode:
    """A Kubernetes node as the matcher needs it."""

    cluster: str
    name: str
    addresses: tuple[str, ...]
    hostname: str = ""

    @property
    def ident(self) -> tuple[str, str]:
        return (self.cluster, self.name)


@dataclass
class SwitchView:
    """Everything one switch knows about its ports."""

    switch: str
    lldp: list[LldpNeighbor] | None = None
    netlink: NetlinkSnapshot | None = None
    counters: dict[int, PortCounters] = field(default_factory=dict)
    sightings: dict[int, dict[str, tuple[float, str]]] = field(default_factory=dict)
    fabric_members: frozenset[str] = frozenset()


@dataclass
class MatchResult:
    """Rows of this switch: attachments by (port, cluster, node), LLDP neighbours by (port, chassis id)."""

    attachments: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    neighbors: dict[tuple[str, str], dict] = field(default_factory=dict)
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)
    hints: dict[tuple[str, str], str] = field(default_factory=dict)


def _label(name: str) -> str:
    return name.split(".", 1)[0]


class _NodeIndex:
    """Nodes by name (exact, case-insensitive), by short name, and by address."""

    def __init__(self, nodes: Iterable[K8sNode]) -> None:
        self.by_name: dict[str, list[K8sNode]] = {}
        self.by_label: dict[str, list[K8sNode]] = {}
        self.by_address: dict[str, list[K8sNode]] = {}
        for n in nodes:
            names = {n.name.lower()} | ({n.hostname.lower()} if n.hostname else set())
            for name in names:
                self.by_name.setdefault(name, []).append(n)
                self.by_label.setdefault(_label(name), []).append(n)
            for a in n.addresses:
                self.by_address.setdefault(a, []).append(n)

    def named(self, system_name: str) -> list[K8sNode]:
        """Nodes an LLDP system name stands for: the exact name, else a short name against a qualified one."""
        name = system_name.strip().lower()
        if not name:
            return []
        exact = self.by_name.get(name)
        if exact:
            return _unique(exact)
        found = [n for n in self.by_label.get(_label(name), ())
                 if "." not in name or "." not in n.name]   # short vs qualified, never two different domains
        return _unique(found)


def _unique(nodes: list[K8sNode]) -> list[K8sNode]:
    seen, out = set(), []
    for n in nodes:
        if n.ident not in seen:
            seen.add(n.ident)
            out.append(n)
    return out


def match(view: SwitchView, nodes: Iterable[K8sNode], *, max_hosts_per_port: int = MAX_HOSTS_PER_PORT) -> MatchResult:
    """This switch's attachments, LLDP neighbour rows, endpoints and hints (see the module docstring)."""
    index = _NodeIndex(nodes)
    result = MatchResult()
    nl = view.netlink
    interfaces = nl.interfaces if nl is not None else {}
    by_name = {i.name: i for i in interfaces.values()}

    def port_of(ifindex: int) -> str:
        iface = interfaces.get(ifindex)
        return iface.name if iface is not None else f"ifindex-{ifindex}"

    # --- the layer-2 tables
    fdb: dict[str, list[tuple[int, int]]] = {}
    macs_per_port: dict[int, int] = {}
    if nl is not None:
        for entry in nl.fdb:
            fdb.setdefault(entry.mac, []).append((entry.ifindex, entry.vlan))
            macs_per_port[entry.ifindex] = macs_per_port.get(entry.ifindex, 0) + 1
    arp: dict[str, str] = {}
    if nl is not None:
        for entry in nl.neighbors:
            arp.setdefault(entry.ip, entry.mac)

    # --- ports that face other network devices
    facing: dict[str, str] = {}
    for nb in view.lldp or ():
        if nb.system_name and nb.system_name in view.fabric_members:
            facing[nb.port] = f"its LLDP neighbour {nb.system_name} is a fabric switch"
        elif nb.network_device and not index.named(nb.system_name):
            facing[nb.port] = f"its LLDP neighbour {nb.system_name or nb.chassis_id} is a bridge or router"
    for ifindex, count in macs_per_port.items():
        if count > max_hosts_per_port:
            facing.setdefault(port_of(ifindex), f"its FDB holds {count} MACs (a trunk or uplink)")

    claims: dict[tuple[str, str, str], dict] = result.attachments

    def claim(port: str, node: K8sNode, how: str, **leaves) -> dict:
        key = (port, node.cluster, node.name)
        row = claims.get(key)
        if row is None:
            row = claims[key] = {"switch": view.switch, "port": port, "cluster-name": node.cluster,
                                 "node": node.name, "learned-by": set()}
        row["learned-by"].add(how)
        for name, value in leaves.items():
            if value not in (None, "") and name not in row:
                row[name] = value
        return row

    # --- rules 1 and 3: LLDP
    for nb in view.lldp or ():
        matched: list[K8sNode] = []
        lldp_leaves = {"lldp-system-name": nb.system_name, "lldp-chassis-id": nb.chassis_id,
                       "lldp-port-id": nb.port_id, "lldp-port-description": nb.port_description}
        mac = nb.port_id.lower() if nb.port_id_type == "mac" else (
            nb.chassis_id.lower() if nb.chassis_id_type == "mac" else None)
        for node in index.named(nb.system_name):
            row = claim(nb.port, node, "lldp", mac=mac, **lldp_leaves)
            row["lldp-management-address"] = list(nb.management_addresses)
            matched.append(node)
        for address in nb.management_addresses:
            for node in index.by_address.get(address, ()):
                row = claim(nb.port, node, "lldp-management-address", mac=mac, **{"node-address": address},
                            **lldp_leaves)
                row["lldp-management-address"] = list(nb.management_addresses)
                if node not in matched:
                    matched.append(node)
        neighbor = {"port": nb.port, "chassis-id": nb.chassis_id, "system-name": nb.system_name,
                    "port-id": nb.port_id, "port-description": nb.port_description,
                    "management-address": list(nb.management_addresses)}
        if matched:
            neighbor["node"] = ",".join(f"{n.cluster}/{n.name}" for n in matched)
        elif nb.port in facing:
            neighbor["note"] = facing[nb.port]
        else:
            addresses = ", ".join(nb.management_addresses) or "none"
            neighbor["note"] = (f"no Kubernetes node is named {nb.system_name or '(no system name)'} "
                                f"or has one of its management addresses ({addresses})")
        result.neighbors[(nb.port, nb.chassis_id)] = neighbor

    # --- rule 2: neighbour table + FDB, and the endpoints it resolves
    if nl is not None:
        for ip, mac in arp.items():
            for ifindex, vlan in fdb.get(mac, ()):
                if port_of(ifindex) not in facing:
                    result.endpoints[ip] = (mac, vlan)
                    break
        for address, owners in index.by_address.items():
            mac = arp.get(address)
            if mac is None:
                continue
            places = fdb.get(mac)
            for node in owners:
                if not places:
                    result.hints[node.ident] = (f"{address} resolves to {mac} in {view.switch}'s neighbour table, "
                                                "but its bridge FDB has no port for that MAC")
                    continue
                for ifindex, vlan in places:
                    port = port_of(ifindex)
                    if port in facing:
                        result.hints.setdefault(node.ident, f"{address} ({mac}) is learned on {view.switch} {port}, "
                                                            f"which faces another device ({facing[port]})")
                        continue
                    claim(port, node, "neighbor-fdb", mac=mac, vlan=vlan, ifindex=ifindex,
                          **{"node-address": address})

    # --- rule 4: sFlow input ifIndex
    for ifindex, sources in view.sightings.items():
        port = port_of(ifindex)
        for src, (_t, mac) in sources.items():
            for node in index.by_address.get(src, ()):
                if port in facing:
                    result.hints.setdefault(node.ident, f"sFlow sees {src} arrive on {view.switch} {port}, "
                                                        f"which faces another device ({facing[port]})")
                    continue
                claim(port, node, "sflow", ifindex=ifindex, mac=mac or None, **{"node-address": src})

    # --- port facts, conflicts, and the final shape
    by_port: dict[str, list[tuple[str, str, str]]] = {}
    for key in claims:
        by_port.setdefault(key[0], []).append(key)
    for key, row in claims.items():
        port = row["port"]
        iface = by_name.get(port)
        ifindex = row.get("ifindex") or (iface.ifindex if iface is not None else 0)
        row["ifindex"] = ifindex
        row.setdefault("vlan", _fdb_vlan(fdb, row.get("mac"), ifindex))
        if row.get("mac") is None:
            row.pop("mac", None)
        counters = view.counters.get(ifindex) if ifindex else None
        if iface is not None:
            if iface.speed:
                row["speed"] = iface.speed
            row["oper-status"] = iface.oper_status
        if counters is not None:
            row.setdefault("speed", counters.speed or None)
            if counters.oper_up is not None:
                row.setdefault("oper-status", "up" if counters.oper_up else "down")
            _add_counters(row, counters)
        if row.get("speed") is None:
            row.pop("speed", None)
        row["learned-by"] = sorted(row["learned-by"])
        others = [k for k in by_port[port] if k != key]
        if others:
            row["note"] = f"port {port} is also claimed by " + ", ".join(f"{c}/{n}" for _, c, n in others)
        for node_key in ((row["cluster-name"], row["node"]),):
            result.hints.pop(node_key, None)   # placed here: no hint needed
    return result


def _fdb_vlan(fdb: dict[str, list[tuple[int, int]]], mac: str | None, ifindex: int) -> int:
    for port, vlan in fdb.get(mac or "", ()):
        if port == ifindex:
            return vlan
    return 0


def _add_counters(row: dict, c: PortCounters) -> None:
    if c.in_utilization is not None:
        row["in-utilization"] = c.in_utilization
    if c.out_utilization is not None:
        row["out-utilization"] = c.out_utilization
    row["in-errors"] = c.in_errors
    row["out-errors"] = c.out_errors
    row["in-discards"] = c.in_discards
    row["out-discards"] = c.out_discards
    row["in-discard-percent"] = c.in_discard_percent
    row["out-discard-percent"] = c.out_discard_percent
    row["counters-interval"] = int(round(c.interval))
