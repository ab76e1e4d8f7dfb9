"""sFlow v5 collector: decoder (bytes -> structures), producer (structures -> flows), pcap reader.

Public API:
    decode_datagram(data, vxlan_ports=frozenset({4789, 8472}), geneve_port=6081) -> Datagram
    iter_flows(datagram) -> Iterator[FlowRecord]
    iter_sflow_payloads(path) -> Iterator[bytes]; PcapError

``IMPLEMENTATION`` says which decoder runs: ``"compiled (mypyc)"`` when the
optional build (``collectors/sflow/_fast``, made by ``make venv``) is present
and current, else ``"pure Python (<why>)"``.  Both give identical results.
"""

from ._fast import activate as _activate

#: Which decoder this process runs (see the module docstring); set before any decoder module is imported.
IMPLEMENTATION = _activate(__name__)

from .decoder import decode_datagram
from .pcap import PcapError, iter_sflow_payloads
from .producer import FlowRecord, iter_flows
from .records import Datagram

__all__ = ["IMPLEMENTATION", "Datagram", "FlowRecord", "PcapError", "decode_datagram", "iter_flows", "iter_sflow_payloads"]
