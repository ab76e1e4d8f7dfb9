"""The switch's own tables over netlink (pyroute2): interfaces, neighbour table, bridge FDB.

This is the agent's own network namespace, which is the switch's when the
agent runs on it: interfaces (ifIndex, name, oper-status, bridge master)
with their speed (sysfs; netlink carries none), the neighbour table
(IP -> MAC, IPv4 and IPv6) and the bridge FDB (MAC -> port, VLAN).  The
dumps run in a worker thread: a large FDB takes milliseconds to read and
the event loop must not wait for it.

Only what says where a host is plugged in is kept: FDB entries the bridge
learned (not the ports' own permanent MACs, not multicast), neighbours
that resolved (not FAILED/INCOMPLETE).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .lldp import SourceReport

__all__ = ["FdbEntry", "Interface", "NeighborEntry", "NetlinkSnapshot", "NetlinkSource"]

# pyroute2 logs every netlink message at DEBUG: that is the library's tracing, not the agent's debug log
logging.getLogger("pyroute2").setLevel(logging.INFO)

# neighbour states (linux/neighbour.h)
_NUD_INCOMPLETE, _NUD_FAILED, _NUD_NOARP, _NUD_PERMANENT = 0x01, 0x20, 0x40, 0x80
_NTF_MASTER = 0x04
_OPER = {"UP": "up", "DOWN": "down", "TESTING": "testing", "UNKNOWN": "unknown", "DORMANT": "dormant",
         "NOTPRESENT": "not-present", "LOWERLAYERDOWN": "lower-layer-down"}


@dataclass(frozen=True, slots=True)
class Interface:
    ifindex: int
    name: str
    mac: str
    oper_status: str
    master: int | None      # ifIndex of the bridge this port belongs to
    speed: int | None       # bits per second
    kind: str = ""          # bridge, veth, vlan... ("" for physical ports)


@dataclass(frozen=True, slots=True)
class NeighborEntry:
    ip: str
    mac: str
    ifindex: int


@dataclass(frozen=True, slots=True)
class FdbEntry:
    mac: str
    ifindex: int            # the bridge port
    vlan: int               # 0 without VLAN filtering


@dataclass
class NetlinkSnapshot:
    interfaces: dict[int, Interface] = field(default_factory=dict)
    neighbors: list[NeighborEntry] = field(default_factory=list)
    fdb: list[FdbEntry] = field(default_factory=list)
    addresses: frozenset[str] = frozenset()       # this namespace's own addresses

    def by_name(self) -> dict[str, Interface]:
        return {i.name: i for i in self.interfaces.values()}


def _speed(name: str) -> int | None:
    try:
        mbps = int(Path(f"/sys/class/net/{name}/speed").read_text().strip())
    except (OSError, ValueError):
        return None
    return mbps * 1_000_000 if mbps > 0 else None


def _unicast(mac: str | None) -> bool:
    if not mac or len(mac) != 17:
        return False
    return not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"


def dump() -> NetlinkSnapshot:
    """Read the tables now (blocking; run it in a thread)."""
    from pyroute2 import IPRoute

    snap = NetlinkSnapshot()
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            info = link.get_attr("IFLA_LINKINFO")
            kind = (info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""
            snap.interfaces[link["index"]] = Interface(
                ifindex=link["index"], name=name, mac=str(link.get_attr("IFLA_ADDRESS") or ""),
                oper_status=_OPER.get(str(link.get_attr("IFLA_OPERSTATE") or "UNKNOWN"), "unknown"),
                master=link.get_attr("IFLA_MASTER"), speed=_speed(name), kind=kind)
        for family in (socket.AF_INET, socket.AF_INET6):
            for n in ipr.get_neighbours(family=family):
                state = n["state"]
                mac = n.get_attr("NDA_LLADDR")
                if state & (_NUD_INCOMPLETE | _NUD_FAILED | _NUD_NOARP) or not _unicast(mac):
                    continue
                ip = n.get_attr("NDA_DST")
                if ip:
                    snap.neighbors.append(NeighborEntry(str(ip), str(mac), n["ifindex"]))
        for f in ipr.fdb("dump"):
            mac = f.get_attr("NDA_LLADDR")
            learned_by_bridge = f.get_attr("NDA_MASTER") is not None or f["flags"] & _NTF_MASTER
            if not learned_by_bridge or f["state"] & _NUD_PERMANENT or not _unicast(mac):
                continue
            port = snap.interfaces.get(f["ifindex"])
            if port is None or port.kind == "bridge":
                continue   # the bridge's own entries
            snap.fdb.append(FdbEntry(str(mac), f["ifindex"], int(f.get_attr("NDA_VLAN") or 0)))
        snap.addresses = frozenset(str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()
                                   if a.get_attr("IFA_ADDRESS"))
    return snap


class NetlinkSource:
    """``await read()`` -> SourceReport with ``data`` a NetlinkSnapshot of this network namespace."""

    name = "netlink"

    def __init__(self, reader=dump) -> None:
        self._reader = reader

    async def read(self) -> SourceReport:
        now = time.time()
        try:
            snap = await asyncio.to_thread(self._reader)
        except ImportError:
            return SourceReport("unavailable", "pyroute2 is not installed")
        except OSError as exc:
            return SourceReport("error", f"netlink: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - a netlink library failure is this source's error, not the agent's
            return SourceReport("error", f"netlink: {type(exc).__name__}: {exc}")
        count = len(snap.fdb)
        detail = (f"{len(snap.interfaces)} interfaces, {len(snap.neighbors)} neighbours, "
                  f"{count} learned FDB entries")
        return SourceReport("up", detail, snap, count, now)
