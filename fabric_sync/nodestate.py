"""Per-node state in etcd: encoding the values, and following the other nodes' keys.

A value is compact JSON; a large one (a switch with thousands of
attachments, a cluster's node list) is stored zlib-compressed, which the
first byte tells apart (JSON starts with ``{``, a zlib stream with 0x78).
:class:`NodeStates` remembers the revision of every (node, kind) it handed
over, so a full re-read (after a compaction or a reconnect) reports exactly
what changed, deletions included, and an older revision never replaces a
newer one.  It interprets nothing: a value is the producer's business.
"""
from __future__ import annotations

import json
import logging
import re
import zlib
from typing import Mapping

from core.ports.fabric import MAX_NODE_STATE_BYTES, FabricEvents

log = logging.getLogger("kubefabric.fabric.nodestate")

#: values larger than this are compressed
COMPRESS_ABOVE = 64 * 1024
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


def encode_state(value: Mapping) -> bytes:
    """A value as stored: compact JSON, or zlib of it when large; ValueError when too large even so."""
    data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    if len(data) > COMPRESS_ABOVE:
        data = zlib.compress(data, 6)
    if len(data) > MAX_NODE_STATE_BYTES:
        raise ValueError(f"node state of {len(data)} bytes (compressed) is over the {MAX_NODE_STATE_BYTES}-byte limit")
    return data


def decode_state(raw: bytes) -> dict | None:
    """A stored value, or None (logged) when it is neither JSON nor zlib'd JSON of an object."""
    try:
        if raw[:1] == b"x":
            raw = zlib.decompress(raw)
        value = json.loads(raw)
    except (ValueError, zlib.error):
        log.error("ignoring a per-node state value that does not decode")
        return None
    return value if isinstance(value, dict) else None


class NodeStates:
    """The (node, kind) -> revision table behind ``FabricEvents.fabric_node_state``."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.events: FabricEvents | None = None
        self._revisions: dict[tuple[str, str], int] = {}

    @staticmethod
    def check_kind(kind: str) -> str:
        """``kind`` when it is a usable key segment, else ValueError."""
        if not _KIND.match(kind):
            raise ValueError(f"invalid node-state kind {kind!r}")
        return kind

    def load(self, states: dict[str, tuple[dict | None, int]], revision: int) -> None:
        """A full read: ``node/kind`` -> (value, mod_revision); what is gone was deleted at ``revision``."""
        seen = set()
        for name, (value, mod) in states.items():
            node, _, kind = name.partition("/")
            seen.add((node, kind))
            self._deliver(node, kind, value, mod)
        for node, kind in [k for k in self._revisions if k not in seen]:
            self._deliver(node, kind, None, revision)

    def apply(self, name: str, value: dict | None, revision: int) -> None:
        """One watch event on ``state/<node>/<kind>`` (value None: deleted)."""
        node, _, kind = name.partition("/")
        self._deliver(node, kind, value, revision)

    def _deliver(self, node: str, kind: str, value: dict | None, revision: int) -> None:
        key = (node, kind)
        held = self._revisions.get(key)
        if held is not None and held >= revision:
            return
        if value is None:
            if held is None:
                return
            del self._revisions[key]
        else:
            self._revisions[key] = revision
        if node == self.node_name or self.events is None:
            return
        report = getattr(self.events, "fabric_node_state", None)
        if report is not None:
            report(node, kind, value, revision)
