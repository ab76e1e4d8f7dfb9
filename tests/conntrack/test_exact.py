"""The tracker fed exact control packets (a capture) beside sampled ones (sFlow): state, outcomes, latency."""
from __future__ import annotations

import socket

from collectors.conntrack.service_stats import ServiceStats
from collectors.conntrack.tracker import (
    ACK, EVENT_LATENCY, EVENT_NEW, EVENT_OUTCOME, EVENT_RETRANSMIT, FIN, RST, SYN, ConnectionTracker,
)
from core.ports.flows import make_control, make_observation

C, S = "10.244.1.2", "10.244.2.3"
PC, PS = socket.inet_aton(C), socket.inet_aton(S)


def ctl(tr, t, flags, from_client=True, seq=1000, ack=0, cport=40000, sport=8080, vni=1):
    src, dst, a, b = (PC, PS, cport, sport) if from_client else (PS, PC, sport, cport)
    tr.observe_control(make_control(t, "mirror0", 74, 0, vni, "vxlan", src, dst, a, b, flags, seq, ack))


def sample(tr, t, flags, from_client=True, rate=1000, cport=40000, sport=8080, vni=1):
    src, dst, a, b = (PC, PS, cport, sport) if from_client else (PS, PC, sport, cport)
    tr.observe(make_observation(t, "10.99.0.1", rate, 1500, 0, vni, "vxlan", src, dst, 6, a, b, flags))


def only(tr):
    assert len(tr) == 1
    return next(iter(tr.table.values()))


def test_captured_handshake_gives_capture_latency_and_completed():
    tr = ConnectionTracker()
    tr.events = []
    ctl(tr, 100.0, SYN, seq=7)
    ctl(tr, 100.0421, SYN | ACK, from_client=False, seq=900, ack=8)
    conn = only(tr)
    assert (conn.src_ip, conn.dst_port, conn.state) == (C, 8080, "syn-ack")
    assert conn.latency == 42100 and conn.latency_source == "capture"
    assert conn.packets == 0  # control packets carry no volume: that is sFlow's
    sample(tr, 100.5, ACK | 0x08)  # a sampled data packet: the handshake completed
    assert conn.state == "established" and conn.outcome == "completed"
    assert conn.packets == 1000 and conn.switch == "10.99.0.1"
    ctl(tr, 101.0, FIN | ACK)
    ctl(tr, 101.001, FIN | ACK, from_client=False)
    assert conn.state == "closed" and conn.outcome == "completed"
    kinds = [(k, v) for k, _, v in tr.events]
    assert kinds == [(EVENT_NEW, 1), (EVENT_LATENCY, 42100), (EVENT_OUTCOME, "completed")]


def test_late_sampled_control_packets_do_not_move_a_captured_connection():
    tr = ConnectionTracker()
    ctl(tr, 10.0, SYN, seq=1)
    ctl(tr, 10.010, SYN | ACK, from_client=False, seq=5, ack=2)
    conn = only(tr)
    sample(tr, 11.0, SYN)  # the same SYN, sampled, arriving a second later through the sFlow collector
    sample(tr, 11.0, SYN | ACK, from_client=False)
    assert conn.state == "syn-ack" and conn.latency == 10000 and conn.latency_source == "capture"
    assert conn.syn_retransmits == 0 and conn.packets == 2000


def test_refused_reset_and_no_response():
    tr = ConnectionTracker(no_response_timeout=3.0)
    ctl(tr, 1.0, SYN, cport=1)
    ctl(tr, 1.0002, RST | ACK, from_client=False, cport=1)
    ctl(tr, 1.0, SYN, cport=2)
    ctl(tr, 1.001, SYN | ACK, from_client=False, cport=2)
    ctl(tr, 1.5, RST, from_client=True, cport=2)
    ctl(tr, 1.0, SYN, cport=3)
    ctl(tr, 2.0, SYN, cport=3)  # retransmitted: same sequence number
    by_port = {c.src_port: c for c in tr.table.values()}
    assert by_port[1].outcome == "refused" and by_port[1].state == "rst" and by_port[1].latency is None
    assert by_port[2].outcome == "reset" and by_port[2].latency == 1000
    assert by_port[3].outcome is None and by_port[3].syn_retransmits == 1
    tr.expire(3.9)  # 2.9 s after the first SYN: not yet
    assert by_port[3].outcome is None
    tr.expire(4.01)
    assert by_port[3].outcome == "no-response" and by_port[3].state == "syn"
    row = by_port[3].row(5.0)
    assert row["outcome"] == "no-response" and row["syn-retransmits"] == 1 and "latency" not in row


def test_a_late_answer_clears_no_response_and_latency_counts_from_the_answered_syn():
    tr = ConnectionTracker(no_response_timeout=1.0)
    ctl(tr, 1.0, SYN)
    tr.expire(2.5)
    conn = only(tr)
    assert conn.outcome == "no-response"
    ctl(tr, 3.0, SYN)  # retransmission
    ctl(tr, 3.02, SYN | ACK, from_client=False)
    assert conn.outcome is None and conn.latency == 20000 and conn.syn_retransmits == 1
    tr.expire(4.5)  # answered and no RST for the timeout: established
    assert conn.state == "established" and conn.outcome == "completed"


def test_duplicate_copy_is_not_a_retransmission_and_new_isn_is_a_new_connection():
    tr = ConnectionTracker()
    ctl(tr, 1.0, SYN, seq=10)
    ctl(tr, 1.00001, SYN, seq=10)  # the mirror copied it twice
    conn = only(tr)
    assert conn.syn_retransmits == 0
    ctl(tr, 1.001, RST | ACK, from_client=False)
    assert conn.outcome == "refused"
    ctl(tr, 20.0, SYN, seq=99)  # the port is reused by a new connection
    assert conn.state == "syn" and conn.outcome is None and conn.first_seen == 20.0


def test_handshake_ack_captured_gives_ack_latency():
    tr = ConnectionTracker()
    ctl(tr, 1.0, SYN, seq=10)
    ctl(tr, 1.004, SYN | ACK, from_client=False, seq=500, ack=11)
    ctl(tr, 1.0045, ACK, seq=11, ack=501)  # an ERSPAN session that copies every packet
    conn = only(tr)
    assert conn.latency == 4000 and conn.ack_latency == 500 and conn.state == "established"


def test_sampled_outcomes_when_the_samples_show_them():
    tr = ConnectionTracker()
    tr.events = []
    sample(tr, 1.0, SYN, rate=1, cport=5)
    sample(tr, 1.1, RST | ACK, from_client=False, rate=1, cport=5)
    sample(tr, 2.0, ACK, rate=1000, cport=50006)  # mid-flow at 1:1000: the handshake must have completed
    sample(tr, 2.5, RST, rate=1000, cport=50006)
    by_port = {c.src_port: c for c in tr.table.values()}
    assert by_port[5].outcome == "refused" and by_port[50006].outcome == "reset"
    assert (EVENT_NEW, 1) in [(k, v) for k, _, v in tr.events]
    tr2 = ConnectionTracker()
    sample(tr2, 1.0, SYN, rate=1000)
    tr2.expire(100.0)
    assert only(tr2).outcome is None  # sampling never concludes no-response


def test_service_window_counts_the_last_minute_exactly():
    stats = ServiceStats(window=60)
    key = ("shop/web", 8080)
    for i in range(100):
        stats.add_new(key, 1000.0 + i * 0.5)
        stats.add_latency(key, 1000.0 + i * 0.5, 1000 + i * 10)
        if i == 20:
            stats.add_outcome(key, 1010.0, "refused")
            stats.add_outcome(key, 1010.0, "no-response")
    rows, gone = stats.rows(1049.9)
    row = rows[key]
    assert row["new-connections"] == 100 and row["failures"] == 2 and row["refused"] == 1
    assert abs(row["latency-p50"] - 1495) <= 0.02 * 1495 and row["latency-count"] == 100
    rows, gone = stats.rows(1080.0)  # seconds 1000..1020 left the window
    row = rows[key]
    assert row["new-connections"] == 100 - 42 and row["failures"] == 0 and row["interval"] == 60
    assert row["new-per-second"] == f"{58 / 60:.2f}"
    rows, gone = stats.rows(1200.0)
    assert gone == [key] and not stats.keys
    assert EVENT_RETRANSMIT == 3
