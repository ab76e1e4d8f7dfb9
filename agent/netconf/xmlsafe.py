"""Parsing untrusted XML from NETCONF clients.

The parser never expands entities, never loads a DTD or anything from the
network, refuses a DOCTYPE outright (no billion-laughs, no XXE), and caps
nesting depth and node count; the framer has already capped the size.
"""
from __future__ import annotations

from lxml import etree

MAX_DEPTH = 64
MAX_ELEMENTS = 200_000

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    remove_blank_text=False,
    collect_ids=False,
)


class XmlError(Exception):
    """The message is not acceptable XML; the reason is safe to show to the client."""


def parse(data: bytes, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> etree._Element:
    """Parse one NETCONF message into its root element, or raise XmlError."""
    head = data[:4096].lstrip()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise XmlError("DTDs and entity declarations are not allowed")
    if not head.startswith(b"<"):
        raise XmlError("not an XML document")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"XML syntax error: {exc.msg}") from None
    except ValueError as exc:
        raise XmlError(f"XML error: {exc}") from None
    if root is None:
        raise XmlError("empty document")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlError("DTDs are not allowed")
    count = 0
    stack = [(root, 1)]
    while stack:
        elem, depth = stack.pop()
        count += 1
        if depth > max_depth:
            raise XmlError(f"XML nested deeper than {max_depth} levels")
        if count > max_elements:
            raise XmlError(f"more than {max_elements} XML elements")
        for child in elem:
            if not isinstance(child.tag, str):  # entity references left unexpanded
                raise XmlError("entity references are not allowed")
            stack.append((child, depth + 1))
    return root
