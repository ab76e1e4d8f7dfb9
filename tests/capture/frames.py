"""Frames a mirror port carries, built with scapy (independent of the decoder under test)."""
from __future__ import annotations

from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III  # noqa: F401 -- registers the GRE bindings
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tcp(src="10.244.1.2", dst="10.244.2.3", sport=40000, dport=8080, flags="S", seq=1000, ack=0, v6=False):
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    return ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)


def plain(flags="S", vlans=(), **kw):
    frame = Ether(**MAC)
    for vlan in vlans:
        frame = frame / Dot1Q(vlan=vlan)
    return bytes(frame / tcp(flags=flags, **kw))


def vxlan(flags="S", vni=1, port=8472, outer_v6=False, **kw):
    outer = IPv6(src="fd00::1", dst="fd00::2") if outer_v6 else IP(src="10.99.0.1", dst="10.99.0.2")
    return bytes(Ether(**MAC) / outer / UDP(sport=51000, dport=port) / VXLAN(vni=vni, flags=0x08)
                 / Ether(**MAC) / tcp(flags=flags, **kw))


def geneve(flags="S", vni=7, options=b"", ethernet=True, **kw):
    inner = (Ether(**MAC) / tcp(flags=flags, **kw)) if ethernet else tcp(flags=flags, **kw)
    header = GENEVE(vni=vni, proto=0x6558 if ethernet else 0x0800, optionlen=len(options) // 4,
                    options=options) if options else GENEVE(vni=vni, proto=0x6558 if ethernet else 0x0800)
    return bytes(Ether(**MAC) / IP(src="10.99.0.1", dst="10.99.0.2") / UDP(sport=51000, dport=6081) / header
                 / inner)


def ipip(flags="S", v6_inner=False, **kw):
    inner = tcp(flags=flags, v6=v6_inner, **kw)
    return bytes(Ether(**MAC) / IP(src="10.99.0.1", dst="10.99.0.2", proto=41 if v6_inner else 4) / inner)


def erspan_ii(frame: bytes, session=7, seq=1, vlan=0):
    return bytes(IP(src="192.0.2.1", dst="192.0.2.9") / GRE(seqnum_present=1, sequence_number=seq, proto=0x88BE)
                 / ERSPAN_II(session_id=session, vlan=vlan) / Ether(frame))


def erspan_iii(frame: bytes, session=9, seq=1, timestamp=0, gra=1):
    return bytes(IP(src="192.0.2.1", dst="192.0.2.9") / GRE(seqnum_present=1, sequence_number=seq, proto=0x22EB)
                 / ERSPAN_III(session_id=session, timestamp=timestamp, gra=gra) / Ether(frame))


def gre_teb(frame: bytes, key=None):
    gre = GRE(proto=0x6558, key_present=1, key=key) if key is not None else GRE(proto=0x6558)
    return bytes(IP(src="192.0.2.1", dst="192.0.2.9") / gre / Ether(frame))
