"""The capture lab: two "nodes" behind a Flannel-like VXLAN overlay, a "switch" that mirrors TCP control packets.

Topology (three namespaces this module creates and always deletes):

    n1: eth0 10.99.0.1/24 --veth-- p1 ┐
        flannel.1 VNI 1 dstport 8472  │  sw: bridge br0 (ports p1, p2b)
        pod 10.244.1.2/16             │      p2b --veth-- p2r == relay (DELAY each way) == p2
    n2: eth0 10.99.0.2/24 --veth-- p2 ┘      mir0 --veth-- mir0c  (the mirror destination the agent reads)
        flannel.1, pod 10.244.2.3/16

The switch mirrors, as an ASIC ACL traps to the CPU, on the ingress of every
bridge port with ``tc`` u32 matches and ``mirred egress mirror dev mir0``:
TCP packets with SYN, FIN or RST (outer, and inner in VXLAN 8472), and --
so that tshark can read the handshake's initial RTT -- pure ACKs without
payload inside the overlay (the agent's own kernel filter drops those).
SYNs to port 9999 are mirrored and then dropped (mirred's ``drop``
verdict; there is no gact here): connections to it get no response.  The
relay (tests/e2e_capture/relay.py) delays every frame between n2 and the
switch, so the handshake latency the switch sees is about twice the delay.
Segmentation offload is off on the nodes (``gso_max_segs 1``) so sFlow
samples wire packets.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import read_line, remove_stale, sh, stop

HERE = Path(__file__).parent
PREFIX = "kfcap"
DROP_PORT = 9999


def tc_mirror_rules(dev: str, mirror: str, vxlan_port: int = 8472) -> list[list[str]]:
    """The tc commands that make ``dev``'s ingress mirror control packets to ``mirror`` (IPv4, IHL 5)."""
    base = ["tc", "filter", "add", "dev", dev, "ingress"]
    vxlan = ["match", "u16", str(vxlan_port), "0xffff", "at", "22", "match", "u8", "6", "0xff", "at", "59"]
    mirror_action = ["action", "mirred", "egress", "mirror", "dev", mirror]
    rules = [base + ["prio", "1", "protocol", "ip", "u32"] + vxlan
             + ["match", "u16", str(DROP_PORT), "0xffff", "at", "72", "match", "u8", "0x02", "0x02", "at", "83"]
             + mirror_action + ["drop"]]
    for i, bit in enumerate(("0x01", "0x02", "0x04")):
        rules.append(base + ["prio", str(10 + i), "protocol", "ip", "u32", "match", "u8", "6", "0xff", "at", "9",
                             "match", "u8", bit, bit, "at", "33"] + mirror_action)
        rules.append(base + ["prio", str(20 + i), "protocol", "ip", "u32"] + vxlan
                     + ["match", "u8", bit, bit, "at", "83"] + mirror_action)
    # pure ACKs without payload in the overlay (inner IP total length 52: 20 + 32 with timestamps)
    rules.append(base + ["prio", "30", "protocol", "ip", "u32"] + vxlan
                 + ["match", "u16", "52", "0xffff", "at", "52", "match", "u8", "0x10", "0x3f", "at", "83"]
                 + mirror_action)
    return rules


class Lab:
    """``build()``, ``run(ns, *cmd)``, ``close()``; names in ``n1``, ``n2``, ``sw``."""

    def __init__(self, delay: float = 0.020) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.n1, self.n2, self.sw = f"{tag}n1", f"{tag}n2", f"{tag}sw"
        self.delay = delay
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def build(self) -> None:
        remove_stale(PREFIX)
        for ns in (self.n1, self.n2, self.sw):
            done = sh("ip", "netns", "add", ns, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {done.stderr.strip()}")
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1", check=False)  # no IPv6 chatter on the mirror
        n1, n2, sw = self.n1, self.n2, self.sw
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        sh("ip", "-n", n1, "link", "add", "eth0", "type", "veth", "peer", "name", "p1", "netns", sw)
        sh("ip", "-n", n2, "link", "add", "eth0", "type", "veth", "peer", "name", "p2", "netns", sw)
        sh("ip", "-n", sw, "link", "add", "p2r", "type", "veth", "peer", "name", "p2b")
        sh("ip", "-n", sw, "link", "add", "mir0", "type", "veth", "peer", "name", "mir0c")
        for dev in ("p1", "p2b"):
            sh("ip", "-n", sw, "link", "set", dev, "master", "br0")
        for dev in ("br0", "p1", "p2", "p2r", "p2b", "mir0", "mir0c"):
            sh("ip", "-n", sw, "link", "set", dev, "up")
        for ns, node, peer, pod in ((n1, "10.99.0.1", "10.99.0.2", "10.244.1.2"),
                                    (n2, "10.99.0.2", "10.99.0.1", "10.244.2.3")):
            sh("ip", "-n", ns, "addr", "add", f"{node}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "gso_max_segs", "1")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472",
               "local", node, "remote", peer, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "flannel.1", "gso_max_segs", "1")
            sh("ip", "-n", ns, "addr", "add", f"{pod}/16", "dev", "flannel.1")
            sh("ip", "-n", ns, "link", "set", "flannel.1", "up")
        for dev in ("p1", "p2b"):
            sh("ip", "netns", "exec", sw, "tc", "qdisc", "add", "dev", dev, "ingress")
            for rule in tc_mirror_rules(dev, "mir0"):
                sh("ip", "netns", "exec", sw, *rule)
        relay = self.run(sw, sys.executable, str(HERE / "relay.py"), "p2", "p2r", str(self.delay),
                         stdout=subprocess.PIPE, text=True)
        read_line(relay, "relaying")

    def run(self, ns: str, *cmd: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kwargs)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()
        for ns in self.created:
            sh("ip", "netns", "del", ns, check=False)
        self.created.clear()
