"""sFlow v5 collector: decoder (bytes -> structures), producer (structures -> flows), pcap reader.

Public API:
    decode_datagram(data, vxlan_ports=frozenset({4789, 8472}), geneve_port=6081) -> Datagram
    iter_flows(datagram) -> Iterator[FlowRecord]
    iter_sflow_payloads(path) -> Iterator[bytes]; PcapError
"""

from .decoder import decode_datagram
from .pcap import PcapError, iter_sflow_payloads
from .producer import FlowRecord, iter_flows
from .records import Datagram

__all__ = ["Datagram", "FlowRecord", "PcapError", "decode_datagram", "iter_flows", "iter_sflow_payloads"]
