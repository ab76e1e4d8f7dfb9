"""Plain structures an sFlow v5 datagram decodes into.

These mirror the XDR structures of sflow_version_5.txt, the tunnel
structures extension (sflow_tunnels.txt) and the dropped-packet
notification extension (sflow_drops.txt) field for field, so that a reader
who knows the spec knows the objects.  They carry no behaviour: turning
them into flow messages is the producer's job (``producer.py``), the same
split goflow2 makes between its decoders and producers.

All classes use ``__slots__`` (via ``dataclass(slots=True)``) because the
collector creates several per datagram and attribute dictionaries would
double their cost.  The ones created for every sample spell out their
``__init__`` (the dataclass keeps a class's own ``__init__``): compiled by
mypyc (``collectors/sflow/_fast``) it becomes a C constructor, while the one
the dataclasses module generates would stay interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from .packet import ParsedPacket

# Sample formats (enterprise 0).
SAMPLE_FLOW: Final = 1
SAMPLE_COUNTERS: Final = 2
SAMPLE_FLOW_EXPANDED: Final = 3
SAMPLE_COUNTERS_EXPANDED: Final = 4
SAMPLE_DISCARD: Final = 5

# Flow record formats (enterprise 0).
FLOW_RAW_HEADER: Final = 1
FLOW_ETHERNET: Final = 2
FLOW_IPV4: Final = 3
FLOW_IPV6: Final = 4
FLOW_EXTENDED_SWITCH: Final = 1001
FLOW_EXTENDED_ROUTER: Final = 1002
FLOW_EXTENDED_GATEWAY: Final = 1003
FLOW_L2_TUNNEL_EGRESS: Final = 1021
FLOW_L2_TUNNEL_INGRESS: Final = 1022
FLOW_IPV4_TUNNEL_EGRESS: Final = 1023
FLOW_IPV4_TUNNEL_INGRESS: Final = 1024
FLOW_IPV6_TUNNEL_EGRESS: Final = 1025
FLOW_IPV6_TUNNEL_INGRESS: Final = 1026
FLOW_DECAPSULATE_EGRESS: Final = 1027
FLOW_DECAPSULATE_INGRESS: Final = 1028
FLOW_VNI_EGRESS: Final = 1029
FLOW_VNI_INGRESS: Final = 1030

# Counter record formats (enterprise 0).
COUNTERS_GENERIC_INTERFACE: Final = 1
COUNTERS_ETHERNET: Final = 2
COUNTERS_VLAN: Final = 5
COUNTERS_PROCESSOR: Final = 1001

# Interface encoding of the compact flow sample's input/output (top two bits).
INTERFACE_FORMAT_IFINDEX: Final = 0
INTERFACE_FORMAT_DISCARDED: Final = 1  # value is a drop reason code
INTERFACE_FORMAT_MULTIPLE: Final = 2  # value is the number of output interfaces


# --------------------------------------------------------------------- flow records


@dataclass(slots=True)
class RawPacketHeader:
    """Flow record 1, ``sampled_header``: the first bytes of the sampled frame.

    ``packet`` is the dissection of ``header`` (None for header protocols we
    do not dissect, e.g. MPLS or token ring).
    """

    header_protocol: int
    frame_length: int
    stripped: int
    header: bytes
    packet: ParsedPacket | None
    format: int = FLOW_RAW_HEADER

    def __init__(
        self, header_protocol: int, frame_length: int, stripped: int, header: bytes, packet: ParsedPacket | None,
        format: int = FLOW_RAW_HEADER,
    ) -> None:  # fmt: skip
        self.header_protocol = header_protocol
        self.frame_length = frame_length
        self.stripped = stripped
        self.header = header
        self.packet = packet
        self.format = format


@dataclass(slots=True)
class SampledEthernet:
    """Flow record 2 (``sampled_ethernet``), also 1021/1022 (L2 tunnel egress/ingress)."""

    length: int
    src_mac: bytes
    dst_mac: bytes
    ethertype: int
    format: int = FLOW_ETHERNET


@dataclass(slots=True)
class SampledIP:
    """Flow records 3/4 (``sampled_ipv4``/``sampled_ipv6``) and 1023-1026 (IP tunnel egress/ingress).

    ``tos`` is the IPv4 type of service or the IPv6 priority; addresses are packed bytes.
    """

    length: int
    protocol: int
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    tcp_flags: int
    tos: int
    format: int = FLOW_IPV4


@dataclass(slots=True)
class ExtendedSwitch:
    """Flow record 1001: VLAN and 802.1p priority on the way in and out."""

    src_vlan: int
    src_priority: int
    dst_vlan: int
    dst_priority: int
    format: int = FLOW_EXTENDED_SWITCH

    def __init__(
        self, src_vlan: int, src_priority: int, dst_vlan: int, dst_priority: int, format: int = FLOW_EXTENDED_SWITCH
    ) -> None:
        self.src_vlan = src_vlan
        self.src_priority = src_priority
        self.dst_vlan = dst_vlan
        self.dst_priority = dst_priority
        self.format = format


@dataclass(slots=True)
class ExtendedRouter:
    """Flow record 1002: next hop and prefix lengths. ``next_hop`` is text."""

    next_hop: str
    src_mask_len: int
    dst_mask_len: int
    format: int = FLOW_EXTENDED_ROUTER


@dataclass(slots=True)
class ExtendedGateway:
    """Flow record 1003: BGP next hop, AS numbers, AS path segments, communities."""

    next_hop: str
    as_number: int
    src_as: int
    src_peer_as: int
    as_path: list[tuple[int, list[int]]]  # (segment type 1=set 2=sequence, AS numbers)
    communities: list[int]
    local_pref: int
    format: int = FLOW_EXTENDED_GATEWAY


@dataclass(slots=True)
class Decapsulate:
    """Flow records 1027/1028: offset of the inner header in the sampled header."""

    inner_header_offset: int
    format: int = FLOW_DECAPSULATE_EGRESS


@dataclass(slots=True)
class VniRecord:
    """Flow records 1029/1030: VXLAN/Geneve VNI the packet left or arrived with."""

    vni: int
    format: int = FLOW_VNI_EGRESS


@dataclass(slots=True)
class UnknownRecord:
    """A flow or counter record we do not decode, skipped by its length."""

    enterprise: int
    format: int
    data: bytes


# ------------------------------------------------------------------ counter records


@dataclass(slots=True)
class GenericInterfaceCounters:
    """Counter record 1 (``if_counters``, RFC 2233 ifTable/ifXTable)."""

    if_index: int
    if_type: int
    if_speed: int
    if_direction: int
    if_status: int
    in_octets: int
    in_ucast_pkts: int
    in_multicast_pkts: int
    in_broadcast_pkts: int
    in_discards: int
    in_errors: int
    in_unknown_protos: int
    out_octets: int
    out_ucast_pkts: int
    out_multicast_pkts: int
    out_broadcast_pkts: int
    out_discards: int
    out_errors: int
    promiscuous_mode: int
    format: int = COUNTERS_GENERIC_INTERFACE


@dataclass(slots=True)
class EthernetCounters:
    """Counter record 2 (``ethernet_counters``, RFC 2358 dot3StatsTable)."""

    alignment_errors: int
    fcs_errors: int
    single_collision_frames: int
    multiple_collision_frames: int
    sqe_test_errors: int
    deferred_transmissions: int
    late_collisions: int
    excessive_collisions: int
    internal_mac_transmit_errors: int
    carrier_sense_errors: int
    frame_too_longs: int
    internal_mac_receive_errors: int
    symbol_errors: int
    format: int = COUNTERS_ETHERNET


@dataclass(slots=True)
class VlanCounters:
    """Counter record 5 (``vlan_counters``)."""

    vlan_id: int
    octets: int
    ucast_pkts: int
    multicast_pkts: int
    broadcast_pkts: int
    discards: int
    format: int = COUNTERS_VLAN


@dataclass(slots=True)
class ProcessorCounters:
    """Counter record 1001 (``processor``): CPU percentages x100 and memory bytes."""

    cpu_5s: int
    cpu_1m: int
    cpu_5m: int
    total_memory: int
    free_memory: int
    format: int = COUNTERS_PROCESSOR


# -------------------------------------------------------------------------- samples


@dataclass(slots=True)
class FlowSample:
    """Flow sample (format 1) or expanded flow sample (format 3).

    Interfaces are split into format and value for both encodings: format 0
    is an ifIndex, 1 a packet discarded (value = reason), 2 several output
    interfaces (value = count).  ``header`` and ``switch`` point at the
    sample's raw-header and extended-switch records, which the producer
    needs for every sample, so it does not search ``records``.
    """

    sequence: int
    source_id_type: int
    source_id_index: int
    sampling_rate: int
    sample_pool: int
    drops: int
    input_format: int
    input_ifindex: int
    output_format: int
    output_ifindex: int
    records: list
    header: RawPacketHeader | None = None
    switch: ExtendedSwitch | None = None
    expanded: bool = False

    def __init__(
        self, sequence: int, source_id_type: int, source_id_index: int, sampling_rate: int, sample_pool: int,
        drops: int, input_format: int, input_ifindex: int, output_format: int, output_ifindex: int, records: list,
        header: RawPacketHeader | None = None, switch: ExtendedSwitch | None = None, expanded: bool = False,
    ) -> None:  # fmt: skip
        self.sequence = sequence
        self.source_id_type = source_id_type
        self.source_id_index = source_id_index
        self.sampling_rate = sampling_rate
        self.sample_pool = sample_pool
        self.drops = drops
        self.input_format = input_format
        self.input_ifindex = input_ifindex
        self.output_format = output_format
        self.output_ifindex = output_ifindex
        self.records = records
        self.header = header
        self.switch = switch
        self.expanded = expanded


@dataclass(slots=True)
class CounterSample:
    """Counter sample (format 2) or expanded counter sample (format 4)."""

    sequence: int
    source_id_type: int
    source_id_index: int
    records: list
    expanded: bool = False


@dataclass(slots=True)
class DiscardSample:
    """Dropped-packet notification (format 5, sflow_drops.txt ``discarded_packet``).

    ``reason`` is the drop_reason code (ICMP unreachable codes 0-15, then
    256 unknown, 257 ttl_exceeded, 258 acl ...); ``records`` describe the
    dropped packet with the same flow records a flow sample uses.
    """

    sequence: int
    source_id_type: int
    source_id_index: int
    drops: int
    input_ifindex: int
    output_ifindex: int
    reason: int
    records: list
    header: RawPacketHeader | None = None
    switch: ExtendedSwitch | None = None


@dataclass(slots=True)
class UnknownSample:
    """A sample of a format or enterprise we do not decode, skipped by its length."""

    enterprise: int
    format: int
    length: int


# ------------------------------------------------------------------------- datagram


@dataclass(slots=True)
class Datagram:
    """One sFlow v5 datagram.

    ``malformed`` is None for a clean decode, else a short reason; the
    samples decoded before the fault are kept.  ``num_samples`` is what the
    header announced, ``len(samples)`` what was decoded.
    """

    agent: str = ""
    sub_agent_id: int = 0
    sequence: int = 0
    uptime: int = 0
    samples: list = field(default_factory=list)
    malformed: str | None = None
    version: int = 0
    num_samples: int = 0

    def __init__(
        self, agent: str = "", sub_agent_id: int = 0, sequence: int = 0, uptime: int = 0, samples: list | None = None,
        malformed: str | None = None, version: int = 0, num_samples: int = 0,
    ) -> None:  # fmt: skip
        self.agent = agent
        self.sub_agent_id = sub_agent_id
        self.sequence = sequence
        self.uptime = uptime
        self.samples = [] if samples is None else samples
        self.malformed = malformed
        self.version = version
        self.num_samples = num_samples
