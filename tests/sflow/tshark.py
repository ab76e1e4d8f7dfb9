"""Read Wireshark's decode of an sFlow capture (``tshark -T pdml``) into plain dicts for comparison.

PDML keeps tshark's tree and each element's frame offset (``pos``).  tshark
hangs the dissection of a sampled header under the raw-header record, but
puts what it finds *inside* a tunnel (VXLAN's inner Ethernet/IP/TCP) at the
top of the packet tree; the offsets tell which sample such layers belong
to, so both are gathered per sample here.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

TSHARK = shutil.which("tshark")
#: Decode-as rules: Flannel's VXLAN port is not VXLAN to Wireshark by default.
DECODE_AS = ("-d", "udp.port==8472,vxlan")

SAMPLE_LABELS = ("Flow sample", "Expanded flow sample", "Counters sample", "Expanded counters sample",
                 "Unknown sample format")  # fmt: skip
#: Protocols making up a sampled header's layers, in the order tshark nests them.
LAYER_PROTOS = {"eth", "vlan", "ieee8021ad", "ip", "ipv6", "tcp", "udp", "icmp", "icmpv6", "vxlan", "geneve"}


@functools.lru_cache(maxsize=None)
def pdml(path: str) -> list[ET.Element]:
    """The <packet> elements of tshark's PDML for ``path``."""
    out = subprocess.run(
        [TSHARK, "-n", "-r", path, "-T", "pdml", *DECODE_AS],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout
    return ET.fromstring(out).findall("packet")


def _fields(element: ET.Element, found: dict[str, str] | None = None) -> dict[str, str]:
    """Named fields of ``element`` and their named sub-fields (first occurrence wins).

    Unnamed fields are tshark's grouping nodes (a sample's records, a
    record's sub-structures) and are not entered.
    """
    found = {} if found is None else found
    for child in element:
        name = child.get("name")
        if child.tag == "field" and name:
            found.setdefault(name, child.get("show"))
            _fields(child, found)
    return found


def _all_fields(element: ET.Element) -> dict[str, str]:
    """Named fields anywhere under ``element`` (first occurrence wins), for one protocol's layer."""
    found: dict[str, str] = {}
    for child in element.iter("field"):
        name = child.get("name")
        if name and name not in found:
            found[name] = child.get("show")
    return found


def _layers_in(element: ET.Element, start: int, end: int) -> list[tuple[int, str, dict]]:
    """Protocol layers (pos, name, fields) under ``element`` whose frame offset is in [start, end)."""
    layers = []
    for proto in element.iter("proto"):
        name = proto.get("name")
        pos = int(proto.get("pos", "-1"))
        if name in LAYER_PROTOS and start <= pos < end:
            layers.append((pos, name, _all_fields(proto)))
    return layers


def datagrams(path: str | Path) -> list[dict]:
    """One dict per sFlow packet: datagram fields and a list of samples with records and header layers."""
    result = []
    for packet in pdml(str(path)):
        sflow = next((p for p in packet.findall("proto") if p.get("name") == "sflow"), None)
        if sflow is None:
            continue
        top_layers = [
            layer
            for proto in packet.findall("proto")
            if proto.get("name") in LAYER_PROTOS
            for layer in [(int(proto.get("pos", "-1")), proto.get("name"), _all_fields(proto))]
        ]
        datagram = {"fields": _fields(sflow), "samples": []}
        for child in sflow:
            label = child.get("show") or ""
            if child.tag != "field" or child.get("name") or not label.startswith(SAMPLE_LABELS):
                continue
            sample = {"label": label, "fields": _fields(child), "records": []}
            for record in child:
                if record.tag != "field" or record.get("name"):
                    continue
                fields = _fields(record)
                entry = {"label": record.get("show"), "fields": fields, "layers": []}
                # AS path numbers and communities both come as repeated sflow_245.dstAS fields
                entry["all_dst_as"] = [int(x.get("show")) for x in record.iter("field") if x.get("name") == "sflow_245.dstAS"]
                header = record.find("field[@name='sflow_245.header']")
                if header is not None:
                    start = int(header.get("pos"))
                    end = start + int(header.get("size"))
                    nested = _layers_in(header, start, end)
                    outside = [layer for layer in top_layers if start <= layer[0] < end]
                    entry["layers"] = sorted(nested + outside, key=lambda layer: layer[0])
                sample["records"].append(entry)
            datagram["samples"].append(sample)
        result.append(datagram)
    return result


def split_tunnel(layers: list[tuple[int, str, dict]]) -> tuple[list, list, dict | None]:
    """(outer layers, inner layers, tunnel layer fields) of one sampled header's layers."""
    names = [name for _, name, _ in layers]
    for marker in ("vxlan", "geneve"):
        if marker in names:
            index = names.index(marker)
            return layers[:index], layers[index + 1 :], layers[index][2]
    ip_positions = [i for i, name in enumerate(names) if name in ("ip", "ipv6")]
    if len(ip_positions) >= 2:  # IP-in-IP
        return layers[: ip_positions[1]], layers[ip_positions[1] :], None
    return layers, [], None


def summarize(layers: list[tuple[int, str, dict]]) -> dict:
    """The 5-tuple view of one stack: first IP, first TCP/UDP/ICMP, VLAN ids."""
    view: dict = {"vlans": [], "ip_version": None, "src_ip": None, "dst_ip": None, "protocol": None,
                  "src_port": None, "dst_port": None, "tcp_flags": None, "icmp_type": None}  # fmt: skip
    for _, name, fields in layers:
        if name in ("vlan", "ieee8021ad"):
            view["vlans"].append(int(fields[f"{name}.id"]))
        elif name == "ip" and view["ip_version"] is None:
            view.update(ip_version=4, src_ip=fields["ip.src"], dst_ip=fields["ip.dst"], protocol=int(fields["ip.proto"]))
        elif name == "ipv6" and view["ip_version"] is None:
            view.update(ip_version=6, src_ip=fields["ipv6.src"], dst_ip=fields["ipv6.dst"], protocol=int(fields["ipv6.nxt"]))
        elif name == "tcp" and view["src_port"] is None:
            view.update(src_port=int(fields["tcp.srcport"]), dst_port=int(fields["tcp.dstport"]),
                        tcp_flags=int(fields["tcp.flags"], 16))  # fmt: skip
        elif name == "udp" and view["src_port"] is None:
            view.update(src_port=int(fields["udp.srcport"]), dst_port=int(fields["udp.dstport"]))
        elif name in ("icmp", "icmpv6") and view["icmp_type"] is None:
            view["icmp_type"] = int(fields[f"{name}.type"])
    return view
