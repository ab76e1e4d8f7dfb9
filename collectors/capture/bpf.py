"""The kernel filter of a capture interface, built from config: TCP control packets, plain and tunnelled.

The capture asks the kernel to keep only TCP packets with SYN, FIN or RST
set, so a mirror port that also carries other traffic (or a CPU port) costs
the agent nothing for the rest.  The expression is libpcap's filter
language, compiled by libpcap itself (``pcapy.compile`` / ``setfilter``, the
same compiler tcpdump uses) into a classic BPF program the kernel runs on
the AF_PACKET socket; we write the expression, never BPF instructions.

It matches, each untagged, under one 802.1Q tag and under two (QinQ):

* plain TCP over IPv4 (any header length, first fragments only) and over
  IPv6 (no extension headers);
* TCP inside VXLAN on every configured and CNI-learned UDP port (inner
  IPv4 of any header length, or inner IPv6), over outer IPv4 or IPv6;
* TCP inside Geneve on the configured port (any option length; inner
  Ethernet, IPv4 or IPv6 payload types), over outer IPv4;
* TCP inside IP-in-IP (IPv4 in IPv4, IPv6 in IPv4).

libpcap's ``tcp[]``/``udp[]`` accessors exist for IPv4 only, so the IPv6
terms use ``ip6[]`` offsets.  The decoder (:mod:`collectors.capture.frames`)
still checks every packet: anything the filter lets through that is not a
control packet is counted as ``filtered``, never tracked.
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["control_filter", "compile_filter", "FilterError"]

_FLAGS = "& 7 != 0"  # FIN | SYN | RST
_IHL = "((ip[0] & 0xf) << 2)"
_GENEVE_OPTS = "((udp[8] & 0x3f) << 2)"


class FilterError(ValueError):
    """libpcap refused the filter (the message says why)."""


def _ports(ports: Iterable[int]) -> str:
    return " or ".join(f"udp dst port {int(p)}" for p in sorted(set(ports)))


def _vxlan_ipv4(ports: Iterable[int]) -> str:
    # UDP header 8 bytes, VXLAN 8, inner Ethernet 14: inner ethertype at udp[28], inner IP at udp[30]
    inner4 = (f"udp[28:2] = 0x0800 and udp[39] = 6 and udp[36:2] & 0x1fff = 0 "
              f"and udp[30 + ((udp[30] & 0xf) << 2) + 13] {_FLAGS}")
    inner6 = f"udp[28:2] = 0x86dd and udp[36] = 6 and udp[83] {_FLAGS}"
    return f"(({_ports(ports)}) and (({inner4}) or ({inner6})))"


def _vxlan_ipv6(ports: Iterable[int]) -> str:
    # outer IPv6 (no extension headers): UDP at ip6[40], inner Ethernet at ip6[56], inner IP at ip6[70]
    port_test = " or ".join(f"ip6[42:2] = {int(p)}" for p in sorted(set(ports)))
    inner4 = f"ip6[68:2] = 0x0800 and ip6[79] = 6 and ip6[70 + ((ip6[70] & 0xf) << 2) + 13] {_FLAGS}"
    inner6 = f"ip6[68:2] = 0x86dd and ip6[76] = 6 and ip6[123] {_FLAGS}"
    return f"(ip6 and ip6[6] = 17 and ({port_test}) and (({inner4}) or ({inner6})))"


def _geneve(port: int) -> str:
    o = _GENEVE_OPTS
    ether4 = (f"udp[10:2] = 0x6558 and udp[28 + {o}:2] = 0x0800 and udp[39 + {o}] = 6 "
              f"and udp[30 + {o} + ((udp[30 + {o}] & 0xf) << 2) + 13] {_FLAGS}")
    ether6 = f"udp[10:2] = 0x6558 and udp[28 + {o}:2] = 0x86dd and udp[36 + {o}] = 6 and udp[83 + {o}] {_FLAGS}"
    ip4 = (f"udp[10:2] = 0x0800 and udp[25 + {o}] = 6 "
           f"and udp[16 + {o} + ((udp[16 + {o}] & 0xf) << 2) + 13] {_FLAGS}")
    ip6 = f"udp[10:2] = 0x86dd and udp[22 + {o}] = 6 and udp[69 + {o}] {_FLAGS}"
    return f"(udp dst port {int(port)} and (({ether4}) or ({ether6}) or ({ip4}) or ({ip6})))"


def _ipip() -> str:
    h = _IHL
    ip4 = f"ip[9] = 4 and ip[{h} + 9] = 6 and ip[{h} + ((ip[{h}] & 0xf) << 2) + 13] {_FLAGS}"
    ip6 = f"ip[9] = 41 and ip[{h} + 6] = 6 and ip[{h} + 53] {_FLAGS}"
    return f"(({ip4}) or ({ip6}))"


def control_filter(vxlan_ports: Iterable[int] = (4789, 8472), geneve_port: int | None = 6081) -> str:
    """The filter expression for these tunnel ports (see the module docstring)."""
    terms = [f"(tcp[13] {_FLAGS})", f"(ip6 and ip6[6] = 6 and ip6[53] {_FLAGS})", _ipip()]
    ports = [p for p in vxlan_ports if p != geneve_port]
    if ports:
        terms += [_vxlan_ipv4(ports), _vxlan_ipv6(ports)]
    if geneve_port:
        terms.append(_geneve(geneve_port))
    one = " or ".join(terms)
    return f"{one} or (vlan and ({one} or (vlan and ({one}))))"


def compile_filter(expression: str, snaplen: int = 256) -> list[tuple[int, int, int, int]]:
    """Compile with libpcap (as ``setfilter`` will); the BPF instructions, or FilterError."""
    import pcapy

    try:
        return list(pcapy.compile(pcapy.DLT_EN10MB, snaplen, expression, 1, 0).get_bpf())
    except pcapy.PcapError as exc:
        raise FilterError(str(exc)) from None
