"""get/get-config filters: RFC 6241 subtree filtering and :xpath.

Both work on the XML data tree.  `wanted_tops()` lets the caller build
only the top-level containers a filter can select, so a filter on the
k8s connections never encodes a 10,000-entry vPort table.

XPath as automation sends it: `ansible.netcommon.netconf_get` passes a bare
string (`/k8s/connection`), so ncclient's `<filter type="xpath" select=...>`
declares no namespaces.  A prefix the `<filter>` element declares is used as
XPath says; otherwise a name without a prefix matches that name in any of
our namespaces, and a module name or module prefix (`kubefabric-k8s:k8s`,
`kfk8s:k8s`) matches in that module's namespace.  A name no module defines
means the filter cannot match anything: that is an rpc-error
(invalid-value naming the name), never a silent empty `<data/>`.
"""
from __future__ import annotations

import copy
import re

from lxml import etree

from .codec import Codec
from .rpcerror import BASE_NS, RpcError

SUBTREE, XPATH = "subtree", "xpath"


class Filter:
    """A parsed `<filter>` element."""

    def __init__(self, elem: etree._Element | None) -> None:
        self.kind = None
        self.elem = elem
        self.select = None
        self.nsmap: dict[str, str] = {}
        if elem is None:
            return
        kind = elem.get("type") or elem.get(f"{{{BASE_NS}}}type") or SUBTREE
        if kind not in (SUBTREE, XPATH):
            raise RpcError("bad-attribute", f"unknown filter type {kind!r}", type="protocol",
                           info={"bad-attribute": "type", "bad-element": "filter"})
        self.kind = kind
        if kind == XPATH:
            select = elem.get("select") or elem.get(f"{{{BASE_NS}}}select")
            if not select:
                raise RpcError("missing-attribute", "xpath filter needs a select attribute", type="protocol",
                               info={"bad-attribute": "select", "bad-element": "filter"})
            self.select = select
            self.nsmap = {p: n for p, n in elem.nsmap.items() if p}
            self._local = False  # evaluate on a copy of the data without namespaces
            self._names = _name_tests(select)
            undeclared = {prefix for prefix, _name in self._names if prefix and prefix not in self.nsmap}
            if undeclared or not any(prefix for prefix, _name in self._names):
                # no namespaces to go by (a bare string, as Ansible sends): match by local name
                self._local = True
                expression = _strip_prefixes(select, undeclared)
            else:
                expression = select
            try:
                self._xpath = etree.XPath(expression, namespaces=None if self._local else self.nsmap)
            except (etree.XPathSyntaxError, etree.XPathEvalError) as exc:
                raise RpcError("invalid-value", f"invalid XPath {select!r}: {exc}",
                               info={"bad-attribute": "select", "bad-element": "filter"}) from None

    def check_names(self, codec: Codec, extra_names: set[str]) -> None:
        """Refuse an XPath that names a node or a module prefix no module of ours defines (it can never match)."""
        if self.kind != XPATH:
            return
        known_prefixes = {m.name for m in codec.schema.modules} | {m.prefix for m in codec.schema.modules} \
            | set(self.nsmap)
        names = _schema_names(codec.schema) | extra_names
        for prefix, name in self._names:
            if prefix and prefix not in known_prefixes:
                raise RpcError("invalid-value", f"XPath {self.select!r}: no module or declared namespace prefix "
                               f"{prefix!r}", info={"bad-attribute": "select", "bad-element": "filter"})
            if name != "*" and name not in names:
                raise RpcError("invalid-value", f"XPath {self.select!r} names {name!r}, which no data model of this "
                               "server defines: the filter cannot match anything",
                               info={"bad-attribute": "select", "bad-element": "filter"})

    @property
    def empty(self) -> bool:
        """A subtree filter with no content selects nothing (RFC 6241 6.4.2)."""
        return self.kind == SUBTREE and not any(isinstance(c.tag, str) for c in self.elem) and not (self.elem.text or "").strip()

    def wanted_tops(self, codec: Codec, extra: dict[str, str]) -> set[str] | None:
        """Qualified names of top containers this filter may select (None: all of them).

        `extra` maps '{ns}local' of non-YANG-datastore tops (netconf-state) to a label.
        """
        if self.kind is None:
            return None
        if self.kind == XPATH:
            return None
        out = set()
        for child in self.elem:
            if not isinstance(child.tag, str):
                continue
            qn = etree.QName(child)
            if qn.text in extra:
                out.add(extra[qn.text])
                continue
            for module in ([codec.ns_module[qn.namespace]] if qn.namespace in codec.ns_module else
                           (codec.schema.implemented if not qn.namespace else [])):
                name = f"{module.name}:{qn.localname}"
                if name in codec.schema.top:
                    out.add(name)
            if not qn.namespace:
                out.update(label for key, label in extra.items() if etree.QName(key).localname == qn.localname)
        return out

    def apply(self, data: etree._Element, codec: Codec) -> etree._Element:
        """A new `<data>` element holding what the filter selects from `data`'s children."""
        out = etree.Element(data.tag, nsmap=data.nsmap)
        if self.kind is None:
            for child in data:
                out.append(copy.deepcopy(child))
        elif self.kind == SUBTREE:
            for fchild in self.elem:
                if not isinstance(fchild.tag, str):
                    continue
                for dchild in data:
                    if _name_matches(fchild, dchild):
                        picked = _subtree(dchild, fchild, codec)
                        if picked is not None:
                            _merge_into(out, picked)
        else:
            self._apply_xpath(data, out, codec)
        return out

    def _apply_xpath(self, data: etree._Element, out: etree._Element, codec: Codec) -> None:
        for top in list(data):
            doc = etree.ElementTree(copy.deepcopy(top))
            evaluated = doc
            originals: dict = {}
            if self._local:  # a namespace-free twin of the tree; what it selects maps back to the original
                twin = _without_namespaces(doc.getroot())
                originals = dict(zip(twin.iter(), doc.getroot().iter()))
                evaluated = etree.ElementTree(twin)
            try:
                found = self._xpath(evaluated)
            except etree.XPathEvalError as exc:
                raise RpcError("invalid-value", f"cannot evaluate XPath {self.select!r}: {exc}",
                               info={"bad-attribute": "select", "bad-element": "filter"}) from None
            if not isinstance(found, list):
                if found:  # a boolean/number/string result selects nothing in particular
                    continue
                continue
            selected = set()
            for node in found:
                if isinstance(node, etree._Element):
                    selected.add(originals.get(node, node))
                elif hasattr(node, "getparent") and node.getparent() is not None:
                    selected.add(originals.get(node.getparent(), node.getparent()))
            if not selected:
                continue
            keep = set()
            for node in selected:
                cur = node.getparent()
                while cur is not None and cur not in keep:
                    keep.add(cur)
                    cur = cur.getparent()
            root = doc.getroot()
            picked = _copy_selected(root, selected, keep, codec)
            if picked is not None:
                _merge_into(out, picked)


def _name_matches(f: etree._Element, d: etree._Element) -> bool:
    ftag, dtag = f.tag, d.tag
    if ftag == dtag:
        return True
    if ftag[0] == "{":  # a namespace in the filter must match exactly
        return False
    return dtag.endswith("}" + ftag)  # no namespace in the filter: any namespace matches


def _is_content_match(f: etree._Element) -> bool:
    return not any(isinstance(c.tag, str) for c in f) and bool((f.text or "").strip())


def _subtree(data: etree._Element, filt: etree._Element, codec: Codec) -> etree._Element | None:
    """RFC 6241 6.2: the part of `data` that filter node `filt` (same name) selects, or None."""
    fchildren = [c for c in filt if isinstance(c.tag, str)]
    for name, value in filt.attrib.items():  # attribute match expressions
        if data.get(name) != value:
            return None
    if not fchildren:
        if _is_content_match(filt):
            return copy.deepcopy(data) if (data.text or "").strip() == filt.text.strip() else None
        return copy.deepcopy(data)  # selection node
    matches = [f for f in fchildren if _is_content_match(f)]
    dchildren = [c for c in data if isinstance(c.tag, str)]
    for m in matches:
        if not any(_name_matches(m, d) and (d.text or "").strip() == m.text.strip() for d in dchildren):
            return None
    out = etree.Element(data.tag, nsmap=data.nsmap)
    if len(matches) == len(fchildren):  # only content match nodes: the whole entry
        return copy.deepcopy(data)
    info = codec.schema_node_of(data)
    keys = set(info.own_keys) if info is not None and info.kind == "list" else set()
    selected_any = False
    for d in dchildren:
        qn = etree.QName(d)
        if qn.localname in keys and qn.namespace == etree.QName(data).namespace:
            out.append(copy.deepcopy(d))
            continue
        candidates = [f for f in fchildren if _name_matches(f, d)]
        if any(f in matches for f in candidates):
            out.append(copy.deepcopy(d))
            continue
        for f in candidates:
            picked = _subtree(d, f, codec)
            if picked is not None:
                out.append(picked)
                selected_any = True
                break
    if not selected_any and not matches:
        return None
    return out


def _copy_selected(elem, selected: set, keep: set, codec: Codec):
    if elem in selected:
        return copy.deepcopy(elem)
    if elem not in keep:
        return None
    out = etree.Element(elem.tag, nsmap=elem.nsmap)
    info = codec.schema_node_of(elem)
    keys = set(info.own_keys) if info is not None and info.kind == "list" else set()
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        if etree.QName(child).localname in keys and child not in selected:
            out.append(copy.deepcopy(child))
            continue
        picked = _copy_selected(child, selected, keep, codec)
        if picked is not None:
            out.append(picked)
    return out


def _merge_into(out: etree._Element, picked: etree._Element) -> None:
    """Add a selected top-level subtree, merging with one already selected for the same container."""
    for existing in out:
        if existing.tag == picked.tag:
            for child in picked:
                existing.append(child)
            return
    out.append(picked)


# -- XPath without namespaces --------------------------------------------------------------
_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME_TEST = re.compile(r"(?<![\w.\-@$:])(?:([A-Za-z_][\w.\-]*):)?([A-Za-z_][\w.\-]*|\*)(?!\s*\()(?!\s*::)(?![\w.\-])")
_OPERATORS = {"and", "or", "div", "mod"}
_schema_names_cache: dict[int, frozenset[str]] = {}


def _unquoted(expression: str) -> str:
    """The expression with string literals blanked (their text is no name)."""
    return _LITERAL.sub(lambda m: " " * len(m.group(0)), expression)


def _name_tests(expression: str) -> list[tuple[str, str]]:
    """(prefix, local name) of the name tests of an XPath expression (best effort, literals and functions skipped)."""
    out = []
    for m in _NAME_TEST.finditer(_unquoted(expression)):
        prefix, name = m.group(1) or "", m.group(2)
        if not prefix and name in _OPERATORS:
            continue
        out.append((prefix, name))
    return out


def _strip_prefixes(expression: str, prefixes: set[str]) -> str:
    """Remove `prefix:` from name tests whose prefix is not declared (module names and prefixes)."""
    blank = _unquoted(expression)
    pieces, last = [], 0
    for m in _NAME_TEST.finditer(blank):
        if m.group(1) and m.group(1) in prefixes:
            pieces.append(expression[last:m.start(1)])
            last = m.start(2)
    pieces.append(expression[last:])
    return "".join(pieces)


def _without_namespaces(root: etree._Element) -> etree._Element:
    """A copy of a tree with every element named by its local name only (same order, so nodes pair up)."""
    def clone(elem):
        twin = etree.Element(etree.QName(elem).localname)
        twin.text = elem.text
        for child in elem:
            if isinstance(child.tag, str):
                twin.append(clone(child))
            else:  # keep comments and PIs so iter() pairs element by element
                twin.append(copy.copy(child))
        return twin

    return clone(root)


def _schema_names(schema) -> frozenset[str]:
    names = _schema_names_cache.get(id(schema))
    if names is None:
        found = set()
        for info in schema.nodes.values():
            found.add(info.name)
            found.update(info.leaves)
        names = _schema_names_cache[id(schema)] = frozenset(found)
    return names
