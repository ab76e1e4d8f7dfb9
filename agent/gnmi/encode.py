"""Datastore nodes -> gNMI Notifications, written straight to protobuf wire bytes.

Subscribe fan-out is the hot path: building a protobuf object per Update
and serializing it costs several times more than writing the few fields
an Update has.  So this module writes the wire format itself (varints
and length-delimited fields of gnmi.proto; field numbers below) and
caches the bytes of every path element that does not depend on a key.
The result is parsed by any gNMI client as the messages of
pygnmi.spec.v080.gnmi_pb2; tests check it against them.

Encodings:
- JSON_IETF: one Update per node, its leaves as an RFC 7951 object
  (members of the top-level object module-qualified, "kubefabric-vport:entity";
  64-bit integers as strings);
- JSON: the same with plain member names and 64-bit integers as numbers;
- PROTO: one Update per leaf with a scalar TypedValue (uint_val, int_val,
  bool_val, string_val, double_val, leaflist_val).
"""
from __future__ import annotations

import json
import struct
import time

from agent.gnmi_proto import gnmi_pb2

from core.schema import NodeInfo
from core.datastore.tree import build_tree, leaf_json

from .paths import key_text

JSON = gnmi_pb2.Encoding.Value("JSON")
JSON_IETF = gnmi_pb2.Encoding.Value("JSON_IETF")
PROTO = gnmi_pb2.Encoding.Value("PROTO")
SUPPORTED = (JSON, JSON_IETF, PROTO)

# one-byte tags: (field number << 3) | wire type
_T_NOTIF_TS = b"\x08"  # Notification.timestamp (1, varint)
_T_NOTIF_PREFIX = b"\x12"  # Notification.prefix (2)
_T_NOTIF_UPDATE = b"\x22"  # Notification.update (4)
_T_NOTIF_DELETE = b"\x2a"  # Notification.delete (5)
_T_UPDATE_PATH = b"\x0a"  # Update.path (1)
_T_UPDATE_VAL = b"\x1a"  # Update.val (3)
_T_UPDATE_DUP = b"\x20"  # Update.duplicates (4, varint)
_T_PATH_ORIGIN = b"\x12"  # Path.origin (2)
_T_PATH_ELEM = b"\x1a"  # Path.elem (3)
_T_PATH_TARGET = b"\x22"  # Path.target (4)
_T_ELEM_NAME = b"\x0a"  # PathElem.name (1)
_T_ELEM_KEY = b"\x12"  # PathElem.key map entry (2)
_T_MAP_K = b"\x0a"
_T_MAP_V = b"\x12"
_T_TV_STRING = b"\x0a"  # TypedValue.string_val (1)
_T_TV_INT = b"\x10"  # int_val (2)
_T_TV_UINT = b"\x18"  # uint_val (3)
_T_TV_BOOL = b"\x20"  # bool_val (4)
_T_TV_LEAFLIST = b"\x42"  # leaflist_val (8)
_T_TV_JSON = b"\x52"  # json_val (10)
_T_TV_JSON_IETF = b"\x5a"  # json_ietf_val (11)
_T_TV_DOUBLE = b"\x71"  # double_val (14, fixed64)
_T_ARRAY_ELEM = b"\x0a"  # ScalarArray.element (1)
_T_SUB_UPDATE = b"\x0a"  # SubscribeResponse.update (1)
_T_GET_NOTIF = b"\x0a"  # GetResponse.notification (1)

SYNC_RESPONSE = b"\x18\x01"  # SubscribeResponse{sync_response: true}

_SMALL = [bytes((i,)) for i in range(128)]
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_quote = json.encoder.encode_basestring  # C implementation when available

try:  # the C encoder without JSONEncoder.encode's per-call Python overhead
    from json.encoder import c_make_encoder as _c_make_encoder

    _c_encode = _c_make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)
except (ImportError, TypeError):  # pragma: no cover - pure-Python json
    _c_encode = None


def json_object(values: dict) -> str:
    """A node's leaves as compact JSON (the hot path of JSON and JSON_IETF Updates)."""
    if _c_encode is not None:
        return _c_encode(values, 0)[0]
    return _dumps(values)


def varint(n: int) -> bytes:
    """Protobuf base-128 varint (negative numbers as 64-bit two's complement)."""
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else varint(n)) + payload


def _string_field(tag: bytes, text: str) -> bytes:
    return field(tag, text.encode())


def _vlen(n: int) -> bytes:
    return _SMALL[n] if n < 128 else varint(n)


def update_field(path: bytes, typed_value: bytes, dup: bytes = b"") -> bytes:
    """Notification.update field: Update{path, val, duplicates} in one allocation."""
    n2, vl = len(path), len(typed_value)
    body = 1 + len(_vlen(n2)) + n2 + 1 + len(_vlen(vl)) + vl + len(dup)
    return b"".join((_T_NOTIF_UPDATE, _vlen(body), _T_UPDATE_PATH, _vlen(n2), path,
                     _T_UPDATE_VAL, _vlen(vl), typed_value, dup))


def scalar_typed_value(value: object, unsigned: bool = False) -> bytes:
    """TypedValue payload for a scalar or a leaf-list (PROTO encoding)."""
    if type(value) is str:
        b = value.encode()
        return _T_TV_STRING + _vlen(len(b)) + b
    if value is True or value is False:
        return _T_TV_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if value >= 0 and (unsigned or value >= 1 << 63):  # int_val cannot hold it
            return _T_TV_UINT + varint(value)
        return _T_TV_INT + varint(value)
    if isinstance(value, float):
        return _T_TV_DOUBLE + struct.pack("<d", value)
    if isinstance(value, (list, tuple)):
        body = b"".join(field(_T_ARRAY_ELEM, scalar_typed_value(v, unsigned)) for v in value)
        return field(_T_TV_LEAFLIST, body)
    if value is None:  # YANG empty
        return _T_TV_BOOL + b"\x01"
    return _string_field(_T_TV_STRING, str(value))


def typed_value_from_proto(tv: gnmi_pb2.TypedValue) -> object:
    """A scalar TypedValue (as a client sends in Set) -> a Python value."""
    kind = tv.WhichOneof("value")
    if kind == "leaflist_val":
        return [typed_value_from_proto(e) for e in tv.leaflist_val.element]
    if kind == "decimal_val":
        d = tv.decimal_val
        return d.digits / (10 ** d.precision)
    if kind in ("string_val", "int_val", "uint_val", "bool_val", "float_val", "double_val", "ascii_val"):
        return getattr(tv, kind)
    raise ValueError(f"unsupported TypedValue {kind}")


class Encoder:
    """Writes Updates, deletes and Notifications for one RPC's encoding and prefix."""

    def __init__(self, encoding: int, origin: str = "", target: str = "") -> None:
        if encoding not in SUPPORTED:
            raise ValueError(f"unsupported encoding {encoding}")
        self.encoding = encoding
        self.ietf = encoding == JSON_IETF
        self.origin = origin
        prefix = b""
        if origin:
            prefix += _string_field(_T_PATH_ORIGIN, origin)
        if target:
            prefix += _string_field(_T_PATH_TARGET, target)
        self._prefix_field = field(_T_NOTIF_PREFIX, prefix) if prefix else b""
        self._templates: dict[str, list] = {}
        self._leaf_names: dict[tuple[str, str], bytes] = {}
        self._paths: dict[tuple, bytes] = {}  # (schema path, key) -> Path bytes, bounded

    PATH_CACHE = 200_000

    # -- paths -------------------------------------------------------------------
    def _template(self, info: NodeInfo) -> list:
        tmpl = self._templates.get(info.path)
        if tmpl is None:
            tmpl = []
            chain = []
            node = info
            while node is not None:
                chain.append(node)
                node = node.parent
            pos = 0
            const = b""
            for node in reversed(chain):
                name = _string_field(_T_ELEM_NAME, node.name)
                if node.own_keys:
                    if const:
                        tmpl.append(const)
                        const = b""
                    keys = [(_string_field(_T_MAP_K, k), pos + i) for i, k in enumerate(node.own_keys)]
                    tmpl.append((name, keys))
                    pos += len(node.own_keys)
                else:
                    const += field(_T_PATH_ELEM, name)
            if const:
                tmpl.append(const)
            self._templates[info.path] = tmpl
        return tmpl

    def path_body(self, info: NodeInfo, key: tuple, leaf: str | None = None) -> bytes:
        """Path message bytes (no origin: the origin travels in the Notification prefix)."""
        if leaf:
            return self.node_path(info, key) + self._leaf_elem(info, leaf)
        return self.node_path(info, key)

    def node_path(self, info: NodeInfo, key: tuple) -> bytes:
        """Path bytes of a node, cached: a burst re-encodes the same list entries."""
        ident = (info.path, key)
        cached = self._paths.get(ident)
        if cached is not None:
            return cached
        if len(self._paths) >= self.PATH_CACHE:
            self._paths.clear()
        parts = []
        for part in self._template(info):
            if type(part) is bytes:
                parts.append(part)
                continue
            name, keys = part
            elem = [name]
            for kfield, idx in keys:
                v = key[idx]
                vtext = v if type(v) is str else key_text(v)
                elem.append(field(_T_ELEM_KEY, kfield + field(_T_MAP_V, vtext.encode())))
            parts.append(field(_T_PATH_ELEM, b"".join(elem)))
        out = self._paths[ident] = b"".join(parts)
        return out

    def _leaf_elem(self, info: NodeInfo, leaf: str) -> bytes:
        ident = (info.path, leaf)
        b = self._leaf_names.get(ident)
        if b is None:
            b = self._leaf_names[ident] = field(_T_PATH_ELEM, _string_field(_T_ELEM_NAME, leaf))
        return b

    # -- updates -----------------------------------------------------------------
    def node_updates(self, info: NodeInfo, key: tuple, values: dict, out: list, duplicates: int = 0) -> None:
        """Append the Update fields for these leaves of a node to `out`."""
        if not values:
            return
        dup = (_T_UPDATE_DUP + varint(duplicates)) if duplicates else b""
        if self.encoding == PROTO:
            base = self.node_path(info, key)
            leaves = info.leaves
            leaf_elem = self._leaf_elem
            for name, value in values.items():
                li = leaves.get(name)
                tv = scalar_typed_value(value, li is not None and li.base == "uint")
                out.append(update_field(base + leaf_elem(info, name), tv, dup))
            return
        js = (self._rfc7951(info, values) if self.ietf else json_object(values)).encode()
        n1 = len(js)
        path = self.node_path(info, key)
        n2 = len(path)
        vl = n1 + (2 if n1 < 128 else 1 + len(varint(n1)))  # TypedValue: tag, length, JSON
        body = (1 + (1 if n2 < 128 else len(varint(n2))) + n2
                + 1 + (1 if vl < 128 else len(varint(vl))) + vl + len(dup))
        out.append(b"".join((
            _T_NOTIF_UPDATE, _SMALL[body] if body < 128 else varint(body),
            _T_UPDATE_PATH, _SMALL[n2] if n2 < 128 else varint(n2), path,
            _T_UPDATE_VAL, _SMALL[vl] if vl < 128 else varint(vl),
            _T_TV_JSON_IETF if self.ietf else _T_TV_JSON, _SMALL[n1] if n1 < 128 else varint(n1), js, dup)))

    def _rfc7951(self, info: NodeInfo, values: dict) -> str:
        """A node's leaves as an RFC 7951 object: module-qualified members, 64-bit integers as strings.

        Written member by member with each member's qualified, quoted name
        cached: cheaper than renaming the dict and encoding it.
        """
        heads = _HEADS.get(info.path)
        if heads is None:
            heads = _HEADS[info.path] = {n: _quote(f"{info.module}:{n}") + ":" for n in info.leaves}
            _WIDE[info.path] = frozenset(n for n, li in info.leaves.items() if li.bits == 64)
        wide = _WIDE[info.path]
        parts = []
        for k, v in values.items():
            head = heads.get(k)
            if head is None:
                head = _quote(f"{info.module}:{k}") + ":"
            t = type(v)
            if k in wide:
                parts.append(head + _dumps(leaf_json(v, True)))
            elif t is str:
                parts.append(head + _quote(v))
            elif t is bool:
                parts.append(head + ("true" if v else "false"))
            elif t is int:
                parts.append(head + str(v))
            else:
                parts.append(head + _dumps(v))
        return "{" + ",".join(parts) + "}"

    def leaf_update(self, info: NodeInfo, key: tuple, leaf: str, value: object, duplicates: int = 0) -> bytes:
        """One Update for a single leaf (a path that names a leaf)."""
        li = info.leaves.get(leaf)
        if self.encoding == PROTO:
            val = scalar_typed_value(value, li is not None and li.base == "uint")
        else:
            if self.ietf and li is not None:
                value = leaf_json(value, li.is_64bit)
            val = field(_T_TV_JSON_IETF if self.ietf else _T_TV_JSON, _dumps(value).encode())
        dup = (_T_UPDATE_DUP + varint(duplicates)) if duplicates else b""
        return update_field(self.path_body(info, key, leaf), val, dup)

    def subtree_update(self, info: NodeInfo | None, key: tuple, value: object) -> bytes:
        """One Update carrying a JSON subtree at a node (Get); info None means the root."""
        path = self.path_body(info, key) if info is not None else b""
        if self.ietf and info is not None and isinstance(value, dict):
            # RFC 7951: the members of a top-level object are module-qualified
            value = {(k if ":" in k else f"{info.module}:{k}"): v for k, v in value.items()}
        tag = _T_TV_JSON_IETF if self.ietf else _T_TV_JSON
        body = field(_T_UPDATE_PATH, path) + field(_T_UPDATE_VAL, field(tag, _dumps(value).encode()))
        return field(_T_NOTIF_UPDATE, body)

    def delete(self, info: NodeInfo, key: tuple, leaf: str | None = None) -> bytes:
        """A Notification.delete field for a node (or one of its leaves)."""
        return field(_T_NOTIF_DELETE, self.path_body(info, key, leaf))

    # -- messages ----------------------------------------------------------------
    def notification(self, ts: int, items: list[bytes]) -> bytes:
        """Notification payload: timestamp, prefix (origin/target), update and delete fields."""
        return _T_NOTIF_TS + varint(ts or time.time_ns()) + self._prefix_field + b"".join(items)

    def subtree_json(self, schema, root: NodeInfo, root_key: tuple, nodes: list) -> object:
        """JSON value of a node from its flat descendants (Get)."""
        return build_tree(schema, root, root_key, nodes, self.ietf)


_WIDE: dict[str, frozenset] = {}
_HEADS: dict[str, dict[str, str]] = {}  # schema path -> leaf -> '"module:leaf":' 


def subscribe_update(notification: bytes) -> bytes:
    """SubscribeResponse{update: notification} bytes."""
    return field(_T_SUB_UPDATE, notification)


def get_response(notifications: list[bytes]) -> bytes:
    """GetResponse bytes holding these Notification payloads, in order."""
    return b"".join(field(_T_GET_NOTIF, n) for n in notifications)


def pack(encoder: Encoder, ts: int, items: list[bytes], max_bytes: int = 1 << 20, max_updates: int = 2000) -> list[bytes]:
    """Split update/delete fields into as few SubscribeResponses as the limits allow."""
    out = []
    start = 0
    size = 0
    for i, item in enumerate(items):
        size += len(item)
        if i - start + 1 >= max_updates or size >= max_bytes:
            out.append(subscribe_update(encoder.notification(ts, items[start:i + 1])))
            start, size = i + 1, 0
    if start < len(items):
        out.append(subscribe_update(encoder.notification(ts, items[start:])))
    return out
