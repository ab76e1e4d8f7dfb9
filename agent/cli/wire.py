"""gNMI messages as the CLI reads and writes them: paths, values, rows, fabric-wide answers.

Shared by both backends (the in-process one reads other members' answers
through agent.forward in the same shapes): responses are read whatever
their shape -- one update per leaf, per list entry, or one subtree for the
whole path all turn into the same rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.gnmi_proto import gnmi_ext_pb2, gnmi_pb2

from .commands import Table

if TYPE_CHECKING:
    from .backend import Edit

JSON_IETF = gnmi_pb2.Encoding.Value("JSON_IETF")


@dataclass
class FabricAnswer:
    """A fabric-wide answer: (member, row) pairs, and the members that did not answer with the reason."""

    rows: list[tuple[str, dict]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


def set_request(edit: "Edit", target: str | None = None) -> gnmi_pb2.SetRequest:
    """The gNMI Set of one CLI edit (an update of the entry's leaves, or a delete)."""
    path = to_path(edit.path, edit.key)
    prefix = gnmi_pb2.Path(target=target) if target else None
    if edit.op == "delete" and edit.key:
        return gnmi_pb2.SetRequest(prefix=prefix, delete=[path])
    value = {**edit.key, **edit.leaves}
    val = gnmi_pb2.TypedValue(json_ietf_val=json.dumps(value).encode())
    return gnmi_pb2.SetRequest(prefix=prefix, update=[gnmi_pb2.Update(path=path, val=val)])


def snapshot_extension(t: float) -> gnmi_ext_pb2.Extension:
    """The History extension asking for the data as it was at epoch second ``t``."""
    return gnmi_ext_pb2.Extension(history=gnmi_ext_pb2.History(snapshot_time=int(t * 1e9)))


def fabric_answer(notifications: list, table: Table, target: str) -> FabricAnswer:
    """Rows of a fabric-wide answer, by the member that answered (the notifications' target).

    A member that did not answer comes as a notification whose updates are
    ``/fabric/node[name=M]/state`` and ``.../forward-error`` (agent.forward):
    it is listed in ``missing`` with that reason, never dropped.
    """
    groups: dict[str, list] = {}
    for n in notifications:
        groups.setdefault(n.prefix.target if n.HasField("prefix") and n.prefix.target else target, []).append(n)
    answer = FabricAnswer()
    for member in sorted(groups):
        reason = _forward_error(groups[member], member)
        if reason is not None:
            answer.missing.append((member, reason))
            continue
        for row in collect_rows(groups[member], table).values():
            answer.rows.append((member, row))
    return answer


def _forward_error(notifications: list, member: str) -> str | None:
    state = error = None
    for n in notifications:
        for update in n.update:
            names = [_local(e.name) for e in update.path.elem]
            if names[:2] == ["fabric", "node"] and len(names) == 3 and update.path.elem[1].key.get("name") == member:
                if names[2] == "forward-error":
                    error = decode(update.val)
                elif names[2] == "state":
                    state = decode(update.val)
    if error is None:
        return None
    return f"{state}: {error}" if state == "offline" and "offline" not in str(error) else str(error)


# -- paths and values ------------------------------------------------------------------
def to_path(schema_path: str, key: dict | None = None) -> gnmi_pb2.Path:
    """A gNMI Path for a schema path, keys on its last element."""
    names = schema_path.strip("/").split("/")
    elems = [gnmi_pb2.PathElem(name=n) for n in names]
    if key:
        elems[-1] = gnmi_pb2.PathElem(name=names[-1], key={k: str(v) for k, v in key.items()})
    return gnmi_pb2.Path(elem=elems)


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def _strip(value: object) -> object:
    """JSON with module prefixes removed from member names."""
    if isinstance(value, dict):
        return {_local(k): _strip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def decode(tv: gnmi_pb2.TypedValue) -> object:
    """A TypedValue as plain Python (JSON decoded, module prefixes dropped)."""
    kind = tv.WhichOneof("value")
    if kind in ("json_ietf_val", "json_val"):
        return _strip(json.loads(getattr(tv, kind) or b"null"))
    if kind == "leaflist_val":
        return [decode(e) for e in tv.leaflist_val.element]
    if kind == "decimal_val":
        return tv.decimal_val.digits / (10 ** tv.decimal_val.precision)
    if kind is None:
        return None
    if kind in ("bytes_val", "any_val", "proto_bytes"):
        return None
    return getattr(tv, kind)


def _elems(n: gnmi_pb2.Notification, path: gnmi_pb2.Path) -> list:
    prefix = list(n.prefix.elem) if n.HasField("prefix") else []
    return prefix + list(path.elem)


def _flatten(entry: dict) -> dict:
    """A list entry's leaves with its containers' leaves (e.g. state) merged in."""
    row: dict = {}
    for name, value in entry.items():
        if isinstance(value, dict):
            row.update(_flatten(value))
        else:
            row[name] = value
    return row


def collect_rows(notifications: list, table: Table) -> dict[tuple, dict]:
    """Rows of a list from notifications, whatever level the updates are at."""
    want = [_local(n) for n in table.path.strip("/").split("/")]
    depth = len(want)
    rows: dict[tuple, dict] = {}

    def add(row: dict, ts: float, key: dict | None = None) -> None:
        if key:
            row = {**{k: v for k, v in key.items() if k not in row}, **row}
        ident = tuple(str(row.get(k)) for k in table.keys)
        merged = rows.setdefault(ident, {})
        merged.update(row)
        merged["_ts"] = max(merged.get("_ts") or 0.0, ts) or None

    for n in notifications:
        ts = n.timestamp / 1e9 if n.timestamp else 0.0
        for update in n.update:
            elems = _elems(n, update.path)
            names = [_local(e.name) for e in elems]
            value = decode(update.val)
            if len(names) <= depth and names == want[: len(names)]:
                for name in want[len(names):]:
                    value = value.get(name) if isinstance(value, dict) else None
                if value is None:
                    continue
                if isinstance(value, dict):
                    key = _keys(elems[:depth]) if len(names) == depth else None
                    add(_flatten(value), ts, key)
                elif isinstance(value, list):
                    for entry in value:
                        if isinstance(entry, dict):
                            add(_flatten(entry), ts)
            elif names[:depth] == want:
                key = _keys(elems[:depth])
                rest = names[depth:]
                row = _flatten(value) if isinstance(value, dict) else {rest[-1]: value}
                add(row, ts, key)
    return rows


def collect_container(notifications: list, table: Table) -> dict:
    """A container's leaves from notifications."""
    want = [_local(n) for n in table.path.strip("/").split("/")]
    depth = len(want)
    out: dict = {}
    for n in notifications:
        for update in n.update:
            names = [_local(e.name) for e in _elems(n, update.path)]
            value = decode(update.val)
            if len(names) <= depth and names == want[: len(names)]:
                for name in want[len(names):]:
                    value = value.get(name) if isinstance(value, dict) else None
                if isinstance(value, dict):
                    out.update(_flatten(value))
            elif names[:depth] == want and len(names) > depth:
                if isinstance(value, dict):
                    out.update(_flatten(value))
                else:
                    out[names[-1]] = value
    return out


def _deleted_keys(n: gnmi_pb2.Notification, table: Table) -> list[dict]:
    """Keys of list entries a notification deletes."""
    want = [_local(x) for x in table.path.strip("/").split("/")]
    out = []
    for path in n.delete:
        elems = _elems(n, path)
        names = [_local(e.name) for e in elems]
        if names == want and elems[-1].key:
            out.append(_keys(elems))
    return out


def _keys(elems) -> dict:
    """The list keys along a path (a nested list's entry is named by its parents' keys too)."""
    out: dict = {}
    for e in elems:
        out.update(e.key)
    return out
