"""Turn decoded datagrams into flat flow records, one per flow sample.

This is the "producer" half of the goflow2 split: the decoder knows the wire
format, the producer knows what a flow consumer wants (who sent it, at what
rate, which 5-tuple outside and inside the overlay).

``FlowRecord`` is a flat *view*: its fields are computed from the decoded
sample on access, so a consumer that only counts or aggregates on a few
fields does not pay for formatting addresses it never reads.

Fields (``FlowRecord.FIELDS``, also the keys of ``as_dict()``):

=====================  ==============================================================
agent                  agent address of the datagram (text)
sub_agent_id           datagram sub-agent id
sequence               datagram sequence number
sample_sequence        the flow sample's own sequence number
source_id_type         data source class (0 ifIndex, 1 VLAN, ...)
source_id_index        data source index
sampling_rate          1 in N packets
sample_pool            packets that could have been sampled
input_ifindex          input interface (value part; see input_format)
output_ifindex         output interface value (ifIndex, drop reason or count)
output_format          0 ifIndex, 1 packet discarded, 2 multiple interfaces
frame_length           length of the sampled frame on the wire
ip_version             4, 6 or None (outer packet)
src_ip, dst_ip         outer addresses (text) or None
protocol               outer IP protocol number or None
src_port, dst_port     outer TCP/UDP ports or None
tcp_flags              outer TCP flags (12 bits, as tshark's tcp.flags) or None
vlan                   outermost 802.1Q/802.1ad tag in the sampled header or None
in_vlan, out_vlan      VLANs from the extended switch record or None
encapsulation          'none', 'vxlan', 'geneve' or 'ipip'
vni                    VXLAN/Geneve VNI or None
inner_ip_version       4, 6 or None
inner_src_ip, ...dst   tunnelled packet's addresses (text) or None
inner_protocol         tunnelled packet's IP protocol or None
inner_src_port, ...dst tunnelled packet's TCP/UDP ports or None
inner_tcp_flags        tunnelled packet's TCP flags or None
truncated              the sampled header ended before the innermost transport header
truncated_in           where it ended ('tcp', 'vxlan', 'inner:ipv4', ...) or None
=====================  ==============================================================

When a sample has no raw packet header but a sampled IPv4/IPv6 record
(formats 3/4), the outer fields come from that record.
"""

from __future__ import annotations

from typing import ClassVar, Final, Iterator

from .decoder import address_text
from .packet import PACKET_FIELDS, ParsedPacket
from .records import FLOW_IPV4, FLOW_IPV6, Datagram, DiscardSample, FlowSample, SampledIP

__all__ = ["FlowRecord", "count_flows", "iter_flows", "ip_text"]

def ip_text(packed: bytes | None) -> str | None:
    """Text form of a packed address (the decoder's memoised conversion), None stays None."""
    return None if packed is None else address_text(packed)


class FlowRecord:
    """One flow sample of one datagram, flattened. See the module docstring for the fields."""

    __slots__ = ("datagram", "sample", "packet", "_sampled_ip")

    FIELDS: ClassVar[tuple[str, ...]] = (  # ClassVar: compiled by mypyc it stays a class attribute
        "agent",
        "sub_agent_id",
        "sequence",
        "sample_sequence",
        "source_id_type",
        "source_id_index",
        "sampling_rate",
        "sample_pool",
        "input_ifindex",
        "output_ifindex",
        "output_format",
        "frame_length",
        "ip_version",
        "src_ip",
        "dst_ip",
        "protocol",
        "src_port",
        "dst_port",
        "tcp_flags",
        "vlan",
        "in_vlan",
        "out_vlan",
        "encapsulation",
        "vni",
        "inner_ip_version",
        "inner_src_ip",
        "inner_dst_ip",
        "inner_protocol",
        "inner_src_port",
        "inner_dst_port",
        "inner_tcp_flags",
        "truncated",
        "truncated_in",
    )

    def __init__(self, datagram: Datagram, sample: FlowSample | DiscardSample) -> None:
        self.datagram = datagram
        self.sample = sample
        header = sample.header
        self.packet: ParsedPacket | None = header.packet if header is not None else None
        self._sampled_ip: SampledIP | None = None
        if self.packet is None:
            for record in sample.records:
                if type(record) is SampledIP and record.format in (FLOW_IPV4, FLOW_IPV6):
                    self._sampled_ip = record
                    break

    # ---- datagram and sample
    @property
    def agent(self) -> str:
        return self.datagram.agent

    @property
    def sub_agent_id(self) -> int:
        return self.datagram.sub_agent_id

    @property
    def sequence(self) -> int:
        return self.datagram.sequence

    @property
    def sample_sequence(self) -> int:
        return self.sample.sequence

    @property
    def source_id_type(self) -> int:
        return self.sample.source_id_type

    @property
    def source_id_index(self) -> int:
        return self.sample.source_id_index

    @property
    def sampling_rate(self) -> int:
        return getattr(self.sample, "sampling_rate", 1)

    @property
    def sample_pool(self) -> int | None:
        return getattr(self.sample, "sample_pool", None)

    @property
    def input_ifindex(self) -> int:
        return self.sample.input_ifindex

    @property
    def output_ifindex(self) -> int:
        return self.sample.output_ifindex

    @property
    def output_format(self) -> int:
        return getattr(self.sample, "output_format", 0)

    @property
    def frame_length(self) -> int | None:
        header = self.sample.header
        if header is not None:
            return header.frame_length
        return self._sampled_ip.length if self._sampled_ip is not None else None

    # ---- outer packet: from the sampled header, else from a sampled IPv4/IPv6 record
    def _outer(self, index: int, sampled_name: str):
        packet = self.packet
        if packet is not None:
            return packet[index]
        sampled = self._sampled_ip
        return getattr(sampled, sampled_name) if sampled is not None else None

    @property
    def ip_version(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet[_IP_VERSION] or None
        sampled = self._sampled_ip
        return (4 if len(sampled.src_ip) == 4 else 6) if sampled is not None else None

    @property
    def src_ip(self) -> str | None:
        return ip_text(self._outer(_SRC_IP, "src_ip"))

    @property
    def dst_ip(self) -> str | None:
        return ip_text(self._outer(_DST_IP, "dst_ip"))

    @property
    def protocol(self) -> int | None:
        return self._outer(_PROTOCOL, "protocol")

    @property
    def src_port(self) -> int | None:
        return self._outer(_SRC_PORT, "src_port")

    @property
    def dst_port(self) -> int | None:
        return self._outer(_DST_PORT, "dst_port")

    @property
    def tcp_flags(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet[_TCP_FLAGS]
        sampled = self._sampled_ip
        return sampled.tcp_flags if sampled is not None and sampled.protocol == 6 else None

    @property
    def vlan(self) -> int | None:
        packet = self.packet
        return packet.vlan if packet is not None else None

    @property
    def in_vlan(self) -> int | None:
        switch = self.sample.switch
        return switch.src_vlan if switch is not None else None

    @property
    def out_vlan(self) -> int | None:
        switch = self.sample.switch
        return switch.dst_vlan if switch is not None else None

    # ---- tunnel and inner packet
    def _inner(self, index: int):
        packet = self.packet
        return packet[index] if packet is not None else None

    @property
    def encapsulation(self) -> str:
        packet = self.packet
        return packet[0] if packet is not None else "none"

    @property
    def vni(self) -> int | None:
        return self._inner(_VNI)

    @property
    def inner_ip_version(self) -> int | None:
        return self._inner(_INNER_IP_VERSION) or None

    @property
    def inner_src_ip(self) -> str | None:
        return ip_text(self._inner(_INNER_SRC_IP))

    @property
    def inner_dst_ip(self) -> str | None:
        return ip_text(self._inner(_INNER_DST_IP))

    @property
    def inner_protocol(self) -> int | None:
        return self._inner(_INNER_PROTOCOL)

    @property
    def inner_src_port(self) -> int | None:
        return self._inner(_INNER_SRC_PORT)

    @property
    def inner_dst_port(self) -> int | None:
        return self._inner(_INNER_DST_PORT)

    @property
    def inner_tcp_flags(self) -> int | None:
        return self._inner(_INNER_TCP_FLAGS)

    @property
    def truncated(self) -> bool:
        packet = self.packet
        return packet[_TRUNCATED] if packet is not None else False

    @property
    def truncated_in(self) -> str | None:
        return self._inner(_TRUNCATED_IN)

    def as_dict(self) -> dict:
        """All FIELDS as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __repr__(self) -> str:
        return f"FlowRecord({self.as_dict()!r})"


_INDEX = {name: index for index, name in enumerate(PACKET_FIELDS)}
_VNI: Final = _INDEX["vni"]
_TRUNCATED: Final = _INDEX["truncated"]
_TRUNCATED_IN: Final = _INDEX["truncated_in"]
_IP_VERSION: Final = _INDEX["ip_version"]
_SRC_IP: Final = _INDEX["src_ip"]
_DST_IP: Final = _INDEX["dst_ip"]
_PROTOCOL: Final = _INDEX["protocol"]
_SRC_PORT: Final = _INDEX["src_port"]
_DST_PORT: Final = _INDEX["dst_port"]
_TCP_FLAGS: Final = _INDEX["tcp_flags"]
_INNER_IP_VERSION: Final = _INDEX["inner_ip_version"]
_INNER_SRC_IP: Final = _INDEX["inner_src_ip"]
_INNER_DST_IP: Final = _INDEX["inner_dst_ip"]
_INNER_PROTOCOL: Final = _INDEX["inner_protocol"]
_INNER_SRC_PORT: Final = _INDEX["inner_src_port"]
_INNER_DST_PORT: Final = _INDEX["inner_dst_port"]
_INNER_TCP_FLAGS: Final = _INDEX["inner_tcp_flags"]


def iter_flows(datagram: Datagram, include_discards: bool = False) -> Iterator[FlowRecord]:
    """Yield one ``FlowRecord`` per flow sample (plain and expanded) of ``datagram``.

    Dropped-packet notifications describe packets that never flowed, so they
    are left out unless ``include_discards`` is set.
    """
    for sample in datagram.samples:
        if type(sample) is FlowSample or (include_discards and type(sample) is DiscardSample):
            yield FlowRecord(datagram, sample)


def count_flows(datagram: Datagram, encapsulations: dict[str, int]) -> tuple[int, int]:
    """Produce every flow record of ``datagram`` (as ``iter_flows``) and count them.

    Adds one to ``encapsulations[flow.encapsulation]`` per flow (the dict must
    hold 'none', 'vxlan', 'geneve' and 'ipip'); returns ``(flows, truncated)``.
    What ``sflow-decode --summary`` does per datagram, kept here so that the
    compiled build (``collectors/sflow/_fast``) runs the loop natively.
    """
    flows = truncated = 0
    for flow in iter_flows(datagram):
        flows += 1
        encapsulations[flow.encapsulation] += 1
        if flow.truncated:
            truncated += 1
    return flows, truncated
