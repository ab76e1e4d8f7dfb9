"""Read sFlow datagrams out of a packet capture, with the standard library only.

Captures are how sFlow is tested and replayed (tcpdump on the collector
port), so the decoder's CLI and benchmark read them directly.  Supported:
classic pcap (microsecond and nanosecond, either byte order) and pcapng
(section, interface and enhanced/simple packet blocks); link types Ethernet
(with 802.1Q tags), Linux cooked v1/v2, raw IP, BSD loopback; IPv4 and IPv6
(with extension headers); UDP.  IP fragments are skipped: a collector only
sees reassembled datagrams and so should we.

A file that is not a capture, or that breaks off inside a header, raises
``PcapError`` with a sentence a person can act on.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import AbstractSet, BinaryIO, Iterator

__all__ = ["PcapError", "SFLOW_PORT", "iter_sflow_payloads", "iter_udp_payloads", "iter_frames"]

SFLOW_PORT = 6343

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD = 12  # DLT_RAW as some BSDs number it
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D


class PcapError(Exception):
    """The file is not a readable pcap/pcapng capture."""


def _open_bytes(path: str | os.PathLike) -> bytes | mmap.mmap:
    try:
        with open(path, "rb") as handle:
            return _map(handle)
    except OSError as exc:
        raise PcapError(f"{os.fspath(path)}: cannot read: {exc.strerror or exc}") from None


def _map(handle: BinaryIO) -> bytes | mmap.mmap:
    try:
        size = os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return handle.read()
    if size == 0:
        return b""
    try:
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return handle.read()


def iter_frames(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield ``(link_type, frame_bytes)`` for every packet of a pcap or pcapng file."""
    data = _open_bytes(path)
    return _frames(data, _byte_order(data, os.fspath(path)), os.fspath(path))


def _byte_order(data: "bytes | mmap.mmap", name: str) -> str:
    """'>' or '<' for classic pcap, 'ng' for pcapng; PcapError for anything else."""
    if len(data) < 4:
        raise PcapError(f"{name}: not a pcap or pcapng capture (file is {len(data)} bytes long)")
    (magic_be,) = struct.unpack_from(">I", data, 0)
    (magic_le,) = struct.unpack_from("<I", data, 0)
    if magic_be in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        return ">"
    if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        return "<"
    if magic_be == _PCAPNG_SHB:
        return "ng"
    raise PcapError(f"{name}: not a pcap or pcapng capture (magic number 0x{magic_be:08x})")


def _frames(data: "bytes | mmap.mmap", order: str, name: str) -> Iterator[tuple[int, bytes]]:
    return _iter_pcapng(data, name) if order == "ng" else _iter_pcap(data, order, name)


def _iter_pcap(data: "bytes | mmap.mmap", order: str, name: str) -> Iterator[tuple[int, bytes]]:
    if len(data) < 24:
        raise PcapError(f"{name}: pcap file header is cut short ({len(data)} of 24 bytes)")
    (link_type,) = struct.unpack_from(order + "I", data, 20)
    link_type &= 0x0FFFFFFF  # upper bits may carry FCS information
    record = struct.Struct(order + "8xII")
    unpack = record.unpack_from
    off = 24
    end = len(data)
    while off < end:
        if off + 16 > end:
            raise PcapError(f"{name}: capture breaks off inside a packet record header at byte {off}")
        caplen, _wirelen = unpack(data, off)
        off += 16
        if caplen > 0x4000000 or off + caplen > end:
            raise PcapError(f"{name}: capture breaks off inside a packet at byte {off} (captured length {caplen})")
        yield link_type, data[off : off + caplen]
        off += caplen


def _iter_pcapng(data: "bytes | mmap.mmap", name: str) -> Iterator[tuple[int, bytes]]:
    end = len(data)
    off = 0
    order = ">"
    link_types: list[int] = []
    while off < end:
        if off + 12 > end:
            raise PcapError(f"{name}: pcapng block header is cut short at byte {off}")
        (block_type,) = struct.unpack_from(">I", data, off)
        if block_type == _PCAPNG_SHB:
            (byte_order,) = struct.unpack_from(">I", data, off + 8)
            if byte_order == _PCAPNG_BYTE_ORDER:
                order = ">"
            elif byte_order == 0x4D3C2B1A:
                order = "<"
            else:
                raise PcapError(f"{name}: pcapng section header has a bad byte-order magic")
            link_types = []
        block_type, length = struct.unpack_from(order + "II", data, off)
        if length < 12 or length % 4 or off + length > end:
            raise PcapError(f"{name}: pcapng block at byte {off} has a bad length {length}")
        body = off + 8
        if block_type == 1:  # interface description
            (link_type,) = struct.unpack_from(order + "H", data, body)
            link_types.append(link_type)
        elif block_type == 6:  # enhanced packet
            interface, _hi, _lo, caplen, _wirelen = struct.unpack_from(order + "IIIII", data, body)
            if interface >= len(link_types) or body + 20 + caplen > off + length:
                raise PcapError(f"{name}: pcapng packet block at byte {off} is inconsistent")
            yield link_types[interface], data[body + 20 : body + 20 + caplen]
        elif block_type == 3:  # simple packet: interface 0, captured length bounded by the block
            if not link_types:
                raise PcapError(f"{name}: pcapng simple packet before any interface description")
            (wirelen,) = struct.unpack_from(order + "I", data, body)
            caplen = min(wirelen, length - 16)
            yield link_types[0], data[body + 4 : body + 4 + caplen]
        off += length


def _ip_offset(link_type: int, frame: bytes) -> int:
    """Offset of the IP header in ``frame`` for ``link_type``, or -1 when it carries no IP."""
    if link_type == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return -1
        ethertype = frame[12] << 8 | frame[13]
        off = 14
        while ethertype in (0x8100, 0x88A8, 0x9100) and off + 4 <= len(frame):
            ethertype = frame[off + 2] << 8 | frame[off + 3]
            off += 4
        return off if ethertype in (0x0800, 0x86DD) else -1
    if link_type in (LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return 0
    if link_type == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return -1
        return 16 if (frame[14] << 8 | frame[15]) in (0x0800, 0x86DD) else -1
    if link_type == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return -1
        return 20 if (frame[0] << 8 | frame[1]) in (0x0800, 0x86DD) else -1
    if link_type == LINKTYPE_NULL:
        return 4 if len(frame) >= 4 else -1
    return -1


def _udp_payload(frame: bytes, off: int) -> tuple[int, int, bytes] | None:
    """``(src_port, dst_port, payload)`` of the UDP datagram in the IP packet at ``off``, if any."""
    n = len(frame)
    if off >= n:
        return None
    version = frame[off] >> 4
    if version == 4:
        if off + 20 > n:
            return None
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 17 or (frame[off + 6] & 0x3F) or frame[off + 7]:
            return None  # not UDP, or a fragment (MF set or non-zero offset)
        total = frame[off + 2] << 8 | frame[off + 3]
        ip_end = min(n, off + total) if total >= ihl else n
        off += ihl
    elif version == 6:
        if off + 40 > n:
            return None
        next_header = frame[off + 6]
        payload_length = frame[off + 4] << 8 | frame[off + 5]
        ip_end = min(n, off + 40 + payload_length)
        off += 40
        while next_header in (0, 43, 60) and off + 8 <= n:
            next_header, ext = frame[off], (frame[off + 1] + 1) * 8
            off += ext
        if next_header != 17:
            return None
    else:
        return None
    if off + 8 > n:
        return None
    udp_length = frame[off + 4] << 8 | frame[off + 5]
    end = min(ip_end, off + udp_length) if udp_length >= 8 else ip_end
    return frame[off] << 8 | frame[off + 1], frame[off + 2] << 8 | frame[off + 3], frame[off + 8 : end]


def iter_udp_payloads(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(src_port, dst_port, payload)`` for every unfragmented UDP datagram in a capture."""
    for link_type, frame in iter_frames(path):
        off = _ip_offset(link_type, frame)
        if off >= 0:
            found = _udp_payload(frame, off)
            if found is not None:
                yield found


def iter_sflow_payloads(
    path: str | os.PathLike, ports: AbstractSet[int] | None = frozenset({SFLOW_PORT})
) -> Iterator[bytes]:
    """Yield the UDP payloads sent to (or from) an sFlow collector port in a capture.

    ``ports=None`` yields every UDP payload.  Raises ``PcapError`` for a file
    that is not a capture; a capture without sFlow simply yields nothing.
    """
    name = os.fspath(path)
    data = _open_bytes(path)
    order = _byte_order(data, name)
    if order != "ng" and ports is not None and len(data) >= 24:
        (link_type,) = struct.unpack_from(order + "I", data, 20)
        if link_type & 0x0FFFFFFF == LINKTYPE_ETHERNET:
            return _ethernet_pcap_payloads(data, order, name, ports)
    return _general_payloads(data, order, name, ports)


def _general_payloads(data: "bytes | mmap.mmap", order: str, name: str, ports: AbstractSet[int] | None) -> Iterator[bytes]:
    for link_type, frame in _frames(data, order, name):
        off = _ip_offset(link_type, frame)
        if off >= 0:
            found = _udp_payload(frame, off)
            if found is not None and (ports is None or found[1] in ports or found[0] in ports):
                yield found[2]


def _ethernet_pcap_payloads(data: "bytes | mmap.mmap", order: str, name: str, ports: AbstractSet[int]) -> Iterator[bytes]:
    """Classic pcap of Ethernet frames, the way tcpdump writes a collector's traffic.

    Untagged Ethernet + IPv4 without options + UDP is cut straight out of
    the file (one slice per datagram); any other frame takes the general path.
    """
    record = struct.Struct(order + "8xII").unpack_from
    frame_fields = _ETHERNET_IPV4_UDP.unpack_from
    off = 24
    end = len(data)
    while off < end:
        if off + 16 > end:
            raise PcapError(f"{name}: capture breaks off inside a packet record header at byte {off}")
        caplen, _wirelen = record(data, off)
        off += 16
        frame_end = off + caplen
        if caplen > 0x4000000 or frame_end > end:
            raise PcapError(f"{name}: capture breaks off inside a packet at byte {off} (captured length {caplen})")
        if caplen >= 42:
            # One unpack for the fields that decide (EtherType, version/IHL, fragment, protocol) and the UDP ones.
            ethertype, version_ihl, total_length, fragment, protocol, src_port, dst_port, udp_length = frame_fields(
                data, off
            )
            if ethertype == 0x0800 and version_ihl == 0x45 and protocol == 17 and not fragment & 0x3FFF:
                if dst_port in ports or src_port in ports:
                    payload_end = off + 34 + udp_length if udp_length >= 8 else off + 14 + total_length
                    yield data[off + 42 : min(payload_end, off + 14 + total_length, frame_end)]
                off = frame_end
                continue
        frame = data[off:frame_end]
        ip_off = _ip_offset(LINKTYPE_ETHERNET, frame)
        if ip_off >= 0:
            found = _udp_payload(frame, ip_off)
            if found is not None and (found[1] in ports or found[0] in ports):
                yield found[2]
        off = frame_end


#: EtherType (frame offset 12), IPv4 version/IHL (14), total length (16), flags+fragment offset (20),
#: protocol (23), then UDP source port, destination port, length (34, 36, 38).
_ETHERNET_IPV4_UDP = struct.Struct(">12xHBxH2xHxB10xHHH")
