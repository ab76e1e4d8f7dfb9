"""The connection tracker, fed FlowRecords decoded from hand-built sFlow datagrams."""
from __future__ import annotations

from collectors.conntrack.tracker import ConnectionTracker
from collectors.sflow.decoder import decode_datagram
from collectors.sflow.producer import iter_flows, observation_from_record
from core.ports.flows import FlowObservation, address_text
from tests.conntrack.sflowgen import (
    ACK, FIN, PSH, RST, SYN, datagram, flow_sample, icmp_frame, tcp_frame, udp_frame, vxlan_frame,
)

C, S = "10.244.1.2", "10.244.2.3"  # client and server pod


def feed(tracker: ConnectionTracker, frame: bytes, t: float, rate: int = 1, frame_length: int | None = None,
         snap: int = 128, agent: str = "192.0.2.1") -> None:
    """Encode one frame as an sFlow datagram, decode it, and give its flow to the tracker."""
    dg = decode_datagram(datagram([flow_sample(frame, rate=rate, frame_length=frame_length, snap=snap)], agent=agent))
    assert dg.malformed is None
    for rec in iter_flows(dg):
        sample = observation_from_record(rec, t)
        if sample is not None:
            tracker.observe(sample)


def only(tracker: ConnectionTracker):
    assert len(tracker) == 1, list(tracker.table.values())
    return next(iter(tracker.table.values()))


def test_handshake_data_and_close_with_latency():
    tr = ConnectionTracker()
    feed(tr, tcp_frame(C, S, 40000, 8080, SYN), 100.0)
    conn = only(tr)
    assert (conn.src_ip, conn.src_port, conn.dst_ip, conn.dst_port, conn.state) == (C, 40000, S, 8080, "syn")
    feed(tr, tcp_frame(S, C, 8080, 40000, SYN | ACK), 100.000250)
    assert conn.state == "syn-ack" and conn.latency == 250
    feed(tr, tcp_frame(C, S, 40000, 8080, ACK), 100.0003)
    assert conn.state == "established"
    feed(tr, tcp_frame(C, S, 40000, 8080, PSH | ACK, data=100), 100.001)
    feed(tr, tcp_frame(C, S, 40000, 8080, FIN | ACK), 100.002)
    assert conn.state == "fin"
    feed(tr, tcp_frame(S, C, 8080, 40000, ACK), 100.0021)
    assert conn.state == "fin"  # packets after one FIN keep it closing
    feed(tr, tcp_frame(S, C, 8080, 40000, FIN | ACK), 100.003)
    assert conn.state == "closed"
    assert conn.packets == 7 and only(tr) is conn
    assert conn.first_seen == 100.0 and conn.last_seen == 100.003


def test_both_halves_meet_and_lower_port_is_server_without_syn():
    tr = ConnectionTracker()
    feed(tr, tcp_frame(S, C, 443, 51000, ACK), 1.0)  # the server's half seen first
    feed(tr, tcp_frame(C, S, 51000, 443, ACK), 1.1)
    conn = only(tr)
    assert (conn.src_ip, conn.src_port, conn.dst_ip, conn.dst_port) == (C, 51000, S, 443)
    assert conn.state == "established" and conn.latency is None


def test_syn_seen_later_turns_a_wrong_guess_round():
    tr = ConnectionTracker()
    # a client on a low port talking to a server on a high port: the heuristic guesses wrong
    feed(tr, tcp_frame(C, S, 700, 9000, ACK), 1.0)
    conn = only(tr)
    assert conn.src_port == 9000
    published_before = tr.take_changes()[0][0].key
    feed(tr, tcp_frame(C, S, 700, 9000, SYN), 2.0)
    assert (conn.src_ip, conn.src_port, conn.dst_port) == (C, 700, 9000)
    changed, gone = tr.take_changes()
    assert changed == [conn] and gone == [published_before]


def test_syn_ack_first_makes_its_receiver_the_client():
    tr = ConnectionTracker()
    feed(tr, tcp_frame(S, C, 80, 30000, SYN | ACK), 5.0)
    conn = only(tr)
    assert (conn.src_ip, conn.dst_ip, conn.dst_port, conn.state) == (C, S, 80, "syn-ack")
    assert conn.latency is None  # the SYN was not sampled


def test_rst_and_linger_to_closed_and_new_syn_restarts():
    tr = ConnectionTracker(close_linger=10)
    feed(tr, tcp_frame(C, S, 40000, 80, SYN), 1.0)
    feed(tr, tcp_frame(S, C, 80, 40000, RST | ACK), 1.5)
    conn = only(tr)
    assert conn.state == "rst"
    tr.expire(5.0)
    assert conn.state == "rst"
    tr.expire(12.0)
    assert conn.state == "closed"
    feed(tr, tcp_frame(C, S, 40000, 80, SYN), 20.0)
    assert conn.state == "syn" and conn.first_seen == 20.0 and conn.packets == 1


def test_udp_and_icmp_are_active_and_counts_scale_with_sampling_rate():
    tr = ConnectionTracker()
    feed(tr, udp_frame(C, "10.96.0.10", 53000, 53, b"q" * 20), 1.0, rate=100, frame_length=70)
    feed(tr, udp_frame("10.96.0.10", C, 53, 53000, b"a" * 40), 1.1, rate=100, frame_length=90)
    feed(tr, icmp_frame(C, S), 1.2, rate=10, frame_length=98)
    conns = {c.protocol: c for c in tr.table.values()}
    udp, icmp = conns[17], conns[1]
    assert (udp.src_ip, udp.dst_port, udp.state, udp.packets, udp.bytes) == (C, 53, "active", 200, 16000)
    assert (icmp.src_port, icmp.dst_port, icmp.state, icmp.packets, icmp.bytes) == (0, 0, "active", 10, 980)


def test_vxlan_sample_tracks_the_inner_flow_with_its_vni():
    tr = ConnectionTracker()
    inner = tcp_frame(C, S, 40000, 8080, SYN)
    feed(tr, vxlan_frame("10.99.0.1", "10.99.0.2", inner, vni=1, dport=8472), 1.0)
    feed(tr, vxlan_frame("10.99.0.2", "10.99.0.1", tcp_frame(S, C, 8080, 40000, SYN | ACK), vni=1), 1.001)
    conn = only(tr)
    assert (conn.src_ip, conn.dst_ip, conn.vxlan, conn.encapsulation, conn.state) == (C, S, 1, "vxlan", "syn-ack")
    assert conn.latency == 1000
    assert conn.key == (0, 1, C, S, 40000, 8080, 6)
    # the same 5-tuple in another VNI is another connection
    feed(tr, vxlan_frame("10.99.0.1", "10.99.0.2", inner, vni=4096, dport=4789), 1.1)
    assert len(tr) == 2


def test_vlan_separates_connections():
    tr = ConnectionTracker()
    feed(tr, tcp_frame(C, S, 40000, 80, SYN, vlan=10), 1.0)
    feed(tr, tcp_frame(C, S, 40000, 80, SYN, vlan=20), 1.0)
    assert sorted(c.vlan for c in tr.table.values()) == [10, 20]


def test_header_cut_before_ports_is_skipped():
    tr = ConnectionTracker()
    frame = vxlan_frame("10.99.0.1", "10.99.0.2", tcp_frame(C, S, 40000, 80, SYN), vni=1)
    feed(tr, frame, 1.0, snap=14 + 20 + 8 + 8 + 14 + 20)  # ends right after the inner IPv4 header
    assert len(tr) == 0 and tr.skipped == 1


def test_idle_expiry_and_bounded_size_evicting_oldest_idle_first():
    tr = ConnectionTracker(max_connections=3, idle_timeout=60)
    for i, t in enumerate((1.0, 2.0, 3.0)):
        feed(tr, tcp_frame(C, S, 40000 + i, 80, SYN), t)
    tr.take_changes()  # all three written
    feed(tr, tcp_frame(C, S, 40000, 80, ACK), 4.0)  # 40000 is busy again: 40001 is now the oldest idle
    feed(tr, tcp_frame(C, S, 40003, 80, SYN), 5.0)
    ports = sorted(c.src_port for c in tr.table.values())
    assert ports == [40000, 40002, 40003] and tr.evicted == 1
    changed, gone = tr.take_changes()
    assert gone == [(0, 0, C, S, 40001, 80, 6)]
    assert tr.expire(63.5) == 1  # 40002 (last seen at 3.0) idle for 60 s
    assert sorted(c.src_port for c in tr.table.values()) == [40000, 40003]
    tr.expire(1000)
    assert len(tr) == 0 and tr.expired == 3


def test_take_changes_returns_only_touched_entries_and_respects_limit():
    tr = ConnectionTracker()
    for i in range(5):
        feed(tr, tcp_frame(C, S, 40000 + i, 80, SYN), 1.0)
    changed, _ = tr.take_changes(limit=3)
    assert len(changed) == 3
    changed, _ = tr.take_changes()
    assert len(changed) == 2
    assert tr.take_changes() == ([], [])
    feed(tr, tcp_frame(C, S, 40001, 80, ACK), 2.0)
    assert [c.src_port for c in tr.take_changes()[0]] == [40001]


def test_resize_and_clear():
    tr = ConnectionTracker()
    for i in range(5):
        feed(tr, tcp_frame(C, S, 40000 + i, 80, SYN), float(i))
    tr.take_changes()
    tr.resize(2, 30)
    assert sorted(c.src_port for c in tr.table.values()) == [40003, 40004]
    gone = tr.clear()
    assert len(gone) == 5 and len(tr) == 0


def test_row_leaves():
    tr = ConnectionTracker()
    feed(tr, tcp_frame(C, S, 40000, 80, SYN), 1_700_000_000.0, rate=4, frame_length=74)
    feed(tr, tcp_frame(S, C, 80, 40000, SYN | ACK), 1_700_000_000.0015, rate=4, frame_length=74)
    row = only(tr).row(1_700_000_010.2)
    assert row == {
        "switch": "192.0.2.1", "cur-state": "syn-ack", "age": 10, "packets": 8, "bytes": 592,
        "encapsulation": "none", "first-seen": "2023-11-14T22:13:20.000Z",
        "last-seen": "2023-11-14T22:13:20.001Z", "latency": 1500, "latency-source": "sflow",
    }


def test_fast_extraction_agrees_with_flow_records_on_every_shared_capture():
    from collectors.sflow.pcap import iter_sflow_payloads
    from collectors.sflow.producer import observations_from_datagram
    from tests.agentproc import SHARED

    captures = sorted((SHARED / "testdata" / "sflow").glob("*.pcap"))
    if not captures:
        import pytest

        pytest.skip("shared captures not found")
    checked = 0
    for capture in captures:
        for payload in iter_sflow_payloads(capture):
            dg = decode_datagram(payload)
            slow = [s for s in (observation_from_record(r, 1.0) for r in iter_flows(dg)) if s is not None]
            fast = [f._replace(src=address_text(f.src), dst=address_text(f.dst))
                    for f in observations_from_datagram(dg, 1.0)]
            assert all(type(f) is FlowObservation for f in observations_from_datagram(dg, 1.0))
            assert fast == slow, capture.name
            checked += len(slow)
    assert checked > 2000


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_packet = st.tuples(st.booleans(), st.sampled_from(["syn", "syn-ack", "ack", "psh", "fin", "rst"]))


@settings(max_examples=200, deadline=None)
@given(packets=st.lists(_packet, min_size=1, max_size=30), client_port=st.integers(1, 65535),
       server_port=st.integers(1, 65535))
def test_any_sample_order_meets_in_one_entry_oriented_by_the_handshake(packets, client_port, server_port):
    """Whatever packets of one connection are sampled, in whatever order: one entry, every packet counted,
    and once a SYN (client's) or SYN-ACK (server's) was sampled, src is the client."""
    if client_port == server_port:
        server_port = client_port % 65535 + 1
    flags = {"syn": SYN, "syn-ack": SYN | ACK, "ack": ACK, "psh": PSH | ACK, "fin": FIN | ACK, "rst": RST}
    tr = ConnectionTracker()
    for i, (from_client, kind) in enumerate(packets):
        if kind == "syn":
            from_client = True
        elif kind == "syn-ack":
            from_client = False
        s, d, sp, dp = (C, S, client_port, server_port) if from_client else (S, C, server_port, client_port)
        tr.observe(FlowObservation(float(i), "192.0.2.1", 1, 100, 0, 0, "none", s, d, 6, sp, dp, flags[kind]))
    conn = only(tr)
    reopened = any(k == "syn" and any(k2 in ("fin", "rst") for _, k2 in packets[:i]) for i, (_, k) in enumerate(packets))
    if reopened:  # a SYN after FIN/RST starts a new connection on the entry: only its packets count
        assert 1 <= conn.packets < len(packets)
    else:
        assert conn.packets == len(packets)
    if any(kind in ("syn", "syn-ack") for _, kind in packets):
        assert (conn.src_ip, conn.src_port, conn.dst_ip, conn.dst_port) == (C, client_port, S, server_port)
    assert conn.state in ("syn", "syn-ack", "established", "fin", "rst", "closed")


def test_deletes_are_spread_over_calls_and_a_key_written_again_is_not_deleted():
    tr = ConnectionTracker(idle_timeout=10)
    for i in range(5):
        feed(tr, tcp_frame(C, S, 40000 + i, 80, SYN), 1.0)
    tr.take_changes()
    tr.expire(100.0)  # all five idle
    _, gone = tr.take_changes(limit=2)
    assert len(gone) == 2
    feed(tr, tcp_frame(C, S, 40004, 80, SYN), 101.0)  # the same 5-tuple comes back before its delete went out
    changed, gone = tr.take_changes(limit=2)
    assert [c.src_port for c in changed] == [40004]
    assert (0, 0, C, S, 40004, 80, 6) not in gone and len(gone) == 2
    assert tr.take_changes(limit=2) == ([], [])
