"""What the command engine needs from an agent, and the in-process implementation.

The engine talks to a `Backend`; two exist:

- `GnmiBackend` (gnmi_backend.py): `kubefabric cli` on any host, through
  the agent's gNMI face, as the user whose password it sent.
- `DatastoreBackend` (here): the SSH shell inside the agent.  It reads the
  datastore directly and writes through `ds.propose(edit, user=..., face="cli")`,
  the one validated write path every face uses.  The SSH server already
  authenticated the user (password or public key) against the same
  Authenticator, so no password is needed to act as them, and the role check
  (network-admin writes, read-only reads) is made here before any write.

Rows are flat dicts of leaf values keyed by YANG leaf name (the leaves of
containers listed in `Table.children`, such as a connection's `state`, join
their entry's row), plus `_ts`: when the row last changed, epoch seconds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.auth import User
from core.errors import ConfigError
from core.history.store import ROW_PATHS

from .commands import FABRIC_NODES, Table
from .errors import CliError, NotImplementedByAgent
from .wire import FabricAnswer

if TYPE_CHECKING:  # the `kubefabric cli` client never loads the datastore (nor yangson)
    from core.datastore import Datastore


@dataclass(frozen=True)
class Edit:
    """One config change: create/merge/delete a list entry, or merge into a container."""

    op: str  # "create" | "merge" | "delete"
    path: str  # schema path of the list or container
    key: dict = field(default_factory=dict)  # list key leaves; empty for a container
    leaves: dict = field(default_factory=dict)


class Backend(Protocol):
    """An agent as the command engine sees it."""

    user: str
    node: str

    async def rows(self, table: Table, config_only: bool = False) -> list[dict]:
        """Every entry of a list (config and state merged; only configured entries if config_only)."""

    async def settings(self, table: Table) -> dict:
        """A container's leaves, defaults included."""

    async def apply(self, edit: Edit, target: str | None = None) -> None:
        """Make one config change (on fabric member ``target``, ``*`` for all) or raise CliError."""

    async def fabric_rows(self, table: Table, target: str, config_only: bool = False) -> FabricAnswer:
        """Every entry of a list on fabric member ``target`` (``*``: every member)."""

    async def fabric_snapshot(self, table: Table, t: float, target: str) -> FabricAnswer:
        """The list as it was at ``t`` on fabric member ``target`` (``*``: every member)."""

    async def snapshot(self, table: Table, t: float) -> list[dict]:
        """The list as it was at epoch second `t` (the time machine)."""

    async def changes(self, table: Table, t1: float, t2: float) -> list[dict]:
        """Every change of the list in [t1, t2): rows with `time` and `change` (update|delete)."""

    async def close(self) -> None:
        """Release connections."""


#: rows or changes one history command may return
HISTORY_ROW_LIMIT = 500_000
_KIND_OF_PATH = {path: kind for kind, path in ROW_PATHS.items()}


class DatastoreBackend:
    """The in-process backend of the SSH shell: one datastore, one authenticated user."""

    def __init__(self, ds: Datastore, user: User, *, face: str = "cli", peer: str = "", nacm=None,
                 authenticator=None, forwarder=None) -> None:
        from agent import nacm as nacm_module

        self.ds = ds
        self.forwarder = forwarder  # agent.forward.FabricForwarder, for `switch NAME|*`
        self._user = user
        if nacm is None:  # built alone (tests): the settings' roles, or just this user's role
            nacm = nacm_module.follow(nacm_module.Nacm(
                ds.schema, authenticator.groups if authenticator is not None else
                (lambda name: (user.role,) if name == user.name else ())), ds)
        self._nacm = nacm
        self._face = face  # for the audit log: "cli-ssh" when the SSH server runs it
        self._peer = peer
        self.user = user.name
        self.node = ds.node_name

    async def rows(self, table: Table, config_only: bool = False) -> list[dict]:
        if config_only:  # the engine's existence check before a write, not shown: the write itself is NACM-checked
            return [{**values, **dict(zip(table.keys, key))}
                    for key, values in self.ds.config.flat.get(table.path, {}).items()]
        allowed = self._nacm.read_filter(self.user)  # NACM: the same read decisions as NETCONF and gNMI
        info = self.ds.schema.nodes.get(table.path)
        out = []
        for key, values, ts in self.ds.read(table.path):
            if allowed is not None and info is not None and not allowed(info, key):
                continue
            row = dict(values)
            row.update(zip(table.keys, key))
            for child in table.children:
                extra = self.ds.read_node(f"{table.path}/{child}", key)
                if extra:
                    row.update(extra)
            row["_ts"] = ts / 1e9 if ts else None
            out.append(row)
        return out

    async def settings(self, table: Table) -> dict:
        return dict(self.ds.read_node(table.path, ()) or {})

    async def apply(self, edit: Edit, target: str | None = None) -> None:
        if target and target != self.node:
            await self._forward_set(edit, target)  # the member decides, with this user's identity and role
            return
        try:
            # NACM: a CLI config command is an edit-config, as gNMI Set is; data writes are checked in propose
            self._nacm.require_exec(self.user, "edit-config")
            await self.ds.propose(lambda tree: apply_edit(tree, edit), user=self.user, face=self._face,
                                  peer=self._peer, session=f"cli:{self._peer or self.user}")
        except ConfigError as exc:  # the same words the gNMI face sends back
            if exc.error_tag == "access-denied":
                raise CliError(f"permission denied: {exc.message}") from None
            raise CliError(exc.message + (f" (at {exc.path})" if exc.path else "")) from None

    def _require_history(self, table: Table) -> None:
        history = self.ds.history
        if not history.available:
            raise NotImplementedByAgent(history.reason)
        if table.path not in history.paths():
            raise NotImplementedByAgent(f"no history is kept for {table.path}")

    async def snapshot(self, table: Table, t: float) -> list[dict]:
        self._require_history(table)
        page = await self.ds.history.rows_at(table.path, t, limit=HISTORY_ROW_LIMIT)
        rows = [{**row.values, **dict(zip(table.keys, row.key))} for row in page.items]
        if page.truncated:
            raise CliError(f"more than {HISTORY_ROW_LIMIT} rows at that time; add filters to the command")
        return rows

    async def changes(self, table: Table, t1: float, t2: float) -> list[dict]:
        self._require_history(table)
        page = await self.ds.history.changes(t1, t2, kinds=[_KIND_OF_PATH[table.path]], limit=HISTORY_ROW_LIMIT)
        if page.truncated:
            raise CliError(f"more than {HISTORY_ROW_LIMIT} changes in that window; narrow it")
        return [{**event.data, **dict(zip(table.keys, event.keys or ())), "time": event.time, "change": event.op}
                for event in page.items]

    async def close(self) -> None:
        return None

    # -- fabric-wide (the `switch` prefix), through agent.forward ------------------
    def _forwarder(self, target: str):
        if self.forwarder is None:
            raise CliError(f"switch {target}: this agent does not forward to fabric members")
        return self.forwarder

    async def fabric_rows(self, table: Table, target: str, config_only: bool = False) -> FabricAnswer:
        from agent.gnmi_proto import gnmi_pb2

        from .wire import JSON_IETF, to_path

        kind = gnmi_pb2.GetRequest.CONFIG if config_only else gnmi_pb2.GetRequest.ALL
        request = gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[to_path(table.path)],
                                      encoding=JSON_IETF, type=kind)
        return await self._fabric(request, table, target, lambda: self.rows(table, config_only))

    async def fabric_snapshot(self, table: Table, t: float, target: str) -> FabricAnswer:
        from agent.gnmi_proto import gnmi_pb2

        from .wire import JSON_IETF, snapshot_extension, to_path

        request = gnmi_pb2.GetRequest(prefix=gnmi_pb2.Path(target=target), path=[to_path(table.path)],
                                      encoding=JSON_IETF, extension=[snapshot_extension(t)])
        return await self._fabric(request, table, target, lambda: self.snapshot(table, t))

    async def _fabric(self, request, table: Table, target: str, local) -> FabricAnswer:
        """Our own rows read here, the other members' through the forwarder, as one answer."""
        from agent.gnmi_proto import gnmi_pb2

        from agent.forward import ForwardError

        from .wire import fabric_answer

        answer = FabricAnswer()
        if target == self.node:
            answer.rows = [(self.node, row) for row in await local()]
            return answer
        forwarder = self._forwarder(target)
        try:
            raw = await forwarder.get(request, self._user, _empty_answer)
        except ForwardError as exc:
            raise CliError(exc.message) from None
        answer = fabric_answer(list(gnmi_pb2.GetResponse.FromString(raw).notification), table, target)
        if target == "*":
            answer.rows[:0] = [(self.node, row) for row in await local()]
        return answer

    async def _forward_set(self, edit: Edit, target: str) -> None:
        from agent.forward import ForwardError

        from .wire import set_request

        async def local(_request):
            await self.apply(edit)
            from agent.gnmi_proto import gnmi_pb2
            return gnmi_pb2.SetResponse()

        try:
            await self._forwarder(target).set(set_request(edit, target), self._user, local)
        except ForwardError as exc:
            raise CliError(exc.message) from None


async def _empty_answer(_request) -> bytes:
    """Our own part of a fabric-wide Get made by the CLI: read locally instead (an empty GetResponse)."""
    return b""


def apply_edit(tree: dict, edit: Edit) -> dict:
    """Apply an Edit to an RFC 7951 config tree (in place; returned for `propose`).

    Raises ConfigError data-exists / data-missing so a create never
    overwrites and a modify or delete never invents an entry, even when two
    writers race (propose re-runs this on the newer config).
    """

    top, *rest = edit.path.strip("/").split("/")
    if not edit.key:
        node = tree.setdefault(top, {})
        for name in rest:
            node = node.setdefault(name, {})
        if edit.op == "delete":
            for leaf in edit.leaves:
                node.pop(leaf, None)
        else:
            node.update(copy.deepcopy(edit.leaves))
        return tree
    node = tree.setdefault(top, {})
    for name in rest[:-1]:
        node = node.setdefault(name, {})
    entries = node.setdefault(rest[-1], [])
    match = next((e for e in entries if all(str(e.get(k)) == str(v) for k, v in edit.key.items())), None)
    what = " ".join(f"{k} {v}" for k, v in edit.key.items())
    if edit.op == "create":
        if match is not None:
            raise ConfigError("data-exists", f"{what} already exists")
        entries.append({**edit.key, **copy.deepcopy(edit.leaves)})
    elif match is None:
        raise ConfigError("data-missing", f"{what} does not exist")
    elif edit.op == "delete":
        entries.remove(match)
        if not entries:
            del node[rest[-1]]
    else:
        match.update(copy.deepcopy(edit.leaves))
    return tree


def node_name_from(nodes: list[dict], address: str, fallback: str) -> str:
    """The node a client talks to: the fabric member at `address`, the only member, or `fallback`."""
    for n in nodes:
        if n.get("address") and n.get("address") == address:
            return str(n["name"])
    if len(nodes) == 1 and nodes[0].get("name"):
        return str(nodes[0]["name"])
    return fallback


NODES_TABLE = Table(FABRIC_NODES, ("name",))
