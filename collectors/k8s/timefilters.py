"""Netvisor-style time filters -> a (t1, t2) window in epoch seconds.

The show commands (k8s-cni-show, vport-show, connection-show) accept
``start-time``/``end-time`` (``yyyy-mm-ddTHH:mm:ss``, UTC) and the durations
``duration``, ``within-last`` and ``older-than`` (``#d#h#m#s``).  The CLI and
the time machine both need the same window, so the rules live here:

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

Combinations that over- or under-determine the window (start, end and
duration together; start-time with within-last...) raise
:class:`TimeFilterError`, as does a window that ends before it starts.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Mapping

__all__ = ["TimeFilterError", "parse_duration", "parse_time", "parse_window", "WINDOW_KEYS"]

WINDOW_KEYS = ("start-time", "end-time", "duration", "within-last", "older-than")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


class TimeFilterError(ValueError):
    """A time filter value or combination that cannot be turned into a window."""


def parse_duration(text: str) -> float:
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


def parse_time(text: str) -> float:
    """``yyyy-mm-ddTHH:mm:ss`` (UTC; a trailing ``Z`` or offset is honoured) -> epoch seconds."""
    value = str(text).strip()
    if not value:
        raise TimeFilterError("empty time; expected yyyy-mm-ddTHH:mm:ss")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        parsed = None
        for fmt in _TIME_FORMATS:
            try:
                parsed = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            raise TimeFilterError(f"invalid time {text!r}; expected yyyy-mm-ddTHH:mm:ss") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_window(filters: Mapping[str, object], now: float | None = None) -> tuple[float, float]:
    """The (t1, t2) window the filters select; keys absent or None are unset.

    Unknown keys are ignored so callers can pass their whole argument dict.
    t1 is 0.0 when the window is open towards the past, t2 is ``now`` when
    it is open towards the present.
    """
    if now is None:
        now = time.time()
    given = {k: filters.get(k) for k in WINDOW_KEYS if filters.get(k) not in (None, "")}
    start = parse_time(str(given["start-time"])) if "start-time" in given else None
    end = parse_time(str(given["end-time"])) if "end-time" in given else None
    duration = parse_duration(str(given["duration"])) if "duration" in given else None
    within = parse_duration(str(given["within-last"])) if "within-last" in given else None
    older = parse_duration(str(given["older-than"])) if "older-than" in given else None

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
