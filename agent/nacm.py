"""NETCONF Access Control (RFC 8341, ietf-netconf-acm): one set of decisions for every face.

The rules are the running config's `/ietf-netconf-acm:nacm` (node-local,
editable over NETCONF, gNMI or any face like other config), followed by
two built-in rule lists for the two roles of the settings file:

| group (= role)  | built-in rules |
|-----------------|----------------|
| `network-admin` | permit everything (`module-name *`, `access-operations *`) |
| `read-only`     | deny exec of every operation that writes or ends sessions (edit-config, copy-config, delete-config, lock, unlock, commit, cancel-commit, discard-changes, kill-session) and deny create/update/delete of any data |

A user's groups are its role, the `groups:` listed for it in the settings
file (external groups, RFC 8341 3.2.4, honoured while `enable-external-groups`
is true) and every `/nacm/groups/group` whose `user-name` names it.  Rule
lists are tried in order (configured ones first); the first rule that
matches decides; with none, `read-default` / `write-default` /
`exec-default` do (permit, deny, permit), except that `kill-session` and
`delete-config` are denied by default (nacm:default-deny-all) and
`close-session` is always permitted.

Faces ask:
- `may_exec(user, operation)` before an operation (NETCONF RPCs; gNMI Set
  and CLI config commands are `edit-config`, gNMI/CLI reads are `get`);
- `check_writes(user, face, changes)` for the data nodes a write creates,
  updates or deletes: the datastore calls it inside `propose`, so it holds
  for every face and every write path (candidate and startup edits call it
  directly);
- `read_filter(user)` for the data nodes a read may return (None when the
  rules can deny no read, the usual case, so reads cost nothing extra).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from core.changefeed import Change
from core.errors import ConfigError
from core.schema import NodeInfo, Schema

log = logging.getLogger("kubefabric.nacm")

NACM_TOP = "ietf-netconf-acm:nacm"
NACM_PATH = "/ietf-netconf-acm:nacm"
READ, CREATE, UPDATE, DELETE, EXEC = "read", "create", "update", "delete", "exec"
#: NETCONF operations a read-only user may not run (they write, or end other sessions)
WRITE_OPERATIONS = ("edit-config", "copy-config", "delete-config", "lock", "unlock", "commit", "cancel-commit",
                    "discard-changes", "kill-session")
#: nacm:default-deny-all operations (RFC 6241's ietf-netconf module): denied unless a rule permits them
DEFAULT_DENY_ALL = ("kill-session", "delete-config")
#: the module that defines each protocol operation (a rule's module-name must match it)
OPERATION_MODULES = {
    **{op: "ietf-netconf" for op in ("get", "get-config", "edit-config", "copy-config", "delete-config", "lock",
                                     "unlock", "close-session", "kill-session", "commit", "cancel-commit",
                                     "discard-changes", "validate")},
    "create-subscription": "notifications",
    "get-schema": "ietf-netconf-monitoring",
}


@dataclass(frozen=True)
class Rule:
    name: str
    module: str  # "*" or a module name
    rpc: str | None  # protocol-operation case: an operation name or "*"
    notification: str | None
    path: tuple[tuple[str, dict], ...] | None  # data-node case: (name, {key: value}) steps
    operations: frozenset[str]  # access operations, "*" for all
    permit: bool


@dataclass(frozen=True)
class RuleList:
    name: str
    groups: frozenset[str]
    rules: tuple[Rule, ...]


BUILTIN = (
    RuleList("network-admin", frozenset({"network-admin"}), (
        Rule("permit-all", "*", None, None, None, frozenset({"*"}), True),
    )),
    RuleList("read-only", frozenset({"read-only"}), tuple(
        Rule(f"deny-{op}", "*", op, None, None, frozenset({EXEC}), False) for op in WRITE_OPERATIONS
    ) + (Rule("deny-data-writes", "*", None, None, None, frozenset({CREATE, UPDATE, DELETE}), False),)),
)

_STEP = re.compile(r"/(?:[\w.-]+:)?([\w.-]+)((?:\[[^\]]*\])*)")
_PREDICATE = re.compile(r"\[\s*(?:[\w.-]+:)?([\w.-]+)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")\s*\]")


def _parse_path(text: str) -> tuple[tuple[str, dict], ...]:
    """A data-node rule's path (`/kfk8s:k8s/kfk8s:connection[cluster-name='a']`) as (name, keys) steps."""
    steps = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ValueError(f"cannot parse NACM path {text!r}")
        keys = {k: (a if a is not None else b) for k, a, b in _PREDICATE.findall(m.group(2))}
        steps.append((m.group(1), keys))
        pos = m.end()
    return tuple(steps)


class Nacm:
    """Access decisions over the running config's /nacm and the settings file's users and roles."""

    def __init__(self, schema: Schema, groups_of: Callable[[str], Iterable[str]]) -> None:
        self.schema = schema
        self._settings_groups = groups_of
        self.enabled = True
        self.defaults = {READ: True, "write": False, EXEC: True}
        self.external_groups = True
        self.rule_lists: tuple[RuleList, ...] = BUILTIN
        self._group_members: dict[str, frozenset[str]] = {}
        self.counters = {"denied-operations": 0, "denied-data-writes": 0, "denied-notifications": 0}
        #: called after a counter changes (the runtime publishes them as /nacm state)
        self.on_counters: Callable[[dict], None] | None = None

    # -- configuration ---------------------------------------------------------------
    def configure(self, running: dict) -> None:
        """Take the rules from the running config (defaults filled in); a ConfigListener."""
        nacm = running.get(NACM_TOP) or {}
        self.enabled = nacm.get("enable-nacm", True) is not False
        self.defaults = {READ: nacm.get("read-default", "permit") == "permit",
                         "write": nacm.get("write-default", "deny") == "permit",
                         EXEC: nacm.get("exec-default", "permit") == "permit"}
        self.external_groups = nacm.get("enable-external-groups", True) is not False
        self._group_members = {g["name"]: frozenset(g.get("user-name") or ())
                               for g in (nacm.get("groups") or {}).get("group") or ()}
        lists = []
        for rl in nacm.get("rule-list") or ():
            rules = []
            for r in rl.get("rule") or ():
                try:
                    path = _parse_path(r["path"]) if "path" in r else None
                except ValueError as exc:
                    log.error("NACM rule %s/%s ignored: %s", rl.get("name"), r.get("name"), exc)
                    continue
                ops = r.get("access-operations", "*")
                ops = frozenset(ops.split()) if isinstance(ops, str) else frozenset(ops)
                rules.append(Rule(r["name"], r.get("module-name", "*"), r.get("rpc-name"),
                                  r.get("notification-name"), path, ops, r.get("action") == "permit"))
            lists.append(RuleList(rl["name"], frozenset(rl.get("group") or ()), tuple(rules)))
        self.rule_lists = tuple(lists) + BUILTIN

    def groups(self, user: str) -> frozenset[str]:
        """The NACM groups of a user: settings-file groups (external) and /nacm/groups membership."""
        out = {name for name, members in self._group_members.items() if user in members}
        if self.external_groups:
            out.update(self._settings_groups(user))
        return frozenset(out)

    def _lists_for(self, user: str) -> list[RuleList]:
        groups = self.groups(user)
        return [rl for rl in self.rule_lists if "*" in rl.groups or rl.groups & groups]

    # -- operations ------------------------------------------------------------------
    def may_exec(self, user: str, operation: str, module: str | None = None) -> bool:
        """Whether `user` may invoke a protocol operation (RFC 8341 3.4.4)."""
        if not self.enabled or operation == "close-session":
            return True
        module = module or OPERATION_MODULES.get(operation, "")
        for rl in self._lists_for(user):
            for rule in rl.rules:
                if rule.module not in ("*", module) or rule.notification is not None or rule.path is not None:
                    continue
                if rule.rpc is not None and rule.rpc not in ("*", operation):
                    continue
                if "*" in rule.operations or EXEC in rule.operations:
                    return rule.permit
        if operation in DEFAULT_DENY_ALL:
            return False
        return self.defaults[EXEC]

    def require_exec(self, user: str, operation: str, module: str | None = None) -> None:
        """ConfigError access-denied unless `user` may run `operation`."""
        if not self.may_exec(user, operation, module):
            self._count("denied-operations")
            groups = ", ".join(sorted(self.groups(user))) or "no group"
            raise ConfigError("access-denied", f"user {user!r} ({groups}) may not run {operation} (NACM)",
                              error_type="protocol")

    # -- data ------------------------------------------------------------------------
    def may_access(self, user: str, access: str, info: NodeInfo, key: tuple = (), leaf: str | None = None) -> bool:
        """Whether `user` may `access` (read/create/update/delete) one data node (RFC 8341 3.4.5)."""
        if not self.enabled:
            return True
        steps = self._steps(info, key, leaf)
        for rl in self._lists_for(user):
            for rule in rl.rules:
                if rule.rpc is not None or rule.notification is not None:
                    continue
                if rule.module not in ("*", info.module):
                    continue
                if rule.path is not None and not _path_covers(rule.path, steps):
                    continue
                if "*" in rule.operations or access in rule.operations:
                    return rule.permit
        return self.defaults[READ] if access == READ else self.defaults["write"]

    def _steps(self, info: NodeInfo, key: tuple, leaf: str | None) -> list[tuple[str, dict]]:
        chain = []
        node: NodeInfo | None = info
        while node is not None:
            chain.append(node)
            node = node.parent
        steps = []
        pos = 0
        for node in reversed(chain):
            own = dict(zip(node.own_keys, key[pos:pos + len(node.own_keys)]))
            pos += len(node.own_keys)
            steps.append((node.name, own))
        if leaf is not None:
            steps.append((leaf, {}))
        return steps

    def check_writes(self, user: str, face: str, changes: list[Change], before: Mapping | None = None) -> None:
        """A WriteAuthorizer: refuse the whole write if any changed node may not be written."""
        if not self.enabled:
            return
        before = before or {}
        for change in changes:
            info = self.schema.nodes.get(change.path)
            if info is None:
                continue
            if change.values is None:
                access = DELETE
            elif change.key not in (before.get(change.path) or {}):
                access = CREATE
            else:
                access = UPDATE
            if not self.may_access(user, access, info, change.key):
                self._count("denied-data-writes")
                where = _instance_path(info, change.key)
                raise ConfigError("access-denied", f"user {user!r} may not {access} {where} (NACM)", path=where)
            for name in list(change.values or ()) + list(change.removed):
                if access != CREATE and not self.may_access(user, UPDATE if name not in change.removed else DELETE,
                                                            info, change.key, name):
                    self._count("denied-data-writes")
                    where = f"{_instance_path(info, change.key)}/{name}"
                    raise ConfigError("access-denied", f"user {user!r} may not change {where} (NACM)", path=where)

    def read_filter(self, user: str) -> Callable[[NodeInfo, tuple], bool] | None:
        """A node filter for reads, or None when nothing can be denied to `user` (no cost on the hot path)."""
        if not self.enabled:
            return None
        lists = self._lists_for(user)
        can_deny = not self.defaults[READ] or any(
            not rule.permit and rule.rpc is None and rule.notification is None
            and ("*" in rule.operations or READ in rule.operations)
            for rl in lists for rule in rl.rules)
        if not can_deny:
            return None
        cache: dict[tuple, bool] = {}

        def allowed(info: NodeInfo, key: tuple) -> bool:
            ident = (info.path, key)
            hit = cache.get(ident)
            if hit is None:
                hit = cache[ident] = self.may_access(user, READ, info, key)
                if len(cache) > 100_000:
                    cache.clear()
            return hit

        return allowed

    def _count(self, name: str) -> None:
        self.counters[name] += 1
        if self.on_counters is not None:
            try:
                self.on_counters(dict(self.counters))
            except Exception:  # noqa: BLE001 - counters never fail an access decision
                log.exception("publishing NACM counters failed")


def _path_covers(rule: tuple[tuple[str, dict], ...], steps: list[tuple[str, dict]]) -> bool:
    """A rule path matches its node and every node below it; key predicates must agree."""
    if len(rule) > len(steps):
        return False
    for (name, keys), (have_name, have_keys) in zip(rule, steps):
        if name != have_name:
            return False
        for k, v in keys.items():
            if k in have_keys and str(have_keys[k]) != v:
                return False
    return True


def _instance_path(info: NodeInfo, key: tuple) -> str:
    chain = []
    node: NodeInfo | None = info
    while node is not None:
        chain.append(node)
        node = node.parent
    out, pos = [], 0
    for node in reversed(chain):
        own = key[pos:pos + len(node.own_keys)]
        pos += len(node.own_keys)
        step = node.name if node.parent is not None else f"{node.module}:{node.name}"
        out.append(step + "".join(f"[{k}={v}]" for k, v in zip(node.own_keys, own)))
    return "/" + "/".join(out)


def prune_tree(tree: dict, schema: Schema, allowed: Callable[[NodeInfo, tuple], bool]) -> dict:
    """An RFC 7951 tree without the nodes `allowed(info, key)` refuses (NETCONF get/get-config)."""

    def walk(body: dict, info: NodeInfo, key: tuple) -> dict | None:
        if not allowed(info, key):
            return None
        out = {}
        for name, value in body.items():
            child = info.children.get(name)
            if child is None:
                out[name] = value
                continue
            if child.kind == "list":
                entries = []
                for entry in value or ():
                    ckey = key + tuple(entry.get(k) for k in child.own_keys)
                    kept = walk(entry, child, ckey)
                    if kept is not None:
                        entries.append(kept)
                if entries:
                    out[name] = entries
            elif isinstance(value, dict):
                kept = walk(value, child, key)
                if kept is not None:
                    out[name] = kept
        return out

    result = {}
    for top_name, body in tree.items():
        info = schema.top.get(top_name)
        if info is None:
            result[top_name] = body
            continue
        kept = walk(body, info, ())
        if kept is not None:
            result[top_name] = kept
    return result


def for_authenticator(schema: Schema, authenticator) -> "Nacm":
    """A Nacm whose groups come from an authenticator (settings-file roles and groups), for faces built alone."""
    groups = getattr(authenticator, "groups", None)
    if groups is None:
        def groups(name: str) -> tuple[str, ...]:
            user = authenticator.user(name) if hasattr(authenticator, "user") else None
            return (user.role,) if user is not None else ()
    return Nacm(schema, groups)


def follow(nacm: "Nacm", ds) -> "Nacm":
    """Keep `nacm` configured from the running config (a ConfigFollower)."""
    ds.on_config(nacm.configure)
    return nacm
