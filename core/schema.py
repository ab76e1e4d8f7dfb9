"""The YANG schema, loaded once with yangson and indexed for the faces.

yangson validates config (types, ranges, patterns, must, max-elements);
the index built here answers the questions the faces ask on hot paths
(which leaves does this container hold, is it config, what PROTO type does
this leaf encode to) without walking yangson's schema tree per request.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from yangson import DataModel
from yangson import datatype as ydt
from yangson import schemanode as ysn

ORGANIZATION = "kubefabric project"


@lru_cache(maxsize=1)
def yang_dir() -> Path:
    """Directory of the YANG modules shipped as package data (``core/yang``).

    ``kubefabric-*`` are the data models the agent serves, ``ietf/`` the
    types they import, ``netconf/`` the modules only NETCONF announces
    (ietf-netconf-monitoring, kubefabric-notifications).  Read with
    importlib.resources, so an installed wheel works from any directory; a
    package that is not on disk (a zip) is copied out once, because yangson
    reads modules from a directory.  ``KUBEFABRIC_YANG_DIR`` overrides it.
    """
    env = os.environ.get("KUBEFABRIC_YANG_DIR")
    if env:
        return Path(env)
    root = resources.files("core.yang")
    if isinstance(root, Path):
        return root
    target = Path(tempfile.mkdtemp(prefix="kubefabric-yang-"))
    _copy_tree(root, target)
    return target


def _copy_tree(source: Traversable, target: Path) -> None:
    for entry in source.iterdir():
        if entry.is_dir():
            (target / entry.name).mkdir()
            _copy_tree(entry, target / entry.name)
        elif entry.name.endswith(".yang"):
            with entry.open("rb") as src, open(target / entry.name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def netconf_yang_dir() -> Path:
    """Modules only the NETCONF face announces (``core/yang/netconf``)."""
    return yang_dir() / "netconf"


@dataclass(frozen=True)
class ModuleInfo:
    """A YANG module as Capabilities and NETCONF get-schema announce it."""

    name: str
    revision: str
    namespace: str
    prefix: str
    path: Path
    implemented: bool


@dataclass(frozen=True)
class LeafInfo:
    """One leaf or leaf-list: what encoders need to know about it."""

    name: str
    is_list: bool
    base: str  # "string" | "int" | "uint" | "bool" | "decimal" | "enum" | "union" | "empty"
    bits: int  # integer width, 0 when not an integer
    config: bool
    default: object = None

    @property
    def is_64bit(self) -> bool:
        """RFC 7951 encodes 64-bit integers as JSON strings."""
        return self.bits == 64


@dataclass
class NodeInfo:
    """A container or list in the schema, addressed by its schema path.

    `keys` are the key leaves of every list from the top down to this node,
    which is exactly the shape of the key tuples the datastore uses.
    """

    path: str
    name: str
    module: str
    kind: str  # "container" | "list"
    config: bool
    own_keys: tuple[str, ...]
    keys: tuple[str, ...]
    leaves: dict[str, LeafInfo] = field(default_factory=dict)
    children: dict[str, "NodeInfo"] = field(default_factory=dict)
    parent: "NodeInfo | None" = None

    @property
    def qualified_name(self) -> str:
        """The name as it appears at the top of an RFC 7951 tree."""
        return f"{self.module}:{self.name}"


def _leaf_base(dtype: ydt.DataType) -> tuple[str, int]:
    if isinstance(dtype, ydt.BooleanType):
        return "bool", 0
    if isinstance(dtype, ydt.IntegralType):
        name = type(dtype).__name__.lower()  # e.g. uint32type
        bits = int(re.sub(r"\D", "", name) or 64)
        return ("uint" if name.startswith("uint") else "int"), bits
    if isinstance(dtype, ydt.Decimal64Type):
        return "decimal", 0
    if isinstance(dtype, ydt.EnumerationType):
        return "enum", 0
    if isinstance(dtype, ydt.EmptyType):
        return "empty", 0
    if isinstance(dtype, ydt.UnionType):
        return "union", 0
    return "string", 0


class Schema:
    """Our YANG modules: yangson's DataModel plus a fast index of nodes."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or yang_dir()
        self.modules = self._scan_modules()
        library = {
            "ietf-yang-library:modules-state": {
                "module-set-id": "kubefabric",
                "module": [
                    {
                        "name": m.name,
                        "revision": m.revision,
                        "namespace": m.namespace,
                        "conformance-type": "implement" if m.implemented else "import",
                    }
                    for m in self.modules
                ],
            }
        }
        search = [str(self.directory), str(self.directory / "ietf")]
        self.model = DataModel(json.dumps(library), search)
        self.nodes: dict[str, NodeInfo] = {}
        self.top: dict[str, NodeInfo] = {}
        for child in self.model.schema.children:
            node = self._index(child, None, "", ())
            self.top[node.qualified_name] = node

    def _scan_modules(self) -> list[ModuleInfo]:
        found = []
        for path in sorted(self.directory.glob("*.yang")) + sorted((self.directory / "ietf").glob("*.yang")):
            text = path.read_text()
            name, _, revision = path.stem.partition("@")
            namespace = re.search(r'namespace\s+"([^"]+)"', text)
            prefix = re.search(r"^\s*prefix\s+\"?([\w-]+)\"?;", text, re.M)
            if namespace is None or prefix is None:
                raise ValueError(f"{path}: not a YANG module (no namespace or prefix statement)")
            # modules at the top of core/yang are implemented (their data is served); ietf/ holds imported types
            found.append(ModuleInfo(name, revision, namespace.group(1), prefix.group(1), path,
                                    path.parent == self.directory))
        return found

    def _index(self, snode: ysn.InternalNode, parent: NodeInfo | None, prefix: str, keys: tuple[str, ...]) -> NodeInfo:
        is_list = isinstance(snode, ysn.ListNode)
        own_keys = tuple(k[0] for k in snode.keys) if is_list else ()
        name = snode.name if parent else f"{snode.ns}:{snode.name}"
        path = f"{prefix}/{name}"
        node = NodeInfo(
            path=path,
            name=snode.name,
            module=snode.ns,
            kind="list" if is_list else "container",
            config=bool(snode.config),
            own_keys=own_keys,
            keys=keys + own_keys,
            parent=parent,
        )
        self.nodes[path] = node
        self._index_children(snode, node, path)
        return node

    def _index_children(self, snode: ysn.InternalNode, node: NodeInfo, path: str) -> None:
        for child in snode.children:
            if isinstance(child, (ysn.ChoiceNode, ysn.CaseNode)):  # not data nodes: their children are the node's
                self._index_children(child, node, path)
            elif isinstance(child, (ysn.LeafNode, ysn.LeafListNode)):
                base, bits = _leaf_base(child.type)
                default = child.default if isinstance(child, ysn.LeafNode) else None
                node.leaves[child.name] = LeafInfo(
                    child.name, isinstance(child, ysn.LeafListNode), base, bits, bool(child.config), default
                )
            elif isinstance(child, (ysn.ContainerNode, ysn.ListNode)):
                node.children[child.name] = self._index(child, node, path, node.keys)

    @property
    def implemented(self) -> list[ModuleInfo]:
        """Modules whose data nodes we serve (the rest are imported types)."""
        return [m for m in self.modules if m.implemented]

    def module(self, name: str) -> ModuleInfo | None:
        """Module by name, for get-schema and Capabilities lookups."""
        for m in self.modules:
            if m.name == name:
                return m
        return None


@lru_cache(maxsize=1)
def default_schema() -> Schema:
    """The process-wide schema (loading yangson takes a few hundred ms)."""
    return Schema()
