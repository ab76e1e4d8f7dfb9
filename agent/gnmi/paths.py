"""gNMI paths <-> schema nodes.

A request path (prefix + path) resolves to `Selector`s: a schema node, a
key pattern for every list key along it (a value, or WILD), at most one
leaf, and whether the nodes below are included.  Wildcards (`*` for an
element, `...` for any number of levels, `[k=*]` or an omitted key) are
expanded against the schema once, so matching a change or reading the
datastore never walks the tree again.

Also: typed key values from their string form, gNMI Path messages for a
datastore node, and the path-string syntax tests and the CLI use
(`origin:/a/b[k=v]/c`, `/module:a/b`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.gnmi_proto import gnmi_pb2

from core.schema import LeafInfo, NodeInfo, Schema

WILD = None  # a key position that matches any value

# origins meaning "the YANG modules this target serves"
_NEUTRAL_ORIGINS = ("", "rfc7951", "openconfig")


class PathError(Exception):
    """A request the target cannot serve; `code` is a gRPC status name.

    `error_tag` / `app_tag` are the NETCONF error-tag and YANG
    error-app-tag of the same refusal and `path` the path it concerns:
    the face puts them first in the message and in google.rpc.Status details.
    """

    def __init__(self, code: str, message: str, *, error_tag: str = "", app_tag: str = "", path: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error_tag = error_tag
        self.app_tag = app_tag
        self.path = path


@dataclass(frozen=True, repr=False)
class Selector:
    """What one request path selects in the schema."""

    node: NodeInfo
    keys: tuple  # one entry per node.keys: a typed value or WILD
    leaf: str | None = None  # one leaf of node only
    subtree: bool = True  # node and all its descendants
    origin: str = ""
    covered: frozenset = field(default=frozenset(), compare=False)  # schema paths it can match
    depth: int = 0  # Depth extension: nodes this many levels below `node` and deeper are left out (0: no limit)

    def __repr__(self) -> str:
        keys = ",".join("*" if k is WILD else repr(k) for k in self.keys)
        tail = f"/{self.leaf}" if self.leaf else ("/..." if self.subtree else "")
        return f"Selector({self.node.path}[{keys}]{tail})"

    def within_depth(self, info: NodeInfo) -> bool:
        """Whether a node below `node` is inside the Depth extension's limit.

        gnmi-depth.md 3.1: level 1 is the node's own leaves and leaf-lists;
        level N adds the containers and list entries N-1 levels below with
        their leaves.  A list entry is one level, as its list is named once.
        """
        if not self.depth:
            return True
        return info.path.count("/") - self.node.path.count("/") < self.depth

    @property
    def concrete(self) -> bool:
        """True when every key is given (the path names one node)."""
        return all(k is not WILD for k in self.keys)

    def key_matches(self, key: tuple) -> bool:
        """Does a node key (of node or a descendant) match the pattern?"""
        for want, have in zip(self.keys, key):
            if want is not WILD and want != have:
                return False
        return True


def with_depth(sel: Selector, depth: int) -> Selector:
    """The selector limited to `depth` levels (Depth extension); itself when depth is 0."""
    if not depth:
        return sel
    from dataclasses import replace

    return replace(sel, depth=depth, covered=frozenset(p for p in sel.covered
                                                       if p.count("/") - sel.node.path.count("/") < depth))


def _descendant_paths(info: NodeInfo) -> frozenset:
    out = [info.path]
    stack = list(info.children.values())
    while stack:
        child = stack.pop()
        out.append(child.path)
        stack.extend(child.children.values())
    return frozenset(out)


def typed_key(leaf: LeafInfo | None, text: str) -> object:
    """A key value as the datastore holds it, from its gNMI string form."""
    if text == "*":
        return WILD
    if leaf is None:
        return text
    if leaf.base in ("int", "uint"):
        try:
            return int(text)
        except ValueError:
            raise PathError("INVALID_ARGUMENT", f"key {leaf.name}={text!r} is not an integer") from None
    if leaf.base == "bool":
        if text not in ("true", "false"):
            raise PathError("INVALID_ARGUMENT", f"key {leaf.name}={text!r} is not a boolean")
        return text == "true"
    return text


def key_text(value: object) -> str:
    """A key value in gNMI string form."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def join(prefix: gnmi_pb2.Path | None, path: gnmi_pb2.Path | None) -> tuple[str, list]:
    """(origin, elems) of prefix + path, as the spec concatenates them."""
    origin = ""
    elems: list = []
    for part in (prefix, path):
        if part is None:
            continue
        if part.element and not part.elem:
            raise PathError("INVALID_ARGUMENT", "the deprecated string 'element' path form is not supported; use 'elem'")
        if part.origin:
            if origin and part.origin != origin:
                raise PathError("INVALID_ARGUMENT", f"prefix origin {origin!r} and path origin {part.origin!r} differ")
            origin = part.origin
        elems.extend(part.elem)
    return origin, elems


def resolve(schema: Schema, prefix: gnmi_pb2.Path | None, path: gnmi_pb2.Path | None) -> list[Selector]:
    """Selectors for prefix + path; raises PathError for a path outside the schema."""
    origin, elems = join(prefix, path)
    module = None
    if origin not in _NEUTRAL_ORIGINS:
        if not any(m.name == origin for m in schema.implemented):
            raise PathError("NOT_FOUND", f"unknown origin/module {origin!r}", error_tag="unknown-element")
        module = origin
    for e in elems:
        if not e.name:
            raise PathError("INVALID_ARGUMENT", "empty path element name")
    found: dict[tuple, Selector] = {}
    _walk(schema, None, (), elems, 0, module, origin, found)
    return _drop_covered(list(found.values()))


def restrict_models(schema: Schema, selectors: list[Selector], use_models) -> list[Selector]:
    """Only the selectors in the modules a request's use_models names (all when it names none)."""
    if not use_models:
        return selectors
    known = {m.name for m in schema.implemented}
    names = {m.name for m in use_models}
    unknown = sorted(names - known)
    if unknown:
        raise PathError("NOT_FOUND", f"unknown model(s) {', '.join(unknown)}", error_tag="unknown-namespace")
    return [s for s in selectors if s.node.module in names]


def _covers(outer: Selector, inner: Selector) -> bool:
    if outer is inner or not outer.subtree:
        return False
    if inner.node.path != outer.node.path and not inner.node.path.startswith(outer.node.path + "/"):
        return False
    return all(o is WILD or o == i for o, i in zip(outer.keys, inner.keys))


def _drop_covered(selectors: list[Selector]) -> list[Selector]:
    """Remove selectors another selector already includes (e.g. after '...')."""
    return [s for s in selectors if not any(_covers(o, s) for o in selectors)]


def _strip_module(name: str, module: str | None, where: str) -> tuple[str, str | None]:
    if ":" in name:
        mod, _, bare = name.partition(":")
        if module and mod != module:
            raise PathError("NOT_FOUND", f"element {name!r} is not in module {module!r} at {where}", error_tag="unknown-element")
        return bare, mod
    return name, None


def _walk(schema, info, keys, elems, i, module, origin, found) -> None:
    where = info.path if info else "/"
    if i == len(elems):
        if info is None:  # the root: every top-level node
            for top in schema.top.values():
                if module is None or top.module == module:
                    _add(found, top, (WILD,) * len(top.keys), None, True, origin)
        else:
            _add(found, info, keys, None, True, origin)
        return
    elem = elems[i]
    last = i == len(elems) - 1
    if elem.name == "...":
        if elem.key:
            raise PathError("INVALID_ARGUMENT", "'...' cannot carry keys")
        branches = [(child, keys + (WILD,) * len(child.own_keys), i) for child in _children(schema, info, module)]
        if info is not None:
            branches.insert(0, (info, keys, i + 1))
        _try_branches(schema, branches, elems, module, origin, found, where)
        return
    if elem.name == "*":
        children = _children(schema, info, module)
        leaves = list(info.leaves) if info is not None else []
        if not last and not children:
            raise PathError("NOT_FOUND", f"nothing below {where} matches '*'", error_tag="unknown-element")
    else:
        name, mod = _strip_module(elem.name, module, where)
        children, leaves = [], []
        if info is None:
            for top in schema.top.values():
                if top.name == name and (mod is None or top.module == mod) and (module is None or top.module == module):
                    children.append(top)
        else:
            if mod is not None and mod != info.module:
                raise PathError("NOT_FOUND", f"element {elem.name!r} is not in module {info.module!r} at {where}", error_tag="unknown-element")
            if name in info.children:
                children.append(info.children[name])
            elif name in info.leaves:
                leaves.append(name)
        if not children and not leaves:
            raise PathError("NOT_FOUND", f"unknown path element {elem.name!r} at {where}", error_tag="unknown-element")
    for leaf in leaves:
        if last and not elem.key:
            _add(found, info, keys, leaf, False, origin)
        elif elem.name != "*":
            what = "keys" if elem.key else "children"
            raise PathError("NOT_FOUND" if not elem.key else "INVALID_ARGUMENT",
                            f"leaf {info.path}/{leaf} has no {what}")
    if elem.name == "*":
        before = len(found)
        given = set(elem.key)
        branches = [(child, keys + _own_keys(child, elem), i + 1) for child in children
                    if not given or (child.kind == "list" and given <= set(child.own_keys))]
        if leaves and last:
            before = -1  # leaves matched already
        _try_branches(schema, branches, elems, module, origin, found, where, required=before >= 0)
        return
    for child in children:
        own = _own_keys(child, elem)
        _walk(schema, child, keys + own, elems, i + 1, module, origin, found)


def _try_branches(schema, branches, elems, module, origin, found, where, required=True) -> None:
    """Follow each wildcard branch; fail only when none of them matches."""
    first_error = None
    matched = False
    for node, keys, i in branches:
        try:
            _walk(schema, node, keys, elems, i, module, origin, found)
            matched = True
        except PathError as exc:
            if exc.code != "NOT_FOUND":
                raise
            first_error = first_error or exc
    if required and not matched:
        raise first_error or PathError("NOT_FOUND", f"nothing below {where} matches", error_tag="unknown-element")


def _children(schema, info, module) -> list[NodeInfo]:
    if info is None:
        return [t for t in schema.top.values() if module is None or t.module == module]
    return list(info.children.values())


def _own_keys(child: NodeInfo, elem) -> tuple:
    given = dict(elem.key)
    if given and child.kind != "list":
        raise PathError("INVALID_ARGUMENT", f"{child.path} is not a list; it takes no keys")
    unknown = sorted(set(given) - set(child.own_keys))
    if unknown:
        raise PathError("NOT_FOUND", f"{child.path} has no key {', '.join(unknown)} (keys: {' '.join(child.own_keys)})", error_tag="unknown-element")
    return tuple(typed_key(child.leaves.get(k), given[k]) if k in given else WILD for k in child.own_keys)


def _add(found, info, keys, leaf, subtree, origin) -> None:
    ident = (info.path, keys, leaf, subtree)
    if ident not in found:
        covered = _descendant_paths(info) if subtree else frozenset((info.path,))
        found[ident] = Selector(info, keys, leaf, subtree, origin, covered)


# -- datastore node -> gNMI Path ------------------------------------------------

def node_elems(info: NodeInfo, key: tuple) -> list[tuple[str, dict]]:
    """(name, {key: text}) of every element from the top down to a node."""
    chain = []
    node = info
    while node is not None:
        chain.append(node)
        node = node.parent
    chain.reverse()
    out = []
    pos = 0
    for node in chain:
        if node.own_keys:
            n = len(node.own_keys)
            out.append((node.name, {k: key_text(v) for k, v in zip(node.own_keys, key[pos:pos + n])}))
            pos += n
        else:
            out.append((node.name, {}))
    return out


def node_path(info: NodeInfo, key: tuple, leaf: str | None = None, origin: str = "") -> gnmi_pb2.Path:
    """The gNMI Path message of a node (or one of its leaves)."""
    path = gnmi_pb2.Path(origin=origin)
    for name, keys in node_elems(info, key):
        path.elem.add(name=name, key=keys)
    if leaf:
        path.elem.add(name=leaf)
    return path


# -- path strings (tests, CLI, docs) ------------------------------------------------

_ELEM = re.compile(r"((?:[^/\[\]\\]|\\.)+)((?:\[[^\]=]+=(?:[^\]\\]|\\.)*\])*)")
_KEY = re.compile(r"\[([^\]=]+)=((?:[^\]\\]|\\.)*)\]")


def parse(text: str) -> gnmi_pb2.Path:
    """A path string -> gNMI Path: `[origin:]/a/b[k=v]/c`; `/mod:a/b` keeps the module on `a`.

    An origin is recognised only as `name:/...` (colon before the first
    slash); `mod:a/b` without a leading slash means origin `mod`, as
    pygnmi and gnmic read it.  Raises PathError(INVALID_ARGUMENT) on bad syntax.
    """
    path = gnmi_pb2.Path()
    rest = text.strip()
    m = re.match(r"^([A-Za-z_][\w.-]*):(?=/|$)", rest)
    if m:
        path.origin = m.group(1)
        rest = rest[m.end():]
    elif not rest.startswith("/"):
        m = re.match(r"^([A-Za-z_][\w.-]*):", rest)
        if m:
            path.origin = m.group(1)
            rest = rest[m.end():]
    rest = rest.strip("/")
    if not rest:
        return path
    pos = 0
    while pos < len(rest):
        m = _ELEM.match(rest, pos)
        if not m or not m.group(1):
            raise PathError("INVALID_ARGUMENT", f"cannot parse path {text!r} at offset {pos}")
        elem = path.elem.add(name=m.group(1))
        for k, v in _KEY.findall(m.group(2)):
            elem.key[k] = re.sub(r"\\(.)", r"\1", v)
        pos = m.end()
        if pos < len(rest):
            if rest[pos] != "/":
                raise PathError("INVALID_ARGUMENT", f"cannot parse path {text!r} at offset {pos}")
            pos += 1
    return path


def to_string(path: gnmi_pb2.Path) -> str:
    """A gNMI Path as a string (keys sorted), origin first when set."""
    parts = []
    for e in path.elem:
        keys = "".join(f"[{k}={v}]" for k, v in sorted(e.key.items()))
        parts.append(e.name + keys)
    body = "/" + "/".join(parts)
    return f"{path.origin}:{body}" if path.origin else body
