"""sFlow v5 datagram decoder: bytes in, plain structures (``records.py``) out.

Hand-written because no maintained Python library decodes sFlow v5 with
expanded samples, drop notifications and overlay headers.  It follows the
XDR layout of sflow_version_5.txt: every sample and every record carries its
own length, so unknown ones are skipped by it, and a length that points
outside its container makes the datagram malformed.

Speed matters (the collector sees every datagram of every switch), hence:
precompiled ``struct.Struct.unpack_from`` on the original ``bytes`` (no
intermediate slices), one call per fixed-size block, method lookups bound to
locals, and a dispatch on the record format ordered by frequency.

``decode_datagram`` never raises: a fault yields a ``Datagram`` whose
``malformed`` says why, with the samples decoded before the fault kept.
"""

from __future__ import annotations

import socket
import struct
from typing import AbstractSet, Final

# memoised packed -> text (agents are few and send many datagrams); re-exported as decoder.address_text
from core.ports.flows import address_text

from .packet import (
    DEFAULT_GENEVE_PORT,
    DEFAULT_VXLAN_PORTS,
    HEADER_PROTOCOL_ETHERNET,
    fast_parse,
    parse_sampled_header_general,
)
from .records import (
    COUNTERS_ETHERNET,
    COUNTERS_GENERIC_INTERFACE,
    COUNTERS_PROCESSOR,
    COUNTERS_VLAN,
    FLOW_DECAPSULATE_EGRESS,
    FLOW_DECAPSULATE_INGRESS,
    FLOW_ETHERNET,
    FLOW_EXTENDED_GATEWAY,
    FLOW_EXTENDED_ROUTER,
    FLOW_EXTENDED_SWITCH,
    FLOW_IPV4,
    FLOW_IPV4_TUNNEL_EGRESS,
    FLOW_IPV4_TUNNEL_INGRESS,
    FLOW_IPV6,
    FLOW_IPV6_TUNNEL_EGRESS,
    FLOW_IPV6_TUNNEL_INGRESS,
    FLOW_L2_TUNNEL_EGRESS,
    FLOW_L2_TUNNEL_INGRESS,
    FLOW_RAW_HEADER,
    FLOW_VNI_EGRESS,
    FLOW_VNI_INGRESS,
    SAMPLE_COUNTERS,
    SAMPLE_COUNTERS_EXPANDED,
    SAMPLE_DISCARD,
    SAMPLE_FLOW,
    SAMPLE_FLOW_EXPANDED,
    CounterSample,
    Datagram,
    Decapsulate,
    DiscardSample,
    EthernetCounters,
    ExtendedGateway,
    ExtendedRouter,
    ExtendedSwitch,
    FlowSample,
    GenericInterfaceCounters,
    ProcessorCounters,
    RawPacketHeader,
    SampledEthernet,
    SampledIP,
    UnknownRecord,
    UnknownSample,
    VlanCounters,
    VniRecord,
)

__all__ = ["decode_datagram", "address_text", "MalformedDatagram"]

_PAIR: Final = struct.Struct(">II")  # (data format, length) of samples and records; version + address type
_U32: Final = struct.Struct(">I")
_HEADER_V4: Final = struct.Struct(">4sIIII")  # agent, sub-agent, sequence, uptime, sample count
_HEADER_V6: Final = struct.Struct(">16sIIII")
_FLOW_SAMPLE: Final = struct.Struct(">IIIIIIII")
_FLOW_SAMPLE_EXPANDED: Final = struct.Struct(">IIIIIIIIIII")
_COUNTER_SAMPLE: Final = struct.Struct(">III")
_COUNTER_SAMPLE_EXPANDED: Final = struct.Struct(">IIII")
_DISCARD_SAMPLE: Final = struct.Struct(">IIIIIIII")
_RAW_HEADER: Final = struct.Struct(">IIII")
_SWITCH: Final = struct.Struct(">IIII")
_SWITCH_THEN_HEADER: Final = struct.Struct(">12I").unpack_from
_FLOW_SAMPLE_SWITCH_HEADER: Final = struct.Struct(">22I").unpack_from  # sample tag+length, flow sample, both records
_SAMPLED_ETHERNET: Final = struct.Struct(">I6s2x6s2xI")
_SAMPLED_IPV4: Final = struct.Struct(">II4s4sIIII")
_SAMPLED_IPV6: Final = struct.Struct(">II16s16sIIII")
_MASKS: Final = struct.Struct(">II")
_GATEWAY_AS: Final = struct.Struct(">IIII")  # as, src_as, src_peer_as, path segment count
_GENERIC_INTERFACE: Final = struct.Struct(">IIQIIQIIIIIIQIIIIII")
_ETHERNET_COUNTERS: Final = struct.Struct(">13I")
_VLAN_COUNTERS: Final = struct.Struct(">IQIIII")
_PROCESSOR_COUNTERS: Final = struct.Struct(">IIIQQ")

#: True in the mypyc build (``collectors.sflow._fast.decoder``), which takes the byte-reading variant of the
#: fused flow sample; the pure-Python module keeps the one-``struct``-call version.
_COMPILED: Final = __name__.startswith("collectors.sflow._fast.")


class MalformedDatagram(Exception):
    """Raised inside the decoder when the datagram contradicts itself; never escapes it."""


def decode_datagram(
    data: bytes | bytearray | memoryview,  # as bytes; the union also tells mypyc not to reject the others
    vxlan_ports: frozenset[int] = DEFAULT_VXLAN_PORTS,
    geneve_port: int = DEFAULT_GENEVE_PORT,
) -> Datagram:
    """Decode one sFlow v5 datagram (the UDP payload).

    ``vxlan_ports`` and ``geneve_port`` choose which UDP destination ports in
    sampled headers are dissected as VXLAN and Geneve.  Never raises: check
    ``Datagram.malformed`` (None when the whole datagram decoded).
    """
    datagram = Datagram()
    try:
        _decode(datagram, bytes(data), vxlan_ports, geneve_port)
    except MalformedDatagram as exc:
        datagram.malformed = str(exc)
    except struct.error:
        datagram.malformed = "truncated: a structure runs past the end of the datagram"
    except Exception as exc:  # noqa: BLE001 -- the contract is "never raises"
        datagram.malformed = f"undecodable: {type(exc).__name__}: {exc}"
    return datagram


def _decode(datagram: Datagram, data: bytes, vxlan_ports: AbstractSet[int], geneve_port: int) -> None:
    """Fill ``datagram`` from ``data``; raises MalformedDatagram/struct.error at the first fault."""
    end = len(data)
    version, address_type = _PAIR.unpack_from(data, 0)
    datagram.version = version
    if version != 5:
        raise MalformedDatagram(f"not sFlow v5: version {version}")
    if address_type == 1:
        agent, sub_agent, sequence, uptime, count = _HEADER_V4.unpack_from(data, 8)
        off = 28
    elif address_type == 2:
        agent, sub_agent, sequence, uptime, count = _HEADER_V6.unpack_from(data, 8)
        off = 40
    else:
        raise MalformedDatagram(f"unknown agent address type {address_type}")
    datagram.agent = address_text(agent)
    datagram.sub_agent_id = sub_agent
    datagram.sequence = sequence
    datagram.uptime = uptime
    datagram.num_samples = count
    samples = datagram.samples
    append = samples.append
    pair = _PAIR.unpack_from
    fused = _FLOW_SAMPLE_SWITCH_HEADER
    fast = fast_parse
    sample: FlowSample | CounterSample | DiscardSample | UnknownSample
    for _ in range(count):
        if _COMPILED and off + 88 <= end:
            found = _fused_flow_sample_compiled(data, off, end, vxlan_ports, geneve_port)
            if found is not None:
                samples.append(found)  # compiled: a direct list append, where calling the bound ``append`` is not
                off += 8 + _u32(data, off + 4)
                continue
        elif off + 88 <= end:
            # The sample nearly every agent sends -- a flow sample holding an extended switch record and a
            # raw header -- is read with one unpack, validated field by field, else decoded the long way.
            (
                data_format, length, seq, source, rate, pool, drops, inp, out, nrec,
                format1, length1, src_vlan, src_priority, dst_vlan, dst_priority,
                format2, length2, protocol, frame_length, stripped, header_length,
            ) = fused(data, off)  # fmt: skip
            if (
                data_format == SAMPLE_FLOW
                and nrec == 2
                and format1 == FLOW_EXTENDED_SWITCH
                and length1 == 16
                and format2 == FLOW_RAW_HEADER
                and 16 <= length2
                and 64 + length2 <= length
                and header_length <= length2 - 16
                and off + 8 + length <= end
            ):
                start = off + 88
                header = data[start : start + header_length]
                packet = fast(header, vxlan_ports, geneve_port) if protocol == HEADER_PROTOCOL_ETHERNET else None
                if packet is None:
                    packet = parse_sampled_header_general(header, protocol, vxlan_ports, geneve_port)
                switch = ExtendedSwitch(src_vlan, src_priority, dst_vlan, dst_priority)
                raw = RawPacketHeader(protocol, frame_length, stripped, header, packet)
                append(
                    FlowSample(
                        seq, source >> 24, source & 0xFFFFFF, rate, pool, drops,
                        inp >> 30, inp & 0x3FFFFFFF, out >> 30, out & 0x3FFFFFFF, [switch, raw], raw, switch,
                    )  # fmt: skip
                )
                off += 8 + length
                continue
        if off + 8 > end:
            raise MalformedDatagram(f"truncated: {len(samples)} of {count} samples present")
        data_format, length = pair(data, off)
        body = off + 8
        off = body + length
        if off > end:
            raise MalformedDatagram(f"sample {len(samples)} length {length} runs past the datagram end")
        if data_format == SAMPLE_FLOW:
            if length < 32:
                raise MalformedDatagram(f"flow sample too short: {length} bytes")
            seq, source, rate, pool, drops, inp, out, nrec = _FLOW_SAMPLE.unpack_from(data, body)
            sample = FlowSample(
                seq, source >> 24, source & 0xFFFFFF, rate, pool, drops,
                inp >> 30, inp & 0x3FFFFFFF, out >> 30, out & 0x3FFFFFFF, [],
            )  # fmt: skip
            _flow_records(data, body + 32, off, nrec, sample, vxlan_ports, geneve_port)
        elif data_format == SAMPLE_COUNTERS:
            if length < 12:
                raise MalformedDatagram(f"counter sample too short: {length} bytes")
            seq, source, nrec = _COUNTER_SAMPLE.unpack_from(data, body)
            sample = CounterSample(seq, source >> 24, source & 0xFFFFFF, _counter_records(data, body + 12, off, nrec))
        elif data_format == SAMPLE_FLOW_EXPANDED:
            if length < 44:
                raise MalformedDatagram(f"expanded flow sample too short: {length} bytes")
            (seq, stype, sindex, rate, pool, drops, ifmt, ival, ofmt, oval, nrec) = _FLOW_SAMPLE_EXPANDED.unpack_from(
                data, body
            )
            sample = FlowSample(seq, stype, sindex, rate, pool, drops, ifmt, ival, ofmt, oval, [], None, None, True)
            _flow_records(data, body + 44, off, nrec, sample, vxlan_ports, geneve_port)
        elif data_format == SAMPLE_COUNTERS_EXPANDED:
            if length < 16:
                raise MalformedDatagram(f"expanded counter sample too short: {length} bytes")
            seq, stype, sindex, nrec = _COUNTER_SAMPLE_EXPANDED.unpack_from(data, body)
            sample = CounterSample(seq, stype, sindex, _counter_records(data, body + 16, off, nrec), True)
        elif data_format == SAMPLE_DISCARD:
            if length < 32:
                raise MalformedDatagram(f"discard sample too short: {length} bytes")
            seq, stype, sindex, drops, inp, out, reason, nrec = _DISCARD_SAMPLE.unpack_from(data, body)
            sample = DiscardSample(seq, stype, sindex, drops, inp, out, reason, [])
            _flow_records(data, body + 32, off, nrec, sample, vxlan_ports, geneve_port)
        else:
            sample = UnknownSample(data_format >> 12, data_format & 0xFFF, length)
        append(sample)


def _u32(data: bytes, off: int) -> int:
    return data[off] << 24 | data[off + 1] << 16 | data[off + 2] << 8 | data[off + 3]


def _fused_flow_sample_compiled(
    data: bytes, off: int, end: int, vxlan_ports: AbstractSet[int], geneve_port: int
) -> FlowSample | None:
    """The fused flow sample of ``_decode`` for the mypyc build, or None when the sample has another shape.

    Same checks and result as the one-unpack version in ``_decode``, reading
    the 22 words where they are (compiled, a word read is a few machine
    instructions and the integers stay unboxed in the native records).
    Offsets from the sample tag: length 4, sequence 8, source 12, rate 16,
    pool 20, drops 24, input 28, output 32, record count 36, switch record
    40-63, raw header record 64-87 (tag, length, protocol, frame length,
    stripped, header length), header bytes from 88.
    """
    if _u32(data, off) != SAMPLE_FLOW or _u32(data, off + 36) != 2:
        return None
    if _u32(data, off + 40) != FLOW_EXTENDED_SWITCH or _u32(data, off + 44) != 16:
        return None
    if _u32(data, off + 64) != FLOW_RAW_HEADER:
        return None
    length = _u32(data, off + 4)
    length2 = _u32(data, off + 68)
    header_length = _u32(data, off + 84)
    if length2 < 16 or 64 + length2 > length or header_length > length2 - 16 or off + 8 + length > end:
        return None
    protocol = _u32(data, off + 72)
    start = off + 88
    header = data[start : start + header_length]
    packet = fast_parse(header, vxlan_ports, geneve_port) if protocol == HEADER_PROTOCOL_ETHERNET else None
    if packet is None:
        packet = parse_sampled_header_general(header, protocol, vxlan_ports, geneve_port)
    switch = ExtendedSwitch(_u32(data, off + 48), _u32(data, off + 52), _u32(data, off + 56), _u32(data, off + 60))
    raw = RawPacketHeader(protocol, _u32(data, off + 76), _u32(data, off + 80), header, packet)
    source = _u32(data, off + 12)
    inp = _u32(data, off + 28)
    out = _u32(data, off + 32)
    return FlowSample(
        _u32(data, off + 8), source >> 24, source & 0xFFFFFF, _u32(data, off + 16), _u32(data, off + 20),
        _u32(data, off + 24), inp >> 30, inp & 0x3FFFFFFF, out >> 30, out & 0x3FFFFFFF, [switch, raw], raw, switch,
    )  # fmt: skip


def _flow_records(
    data: bytes,
    off: int,
    end: int,
    count: int,
    sample: FlowSample | DiscardSample,
    vxlan_ports: AbstractSet[int],
    geneve_port: int,
) -> None:
    """Decode ``count`` flow records between ``off`` and ``end`` into ``sample``.

    Most exporters (hsflowd, pmacct, switch ASIC agents) send exactly an
    extended-switch record followed by a raw header; that pair is read with
    one unpack (``_SWITCH_THEN_HEADER``) before falling back to the loop.
    """
    if count == 2 and off + 48 <= end:
        (
            format1, length1, src_vlan, src_priority, dst_vlan, dst_priority,
            format2, length2, protocol, frame_length, stripped, header_length,
        ) = _SWITCH_THEN_HEADER(data, off)  # fmt: skip
        if format1 == FLOW_EXTENDED_SWITCH and length1 == 16 and format2 == FLOW_RAW_HEADER:
            header_start = off + 32  # body of the raw header record
            if length2 < 16 or header_start + length2 > end:
                raise MalformedDatagram(f"flow sample {sample.sequence}: raw header record runs past the sample")
            if header_length > length2 - 16:
                raise MalformedDatagram(f"flow sample {sample.sequence}: sampled header longer than its record")
            header = data[header_start + 16 : header_start + 16 + header_length]
            packet = fast_parse(header, vxlan_ports, geneve_port) if protocol == HEADER_PROTOCOL_ETHERNET else None
            if packet is None:
                packet = parse_sampled_header_general(header, protocol, vxlan_ports, geneve_port)
            switch = ExtendedSwitch(src_vlan, src_priority, dst_vlan, dst_priority)
            raw = RawPacketHeader(protocol, frame_length, stripped, header, packet)
            sample.records = [switch, raw]
            sample.switch = switch
            sample.header = raw
            return
    records = sample.records
    append = records.append
    pair = _PAIR.unpack_from
    record: object
    for _ in range(count):
        if off + 8 > end:
            raise MalformedDatagram(f"flow sample {sample.sequence}: truncated record list")
        record_format, length = pair(data, off)
        body = off + 8
        off = body + length
        if off > end:
            raise MalformedDatagram(f"flow sample {sample.sequence}: record {record_format} runs past the sample")
        if record_format == FLOW_RAW_HEADER:
            if length < 16:
                raise MalformedDatagram(f"flow sample {sample.sequence}: short raw header record")
            protocol, frame_length, stripped, header_length = _RAW_HEADER.unpack_from(data, body)
            if header_length > length - 16:
                raise MalformedDatagram(f"flow sample {sample.sequence}: sampled header longer than its record")
            header = data[body + 16 : body + 16 + header_length]
            packet = fast_parse(header, vxlan_ports, geneve_port) if protocol == HEADER_PROTOCOL_ETHERNET else None
            if packet is None:
                packet = parse_sampled_header_general(header, protocol, vxlan_ports, geneve_port)
            record = RawPacketHeader(protocol, frame_length, stripped, header, packet)
            if sample.header is None:
                sample.header = record
        elif record_format == FLOW_EXTENDED_SWITCH:
            if length < 16:
                raise MalformedDatagram(f"flow sample {sample.sequence}: short extended switch record")
            record = ExtendedSwitch(*_SWITCH.unpack_from(data, body))
            if sample.switch is None:
                sample.switch = record
        else:
            record = _rare_flow_record(data, body, off, record_format)
        append(record)


def _check(length_ok: bool, what: str) -> None:
    if not length_ok:
        raise MalformedDatagram(f"short {what} record")


def _next_hop(data: bytes, off: int) -> tuple[str, int]:
    """Decode an sFlow ``address`` (type, then 4 or 16 bytes); return its text and the next offset."""
    (address_type,) = _U32.unpack_from(data, off)
    if address_type == 1:
        return socket.inet_ntop(socket.AF_INET, data[off + 4 : off + 8]), off + 8
    if address_type == 2:
        return socket.inet_ntop(socket.AF_INET6, data[off + 4 : off + 20]), off + 20
    if address_type == 0:
        return "", off + 4
    raise MalformedDatagram(f"unknown address type {address_type}")


def _rare_flow_record(data: bytes, body: int, end: int, record_format: int) -> object:  # noqa: C901 -- a flat dispatch table
    """Decode the flow records that are not on every sample; unknown ones are kept opaque."""
    length = end - body
    if record_format == FLOW_IPV4 or record_format == FLOW_IPV4_TUNNEL_EGRESS or record_format == FLOW_IPV4_TUNNEL_INGRESS:
        _check(length >= 32, "sampled IPv4")
        length, protocol, src, dst, src_port, dst_port, tcp_flags, tos = _SAMPLED_IPV4.unpack_from(data, body)
        return SampledIP(length, protocol, src, dst, src_port, dst_port, tcp_flags, tos, record_format)
    if record_format == FLOW_IPV6 or record_format == FLOW_IPV6_TUNNEL_EGRESS or record_format == FLOW_IPV6_TUNNEL_INGRESS:
        _check(length >= 56, "sampled IPv6")
        length, protocol, src, dst, src_port, dst_port, tcp_flags, tos = _SAMPLED_IPV6.unpack_from(data, body)
        return SampledIP(length, protocol, src, dst, src_port, dst_port, tcp_flags, tos, record_format)
    if record_format == FLOW_ETHERNET or record_format == FLOW_L2_TUNNEL_EGRESS or record_format == FLOW_L2_TUNNEL_INGRESS:
        _check(length >= 24, "sampled Ethernet")
        frame_length, src_mac, dst_mac, ethertype = _SAMPLED_ETHERNET.unpack_from(data, body)
        return SampledEthernet(frame_length, src_mac, dst_mac, ethertype, record_format)
    if record_format == FLOW_EXTENDED_ROUTER:
        next_hop, off = _next_hop(data, body)
        _check(off + 8 <= end, "extended router")
        src_mask, dst_mask = _MASKS.unpack_from(data, off)
        return ExtendedRouter(next_hop, src_mask, dst_mask)
    if record_format == FLOW_EXTENDED_GATEWAY:
        return _extended_gateway(data, body, end)
    if record_format == FLOW_DECAPSULATE_EGRESS or record_format == FLOW_DECAPSULATE_INGRESS:
        _check(length >= 4, "decapsulate")
        return Decapsulate(_U32.unpack_from(data, body)[0], record_format)
    if record_format == FLOW_VNI_EGRESS or record_format == FLOW_VNI_INGRESS:
        _check(length >= 4, "VNI")
        return VniRecord(_U32.unpack_from(data, body)[0], record_format)
    return UnknownRecord(record_format >> 12, record_format & 0xFFF, data[body:end])


def _extended_gateway(data: bytes, body: int, end: int) -> ExtendedGateway:
    next_hop, off = _next_hop(data, body)
    as_number, src_as, src_peer_as, segments = _GATEWAY_AS.unpack_from(data, off)
    off += 16
    if segments > (end - off) // 8:
        raise MalformedDatagram("extended gateway: AS path longer than its record")
    as_path = []
    for _ in range(segments):
        segment_type, n = _PAIR.unpack_from(data, off)
        off += 8
        if off + 4 * n > end:
            raise MalformedDatagram("extended gateway: AS path segment longer than its record")
        as_path.append((segment_type, list(struct.unpack_from(f">{n}I", data, off))))
        off += 4 * n
    (n,) = _U32.unpack_from(data, off)
    off += 4
    if off + 4 * n + 4 > end:
        raise MalformedDatagram("extended gateway: communities longer than its record")
    communities = list(struct.unpack_from(f">{n}I", data, off))
    off += 4 * n
    (local_pref,) = _U32.unpack_from(data, off)
    return ExtendedGateway(next_hop, as_number, src_as, src_peer_as, as_path, communities, local_pref)


_COUNTER_LAYOUTS = {
    COUNTERS_GENERIC_INTERFACE: (_GENERIC_INTERFACE, GenericInterfaceCounters),
    COUNTERS_ETHERNET: (_ETHERNET_COUNTERS, EthernetCounters),
    COUNTERS_VLAN: (_VLAN_COUNTERS, VlanCounters),
    COUNTERS_PROCESSOR: (_PROCESSOR_COUNTERS, ProcessorCounters),
}


def _counter_records(data: bytes, off: int, end: int, count: int) -> list:
    """Decode ``count`` counter records between ``off`` and ``end``."""
    records = []
    for _ in range(count):
        if off + 8 > end:
            raise MalformedDatagram("counter sample: truncated record list")
        record_format, length = _PAIR.unpack_from(data, off)
        body = off + 8
        off = body + length
        if off > end:
            raise MalformedDatagram(f"counter sample: record {record_format} runs past the sample")
        layout = _COUNTER_LAYOUTS.get(record_format)
        if layout is None:
            records.append(UnknownRecord(record_format >> 12, record_format & 0xFFF, data[body:off]))
            continue
        unpacker, cls = layout
        if length < unpacker.size:
            raise MalformedDatagram(f"counter sample: short {cls.__name__} record")
        records.append(cls(*unpacker.unpack_from(data, body)))
    return records
