"""Time in one place: RFC 3339 text, durations and the Netvisor time filters.

Every face and producer speaks about time the same way:

- **RFC 3339** (``yang:date-and-time``): ``format_rfc3339`` writes UTC with a
  ``Z`` and milliseconds (``2026-11-22T12:00:00.123Z``); ``parse_rfc3339``
  reads any RFC 3339 text, and also the Netvisor CLI forms
  (``yyyy-mm-ddTHH:mm[:ss]``, ``yyyy-mm-dd``).  A time without an offset is
  UTC, everywhere.
- **durations** ``#d#h#m#s`` (Netvisor) or plain seconds.
- **time filters** ``start-time end-time duration within-last older-than``
  turned into one ``[t1, t2)`` window (``parse_window``), so the CLI, the web
  page and the time machine agree on what a filter means.

Times are epoch seconds (float) unless a name says ``_ns``.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Mapping

__all__ = [
    "TimeFormatError", "TimeFilterError", "WINDOW_KEYS", "format_rfc3339", "format_rfc3339_ns", "now_rfc3339",
    "parse_rfc3339", "try_parse_rfc3339", "to_epoch", "parse_duration", "format_duration", "parse_window",
]

WINDOW_KEYS = ("start-time", "end-time", "duration", "within-last", "older-than")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
_NETVISOR_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


class TimeFormatError(ValueError):
    """Text that is not a time; the message says what was expected."""


class TimeFilterError(ValueError):
    """A time filter value or combination that cannot be turned into a window."""


# -- RFC 3339 ----------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def format_rfc3339(t: float) -> str:
    """Epoch seconds -> ``2026-11-22T12:00:00.123Z`` (UTC, milliseconds).

    Cached: a re-list stamps thousands of rows with one time, and a table
    flush writes many rows with the same second.
    """
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def format_rfc3339_ns(ts_ns: int, digits: int = 6) -> str:
    """Nanoseconds since the epoch -> RFC 3339 UTC with ``digits`` fractional digits (0-9)."""
    seconds, ns = divmod(int(ts_ns), 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits > 0:
        text += "." + f"{ns:09d}"[:digits]
    return text + "Z"


def now_rfc3339() -> str:
    """The current time as ``format_rfc3339`` writes it."""
    return format_rfc3339(time.time())


def parse_rfc3339(text: object) -> float:
    """RFC 3339 (or Netvisor ``yyyy-mm-ddTHH:mm[:ss]``, ``yyyy-mm-dd``) text -> epoch seconds.

    ``Z``/``z`` and numeric offsets are honoured; a time without one is UTC.
    Raises :class:`TimeFormatError` for anything else.
    """
    value = str(text).strip()
    if not value:
        raise TimeFormatError("empty time; expected RFC 3339 such as 2026-11-22T12:00:00Z")
    parsed = _parse_datetime(value)
    if parsed is None:
        raise TimeFormatError(f"invalid time {value!r}; expected RFC 3339 such as 2026-11-22T12:00:00Z")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _parse_datetime(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    for fmt in _NETVISOR_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


def try_parse_rfc3339(text: object) -> float | None:
    """``parse_rfc3339``, or None for empty or malformed text (for optional leaves)."""
    if text is None or text == "":
        return None
    try:
        return parse_rfc3339(text)
    except TimeFormatError:
        return None


def to_epoch(value: float | int | datetime | str | None) -> float:
    """Epoch seconds from a number, an aware or naive (UTC) datetime, or RFC 3339 text; None -> now."""
    if value is None:
        return time.time()
    if isinstance(value, bool):
        raise TimeFormatError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    return parse_rfc3339(value)


# -- durations ---------------------------------------------------------------------------------------

def parse_duration(text: object) -> float:
    """``"1d2h3m4s"`` (any part optional, in this order) or plain seconds -> seconds."""
    value = str(text).strip().lower()
    if not value:
        raise TimeFilterError("empty duration; expected #d#h#m#s, e.g. 1d2h or 30m")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    match = _DURATION.match(value)
    if match is None or not any(match.groups()):
        raise TimeFilterError(f"invalid duration {text!r}; expected #d#h#m#s, e.g. 1d2h or 30m")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def format_duration(seconds: float) -> str:
    """Seconds -> ``#d#h#m#s`` with zero parts left out (``0s`` for zero)."""
    total = int(round(max(0.0, float(seconds))))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"


# -- Netvisor time filters -------------------------------------------------------------------------

def _filter_time(text: object) -> float:
    try:
        return parse_rfc3339(text)
    except TimeFormatError:
        raise TimeFilterError(f"invalid time {text!r}; expected yyyy-mm-ddTHH:mm:ss") from None


def parse_window(filters: Mapping[str, object], now: float | None = None) -> tuple[float, float]:
    """The ``[t1, t2)`` window (epoch seconds) that Netvisor time filters select.

    ============================  ===============================
    filters                       window [t1, t2)
    ============================  ===============================
    start-time S                  [S, now)
    end-time E                    [0, E)
    start-time S, end-time E      [S, E)
    start-time S, duration D      [S, S + D)
    end-time E, duration D        [E - D, E)
    duration D  (alone)           [now - D, now)
    within-last W                 [now - W, now)
    older-than O                  [0, now - O)
    within-last W, older-than O   [now - W, now - O)
    ============================  ===============================

    Keys absent or None are unset; unknown keys are ignored, so a caller can
    pass its whole argument dict.  Combinations that over- or
    under-determine the window, and a window that ends before it starts,
    raise :class:`TimeFilterError`.
    """
    if now is None:
        now = time.time()
    given = {k: filters.get(k) for k in WINDOW_KEYS if filters.get(k) not in (None, "")}
    start = _filter_time(given["start-time"]) if "start-time" in given else None
    end = _filter_time(given["end-time"]) if "end-time" in given else None
    duration = parse_duration(given["duration"]) if "duration" in given else None
    within = parse_duration(given["within-last"]) if "within-last" in given else None
    older = parse_duration(given["older-than"]) if "older-than" in given else None

    absolute = [k for k in ("start-time", "end-time", "duration") if k in given]
    relative = [k for k in ("within-last", "older-than") if k in given]
    if absolute and relative and absolute != ["duration"]:
        raise TimeFilterError(
            f"{', '.join(relative)} cannot be combined with {', '.join(k for k in absolute if k != 'duration')}"
        )
    if "duration" in given and relative:
        raise TimeFilterError("duration cannot be combined with within-last or older-than")
    if start is not None and end is not None and duration is not None:
        raise TimeFilterError("give at most two of start-time, end-time and duration")

    if start is not None and end is not None:
        t1, t2 = start, end
    elif start is not None and duration is not None:
        t1, t2 = start, start + duration
    elif end is not None and duration is not None:
        t1, t2 = end - duration, end
    elif start is not None:
        t1, t2 = start, now
    elif end is not None:
        t1, t2 = 0.0, end
    elif duration is not None:
        t1, t2 = now - duration, now
    else:
        t1 = now - within if within is not None else 0.0
        t2 = now - older if older is not None else now
    if t2 < t1:
        raise TimeFilterError("the time window ends before it starts")
    return (max(t1, 0.0), t2)
