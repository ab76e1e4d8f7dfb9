"""The sFlow collector hands interface data to an InterfaceSink: counter samples become port rates
(utilisation, errors, discards; 32-bit counters wrap), flow samples become sightings of an outer
source on an input ifIndex (with its MAC) -- in the collector's process and through its workers."""
from __future__ import annotations

import asyncio
import socket

import pytest

from collectors.sflow.collector import SflowCollector
from collectors.topology.sflowports import SflowPorts
from core.datastore import Datastore
from fabric_sync.embedded import EmbeddedFabricStore
from tests.sflow import encoder as enc

SPEED = 10_000_000_000


def counters(ifindex=7, in_octets=0, out_octets=0, in_pkts=0, in_discards=0, in_errors=0, status=3, speed=SPEED):
    return enc.counter_sample([enc.generic_interface(
        if_index=ifindex, if_type=6, if_speed=speed, if_direction=1, if_status=status, in_octets=in_octets,
        in_ucast_pkts=in_pkts, in_multicast_pkts=0, in_broadcast_pkts=0, in_discards=in_discards,
        in_errors=in_errors, in_unknown_protos=0, out_octets=out_octets, out_ucast_pkts=0, out_multicast_pkts=0,
        out_broadcast_pkts=0, out_discards=0, out_errors=0, promiscuous_mode=0)], source_index=ifindex)


def flow(src, input_if=7):
    frame = enc.ethernet(enc.ipv4(enc.udp(40000, 4789, b"x" * 20), 17, src=src, dst="10.0.0.99"), 0x0800)
    return enc.flow_sample([enc.raw_header(frame)], input_if=input_if, output_if=9)


@pytest.fixture
async def ds(tmp_path):
    store = Datastore("leaf1", tmp_path, EmbeddedFabricStore(tmp_path, "leaf1"))
    await store.start()
    yield store
    await store.stop()


async def test_counter_samples_become_port_rates(ds):
    ports = SflowPorts(clock=lambda: 200.0)
    collector = SflowCollector(ds.state, ds, ds.feed, None, "127.0.0.1:0", interface_sink=ports)
    collector.datagram(enc.datagram([counters(in_octets=1_000, in_pkts=1_000)]), 100.0)
    # 30 s later: 37.5 GB in (10 % of 10 Gb/s), 30 of 1,000 packets discarded (3 %), 2 errors
    collector.datagram(enc.datagram([counters(in_octets=1_000 + 3_750_000_000, in_pkts=1_970, in_discards=30,
                                              in_errors=2)]), 130.0)
    collector.flush_interfaces()
    rates, _, _ = ports.snapshot(None)
    r = rates[7]
    assert r.interval == 30 and r.in_utilization == 10.0 and r.in_discards == 30 and r.in_errors == 2
    assert r.in_discard_percent == 3.0 and r.oper_up is True and r.speed == SPEED


async def test_32_bit_counters_wrap(ds):
    ports = SflowPorts(clock=lambda: 200.0)
    collector = SflowCollector(ds.state, ds, ds.feed, None, "127.0.0.1:0", interface_sink=ports)
    collector.datagram(enc.datagram([counters(in_pkts=(1 << 32) - 10, in_discards=(1 << 32) - 1)]), 100.0)
    collector.datagram(enc.datagram([counters(in_pkts=90, in_discards=4)]), 130.0)
    collector.flush_interfaces()
    r = ports.snapshot(None)[0][7]
    assert r.in_discards == 5 and r.in_discard_percent == round(100 * 5 / 105, 2)


async def test_flow_samples_become_sightings_and_foreign_exporters_are_left_out(ds):
    ports = SflowPorts(clock=lambda: 200.0)
    collector = SflowCollector(ds.state, ds, ds.feed, None, "127.0.0.1:0", interface_sink=ports)
    for _ in range(3):
        collector.datagram(enc.datagram([flow("10.0.0.4", input_if=7)], agent="192.0.2.1"), 150.0)
    collector.datagram(enc.datagram([flow("10.0.0.5", input_if=8)], agent="192.0.2.9"), 150.0)
    collector.flush_interfaces()
    _, sightings, note = ports.snapshot(frozenset({"192.0.2.1"}))
    assert sightings == {7: {"10.0.0.4": (150.0, "02:00:00:00:00:01")}}
    assert "192.0.2.9" in note
    _, everything, _ = ports.snapshot(None)
    assert set(everything) == {7, 8}


async def test_workers_hand_interface_data_over_too(ds):
    ports = SflowPorts()
    collector = SflowCollector(ds.state, ds, ds.feed, None, "127.0.0.1:0", workers=2, interface_sink=ports,
                               publish_interval=0.05)
    await collector.start()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            sock.sendto(enc.datagram([flow("10.0.0.4"), counters(in_octets=5)]), ("127.0.0.1", collector.port))
        sock.close()
        for _ in range(200):
            _, sightings, _ = ports.snapshot(None)
            if sightings and ports.records:
                break
            await asyncio.sleep(0.05)
        assert "10.0.0.4" in sightings[7] and ports.records >= 1
    finally:
        await collector.stop()
