"""Netvisor argument syntax: `[switch NAME|*] command [param value]... [flag]...`, help and completion.

`switch NAME` runs the command on that fabric member, `switch *` on every
member (one table with a column naming the member that answered), as on a
Netvisor fabric.

Show commands take a filter per column (`vport-show hostname server1`),
boolean columns as flags (`k8s-connection-show enable`, `disable`,
`no-create-vport`), the time filters and the output options.  Create and
modify take `param value` pairs and flag pairs (`enable|disable`).  Values
with spaces are quoted as in a POSIX shell.  Errors are `CliError`s whose
message is one line naming the command.
"""
from __future__ import annotations

import shlex

from .commands import (
    COMMANDS, OUTPUT_FLAGS, OUTPUT_OPTIONS, SNAPSHOT_TIME, SNAPSHOT_TIME_HELP, TIME_FILTER_HELP, TIME_FILTERS,
    Command, ParsedCommand, command_names,
)
from .errors import CliError

_TRUE = ("true", "yes", "on", "enable", "1")
_FALSE = ("false", "no", "off", "disable", "0")


def split(line: str) -> list[str]:
    """Words of a command line (POSIX quoting)."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as exc:
        raise CliError(f"cannot parse the command line: {exc}") from None


def off_word(column: str) -> str:
    """The word that filters a boolean column for false (`disable`, `no-create-vport`)."""
    return "disable" if column == "enable" else f"no-{column}"


def find_command(word: str) -> Command:
    """The command a word names; a unique prefix is accepted as Netvisor does."""
    if word in COMMANDS:
        return COMMANDS[word]
    matches = [n for n in command_names() if n.startswith(word)]
    if len(matches) == 1:
        return COMMANDS[matches[0]]
    if matches:
        raise CliError(f"ambiguous command '{word}': {', '.join(matches)}")
    raise CliError(f"unknown command '{word}' (type help for the list of commands)")


def parse(line: str | list[str]) -> ParsedCommand | None:
    """Parse a command line; None for an empty line."""
    words = split(line) if isinstance(line, str) else list(line)
    if not words:
        return None
    switch = None
    if words[0] == "switch":
        if len(words) < 3:
            raise CliError("switch: give a fabric member name (or * for all) and a command: switch * vport-show")
        switch, words = words[1], words[2:]
        if not switch:
            raise CliError("switch: the member name is empty")
    cmd = find_command(words[0])
    args = words[1:]
    if cmd.kind == "builtin":
        return ParsedCommand(cmd, args=args)
    if "?" in args:
        return ParsedCommand(COMMANDS["help"], args=[cmd.name])
    if switch is not None and cmd.kind == "builtin":
        raise CliError(f"switch: {cmd.name} runs here, not on a fabric member")
    parsed = ParsedCommand(cmd, switch=switch)
    if cmd.is_show:
        _parse_show(cmd, args, parsed)
    else:
        _parse_config(cmd, args, parsed)
    return parsed


def _take(cmd: Command, args: list[str], i: int, word: str) -> str:
    if i + 1 >= len(args):
        raise CliError(f"{cmd.name}: {word} needs a value")
    return args[i + 1]


def _parse_show(cmd: Command, args: list[str], p: ParsedCommand) -> None:
    seen: set[str] = set()
    flags = {off_word(c.name): c.name for c in cmd.columns if c.kind == "bool"}
    i = 0
    while i < len(args):
        word = args[i]
        step = 2
        column = cmd.column(word)
        name = word if column is None else column.name
        if name in seen or flags.get(word) in seen:
            raise CliError(f"{cmd.name}: {flags.get(word, word)} given twice")
        if column is not None and column.kind == "bool":
            value = True
            if i + 1 < len(args) and args[i + 1].lower() in _TRUE + _FALSE:
                value = args[i + 1].lower() in _TRUE
            else:
                step = 1
            p.filters[word] = value
        elif word in flags:
            p.filters[flags[word]] = False
            name, step = flags[word], 1
        elif column is not None:
            p.filters[word] = _take(cmd, args, i, word)
        elif word in TIME_FILTERS and cmd.takes_time_filters:
            p.times[word] = _take(cmd, args, i, word)
        elif word == SNAPSHOT_TIME and cmd.takes_snapshot:
            p.snapshot = _take(cmd, args, i, word)
        elif word == "format":
            p.columns = _columns(cmd, _take(cmd, args, i, word))
        elif word == "parsable-delim":
            p.delim = _take(cmd, args, i, word)
        elif word in OUTPUT_FLAGS:
            p.headers, step = word == "show-headers", 1
        elif word in ("sort-asc", "sort-desc"):
            if "sort" in seen:
                raise CliError(f"{cmd.name}: give one of sort-asc and sort-desc")
            column_name = _take(cmd, args, i, word)
            if cmd.column(column_name) is None:
                raise CliError(f"{cmd.name}: cannot sort by unknown column '{column_name}'")
            p.sort, name = (column_name, word == "sort-desc"), "sort"
        elif word == "layout":
            value = _take(cmd, args, i, word)
            if value not in ("vertical", "horizontal"):
                raise CliError(f"{cmd.name}: layout is vertical or horizontal, not '{value}'")
            p.vertical = value == "vertical"
        else:
            raise CliError(f"{cmd.name}: unknown parameter '{word}' (type '{cmd.name} ?' for its parameters)")
        seen.add(name)
        i += step
    if p.snapshot is not None and p.times:
        raise CliError(f"{cmd.name}: snapshot-time cannot be combined with {', '.join(p.times)}")


def _columns(cmd: Command, text: str) -> list[str]:
    if text == "all":
        return [c.name for c in cmd.columns]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if cmd.column(n) is None]
    if unknown or not names:
        raise CliError(f"{cmd.name}: unknown column '{', '.join(unknown) or text}' in format "
                       f"(columns: {', '.join(c.name for c in cmd.columns)})")
    return names


def _parse_config(cmd: Command, args: list[str], p: ParsedCommand) -> None:
    i = 0
    while i < len(args):
        word = args[i]
        option = cmd.option(word)
        if option is None:
            raise CliError(f"{cmd.name}: unknown parameter '{word}' (type '{cmd.name} ?' for its parameters)")
        if option.name in p.values:
            raise CliError(f"{cmd.name}: {' and '.join(option.words)} given more than once")
        if option.kind == "bool":
            p.values[option.name] = word == option.name
            i += 1
            continue
        text = _take(cmd, args, i, word)
        if option.kind == "int":
            try:
                value: object = int(text)
            except ValueError:
                raise CliError(f"{cmd.name}: {word} must be a number, not '{text}'") from None
            if (option.low is not None and value < option.low) or (option.high is not None and value > option.high):
                raise CliError(f"{cmd.name}: {word} must be in {option.low}..{option.high}, not {value}")
        else:
            value = text
        p.values[option.name] = value
        i += 2
    missing = [o.name for o in cmd.options if o.required and o.name not in p.values]
    if missing:
        raise CliError(f"{cmd.name}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    if cmd.kind == "settings-modify" and not p.values:
        raise CliError(f"{cmd.name}: nothing to change (parameters: {', '.join(w for o in cmd.options for w in o.words)})")


# -- help --------------------------------------------------------------------------
def parameters(cmd: Command) -> list[tuple[str, str]]:
    """(word, help) of every parameter a command takes, in display order."""
    out: list[tuple[str, str]] = []
    if cmd.is_show:
        if cmd.takes_snapshot:
            out.append((SNAPSHOT_TIME, SNAPSHOT_TIME_HELP))
        for c in cmd.columns:
            if c.kind == "bool":
                out.append((f"{c.name}|{off_word(c.name)}", c.help))
            else:
                out.append((c.name, f"{c.name}-{'number' if c.kind in ('int', 'secs', 'usec', 'bytes') else 'string'}  {c.help}"))
        if cmd.takes_time_filters:
            out.extend((t, TIME_FILTER_HELP[t]) for t in TIME_FILTERS)
        out.extend(OUTPUT_OPTIONS.items())
    else:
        for o in cmd.options:
            word = "|".join(o.words)
            out.append((word, ("required: " if o.required else "") + o.help))
    return out


def command_help(cmd: Command) -> str:
    """The help text of one command (`help CMD`, `CMD ?`)."""
    if cmd.kind == "builtin":
        return f"{cmd.name}: {cmd.help}"
    lines = [f"{cmd.name}: {cmd.help}"]
    params = parameters(cmd)
    if not params:
        return lines[0]
    width = max(len(w) for w, _ in params)
    lines += [f"  {w:<{width}}  {h}" for w, h in params]
    return "\n".join(lines)


def general_help() -> str:
    """The list of commands (`help`, `?`)."""
    width = max(len(n) for n in COMMANDS)
    lines = ["Commands (type 'help COMMAND' or 'COMMAND ?' for parameters):"]
    lines += [f"  {n:<{width}}  {COMMANDS[n].help}" for n in command_names()]
    return "\n".join(lines)


def context_help(line: str) -> str:
    """What `?` shows while typing `line`: matching commands, or the command's parameters."""
    try:
        words = split(line)
    except CliError:
        words = line.split()
    if words[:1] == ["switch"]:
        if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):
            return "  switch NAME|*  run the command on that fabric member, or on every member"
        words = words[2:]
    if not words or (len(words) == 1 and not line.endswith(" ")):
        prefix = words[0] if words else ""
        names = [n for n in command_names() if n.startswith(prefix)]
        if not names:
            return f"no command starts with '{prefix}'"
        width = max(len(n) for n in names)
        return "\n".join(f"  {n:<{width}}  {COMMANDS[n].help}" for n in names)
    try:
        cmd = find_command(words[0])
    except CliError as exc:
        return str(exc)
    return command_help(cmd)


# -- completion --------------------------------------------------------------------
def complete(line: str) -> list[str]:
    """Candidates for the word being typed at the end of `line` (full words)."""
    ends_with_space = line == "" or line[-1:].isspace()
    try:
        words = split(line)
    except CliError:
        return []
    current = "" if ends_with_space else (words.pop() if words else "")
    if words[:1] == ["switch"]:
        if len(words) == 1:
            return []          # the member name
        words = words[2:]
    if not words:
        return [n for n in command_names() if n.startswith(current)]
    try:
        cmd = find_command(words[0])
    except CliError:
        return []
    previous = words[-1] if len(words) > 1 else None
    values = _value_candidates(cmd, previous, current)
    if values is not None:
        return values
    used = set(words[1:])
    candidates = []
    for word, _ in parameters(cmd):
        for w in word.split("|"):
            if w not in used:
                candidates.append(w)
    if cmd.name == "pager":
        candidates = ["on", "off"]
    elif cmd.name == "help":
        candidates = command_names()
    return [c for c in candidates if c.startswith(current)]


def _value_candidates(cmd: Command, previous: str | None, current: str) -> list[str] | None:
    """Candidates when the previous word takes a value; None when it does not."""
    if previous is None or cmd.kind == "builtin":
        return None
    if previous in ("sort-asc", "sort-desc"):
        return [c.name for c in cmd.columns if c.name.startswith(current)]
    if previous == "format" and cmd.is_show:
        head, _, tail = current.rpartition(",")
        lead = f"{head}," if head else ""
        chosen = set(head.split(",")) if head else set()
        names = ["all"] if not head else []
        names += [c.name for c in cmd.columns if c.name not in chosen]
        return [lead + n for n in names if n.startswith(tail)]
    if previous == "layout":
        return [v for v in ("horizontal", "vertical") if v.startswith(current)]
    takes_value = previous in TIME_FILTERS or previous in ("parsable-delim", SNAPSHOT_TIME)
    if cmd.is_show:
        column = cmd.column(previous)
        takes_value = takes_value or (column is not None and column.kind != "bool")
    else:
        option = cmd.option(previous)
        takes_value = option is not None and option.kind != "bool"
    return [] if takes_value else None
