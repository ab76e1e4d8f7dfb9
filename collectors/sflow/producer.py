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

from typing import ClassVar, Iterator

from core.ports.flows import FlowObservation, address_text, make_observation
from .packet import ParsedPacket
from .records import FLOW_IPV4, FLOW_IPV6, Datagram, DiscardSample, FlowSample, SampledIP

__all__ = ["FlowRecord", "count_flows", "iter_flows", "ip_text", "observation_from_record",
           "observations_from_datagram"]

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
    @property
    def ip_version(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet.ip_version or None
        sampled = self._sampled_ip
        return (4 if len(sampled.src_ip) == 4 else 6) if sampled is not None else None

    @property
    def src_ip(self) -> str | None:
        packet = self.packet
        if packet is not None:
            return ip_text(packet.src_ip)
        sampled = self._sampled_ip
        return ip_text(sampled.src_ip) if sampled is not None else None

    @property
    def dst_ip(self) -> str | None:
        packet = self.packet
        if packet is not None:
            return ip_text(packet.dst_ip)
        sampled = self._sampled_ip
        return ip_text(sampled.dst_ip) if sampled is not None else None

    @property
    def protocol(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet.protocol
        sampled = self._sampled_ip
        return sampled.protocol if sampled is not None else None

    @property
    def src_port(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet.src_port
        sampled = self._sampled_ip
        return sampled.src_port if sampled is not None else None

    @property
    def dst_port(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet.dst_port
        sampled = self._sampled_ip
        return sampled.dst_port if sampled is not None else None

    @property
    def tcp_flags(self) -> int | None:
        packet = self.packet
        if packet is not None:
            return packet.tcp_flags
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

    # ---- tunnel and inner packet (None without a sampled header)
    @property
    def encapsulation(self) -> str:
        packet = self.packet
        return packet.encapsulation if packet is not None else "none"

    @property
    def vni(self) -> int | None:
        packet = self.packet
        return packet.vni if packet is not None else None

    @property
    def inner_ip_version(self) -> int | None:
        packet = self.packet
        return (packet.inner_ip_version or None) if packet is not None else None

    @property
    def inner_src_ip(self) -> str | None:
        packet = self.packet
        return ip_text(packet.inner_src_ip) if packet is not None else None

    @property
    def inner_dst_ip(self) -> str | None:
        packet = self.packet
        return ip_text(packet.inner_dst_ip) if packet is not None else None

    @property
    def inner_protocol(self) -> int | None:
        packet = self.packet
        return packet.inner_protocol if packet is not None else None

    @property
    def inner_src_port(self) -> int | None:
        packet = self.packet
        return packet.inner_src_port if packet is not None else None

    @property
    def inner_dst_port(self) -> int | None:
        packet = self.packet
        return packet.inner_dst_port if packet is not None else None

    @property
    def inner_tcp_flags(self) -> int | None:
        packet = self.packet
        return packet.inner_tcp_flags if packet is not None else None

    @property
    def truncated(self) -> bool:
        packet = self.packet
        return packet.truncated if packet is not None else False

    @property
    def truncated_in(self) -> str | None:
        packet = self.packet
        return packet.truncated_in if packet is not None else None

    def as_dict(self) -> dict:
        """All FIELDS as a JSON-ready dict."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __repr__(self) -> str:
        return f"FlowRecord({self.as_dict()!r})"




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


def observation_from_record(rec: FlowRecord, t: float) -> FlowObservation | None:
    """The flow observation of a ``FlowRecord`` (the inner flow for encapsulated samples).

    None for samples without an IP flow (ARP, a header cut inside the tunnel
    header).  Addresses are text here; ``observations_from_datagram`` keeps
    them packed.
    """
    encap = rec.encapsulation
    if encap != "none":
        src = rec.inner_src_ip
        if src is None:
            return None
        return make_observation(t, rec.agent, rec.sampling_rate or 1, rec.frame_length or 0, rec.vlan or 0,
                                rec.vni or 0, encap, src, rec.inner_dst_ip or "", rec.inner_protocol or 0,
                                rec.inner_src_port, rec.inner_dst_port, rec.inner_tcp_flags)
    src = rec.src_ip
    if src is None:
        return None
    return make_observation(t, rec.agent, rec.sampling_rate or 1, rec.frame_length or 0, rec.vlan or 0, 0, encap,
                            src, rec.dst_ip or "", rec.protocol or 0, rec.src_port, rec.dst_port, rec.tcp_flags)


def observations_from_datagram(dg: Datagram, t: float) -> list[FlowObservation]:
    """The flow observations of every flow sample of a decoded datagram, addresses packed.

    What the collector hands to a ``FlowSink``.  Reads the decoded
    ``ParsedPacket`` fields directly instead of through ``FlowRecord``
    properties: on the collector's hot path that halves the cost of
    extraction.  A sample without a raw header (sampled IPv4/IPv6 records
    only) takes the ``FlowRecord`` path.  tests/conntrack checks both paths
    agree on every shared capture.
    """
    out: list[FlowObservation] = []
    append = out.append
    agent = dg.agent
    for sample in dg.samples:
        if type(sample) is not FlowSample:
            continue
        header = sample.header
        packet = header.packet if header is not None else None
        if header is None or packet is None:
            found = observation_from_record(FlowRecord(dg, sample), t)
            if found is not None:
                append(found)
            continue
        encap = packet.encapsulation
        vlans = packet.vlans
        vlan = vlans[0] if vlans else 0
        if encap != "none":
            src = packet.inner_src_ip
            if src is None:
                continue
            append(make_observation(t, agent, sample.sampling_rate or 1, header.frame_length or 0, vlan,
                                    packet.vni or 0, encap, src, packet.inner_dst_ip or b"",
                                    packet.inner_protocol or 0, packet.inner_src_port, packet.inner_dst_port,
                                    packet.inner_tcp_flags))
        else:
            src = packet.src_ip
            if src is None:
                continue
            append(make_observation(t, agent, sample.sampling_rate or 1, header.frame_length or 0, vlan, 0, encap,
                                    src, packet.dst_ip or b"", packet.protocol or 0, packet.src_port,
                                    packet.dst_port, packet.tcp_flags))
    return out
