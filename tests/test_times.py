from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from core.times import (
    TimeFilterError, TimeFormatError, format_duration, format_rfc3339, format_rfc3339_ns, parse_duration,
    parse_rfc3339, parse_window, to_epoch, try_parse_rfc3339,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc).timestamp()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("text, seconds", [
    ("1d2h3m4s", 93784), ("30m", 1800), ("45s", 45), ("2h", 7200), ("1d", 86400), ("90", 90), ("1h30m", 5400),
    ("0s", 0), ("1.5s", 1.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "1x", "2h1d", "-5m", "1 h", "d"])
def test_bad_durations(bad):
    with pytest.raises(TimeFilterError):
        parse_duration(bad)


def test_times_are_utc():
    assert parse_rfc3339("2026-11-22T12:00:00") == NOW
    assert parse_rfc3339("2026-11-22T12:00:00Z") == NOW
    assert parse_rfc3339("2026-11-22T13:00:00+01:00") == NOW
    with pytest.raises(TimeFormatError):
        parse_rfc3339("22/11/2026 12:00")
    with pytest.raises(TimeFilterError):  # as a filter, the same text is a filter error with the CLI's words
        parse_window({"start-time": "22/11/2026 12:00"})


@pytest.mark.parametrize("filters, window", [
    ({"start-time": "2026-11-22T10:00:00", "end-time": "2026-11-22T11:00:00"}, (ts("2026-11-22T10:00:00"), ts("2026-11-22T11:00:00"))),
    ({"start-time": "2026-11-22T10:00:00", "duration": "30m"}, (ts("2026-11-22T10:00:00"), ts("2026-11-22T10:30:00"))),
    ({"end-time": "2026-11-22T11:00:00", "duration": "1h"}, (ts("2026-11-22T10:00:00"), ts("2026-11-22T11:00:00"))),
    ({"start-time": "2026-11-22T10:00:00"}, (ts("2026-11-22T10:00:00"), NOW)),
    ({"end-time": "2026-11-22T10:00:00"}, (0.0, ts("2026-11-22T10:00:00"))),
    ({"duration": "2h"}, (NOW - 7200, NOW)),
    ({"within-last": "1d"}, (NOW - 86400, NOW)),
    ({"older-than": "1h"}, (0.0, NOW - 3600)),
    ({"within-last": "1d", "older-than": "1h"}, (NOW - 86400, NOW - 3600)),
    ({}, (0.0, NOW)),
    ({"cluster-name": "k8s01", "within-last": None, "start-time": ""}, (0.0, NOW)),
])
def test_windows(filters, window):
    assert parse_window(filters, now=NOW) == window


@pytest.mark.parametrize("filters", [
    {"start-time": "2026-11-22T10:00:00", "end-time": "2026-11-22T11:00:00", "duration": "1h"},
    {"start-time": "2026-11-22T10:00:00", "within-last": "1h"},
    {"end-time": "2026-11-22T10:00:00", "older-than": "1h"},
    {"duration": "1h", "within-last": "2h"},
    {"start-time": "2026-11-22T11:00:00", "end-time": "2026-11-22T10:00:00"},
    {"within-last": "1h", "older-than": "2h"},
])
def test_conflicting_filters(filters):
    with pytest.raises(TimeFilterError):
        parse_window(filters, now=NOW)


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_duration_roundtrip(d, h, m, s):
    text = "".join(f"{v}{u}" for v, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if v) or "0s"
    assert parse_duration(text) == d * 86400 + h * 3600 + m * 60 + s


def test_to_epoch_takes_every_form_a_caller_has():
    """Numbers, naive (UTC) and aware datetimes, RFC 3339 text with and without an offset; None is now."""
    assert to_epoch(NOW) == NOW
    assert to_epoch("2026-11-22T12:00:00") == NOW  # no offset: UTC (this once raised NameError)
    assert to_epoch("2026-11-22T12:00:00.000Z") == NOW
    assert to_epoch(datetime(2026, 11, 22, 12, 0, 0)) == NOW
    assert to_epoch(datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)) == NOW
    assert abs(to_epoch(None) - datetime.now(timezone.utc).timestamp()) < 5
    with pytest.raises(TimeFormatError):
        to_epoch("yesterday")
    with pytest.raises(TimeFormatError):
        to_epoch(True)


def test_rfc3339_formats_round_trip():
    assert format_rfc3339(NOW + 0.1234) == "2026-11-22T12:00:00.123Z"
    assert parse_rfc3339(format_rfc3339(NOW + 0.5)) == NOW + 0.5
    assert format_rfc3339_ns(int(NOW * 1e9) + 123456789, digits=6) == "2026-11-22T12:00:00.123456Z"
    assert format_rfc3339_ns(int(NOW * 1e9), digits=0) == "2026-11-22T12:00:00Z"
    assert try_parse_rfc3339("") is None and try_parse_rfc3339(None) is None and try_parse_rfc3339("x") is None
    assert try_parse_rfc3339("2026-11-22T12:00:00Z") == NOW


@given(st.integers(min_value=0, max_value=10**7))
def test_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


async def test_wait_event_never_swallows_the_callers_cancellation():
    """core.tasks.wait_event: True when set, False on timeout, and a cancel racing the event is not lost."""
    import asyncio

    from core.tasks import wait_event

    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    for _ in range(50):  # the race: the event is set and the waiter cancelled in the same loop turn
        race = asyncio.Event()
        task = asyncio.ensure_future(wait_event(race, 5))
        await asyncio.sleep(0)
        race.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            continue
        raise AssertionError("the cancellation was swallowed")
