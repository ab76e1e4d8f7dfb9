"""Lost datagrams from sequence numbers: gaps, wrap, reordering, duplicates, restarts."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collectors.sflow.stats import MAX_GAP, CollectorStats, ExporterStats


def feed(exp: ExporterStats, seqs, uptime: int = 0, t0: float = 100.0, step: float = 0.01) -> None:
    for i, seq in enumerate(seqs):
        now = t0 + i * step
        exp.sequence(seq, uptime, now)
        exp.last_seen = now


def test_in_order_and_gaps():
    exp = ExporterStats("192.0.2.1", 0)
    feed(exp, [1, 2, 3, 7, 8, 10])
    assert exp.lost == 4 and exp.last_sequence == 10 and exp.restarts == 0


def test_wrap_is_not_loss():
    exp = ExporterStats("192.0.2.1", 0)
    feed(exp, [0xFFFFFFFE, 0xFFFFFFFF, 0, 1])
    assert exp.lost == 0 and exp.last_sequence == 1
    feed(exp, [3], t0=101)
    assert exp.lost == 1


def test_late_datagram_gives_its_loss_back_and_duplicates_change_nothing():
    exp = ExporterStats("192.0.2.1", 0)
    feed(exp, [1, 2, 4, 5, 3, 3, 5])
    assert exp.lost == 0 and exp.last_sequence == 5 and exp.restarts == 0


def test_restart_after_silence_or_with_uptime_going_back():
    exp = ExporterStats("192.0.2.1", 0)
    feed(exp, [500, 501])
    feed(exp, [1, 2, 3], t0=110)  # numbers back after 10 s of silence: a restart
    assert exp.restarts == 1 and exp.lost == 0 and exp.last_sequence == 3
    exp2 = ExporterStats("192.0.2.2", 0)
    for seq, uptime in ((900, 5_000_000), (901, 5_001_000), (1, 2_000)):  # back within 2 s but uptime reset
        exp2.sequence(seq, uptime, 100.0)
        exp2.last_seen = 100.0
    assert exp2.restarts == 1 and exp2.lost == 0
    exp3 = ExporterStats("192.0.2.3", 0)
    feed(exp3, [10, 10 + MAX_GAP + 5])  # a far jump forward: a restart with a random start, not loss
    assert exp3.restarts == 1 and exp3.lost == 0


def test_collector_totals_and_dirty_exporters():
    stats = CollectorStats()
    stats.account("192.0.2.1", 0, 1, 0, 6, False, 1.0)
    stats.account("192.0.2.1", 0, 3, 0, 6, False, 1.1)
    stats.account("192.0.2.2", 1, 1, 0, 2, True, 1.2)
    stats.account(None, 0, 0, 0, 0, True, 1.3)
    assert stats.totals() == {"datagrams": 4, "samples": 14, "malformed": 2, "lost": 1}
    assert {(e.agent, e.sub_agent_id) for e in stats.take_dirty()} == {("192.0.2.1", 0), ("192.0.2.2", 1)}
    assert stats.take_dirty() == []
    row = stats.exporters[("192.0.2.1", 0)].row()
    assert row == {"datagrams": 2, "samples": 12, "malformed": 0, "lost": 1, "last-sequence": 3,
                   "last-seen": "1970-01-01T00:00:01.100Z"}


@given(start=st.integers(0, 2**32 - 1), drops=st.sets(st.integers(1, 300), max_size=50))
def test_lost_equals_dropped_for_any_start_and_any_interior_gaps(start, drops):
    exp = ExporterStats("192.0.2.1", 0)
    sent = [(start + i) % 2**32 for i in range(302)]
    feed(exp, [s for i, s in enumerate(sent) if i not in drops])
    assert exp.lost == len(drops) and exp.restarts == 0


def test_calling_the_stats_gives_the_numbers_metrics_scrape():
    stats = CollectorStats()
    stats.account("192.0.2.1", 0, 5, 0, 3, False, 1.0)
    stats.ignored = 2
    assert stats() == {"datagrams": 1, "samples": 3, "malformed": 0, "lost": 0, "exporters": 1, "ignored": 2,
                       "untracked": 0, "exporter_restarts": 0}


def test_exporters_beyond_the_limit_count_only_in_the_totals():
    stats = CollectorStats(max_exporters=2)
    for i in range(5):
        stats.account(f"192.0.2.{i}", 0, 1, 0, 1, False, 1.0)
    assert len(stats.exporters) == 2 and stats.untracked == 3 and stats.datagrams == 5
