"""edit-config: merge, replace, create, delete and remove on an RFC 7951 tree.

`apply_edit(tree, config, ...)` walks `<config>` against the schema and
changes `tree` (a private copy of the target) in place.  It only checks
what the operations themselves require (data-exists, data-missing, keys,
names, type syntax); the datastore validates the result as a whole.
"""
from __future__ import annotations

import copy

from lxml import etree

from core.schema import NodeInfo

from .codec import Codec
from .rpcerror import BASE_NS, RpcError

OPERATION = f"{{{BASE_NS}}}operation"
OPERATIONS = ("merge", "replace", "create", "delete", "remove", "none")


class EditErrors(Exception):
    """Errors collected under error-option continue-on-error."""

    def __init__(self, errors: list[RpcError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


class Editor:
    """One edit-config run: the operations and the error policy."""

    def __init__(self, codec: Codec, default_operation: str = "merge", continue_on_error: bool = False) -> None:
        self.codec = codec
        self.default_operation = default_operation
        self.continue_on_error = continue_on_error
        self.errors: list[RpcError] = []

    def apply(self, tree: dict, config: etree._Element) -> dict:
        """Apply `<config>`'s children to `tree`; returns it (empty top containers dropped)."""
        _refuse_unknown_attributes(config)
        for child in config:
            if not isinstance(child.tag, str):
                continue
            try:
                info = self.codec.top_info(child)
                op = self._op(child, self.default_operation, f"/{self.codec.prefix_of(info)}:{info.name}")
                self._container(tree, info.qualified_name, info, child, op, f"/{self.codec.prefix_of(info)}:{info.name}")
            except RpcError as err:
                self._fail(err)
        for name in [k for k, v in tree.items() if v == {}]:
            del tree[name]
        return tree

    def _fail(self, err: RpcError) -> None:
        if not self.continue_on_error:
            raise err
        self.errors.append(err)

    def _op(self, elem: etree._Element, inherited: str, path: str) -> str:
        op = elem.get(OPERATION)
        if op is None:
            return inherited
        if op not in OPERATIONS or op == "none":
            raise RpcError("bad-attribute", f"unknown operation {op!r}", type="protocol", path=path,
                           path_ns=self.codec.prefixes, info={"bad-attribute": "operation", "bad-element": etree.QName(elem).localname})
        return op

    # -- containers and list entries -----------------------------------------------------
    def _container(self, parent: dict, name: str, info: NodeInfo, elem, op: str, path: str) -> None:
        self._check_config(info, path)
        exists = name in parent
        if op in ("delete", "remove"):
            if not exists and op == "delete":
                raise RpcError("data-missing", f"{info.name} does not exist", path=path, path_ns=self.codec.prefixes)
            parent.pop(name, None)
            return
        if op == "create" and exists:
            raise RpcError("data-exists", f"{info.name} already exists", path=path, path_ns=self.codec.prefixes)
        if op in ("replace", "create"):
            parent[name] = self.codec.from_xml(_without_ops(elem), info, path)
            return
        if op == "none" and not exists:
            _navigable(elem, info.name, path, self.codec.prefixes)
        body = parent.setdefault(name, {})
        self._children(body, info, elem, op, path)
        if op == "none" and not exists and not body:
            del parent[name]

    def _entry(self, parent: dict, info: NodeInfo, elem, op: str, path: str) -> None:
        self._check_config(info, path)
        keys = {}
        prefix = self.codec.prefix_of(info)
        for key in info.own_keys:
            kelem = elem.find(f"{{{self.codec.module_ns[info.module]}}}{key}")
            if kelem is None:
                raise RpcError("missing-element", f"list {info.name} entry without its key {key}",
                               type="protocol", path=path, path_ns=self.codec.prefixes,
                               info={"bad-element": key})
            keys[key] = self.codec.leaf_from_xml(info.leaves[key], kelem, f"{path}/{prefix}:{key}", self.codec.prefixes)
        path += "".join(f"[{prefix}:{k}='{v}']" for k, v in keys.items())
        entries = parent.setdefault(info.name, [])
        index = next((i for i, e in enumerate(entries) if all(e.get(k) == v for k, v in keys.items())), None)
        if op in ("delete", "remove"):
            if index is None:
                if op == "delete":
                    raise RpcError("data-missing", f"{info.name} {_keystr(keys)} does not exist", path=path,
                                   path_ns=self.codec.prefixes)
            else:
                del entries[index]
            if not entries:
                del parent[info.name]
            return
        if op == "create" and index is not None:
            raise RpcError("data-exists", f"{info.name} {_keystr(keys)} already exists", path=path,
                           path_ns=self.codec.prefixes)
        if op in ("replace", "create"):
            body = self.codec.from_xml(_without_ops(elem), info, path)
            if index is None:
                entries.append(body)
            else:
                entries[index] = body
            return
        if index is None:
            if op == "none":
                _navigable(elem, info.name, path, self.codec.prefixes)
            body = dict(keys)
            self._children(body, info, elem, op, path)
            if op != "none" or len(body) > len(keys):
                entries.append(body)
        else:
            self._children(entries[index], info, elem, op, path)
        if not entries:
            del parent[info.name]

    def _children(self, body: dict, info: NodeInfo, elem, inherited: str, path: str) -> None:
        prefix = self.codec.prefix_of(info)
        for child in elem:
            if not isinstance(child.tag, str):
                continue
            try:
                name = self.codec.child_name(child, info, path)
                cpath = f"{path}/{prefix}:{name}"
                op = self._op(child, inherited, cpath)
                leaf = info.leaves.get(name)
                if leaf is not None:
                    if name in info.own_keys:
                        continue
                    self._leaf(body, leaf, child, op, cpath)
                    continue
                cinfo = info.children[name]
                if cinfo.kind == "list":
                    self._entry(body, cinfo, child, op, cpath)
                else:
                    self._container(body, name, cinfo, child, op, cpath)
            except RpcError as err:
                self._fail(err)

    def _leaf(self, body: dict, leaf, elem, op: str, path: str) -> None:
        if not leaf.config:
            raise RpcError("invalid-value", f"{leaf.name} is state data (config false) and cannot be edited",
                           path=path, path_ns=self.codec.prefixes, info={"bad-element": leaf.name})
        if leaf.is_list:
            values = body.setdefault(leaf.name, [])
            if op in ("delete", "remove") and not (elem.text or "").strip() and not len(elem):
                if op == "delete" and not values:
                    raise RpcError("data-missing", f"{leaf.name} has no values", path=path, path_ns=self.codec.prefixes)
                del body[leaf.name]
                return
            value = self.codec.leaf_from_xml(leaf, elem, path, self.codec.prefixes)
            present = value in values
            if op in ("delete", "remove"):
                if not present and op == "delete":
                    raise RpcError("data-missing", f"{leaf.name} has no value {value!r}", path=path, path_ns=self.codec.prefixes)
                if present:
                    values.remove(value)
            elif op == "create" and present:
                raise RpcError("data-exists", f"{leaf.name} already has value {value!r}", path=path, path_ns=self.codec.prefixes)
            elif op != "none" and not present:
                values.append(value)
            if not values:
                del body[leaf.name]
            return
        exists = leaf.name in body
        if op in ("delete", "remove"):
            if not exists and op == "delete":
                raise RpcError("data-missing", f"{leaf.name} is not set", path=path, path_ns=self.codec.prefixes)
            body.pop(leaf.name, None)
            return
        value = self.codec.leaf_from_xml(leaf, elem, path, self.codec.prefixes)
        if op == "create" and exists:
            raise RpcError("data-exists", f"{leaf.name} is already set", path=path, path_ns=self.codec.prefixes)
        if op != "none":
            body[leaf.name] = value

    def _check_config(self, info: NodeInfo, path: str) -> None:
        if not info.config:
            raise RpcError("invalid-value", f"{info.name} is state data (config false) and cannot be edited",
                           path=path, path_ns=self.codec.prefixes, info={"bad-element": info.name})


def _refuse_unknown_attributes(config: etree._Element) -> None:
    """Only the NETCONF-namespace operation attribute means something in <config> (RFC 6241 7.2).

    An `operation` attribute without the namespace (or in another one) would
    otherwise be ignored and the edit answered `<ok/>` as a merge: refused as
    unknown-attribute instead, as is any other attribute.
    """
    for elem in config.iterdescendants():
        if not isinstance(elem.tag, str):
            continue
        for name in elem.attrib:
            if name == OPERATION:
                continue
            qn = etree.QName(name)
            hint = (" (the edit operation attribute is operation in the NETCONF base namespace "
                    f"{BASE_NS})" if qn.localname == "operation" else "")
            raise RpcError("unknown-attribute", f"attribute {name!r} on <{etree.QName(elem).localname}> is not "
                           f"understood{hint}", type="protocol",
                           info={"bad-attribute": qn.localname, "bad-element": etree.QName(elem).localname})


def _navigable(elem: etree._Element, name: str, path: str, ns: dict) -> None:
    """default-operation none through a node that does not exist: only operations below may create it.

    RFC 6241 7.2: data with no corresponding node and no operation is data-missing.
    """
    if not any(e.get(OPERATION) for e in elem.iter() if isinstance(e.tag, str)):
        raise RpcError("data-missing", f"{name} does not exist (default-operation none)", path=path, path_ns=ns)


def _without_ops(elem: etree._Element) -> etree._Element:
    """A copy of `elem` without nc:operation attributes (replace/create content is taken whole)."""
    if not any(e.get(OPERATION) for e in elem.iter() if isinstance(e.tag, str)):
        return elem
    clone = copy.deepcopy(elem)
    drop = []
    for e in clone.iter():
        if isinstance(e.tag, str) and OPERATION in e.attrib:
            op = e.attrib.pop(OPERATION)
            if op in ("delete", "remove") and e is not clone:
                drop.append(e)
    for e in drop:
        parent = e.getparent()
        if parent is not None:
            parent.remove(e)
    return clone


def _keystr(keys: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in keys.items())
