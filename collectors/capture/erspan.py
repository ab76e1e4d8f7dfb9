"""Take apart a GRE datagram as a switch's mirror session sends it: ERSPAN type I, II, III, or plain GRE.

Written from the ERSPAN draft (draft-foschiano-erspan, the layouts Linux's
include/net/erspan.h and Wireshark decode) and RFC 2784/2890 (GRE with key
and sequence number):

* GRE protocol 0x88BE with the S bit: **ERSPAN type II** -- an 8-byte header
  (version 1, VLAN, COS, encapsulation, truncation, 10-bit session id,
  index), then the mirrored Ethernet frame.  Without the S bit: **type I**,
  the frame right after the GRE header (no session id).
* GRE protocol 0x22EB: **ERSPAN type III** -- a 12-byte header (version 2,
  VLAN, COS, BSO, T, session id, a 32-bit hardware **timestamp**, SGT, P,
  frame type, hardware id, direction, timestamp granularity, O), an optional
  8-byte platform sub-header when O is set, then the frame (frame type 0
  Ethernet, 2 IP).
* GRE protocol 0x6558: transparent Ethernet bridging (an Ethernet frame,
  what Linux ``gretap`` and many switches' "GRE mirror" send); 0x0800 /
  0x86DD: an IP packet.  The GRE key, when present, plays the session id.

The GRE sequence number (S bit), when present, gives loss per session as
sFlow's does per exporter (:mod:`collectors.capture.sequence`).
"""
from __future__ import annotations

__all__ = ["parse_gre", "GreFrame", "GRA_UNITS", "PROTO_ERSPAN_II", "PROTO_ERSPAN_III", "PROTO_TEB",
           "NOT_MIRROR", "MALFORMED_GRE"]

from typing import NamedTuple

PROTO_ERSPAN_II = 0x88BE
PROTO_ERSPAN_III = 0x22EB
PROTO_TEB = 0x6558
_PROTO_IPV4, _PROTO_IPV6 = 0x0800, 0x86DD

#: type III timestamp granularity -> seconds per tick (None: user-defined, not usable)
GRA_UNITS: dict[int, float | None] = {0: 100e-6, 1: 100e-9, 2: 1e-9, 3: None}

NOT_MIRROR = 0     # a GRE packet that carries no mirrored frame we read (another protocol, a keepalive)
MALFORMED_GRE = 1  # the bytes end inside a header, or a header is impossible


class GreFrame(NamedTuple):
    """Where the mirrored frame starts in a GRE datagram, and what the headers said about it."""

    offset: int               # first byte of the mirrored frame (or IP packet)
    kind: int                 # 0 Ethernet, 4 IPv4, 6 IPv6 (collectors.capture.frames KIND_*)
    erspan: int               # 0 plain GRE, 1 type I, 2 type II, 3 type III
    session: int              # ERSPAN session id, else the GRE key, else 0
    sequence: int | None      # GRE sequence number, when present
    timestamp: int | None     # type III hardware timestamp (32 bits), in ticks of ``unit``
    unit: float | None        # seconds per timestamp tick (None: no usable timestamp)


def parse_gre(data: bytes, off: int = 0) -> GreFrame | int:
    """The mirrored frame of the GRE datagram at ``data[off:]`` (after any IP header); NOT_MIRROR or MALFORMED_GRE."""
    n = len(data)
    if off + 4 > n:
        return MALFORMED_GRE
    flags = data[off] << 8 | data[off + 1]
    protocol = data[off + 2] << 8 | data[off + 3]
    if flags & 0x0007:
        return NOT_MIRROR  # GRE version 1 (PPTP) or later
    off += 4
    if flags & 0xC000:  # checksum (and offset) present
        off += 4
    key = None
    if flags & 0x2000:
        if off + 4 > n:
            return MALFORMED_GRE
        key = int.from_bytes(data[off:off + 4], "big")
        off += 4
    sequence = None
    if flags & 0x1000:
        if off + 4 > n:
            return MALFORMED_GRE
        sequence = int.from_bytes(data[off:off + 4], "big")
        off += 4
    if off > n:
        return MALFORMED_GRE
    if protocol == PROTO_ERSPAN_II:
        if sequence is None:  # type I: the frame follows the bare GRE header
            return GreFrame(off, 0, 1, key or 0, None, None, None)
        if off + 8 > n:
            return MALFORMED_GRE
        if data[off] >> 4 != 1:
            return MALFORMED_GRE
        session = (data[off + 2] & 0x03) << 8 | data[off + 3]
        return GreFrame(off + 8, 0, 2, session, sequence, None, None)
    if protocol == PROTO_ERSPAN_III:
        if off + 12 > n:
            return MALFORMED_GRE
        if data[off] >> 4 != 2:
            return MALFORMED_GRE
        session = (data[off + 2] & 0x03) << 8 | data[off + 3]
        timestamp = int.from_bytes(data[off + 4:off + 8], "big")
        frame_type = (data[off + 10] >> 2) & 0x1F
        last = data[off + 11]
        unit = GRA_UNITS[(last >> 1) & 0x03]
        start = off + 12 + (8 if last & 0x01 else 0)
        if start > n:
            return MALFORMED_GRE
        if frame_type == 0:
            kind = 0
        elif frame_type == 2:
            if start >= n:
                return MALFORMED_GRE
            kind = 4 if data[start] >> 4 == 4 else 6
        else:
            return NOT_MIRROR
        return GreFrame(start, kind, 3, session, sequence, timestamp, unit)
    if protocol == PROTO_TEB:
        return GreFrame(off, 0, 0, key or 0, sequence, None, None)
    if protocol == _PROTO_IPV4 or protocol == _PROTO_IPV6:
        return GreFrame(off, 4 if protocol == _PROTO_IPV4 else 6, 0, key or 0, sequence, None, None)
    return NOT_MIRROR
