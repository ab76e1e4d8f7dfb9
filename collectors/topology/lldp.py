"""LLDP neighbours from lldpd, read with ``lldpcli -f json0 show neighbors details``.

lldpd (Debian's package) runs on the switch and keeps the neighbour table;
``lldpcli`` talks to it over its control socket.  We read its ``json0``
format, the one lldpcli documents as stable (every value in a list, one
shape whatever the number of interfaces), rather than ``json``, whose shape
changes with one or several neighbours.

The source is on by default when lldpd's control socket exists at its
default path (or the one given with ``--lldp-socket``); otherwise it says
why it is unavailable, and the agent carries on with the other sources.
Malformed output is an error of this source only: the entries that do not
parse are skipped and counted, a document that is not json0 at all leaves
the last good neighbours in use for ``keep_last`` seconds.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from dataclasses import dataclass

__all__ = ["DEFAULT_SOCKETS", "LldpFormatError", "LldpNeighbor", "LldpSource", "SourceReport", "parse_neighbors"]

#: lldpd's compiled-in control socket paths (Debian: /run/lldpd.socket)
DEFAULT_SOCKETS = ("/run/lldpd.socket", "/var/run/lldpd.socket")
#: capabilities that make a neighbour a network device rather than a server
NETWORK_CAPABILITIES = frozenset({"Bridge", "Router"})


class LldpFormatError(ValueError):
    """lldpcli's output is not the json0 document we asked for."""


@dataclass(frozen=True, slots=True)
class LldpNeighbor:
    """One neighbour on one local port, as lldpd reports it."""

    port: str
    chassis_id: str
    chassis_id_type: str
    system_name: str
    management_addresses: tuple[str, ...]
    port_id: str
    port_id_type: str
    port_description: str
    capabilities: frozenset[str] = frozenset()   # enabled ones (Bridge, Router, Station...)

    @property
    def network_device(self) -> bool:
        """Whether it says it bridges or routes (a switch, or a server with a bridge)."""
        return bool(self.capabilities & NETWORK_CAPABILITIES)


@dataclass
class SourceReport:
    """What a source read: its data (None when it could not read) and its health."""

    status: str            # up | unavailable | error
    detail: str
    data: object = None
    entries: int = 0
    at: float = 0.0


def _values(node: object, name: str) -> list:
    """``node[name]`` as json0 has it: a list of objects (anything else is treated as absent)."""
    if not isinstance(node, dict):
        return []
    value = node.get(name)
    return value if isinstance(value, list) else []


def _first(node: object, name: str, field: str = "value") -> str:
    for item in _values(node, name):
        if isinstance(item, dict) and isinstance(item.get(field), (str, int)):
            return str(item[field])
    return ""


def _one_neighbor(entry: object) -> LldpNeighbor:
    if not isinstance(entry, dict):
        raise ValueError("an interface entry is not an object")
    port = entry.get("name")
    if not isinstance(port, str) or not port:
        raise ValueError("an interface entry has no name")
    chassis = next((c for c in _values(entry, "chassis") if isinstance(c, dict)), None)
    if chassis is None:
        raise ValueError(f"neighbour on {port} has no chassis")
    ident = next((i for i in _values(chassis, "id") if isinstance(i, dict)), {})
    chassis_id = str(ident.get("value") or "")
    if not chassis_id:
        raise ValueError(f"neighbour on {port} has no chassis id")
    addresses = tuple(str(a["value"]) for a in _values(chassis, "mgmt-ip")
                      if isinstance(a, dict) and isinstance(a.get("value"), str) and a["value"])
    caps = frozenset(str(c.get("type")) for c in _values(chassis, "capability")
                     if isinstance(c, dict) and c.get("enabled") is True and c.get("type"))
    port_node = next((p for p in _values(entry, "port") if isinstance(p, dict)), {})
    port_ident = next((i for i in _values(port_node, "id") if isinstance(i, dict)), {})
    return LldpNeighbor(
        port=port, chassis_id=chassis_id, chassis_id_type=str(ident.get("type") or ""),
        system_name=_first(chassis, "name"), management_addresses=addresses,
        port_id=str(port_ident.get("value") or ""), port_id_type=str(port_ident.get("type") or ""),
        port_description=_first(port_node, "descr"), capabilities=caps,
    )


def parse_neighbors(text: str) -> tuple[list[LldpNeighbor], list[str]]:
    """Neighbours of ``lldpcli -f json0 show neighbors details`` and the problems of entries skipped.

    Raises LldpFormatError when the text is not a json0 neighbours document.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LldpFormatError(f"lldpcli output is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("lldp"), list):
        raise LldpFormatError("lldpcli output has no json0 'lldp' list (was it run with -f json0?)")
    neighbors: list[LldpNeighbor] = []
    problems: list[str] = []
    for block in doc["lldp"]:
        if not isinstance(block, dict):
            problems.append("an 'lldp' entry is not an object")
            continue
        interfaces = block.get("interface", [])
        if not isinstance(interfaces, list):
            problems.append("'interface' is not a list")
            continue
        for entry in interfaces:
            try:
                neighbors.append(_one_neighbor(entry))
            except ValueError as exc:
                problems.append(str(exc))
    return neighbors, problems


class LldpSource:
    """Reads lldpd's neighbours; ``await read()`` -> SourceReport with ``data`` a list of LldpNeighbor."""

    name = "lldp"

    def __init__(self, socket_path: str | None = None, *, lldpcli: str = "lldpcli", timeout: float = 5.0,
                 keep_last: float = 120.0) -> None:
        self.explicit = socket_path is not None
        self.socket_path = socket_path
        self.lldpcli = lldpcli
        self.timeout = timeout
        self.keep_last = keep_last
        self._last_good: tuple[float, list[LldpNeighbor]] | None = None

    def _socket(self) -> str | None:
        if self.socket_path:
            return self.socket_path
        return next((p for p in DEFAULT_SOCKETS if os.path.exists(p)), None)

    async def read(self) -> SourceReport:
        now = time.time()
        sock = self._socket()
        if sock is None:
            return SourceReport("unavailable", f"lldpd's control socket ({DEFAULT_SOCKETS[0]}) does not exist: "
                                "lldpd is not running here (or give --lldp-socket PATH)")
        binary = shutil.which(self.lldpcli)
        if binary is None:
            return SourceReport("unavailable", f"{self.lldpcli} is not installed (Debian package lldpd)")
        if not os.path.exists(sock):
            return self._failed(f"lldpd does not answer: its control socket {sock} is gone (lldpd stopped?)", now)
        try:
            proc = await asyncio.create_subprocess_exec(
                binary, "-u", sock, "-f", "json0", "show", "neighbors", "details",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            return self._failed(f"cannot run {binary}: {exc.strerror or exc}", now)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return self._failed(f"lldpcli did not answer within {self.timeout:g}s", now)
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip().splitlines()
            return self._failed(f"lldpcli failed ({proc.returncode}): {why[-1] if why else 'no message'}", now)
        return self.parse(out.decode(errors="replace"), now)

    def parse(self, text: str, now: float | None = None) -> SourceReport:
        """A report from lldpcli's output (the part of ``read`` after the process; tests feed it directly)."""
        now = time.time() if now is None else now
        try:
            neighbors, problems = parse_neighbors(text)
        except LldpFormatError as exc:
            return self._failed(str(exc), now)
        self._last_good = (now, neighbors)
        if problems:
            detail = f"{len(neighbors)} neighbours; skipped {len(problems)} malformed: {problems[0]}"
            return SourceReport("error", detail, neighbors, len(neighbors), now)
        return SourceReport("up", f"{len(neighbors)} neighbours", neighbors, len(neighbors), now)

    def _failed(self, why: str, now: float) -> SourceReport:
        """An error; the last good neighbours stay in use for ``keep_last`` seconds (a blip loses nothing)."""
        last = self._last_good
        if last is not None and now - last[0] <= self.keep_last:
            return SourceReport("error", f"{why}; using the neighbours read {now - last[0]:.0f}s ago",
                                last[1], len(last[1]), last[0])
        return SourceReport("error", why)
