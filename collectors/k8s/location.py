"""Kubernetes nodes as rows, and where a vPort's node is plugged in.

Two small additions to the vPort table that the topology work needs:

- ``k8s/node`` rows: each node's InternalIP/ExternalIP addresses and
  Hostname, which the topology producer matches against the switches'
  LLDP neighbours and neighbour tables (it reads the rows; the Kubernetes
  collector never talks to it);
- :class:`Locating`: puts a ``NodeLocator``'s answers into vPort rows
  (``switch``/``port`` of the pod's node; the real ``mac``/``vlan`` when a
  switch resolved the pod's address), and says which rows a
  ``LocationChange`` touches.  The leaf-list values are shared between the
  rows of one node (150,000 pods on 5,000 nodes: 5,000 lists, not 300,000).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator, Mapping

from core.ports.topology import NodeLocation, NodeLocator

from .vports import VPORT_VLAN, dummy_mac

__all__ = ["Locating", "gc_paused", "node_row", "without_location"]

_LOCATION_LEAVES = ("switch", "port")
_DUMMY = "88:88:88:"


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Hold the cyclic garbage collector for a bulk rewrite (it runs again, and catches up, afterwards)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def node_row(node: Mapping) -> dict:
    """The ``k8s/node`` leaves of a raw Node object (status.addresses by type)."""
    internal, external, hostname = [], [], ""
    name = str((node.get("metadata") or {}).get("name") or "")
    for entry in ((node.get("status") or {}).get("addresses") or ()):
        if not isinstance(entry, Mapping):
            continue
        kind, address = entry.get("type"), str(entry.get("address") or "")
        if not address:
            continue
        if kind == "InternalIP" and address not in internal:
            internal.append(address)
        elif kind == "ExternalIP" and address not in external:
            external.append(address)
        elif kind == "Hostname" and address != name:
            hostname = address
    row: dict = {"internal-ip": internal}
    if external:
        row["external-ip"] = external
    if hostname:
        row["hostname"] = hostname
    return row


class Locating:
    """Adds location leaves to vPort rows from a NodeLocator."""

    def __init__(self, locator: NodeLocator) -> None:
        self.locator = locator
        self._lists: dict[NodeLocation, tuple[list[str], list[str]]] = {}

    def apply(self, row: dict, cluster: str, node: str, ip: str) -> dict:
        """``row`` with switch/port (when the node is placed) and the real mac/vlan (when known)."""
        where = self.locator.location(cluster, node) if node else None
        if where is not None:
            lists = self._lists.get(where)
            if lists is None:
                if len(self._lists) > 100_000:
                    self._lists.clear()
                lists = self._lists[where] = (list(where.switches), list(where.ports))
            row["switch"], row["port"] = lists
        endpoint = self.locator.endpoint(ip)
        if endpoint is not None:
            row["mac"], row["vlan"] = endpoint.mac, endpoint.vlan
        return row

    def changes(self, current: Mapping, cluster: str, node: str, ip: str) -> tuple[dict, bool]:
        """(leaves to set, whether switch/port must go) to bring a stored row to what the locator says now.

        Written out rather than built on ``apply``: a relocation runs it for every row of the table.
        """
        leaves: dict = {}
        where = self.locator.location(cluster, node) if node else None
        if where is not None:
            lists = self._lists.get(where)
            if lists is None:
                lists = self._lists[where] = (list(where.switches), list(where.ports))
            if current.get("switch") != lists[0]:
                leaves["switch"] = lists[0]
            if current.get("port") != lists[1]:
                leaves["port"] = lists[1]
        endpoint = self.locator.endpoint(ip)
        if endpoint is not None:
            if current.get("mac") != endpoint.mac or current.get("vlan") != endpoint.vlan:
                leaves["mac"], leaves["vlan"] = endpoint.mac, endpoint.vlan
        elif current.get("vlan") != VPORT_VLAN or not str(current.get("mac")).startswith(_DUMMY):
            leaves["mac"], leaves["vlan"] = dummy_mac(ip), VPORT_VLAN
        return leaves, where is None and "switch" in current


def without_location(row: Mapping) -> Mapping:
    """A vPort row for the time machine: where the node was plugged in is kept once, in attachment versions."""
    if "switch" not in row and "port" not in row:
        return row
    out = dict(row)
    for leaf in _LOCATION_LEAVES:
        out.pop(leaf, None)
    return out
