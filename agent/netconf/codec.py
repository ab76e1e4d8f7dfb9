"""XML <-> RFC 7951 JSON for our YANG modules.

The datastore speaks RFC 7951 JSON (what yangson validates); NETCONF
speaks XML.  This module maps between them with the schema index built
from yangson: namespaces to module names, leaf types to JSON types,
list keys first in XML as RFC 7950 requires.  It checks shape and type
syntax only; ranges, patterns, must and max-elements are yangson's job
when the whole candidate is validated.
"""
from __future__ import annotations

import re

from lxml import etree

from core.schema import LeafInfo, NodeInfo, Schema

from .rpcerror import RpcError


# characters XML 1.0 cannot carry (state strings come from Kubernetes and packets)
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# our own generated XML: no size or depth limits needed, still no entities or network
_TRUSTED_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def _escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _leaf_text(name: str, value: object) -> str:
    if value is True:
        return f"<{name}>true</{name}>"
    if value is False:
        return f"<{name}>false</{name}>"
    if value is None or value == [None]:
        return f"<{name}/>"
    return f"<{name}>{_escape(str(value))}</{name}>"


class Codec:
    """Converts data trees of one schema."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.ns_module = {m.namespace: m for m in schema.modules}
        self.module_ns = {m.name: m.namespace for m in schema.modules}
        self.prefixes = {m.prefix: m.namespace for m in schema.implemented}

    # -- names -----------------------------------------------------------------
    def top_info(self, elem: etree._Element, path: str = "") -> NodeInfo:
        """Schema node of a top-level data element, or unknown-namespace/unknown-element."""
        qn = etree.QName(elem)
        module = self.ns_module.get(qn.namespace or "")
        if module is None:
            raise RpcError(
                "unknown-namespace", f"unknown namespace {qn.namespace!r} for element {qn.localname}",
                type="protocol", info={"bad-element": qn.localname, "bad-namespace": qn.namespace or ""},
            )
        info = self.schema.top.get(f"{module.name}:{qn.localname}")
        if info is None:
            raise RpcError(
                "unknown-element", f"{module.name} has no top-level node {qn.localname!r}",
                type="application", path=f"/{module.prefix}:{qn.localname}",
                path_ns={module.prefix: module.namespace}, info={"bad-element": qn.localname},
            )
        return info

    def child_name(self, elem: etree._Element, parent: NodeInfo, path: str) -> str:
        """Local name of a child element after checking its namespace against the parent's module."""
        qn = etree.QName(elem)
        ns = self.module_ns[parent.module]
        if qn.namespace != ns:
            module = self.ns_module.get(qn.namespace or "")
            if module is None:
                raise RpcError(
                    "unknown-namespace", f"element {qn.localname} in unknown namespace {qn.namespace!r}",
                    type="protocol", path=path, path_ns=self.prefixes,
                    info={"bad-element": qn.localname, "bad-namespace": qn.namespace or ""},
                )
            raise RpcError(
                "unknown-element", f"{qn.localname} in namespace {qn.namespace} is not a child of {parent.name}",
                path=path, path_ns=self.prefixes, info={"bad-element": qn.localname},
            )
        name = qn.localname
        if name not in parent.leaves and name not in parent.children:
            raise RpcError(
                "unknown-element", f"{parent.name} has no child {name!r}",
                path=f"{path}/{self.prefix_of(parent)}:{name}", path_ns=self.prefixes, info={"bad-element": name},
            )
        return name

    def prefix_of(self, info: NodeInfo) -> str:
        """XML prefix of a node's module (for error paths)."""
        return self.schema.module(info.module).prefix

    # -- values ----------------------------------------------------------------
    @staticmethod
    def leaf_from_xml(leaf: LeafInfo, elem: etree._Element, path: str, path_ns: dict) -> object:
        """An XML leaf's text as its RFC 7951 JSON value."""
        if len(elem):
            raise RpcError("invalid-value", f"leaf {leaf.name} cannot have child elements", path=path, path_ns=path_ns)
        text = (elem.text or "").strip() if leaf.base != "string" else (elem.text or "")
        base = leaf.base
        try:
            if base == "bool":
                if text not in ("true", "false"):
                    raise ValueError
                return text == "true"
            if base in ("int", "uint"):
                value = int(text, 10)
                if base == "uint" and value < 0:
                    raise ValueError
                return str(value) if leaf.is_64bit else value
            if base == "empty":
                if text:
                    raise ValueError
                return [None]
        except ValueError:
            raise RpcError(
                "invalid-value", f"{text!r} is not a valid {base} value for {leaf.name}", path=path, path_ns=path_ns,
                info={"bad-element": leaf.name},
            ) from None
        return text

    @staticmethod
    def leaf_to_text(leaf: LeafInfo | None, value: object) -> str | None:
        """A JSON leaf value as XML text (None for an empty leaf)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if value == [None] or value is None:
            return None
        return str(value)

    # -- whole trees ---------------------------------------------------------------
    def from_xml(self, elem: etree._Element, info: NodeInfo, path: str) -> dict:
        """A container or list entry's XML (no edit operations) -> its JSON body."""
        body: dict = {}
        for child in elem:
            if not isinstance(child.tag, str):
                continue
            name = self.child_name(child, info, path)
            cpath = f"{path}/{self.prefix_of(info)}:{name}"
            leaf = info.leaves.get(name)
            if leaf is not None:
                value = self.leaf_from_xml(leaf, child, cpath, self.prefixes)
                if leaf.is_list:
                    values = body.setdefault(name, [])
                    if value not in values:
                        values.append(value)
                else:
                    body[name] = value
                continue
            cinfo = info.children[name]
            if cinfo.kind == "list":
                body.setdefault(name, []).append(self.from_xml(child, cinfo, cpath))
            else:
                if name in body:
                    raise RpcError("bad-element", f"container {name} given twice", type="protocol", path=cpath,
                                   path_ns=self.prefixes, info={"bad-element": name})
                body[name] = self.from_xml(child, cinfo, cpath)
        return body

    def tree_from_xml(self, parent: etree._Element) -> dict:
        """`<config>`'s children (no edit operations) -> an RFC 7951 tree."""
        tree: dict = {}
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            info = self.top_info(child)
            tree[info.qualified_name] = self.from_xml(child, info, f"/{self.prefix_of(info)}:{info.name}")
        return tree

    def to_xml(self, tree: dict, parent: etree._Element, tops: set[str] | None = None) -> None:
        """Append an RFC 7951 tree's top-level nodes (all, or those named in `tops`) to `parent`.

        The XML is written as text and parsed once by libxml2: for a 10,000-entry vPort table
        that is several times faster than creating each element through the lxml API.
        """
        parts: list[str] = []
        for qname, body in tree.items():
            if tops is not None and qname not in tops:
                continue
            info = self.schema.top.get(qname)
            if info is None or not isinstance(body, dict) or not body:
                continue
            parts.append(f'<{info.name} xmlns="{self.module_ns[info.module]}">')
            self._body_text(body, info, parts)
            parts.append(f"</{info.name}>")
        if not parts:
            return
        text = "".join(parts)
        if _INVALID_XML_CHARS.search(text):
            text = _INVALID_XML_CHARS.sub("\ufffd", text)
        holder = etree.fromstring(f"<holder>{text}</holder>", _TRUSTED_PARSER)
        parent.extend(list(holder))

    def _body_text(self, body: dict, info: NodeInfo, out: list[str]) -> None:
        leaves, children, own_keys = info.leaves, info.children, info.own_keys
        for key in own_keys:
            if key in body:
                out.append(_leaf_text(key, body[key]))
        for name, value in body.items():
            leaf = leaves.get(name)
            if leaf is not None:
                if name in own_keys:
                    continue
                if leaf.is_list:
                    out.extend(_leaf_text(name, v) for v in value)
                else:
                    out.append(_leaf_text(name, value))
                continue
            child = children.get(name)
            if child is None:
                continue
            if child.kind == "list":
                for entry in value:
                    out.append(f"<{name}>")
                    self._body_text(entry, child, out)
                    out.append(f"</{name}>")
            else:
                out.append(f"<{name}>")
                self._body_text(value, child, out)
                out.append(f"</{name}>")

    def schema_node_of(self, elem: etree._Element) -> NodeInfo | None:
        """Schema node of a data element (walking up to its top-level ancestor), or None for leaves/unknown."""
        names = []
        cur = elem
        while cur is not None and isinstance(cur.tag, str):
            names.append(etree.QName(cur))
            cur = cur.getparent()
            if cur is not None and etree.QName(cur).namespace not in self.ns_module:
                break
        names.reverse()
        top = names[0]
        module = self.ns_module.get(top.namespace or "")
        if module is None:
            return None
        info = self.schema.top.get(f"{module.name}:{top.localname}")
        for qn in names[1:]:
            if info is None:
                return None
            info = info.children.get(qn.localname)
        return info
