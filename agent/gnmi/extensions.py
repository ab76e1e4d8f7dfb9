"""gNMI extensions (gnmi_ext.proto): which RPC takes which, and none is silently ignored.

| extension           | Get | Set | Subscribe | Capabilities |
|---------------------|-----|-----|-----------|--------------|
| History             | yes (snapshot_time) | refused | yes | refused |
| Depth               | yes | INVALID_ARGUMENT (gnmi-depth.md 3.3) | yes | INVALID_ARGUMENT |
| Commit              | INVALID_ARGUMENT | yes | INVALID_ARGUMENT | INVALID_ARGUMENT |
| MasterArbitration   | INVALID_ARGUMENT | yes | INVALID_ARGUMENT | INVALID_ARGUMENT |
| registered_ext, and any extension our gnmi_ext.proto does not know (a newer field) | UNIMPLEMENTED, naming it |

`parse(rpc, extensions)` checks a request's extensions and returns them
by kind; `MasterArbitration` (gnmi-master-arbitration.md) keeps the
highest election id seen per role and refuses a Set from a lower one.
"""
from __future__ import annotations

from dataclasses import dataclass

from .paths import PathError
from agent.gnmi_proto import gnmi_ext_pb2

_ALLOWED = {
    "Get": {"history", "depth"},
    "Set": {"commit", "master_arbitration"},
    "Subscribe": {"history", "depth"},
    "Capabilities": set(),
}
_NAMES = {
    "history": "History", "depth": "Depth", "commit": "Commit", "master_arbitration": "MasterArbitration",
    "registered_ext": "RegisteredExtension",
}


@dataclass
class Extensions:
    """The checked extensions of one request."""

    history: object = None
    depth: int = 0  # 0: no limit (also what Depth level 0 means)
    commit: object = None
    arbitration: object = None


def parse(rpc: str, extensions) -> Extensions:
    """Check a request's extensions for `rpc`; PathError names any that is not served there."""
    out = Extensions()
    for ext in extensions:
        unknown = _unknown_fields(ext)
        if unknown:
            raise PathError("UNIMPLEMENTED", f"gNMI extension field {unknown} is not supported by this target "
                            "(known: History, Depth, Commit, MasterArbitration)")
        kind = ext.WhichOneof("ext")
        if kind is None:
            raise PathError("INVALID_ARGUMENT", "an empty gNMI extension")
        if kind == "registered_ext":
            raise PathError("UNIMPLEMENTED", f"registered extension {ext.registered_ext.id} is not supported")
        if kind not in _ALLOWED[rpc]:
            raise PathError("INVALID_ARGUMENT", f"the {_NAMES[kind]} extension does not apply to {rpc}")
        if kind == "history":
            out.history = ext.history
        elif kind == "depth":
            out.depth = ext.depth.level
        elif kind == "commit":
            out.commit = ext.commit
        elif kind == "master_arbitration":
            out.arbitration = ext.master_arbitration
    return out


def _unknown_fields(message) -> list[int]:
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # pragma: no cover - older protobuf
        return []
    return sorted({f.field_number for f in UnknownFieldSet(message)})


class MasterArbitration:
    """Per-role election ids (gnmi-master-arbitration.md 3.2): the highest seen is the master."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}

    def check(self, arbitration) -> None:
        """Accept (and remember) an election id >= the stored one for its role; PERMISSION_DENIED otherwise."""
        if arbitration is None:
            return  # "If there is no arbitration extension ... the Set request should be accepted"
        if not arbitration.HasField("election_id"):
            raise PathError("INVALID_ARGUMENT", "MasterArbitration without an election_id")
        role = arbitration.role.id if arbitration.HasField("role") else ""
        eid = (arbitration.election_id.high << 64) | arbitration.election_id.low
        highest = self._highest.get(role, -1)
        if eid < highest:
            raise PathError("PERMISSION_DENIED", f"election_id {eid} is lower than the master's {highest} for role "
                            f"{role or '(default)'}: not the master")
        self._highest[role] = eid


def rollback_seconds(duration, default: float) -> float:
    """A google.protobuf.Duration in seconds (the default when unset)."""
    if duration is None or (duration.seconds == 0 and duration.nanos == 0):
        return default
    return duration.seconds + duration.nanos / 1e9


__all__ = ["Extensions", "MasterArbitration", "parse", "rollback_seconds", "gnmi_ext_pb2"]
