"""Runs one command line against a backend and returns what to print.

Show commands: read rows, keep those matching the column filters and the
time window, sort, pick the columns, render.  Config commands: check the
entry exists (or not) for a clear Netvisor-style message, then hand one
`Edit` to the backend, which validates through the agent's single write
path.  Every failure becomes one line naming the command.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import time
from dataclasses import dataclass
from typing import Callable

from core.times import TimeFilterError, TimeFormatError, parse_duration, parse_rfc3339, parse_window

from . import render
from .render import try_parse_epoch
from .backend import Backend, Edit, FabricAnswer
from .commands import ATTACHMENTS, VPORTS, Column, Command, ParsedCommand, Table
from .errors import CliError
from .parser import command_help, find_command, general_help, parse

# vport-history-show columns for a range of changes (a snapshot shows vport-show's)
_HISTORY_RANGE_DEFAULT = ("time", "change", "ip", "svc-name", "hostname", "entity", "power", "portgroup")


@dataclass
class Outcome:
    """The result of one line: text to print, or an error line; `exit` ends the shell."""

    output: str = ""
    error: str | None = None
    exit: bool = False

    @property
    def ok(self) -> bool:
        """True when the command succeeded."""
        return self.error is None


class Engine:
    """Executes command lines for one user against one backend."""

    def __init__(self, backend: Backend, *, as_json: bool = False, now: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.as_json = as_json
        self.now = now

    async def run(self, line: str | list[str]) -> Outcome:
        """Execute one line (or its words); never raises for a user error."""
        try:
            parsed = parse(line)
            if parsed is None:
                return Outcome()
            return await self.execute(parsed)
        except CliError as exc:
            return Outcome(error=str(exc))

    async def execute(self, p: ParsedCommand) -> Outcome:
        """Execute a parsed command."""
        cmd = p.command
        try:
            if cmd.kind == "builtin":
                return self._builtin(p)
            if cmd.kind == "show":
                return Outcome(await self._show(p))
            if cmd.kind == "settings-show":
                return Outcome(await self._settings_show(p))
            if cmd.kind == "history":
                return Outcome(await self._history(p))
            if cmd.kind == "location":
                return Outcome(await self._location(p))
            await self._change(p)
            return Outcome()
        except TimeFilterError as exc:
            raise CliError(f"{cmd.name}: {exc}") from None
        except CliError as exc:
            text = str(exc)
            raise CliError(text if text.startswith(cmd.name) else f"{cmd.name}: {text}") from None

    # -- builtins ------------------------------------------------------------------
    def _builtin(self, p: ParsedCommand) -> Outcome:
        name = p.command.name
        if name in ("exit", "quit"):
            return Outcome(exit=True)
        if name == "pager":
            if p.args not in (["on"], ["off"], []):
                raise CliError("pager: expected on or off")
            return Outcome()
        if p.args:
            return Outcome(command_help(find_command(p.args[0])))
        return Outcome(general_help())

    # -- show ----------------------------------------------------------------------
    async def _show(self, p: ParsedCommand) -> str:
        cmd = p.command
        if p.switch is not None:
            return await self._fabric_show(p)
        rows = [_normalize(r, cmd) for r in await self.backend.rows(cmd.table)]
        rows = [r for r in rows if _matches(r, p.filters, cmd)]
        if p.times:
            t1, t2 = parse_window(p.times, now=self.now())
            rows = [r for r in rows if _in_window(r, cmd, t1, t2)]
        rows.sort(key=lambda r: tuple(_sort_value(r.get(k)) for k in cmd.table.keys))
        return self._render(p, rows, cmd.default_columns)

    # -- fabric-wide: `switch NAME|* COMMAND` ---------------------------------------
    async def _fabric_show(self, p: ParsedCommand, t: float | None = None) -> str:
        """One table from the members' answers, with the member that answered, and who did not answer."""
        cmd = p.command
        if t is None:
            answer = await self.backend.fabric_rows(cmd.table, p.switch or "*")
        else:
            answer = await self.backend.fabric_snapshot(cmd.table, t, p.switch or "*")
            if cmd.table.path == VPORTS:    # locations from the attachments then (replicated: ours will do)
                _add_locations([row for _member, row in answer.rows], await self._attachments_at(t))
        wide = _with_member_column(cmd)
        p = dataclasses.replace(p, command=wide)
        rows = self._fabric_rows(wide, answer)
        rows = [r for r in rows if _matches(r, p.filters, wide)]
        if p.times:
            t1, t2 = parse_window(p.times, now=self.now())
            rows = [r for r in rows if _in_window(r, wide, t1, t2)]
        member = wide.table.member_column
        rows.sort(key=lambda r: (_sort_value(r.get(member)) if member else (),
                                 *(_sort_value(r.get(k)) for k in wide.table.keys)))
        default = wide.default_columns
        if t is not None:
            default = [c.name for c in wide.columns if c.default and c.name not in ("time", "change")]
        return _with_missing(self._render(p, rows, default), answer, self.as_json)

    def _fabric_rows(self, cmd: Command, answer: FabricAnswer) -> list[dict]:
        table = cmd.table
        rows, seen = [], set()
        for member, row in answer.rows:
            row = _normalize(row, cmd)
            if table.member_column and not row.get(table.member_column):
                row[table.member_column] = member
            if table.shared:
                ident = tuple(str(row.get(k)) for k in table.keys)
                if ident in seen:
                    continue
                seen.add(ident)
            rows.append(row)
        return rows

    async def _attachments_at(self, t: float) -> list[dict]:
        """Every attachment at ``t`` (none when this agent keeps no attachment history)."""
        try:
            return await self.backend.snapshot(_ATTACHMENT_TABLE, t)
        except CliError:
            return []

    # -- where a pod is plugged in ----------------------------------------------------
    async def _location(self, p: ParsedCommand) -> str:
        """Pods (vPorts), their node's attachments and the ports' health: now, or at snapshot-time."""
        cmd = p.command
        at = _point_in_time(p.snapshot, self.now()) if p.snapshot else None
        attachment_table = _ATTACHMENT_TABLE
        missing: FabricAnswer | None = None
        if p.switch is not None:
            missing = (await self.backend.fabric_rows(cmd.table, p.switch) if at is None
                       else await self.backend.fabric_snapshot(cmd.table, at, p.switch))
            vports = [row for _member, row in missing.rows]
        elif at is None:
            vports = await self.backend.rows(cmd.table)
        else:
            vports = await self.backend.snapshot(cmd.table, at)
        if at is None:
            attachments = await self.backend.rows(attachment_table)
        else:
            attachments = await self.backend.snapshot(attachment_table, at)
        by_node: dict[tuple[str, str], list[dict]] = {}
        for a in attachments:
            by_node.setdefault((str(a.get("cluster-name")), str(a.get("node"))), []).append(a)
        rows = []
        for v in vports:
            v = _normalize(v, cmd)
            if not _matches(v, {k: w for k, w in p.filters.items() if k in _POD_LEAVES}, cmd):
                continue
            pod = {k: v.get(k) for k in _POD_LEAVES}
            links = by_node.get((str(v.get("svc-name")), str(v.get("hostname"))))
            if not links:
                rows.append({**pod, "note": "the node is not placed on any switch port"})
                continue
            for a in links:
                rows.append(_normalize({**pod, **{k: a.get(k) for k in _PORT_LEAVES}}, cmd))
        rows = [r for r in rows if _matches(r, p.filters, cmd)]
        rows.sort(key=lambda r: (_sort_value(r.get("ip")), _sort_value(r.get("switch")), _sort_value(r.get("port"))))
        text = self._render(p, rows, cmd.default_columns)
        return _with_missing(text, missing, self.as_json) if missing is not None else text

    async def _settings_show(self, p: ParsedCommand) -> str:
        cmd = p.command
        if p.switch is not None:   # one row per member: a table unless `layout vertical` was asked for
            return await self._fabric_show(dataclasses.replace(p, vertical=bool(p.vertical)))
        row = _normalize(await self.backend.settings(cmd.table), cmd)
        rows = [row] if _matches(row, p.filters, cmd) else []
        if self.as_json:
            return render.as_json(rows, self._columns(p, rows, [c.name for c in cmd.columns]), single=True)
        columns = self._columns(p, rows, [c.name for c in cmd.columns], drop_empty=False)
        if p.delim is not None:
            return render.parsable(rows, columns, p.delim, p.headers)
        if p.vertical is False:
            return render.table(rows, columns, p.headers)
        return render.vertical(rows, columns, p.headers)

    async def _history(self, p: ParsedCommand) -> str:
        cmd = p.command
        now = self.now()
        if p.switch is not None:
            if p.times:
                raise CliError("the switch prefix takes snapshot-time; ask the member itself for a time range")
            return await self._fabric_show(p, _point_in_time(p.snapshot, now) if p.snapshot else now)
        if p.times:
            t1, t2 = parse_window(p.times, now=now)
            rows = await self.backend.changes(cmd.table, t1, t2)
            if cmd.range_columns:
                default = list(cmd.range_columns)
            elif cmd.table.keys == ("ip",):
                default = list(_HISTORY_RANGE_DEFAULT)
            else:
                default = ["time", "change"] + [c.name for c in cmd.columns
                                                if c.default and c.name not in ("time", "change")]
        else:
            at = _point_in_time(p.snapshot, now) if p.snapshot else now
            rows = await self.backend.snapshot(cmd.table, at)
            if cmd.table.path == VPORTS:    # the time machine keeps locations in attachment versions
                _add_locations(rows, await self._attachments_at(at))
            default = [c.name for c in cmd.columns if c.default and c.name not in ("time", "change")]
        rows = [_normalize(r, cmd) for r in rows]
        rows = [r for r in rows if _matches(r, p.filters, cmd)]
        rows.sort(key=lambda r: (_sort_value(r.get("time")),) + tuple(_sort_value(r.get(k)) for k in cmd.table.keys))
        return self._render(p, rows, default)

    def _columns(self, p: ParsedCommand, rows: list[dict], default: list[str], drop_empty: bool = True) -> list[Column]:
        cmd = p.command
        if p.columns:
            names = p.columns
        elif self.as_json:
            names = [c.name for c in cmd.columns if any(r.get(c.name) is not None for r in rows)]
        else:
            names = default
            if drop_empty and rows:  # Netvisor leaves out columns no row has a value for
                names = [n for n in names if any(r.get(n) not in (None, "", []) for r in rows)]
        return [cmd.column(n) for n in names]

    def _render(self, p: ParsedCommand, rows: list[dict], default: list[str]) -> str:
        if p.sort:
            name, descending = p.sort
            kind = p.command.column(name).kind
            present = [r for r in rows if r.get(name) not in (None, "")]
            absent = [r for r in rows if r.get(name) in (None, "")]
            present.sort(key=lambda r: _sort_value(r.get(name), kind), reverse=descending)
            rows = present + absent
        columns = self._columns(p, rows, default)
        if self.as_json:
            return render.as_json(rows, columns)
        if not rows:
            return ""
        if p.delim is not None:
            return render.parsable(rows, columns, p.delim, p.headers)
        if p.vertical:
            return render.vertical(rows, columns, p.headers)
        return render.table(rows, columns, p.headers)

    # -- config --------------------------------------------------------------------
    async def _change(self, p: ParsedCommand) -> None:
        cmd = p.command
        values = dict(p.values)
        target = p.switch
        if cmd.kind == "settings-modify":
            await self.backend.apply(Edit("merge", cmd.table.path, {}, values), target)
            return
        # configured entries only: a deleted connection's state may linger until its producer notices
        existing = {str(r.get(cmd.key)) for r in await self.backend.rows(cmd.table, config_only=True)}
        name = values.pop(cmd.key, None)
        if name is None:  # Netvisor's `k8s-connection-modify create-vport` with a single connection
            if len(existing) != 1:
                raise CliError(f"{cmd.key} is required ({len(existing)} entries exist)")
            name = next(iter(existing))
        what = f"{cmd.key} {name}"
        if cmd.kind == "create":
            if str(name) in existing:
                raise CliError(f"{what} already exists")
            await self.backend.apply(Edit("create", cmd.table.path, {cmd.key: name}, values), target)
            return
        if str(name) not in existing:
            raise CliError(f"{what} does not exist")
        if cmd.kind == "delete":
            await self.backend.apply(Edit("delete", cmd.table.path, {cmd.key: name}), target)
            return
        if not values:
            words = ", ".join(w for o in cmd.options if o.name != cmd.key for w in o.words)
            raise CliError(f"nothing to change (parameters: {words})")
        await self.backend.apply(Edit("merge", cmd.table.path, {cmd.key: name}, values), target)


_ATTACHMENT_TABLE = Table(ATTACHMENTS, ("switch", "port", "cluster-name", "node"))


def _add_locations(vports: list[dict], attachments: list[dict]) -> None:
    """switch/port of each vPort's node, from attachment rows (in place)."""
    links: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a in attachments:
        links.setdefault((str(a.get("cluster-name")), str(a.get("node"))), []).append(
            (str(a.get("switch")), str(a.get("port"))))
    for v in vports:
        pairs = sorted(links.get((str(v.get("svc-name")), str(v.get("hostname"))), ()))
        if pairs:
            v["switch"], v["port"] = [s for s, _ in pairs], [p for _, p in pairs]


#: vport-location-show: the pod's leaves (from the vPort) and the port's (from the attachment)
_POD_LEAVES = ("ip", "entity", "namespace", "svc-name", "hostname")
_PORT_LEAVES = ("switch", "port", "learned-by", "oper-status", "speed", "in-utilization", "out-utilization",
                "in-discard-percent", "out-discard-percent", "note")


def _with_member_column(cmd: Command) -> Command:
    """The command with a column naming the answering member, when its rows have none."""
    member = cmd.table.member_column
    if member is None or cmd.column(member) is not None:
        return cmd
    return dataclasses.replace(cmd, columns=(Column(member, "fabric member that answered"),) + cmd.columns)


def _with_missing(text: str, answer: FabricAnswer, as_json: bool) -> str:
    """A fabric-wide answer's text, then one line per member that did not answer (never left out silently)."""
    if not answer.missing:
        return text
    if as_json:
        import json

        rows = json.loads(text) if text else []
        rows += [{"switch": member, "error": reason} for member, reason in answer.missing]
        return json.dumps(rows, indent=2)
    lines = [f"switch {member}: no answer ({reason})" for member, reason in answer.missing]
    return "\n".join(([text] if text else []) + lines)


def _point_in_time(text: str, now: float) -> float:
    """snapshot-time: a date/time, or a duration meaning that long ago."""
    try:
        return parse_rfc3339(text)
    except TimeFormatError:
        pass
    try:
        return now - parse_duration(text)
    except TimeFilterError:
        raise CliError(f"invalid snapshot-time '{text}'; expected yyyy-mm-ddTHH:mm:ss or #d#h#m#s (ago)") from None


def _normalize(row: dict, cmd: Command) -> dict:
    out = dict(row)
    for c in cmd.columns:
        if c.name in out:
            out[c.name] = render.normalize(out[c.name], c.kind)
    return out


def _matches(row: dict, filters: dict, cmd: Command) -> bool:
    """Column filters: a value equals the raw or the displayed value (any element of a list)."""
    for name, wanted in filters.items():
        column = cmd.column(name)
        value = row.get(name)
        if column.kind == "bool":
            if bool(value) != wanted:
                return False
            continue
        if value is None:
            return False
        candidates = value if isinstance(value, list) else [value]
        texts = {str(v) for v in candidates} | {render.show(v, column.kind if column.kind != "list" else "str")
                                               for v in candidates}
        if str(wanted) not in texts:
            return False
    return True


def _in_window(row: dict, cmd: Command, t1: float, t2: float) -> bool:
    """Does the row's life [since, until] (or its change time) overlap [t1, t2)?"""
    table = cmd.table
    since = try_parse_epoch(row.get(table.since)) if table.since else None
    until = try_parse_epoch(row.get(table.until)) if table.until else None
    changed = row.get("_ts")
    start = since if since is not None else (until if until is not None else changed)
    end = until if until is not None else (changed if changed is not None else since)
    if start is None or end is None:
        return False
    return start < t2 and max(start, end) >= t1


def _sort_value(value: object, kind: str = "str") -> tuple:
    """Sort key: numbers numerically, IP addresses by address, the rest as text."""
    if value is None:
        return (3, 0, "")
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if kind == "time":
        epoch = try_parse_epoch(value)
        if epoch is not None:
            return (0, epoch, "")
    try:
        address = ipaddress.ip_address(str(value))
        return (1, address.version * (1 << 130) + int(address), "")
    except ValueError:
        return (2, 0, str(value))

