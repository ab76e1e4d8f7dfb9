"""Rows -> text: Netvisor tables, parsable output, vertical layout and JSON.

A table is a header row, a row of dashes as wide as each column, and the
rows, columns left-aligned and separated by one space, as the Netvisor
show commands print them.  Values are shown the way an engineer reads
them (yes/no, 4.01s, 1m30s, 1.50K); `--json` keeps the raw YANG values.
"""
from __future__ import annotations

import json
import math

from core.times import format_rfc3339_ns, try_parse_rfc3339

from .commands import Column

_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
NUMERIC = ("int", "bytes", "usec", "secs", "proto", "bps", "pct")


def try_parse_epoch(value: object) -> float | None:
    """A date-and-time string or epoch number -> epoch seconds (None if unparsable)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return try_parse_rfc3339(value)


def normalize(value: object, kind: str) -> object:
    """A raw value as the column kind wants it (64-bit integers arrive as JSON strings)."""
    if value is None:
        return None
    if kind in NUMERIC:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return value
        try:
            return int(str(value))
        except ValueError:
            try:
                return float(str(value))
            except ValueError:
                return value
    if kind == "list":
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if kind == "bool" and isinstance(value, str):
        return value.lower() in ("true", "yes", "1")
    return value


def show(value: object, kind: str) -> str:
    """One cell as text."""
    if value is None or value == "":
        return ""
    if kind == "bool" or isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "list":
        return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    if not isinstance(value, (int, float)):
        return _time(value) if kind == "time" else str(value)
    if kind == "bytes":
        return _bytes(value)
    if kind == "usec":
        return _usec(value)
    if kind == "secs":
        return duration(value)
    if kind == "proto":
        return _PROTOCOLS.get(int(value), str(value))
    if kind == "bps":
        return _bps(value)
    if kind == "pct":
        return f"{value:.2f}%"
    if kind == "time":
        return _time(value)
    return str(value)


def duration(seconds: float) -> str:
    """Seconds as Netvisor's #d#h#m#s (9s, 1m30s, 2d3h)."""
    total = int(seconds)
    if total <= 0:
        return f"{seconds:.2f}s".replace(".00s", "s") if seconds > 0 else "0s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return "".join(parts)


def _usec(value: float) -> str:
    if value < 1000:
        return f"{int(value)}us"
    if value < 1_000_000:
        return f"{value / 1000:.2f}ms"
    return f"{value / 1_000_000:.2f}s"


def _bps(value: float) -> str:
    """Bits per second as port speeds are said: 10G, 25G, 100M."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            figure = value / size
            return f"{figure:.0f}{unit}" if figure == int(figure) else f"{figure:.1f}{unit}"
    return str(int(value))


def _bytes(value: float) -> str:
    if value < 1024:
        return str(int(value))
    exponent = min(int(math.log(value, 1024)), 5)
    return f"{value / 1024 ** exponent:.2f}{'KMGTP'[exponent - 1]}"


def _time(value: object) -> str:
    epoch = try_parse_epoch(value)
    if epoch is None:
        return str(value)
    return format_rfc3339_ns(int(epoch * 1e9), digits=0)[:-1]  # Netvisor shows yyyy-mm-ddTHH:mm:ss


def cells(rows: list[dict], columns: list[Column]) -> list[list[str]]:
    """The text of every cell."""
    return [[show(row.get(c.name), c.kind) for c in columns] for row in rows]


def table(rows: list[dict], columns: list[Column], headers: bool = True) -> str:
    """Header row, dashes and aligned columns."""
    body = cells(rows, columns)
    names = [c.name for c in columns]
    widths = [max([len(n) if headers else 0] + [len(r[i]) for r in body]) for i, n in enumerate(names)]
    lines = []
    if headers:
        lines.append(_line(names, widths))
        lines.append(_line(["-" * w for w in widths], widths))
    lines += [_line(r, widths) for r in body]
    return "\n".join(lines)


def _line(values: list[str], widths: list[int]) -> str:
    return " ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()


def parsable(rows: list[dict], columns: list[Column], delim: str, headers: bool = True) -> str:
    """One line per row, columns joined by `delim`, no alignment."""
    lines = [delim.join(c.name for c in columns)] if headers else []
    lines += [delim.join(r) for r in cells(rows, columns)]
    return "\n".join(lines)


def vertical(rows: list[dict], columns: list[Column], headers: bool = True) -> str:
    """`name: value` per line, a blank line between rows (settings and `layout vertical`)."""
    width = max((len(c.name) for c in columns), default=0) + 1
    blocks = []
    for row in cells(rows, columns):
        if headers:
            blocks.append("\n".join(f"{c.name + ':':<{width}} {v}".rstrip() for c, v in zip(columns, row)))
        else:
            blocks.append("\n".join(row))
    return "\n\n".join(blocks)


def as_json(rows: list[dict], columns: list[Column], single: bool = False) -> str:
    """Rows as JSON with their raw YANG values (one object for settings)."""
    out = [{c.name: r[c.name] for c in columns if r.get(c.name) is not None} for r in rows]
    if single:
        return json.dumps(out[0] if out else {}, indent=2, sort_keys=False)
    return json.dumps(out, indent=2)
