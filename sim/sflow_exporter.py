"""A simulated leaf switch exporting sFlow v5: pod-to-pod TCP inside Flannel VXLAN.

The demo's stand-in for a switch ASIC.  It takes the pods of the simulated
Kubernetes cluster (their IPs, nodes and node IPs), keeps a few dozen TCP
conversations going between pods of different nodes (pods on the same node
talk over the node's bridge and never reach the switch), and exports what a
switch would sample from the wire: the first 128 bytes of each sampled
frame, i.e. outer Ethernet / IPv4 (node to node) / UDP 8472 / VXLAN VNI 1 /
inner Ethernet (the flannel.1 VTEP MACs) / IPv4 (pod to pod) / TCP, in flow
samples with an extended-switch record, plus an interface counter sample
every few seconds.

Every byte is written here by the encoder below (RFC 3176's successor,
sflow_version_5.txt: XDR, big-endian, 4-byte aligned), so the decoder has an
independent producer to be tested against; ``tests/demo`` also feeds these
datagrams to tshark.

Conversations follow the TCP life cycle the connection tracker reads from the
flags: SYN, then SYN-ACK a few hundred microseconds to a few milliseconds
later (each client/server pair has its own round-trip time, so latency
differs per pair), data in both directions, FIN/ACK; some get RST.  The
handshake packets are always "sampled" (a real switch samples 1 in N at
random and sees handshakes only now and then; the demo wants latency
numbers in seconds, not hours); data packets are sampled at the configured
rate and the sample pool accounts for the packets skipped.

Pods churn: the pod source is read again before every datagram, and
conversations of pods that went away end with a RST.

Traffic only ever goes to loopback: the exporter refuses any other target.
The addresses inside the datagrams (pod and node IPs) are payload, never
destinations.

Standalone::

    python -m sim.sflow_exporter --target 127.0.0.1:6343 --kubeconfig demo/kubeconfig --rate 20
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import random
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

__all__ = [
    "Pod", "TcpPacket", "Conversation", "TrafficModel", "SflowExporter", "encode_datagram",
    "encode_flow_sample", "encode_counter_sample", "vxlan_frame", "pods_from_objects", "HttpPodSource",
    "LoopbackOnly",
]

log = logging.getLogger("kubefabric.sim.sflow")

SFLOW_VERSION = 5
ADDRESS_IPV4 = 1
# sample formats (enterprise 0)
FLOW_SAMPLE = 1
COUNTER_SAMPLE = 2
# flow record formats
RAW_PACKET_HEADER = 1
EXTENDED_SWITCH = 1001
# counter record formats
GENERIC_INTERFACE = 1
HEADER_PROTOCOL_ETHERNET = 1
MAX_HEADER = 128

FLANNEL_VXLAN_PORT = 8472
FLANNEL_VNI = 1

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_U32 = struct.Struct(">I")


class LoopbackOnly(ValueError):
    """A target that is not a loopback address."""


# ---------------------------------------------------------------------- wire: packets

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def ethernet(dst: str, src: str, ethertype: int = 0x0800) -> bytes:
    """Ethernet II header."""
    return _mac(dst) + _mac(src) + struct.pack(">H", ethertype)


def ipv4(src: str, dst: str, protocol: int, payload_length: int, ident: int = 0, ttl: int = 64) -> bytes:
    """IPv4 header (20 bytes, DF set) with a correct header checksum."""
    total = 20 + payload_length
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000, ttl, protocol, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack(">H", _checksum(header)) + header[12:]


def udp(sport: int, dport: int, payload_length: int) -> bytes:
    """UDP header; checksum 0, as Linux sends VXLAN over IPv4."""
    return struct.pack(">HHHH", sport, dport, 8 + payload_length, 0)


def vxlan(vni: int) -> bytes:
    """VXLAN header (RFC 7348): I flag, 24-bit VNI."""
    return struct.pack(">II", 0x08000000, (vni & 0xFFFFFF) << 8)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload_length: int,
        window: int = 64240) -> bytes:
    """TCP header (20 bytes) whose checksum is right for an all-zero payload of that length."""
    header = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                         window, 0, 0)
    length = 20 + payload_length
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">BBH", 0, 6, length)
    return header[:16] + struct.pack(">H", _checksum(pseudo + header)) + header[18:]


def vxlan_frame(outer_src_mac: str, outer_dst_mac: str, outer_src: str, outer_dst: str,
                inner_src_mac: str, inner_dst_mac: str, inner_src: str, inner_dst: str,
                sport: int, dport: int, seq: int, ack: int, flags: int, payload_length: int,
                vni: int = FLANNEL_VNI, vxlan_port: int = FLANNEL_VXLAN_PORT) -> tuple[bytes, int]:
    """(first bytes of the frame up to MAX_HEADER, full frame length) of a VXLAN-encapsulated TCP segment."""
    inner_tcp = tcp(inner_src, inner_dst, sport, dport, seq, ack, flags, payload_length)
    inner_ip = ipv4(inner_src, inner_dst, 6, len(inner_tcp) + payload_length, ident=seq)
    inner = ethernet(inner_dst_mac, inner_src_mac) + inner_ip + inner_tcp
    inner_length = len(inner) + payload_length
    # Linux picks the outer source port from a hash of the inner flow
    entropy = 32768 + zlib.crc32(f"{inner_src}:{sport}>{inner_dst}:{dport}".encode()) % 28232
    outer_udp = udp(entropy, vxlan_port, 8 + inner_length)
    outer_ip = ipv4(outer_src, outer_dst, 17, 8 + 8 + inner_length, ident=seq >> 3)
    frame = ethernet(outer_dst_mac, outer_src_mac) + outer_ip + outer_udp + vxlan(vni) + inner
    full_length = len(frame) + payload_length + 4  # + FCS, as sFlow's frame_length counts it
    if len(frame) < MAX_HEADER:
        frame += bytes(min(payload_length, MAX_HEADER - len(frame)))
    return frame[:MAX_HEADER], full_length


# ---------------------------------------------------------------------- wire: sFlow v5

def _opaque(data: bytes) -> bytes:
    """XDR variable-length opaque: length, bytes, zero padding to 4."""
    return _U32.pack(len(data)) + data + bytes(-len(data) % 4)


def _record(fmt: int, body: bytes) -> bytes:
    return struct.pack(">II", fmt, len(body)) + body


def raw_header_record(header: bytes, frame_length: int, stripped: int = 4) -> bytes:
    """sampled_header (format 1): Ethernet, frame length, bytes stripped (FCS), the header."""
    return _record(RAW_PACKET_HEADER, struct.pack(">III", HEADER_PROTOCOL_ETHERNET, frame_length, stripped)
                   + _opaque(header))


def extended_switch_record(src_vlan: int, dst_vlan: int, priority: int = 0) -> bytes:
    """extended_switch (format 1001): VLANs and 802.1p priorities in and out."""
    return _record(EXTENDED_SWITCH, struct.pack(">IIII", src_vlan, priority, dst_vlan, priority))


def encode_flow_sample(sequence: int, source_index: int, sampling_rate: int, sample_pool: int,
                       drops: int, input_if: int, output_if: int, records: Iterable[bytes]) -> bytes:
    """flow_sample (format 1) holding the given flow records."""
    records = list(records)
    body = struct.pack(">IIIIIIII", sequence, source_index & 0xFFFFFF, sampling_rate, sample_pool, drops,
                       input_if, output_if, len(records)) + b"".join(records)
    return _record(FLOW_SAMPLE, body)


def generic_interface_counters(if_index: int, speed: int, in_octets: int, in_packets: int,
                               out_octets: int, out_packets: int) -> bytes:
    """if_counters (counter format 1), 88 bytes."""
    body = struct.pack(">IIQIIQIIIIIIQIIIIII",
                       if_index, 6, speed, 1, 3,            # ethernetCsmacd, full duplex, admin+oper up
                       in_octets, in_packets & 0xFFFFFFFF, 0, 0, 0, 0, 0,
                       out_octets, out_packets & 0xFFFFFFFF, 0, 0, 0, 0, 0)
    return _record(GENERIC_INTERFACE, body)


def encode_counter_sample(sequence: int, source_index: int, records: Iterable[bytes]) -> bytes:
    """counters_sample (format 2)."""
    records = list(records)
    return _record(COUNTER_SAMPLE, struct.pack(">III", sequence, source_index & 0xFFFFFF, len(records))
                   + b"".join(records))


def encode_datagram(agent_address: str, sub_agent_id: int, sequence: int, uptime_ms: int,
                    samples: Iterable[bytes]) -> bytes:
    """sFlow v5 datagram (IPv4 agent address) holding already encoded samples."""
    samples = list(samples)
    return (struct.pack(">II4sIIII", SFLOW_VERSION, ADDRESS_IPV4, socket.inet_aton(agent_address), sub_agent_id,
                        sequence, uptime_ms & 0xFFFFFFFF, len(samples)) + b"".join(samples))


# ---------------------------------------------------------------------- traffic model

@dataclass(frozen=True)
class Pod:
    """What the exporter needs of a pod."""

    ip: str
    node: str
    node_ip: str
    namespace: str = "default"
    name: str = ""
    app: str = ""
    vtep_mac: str = ""


@dataclass
class TcpPacket:
    """One packet on the wire between two pods' nodes."""

    src: Pod
    dst: Pod
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: int
    always_sample: bool = False


@dataclass
class Conversation:
    """A TCP connection between a client pod and a server pod."""

    client: Pod
    server: Pod
    sport: int
    dport: int
    rtt: float              # seconds, per pod pair
    requests: int           # request/response rounds before closing
    state: str = "new"
    seq_c: int = field(default_factory=lambda: random.getrandbits(32))
    seq_s: int = field(default_factory=lambda: random.getrandbits(32))
    due: float = 0.0        # monotonic time of the next step

    @property
    def key(self) -> tuple:
        return (self.client.ip, self.sport, self.server.ip, self.dport)


def _node_mac(node_ip: str, prefix: str) -> str:
    raw = socket.inet_aton(node_ip)
    return f"{prefix}:{raw[0]:02x}:{raw[1]:02x}:{raw[2]:02x}:{raw[3]:02x}"


def _rtt_for(a: Pod, b: Pod) -> float:
    """A stable round-trip time for an app pair: 0.3 .. 6 ms, one pair in eleven six times slower."""
    h = zlib.crc32(f"{a.app}>{b.app}".encode())
    base = 300e-6 + (h % 5700) * 1e-6
    return base * (6 if h % 11 == 0 else 1)


class TrafficModel:
    """Keeps `conversations` TCP conversations alive between pods on different nodes."""

    def __init__(self, conversations: int = 24, seed: int | None = None, server_port: int = 8080) -> None:
        self.target = conversations
        self.rng = random.Random(seed)
        self.server_port = server_port
        self.active: dict[tuple, Conversation] = {}
        self.started = 0
        self.finished = 0

    @staticmethod
    def _tiers(pods: list[Pod]) -> dict[str, list[str]]:
        """Apps per namespace in name order: app i calls app i+1 (a simple service chain)."""
        apps: dict[str, set[str]] = {}
        for pod in pods:
            apps.setdefault(pod.namespace, set()).add(pod.app or pod.name)
        return {ns: sorted(a) for ns, a in apps.items()}

    def _pick(self, pods: list[Pod]) -> tuple[Pod, Pod] | None:
        by_app: dict[tuple[str, str], list[Pod]] = {}
        for pod in pods:
            by_app.setdefault((pod.namespace, pod.app or pod.name), []).append(pod)
        tiers = self._tiers(pods)
        for _ in range(20):
            ns = self.rng.choice(sorted(tiers))
            chain = tiers[ns]
            if len(chain) >= 2:
                i = self.rng.randrange(len(chain) - 1)
                clients, servers = by_app[(ns, chain[i])], by_app[(ns, chain[i + 1])]
            else:
                clients = servers = by_app[(ns, chain[0])]
            client, server = self.rng.choice(clients), self.rng.choice(servers)
            if client.node != server.node and client.ip != server.ip:
                return client, server
        return None

    def next_due(self) -> float:
        """Monotonic time of the next conversation step (inf when idle)."""
        return min((c.due for c in self.active.values()), default=float("inf"))

    def step(self, pods: list[Pod], now: float) -> list[TcpPacket]:
        """Advance every conversation due at `now`; returns the packets they put on the wire."""
        alive = {p.ip: p for p in pods}
        packets: list[TcpPacket] = []
        for key, conv in list(self.active.items()):
            if alive.get(conv.client.ip) != conv.client or alive.get(conv.server.ip) != conv.server:
                # a pod went away: the survivor's next segment is answered by a RST
                packets.append(TcpPacket(conv.client, conv.server, conv.sport, conv.dport, conv.seq_c, 0, RST, 0, True))
                del self.active[key]
                self.finished += 1
        while len(self.active) < self.target:
            pair = self._pick(pods)
            if pair is None:
                break
            client, server = pair
            conv = Conversation(client, server, self.rng.randrange(32768, 61000), self.server_port,
                                _rtt_for(client, server), self.rng.randrange(3, 40), due=now)
            if conv.key in self.active:
                continue
            self.active[conv.key] = conv
            self.started += 1
        for key, conv in list(self.active.items()):
            if conv.due <= now:
                packets.extend(self._advance(conv, now))
                if conv.state == "done":
                    del self.active[key]
                    self.finished += 1
        return packets

    def _advance(self, c: Conversation, now: float) -> list[TcpPacket]:
        out: list[TcpPacket] = []
        if c.state == "new":
            out.append(TcpPacket(c.client, c.server, c.sport, c.dport, c.seq_c, 0, SYN, 0, True))
            c.state, c.due = "syn-sent", now + c.rtt
        elif c.state == "syn-sent":
            out.append(TcpPacket(c.server, c.client, c.dport, c.sport, c.seq_s, c.seq_c + 1, SYN | ACK, 0, True))
            c.seq_c += 1
            c.seq_s += 1
            c.state, c.due = "established", now + c.rtt / 2
        elif c.state == "established" and c.requests > 0:
            request, response = self.rng.randrange(200, 900), self.rng.randrange(600, 1448)
            out.append(TcpPacket(c.client, c.server, c.sport, c.dport, c.seq_c, c.seq_s, PSH | ACK, request))
            c.seq_c += request
            out.append(TcpPacket(c.server, c.client, c.dport, c.sport, c.seq_s, c.seq_c, PSH | ACK, response))
            c.seq_s += response
            c.requests -= 1
            c.due = now + self.rng.uniform(0.05, 0.4)
        elif c.state == "established":
            rst = self.rng.random() < 0.08
            flags = RST | ACK if rst else FIN | ACK
            out.append(TcpPacket(c.client, c.server, c.sport, c.dport, c.seq_c, c.seq_s, flags, 0, True))
            c.state, c.due = ("done", now) if rst else ("fin-sent", now + c.rtt)
        elif c.state == "fin-sent":
            out.append(TcpPacket(c.server, c.client, c.dport, c.sport, c.seq_s, c.seq_c + 1, FIN | ACK, 0, True))
            c.state = "done"
        return out


# ---------------------------------------------------------------------- pod sources

def pods_from_objects(pods: Iterable[dict], nodes: Iterable[dict] = ()) -> list[Pod]:
    """Running, non-host-network pods with an IP, from Kubernetes Pod (and Node) objects."""
    vtep: dict[str, str] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        data = (meta.get("annotations") or {}).get("flannel.alpha.coreos.com/backend-data")
        if data:
            try:
                vtep[meta.get("name", "")] = json.loads(data).get("VtepMAC", "")
            except (ValueError, AttributeError):
                pass
    out = []
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        if status.get("phase") != "Running" or spec.get("hostNetwork") or not status.get("podIP"):
            continue
        if meta.get("deletionTimestamp") or not status.get("hostIP"):
            continue
        try:
            if ipaddress.ip_address(status["podIP"]).version != 4:
                continue
        except ValueError:
            continue
        node = spec.get("nodeName", "")
        labels = meta.get("labels") or {}
        out.append(Pod(status["podIP"], node, status["hostIP"], meta.get("namespace", "default"),
                       meta.get("name", ""), labels.get("app", meta.get("name", "")), vtep.get(node, "")))
    return out


class HttpPodSource:
    """Pods read from a Kubernetes API server on loopback (the simulated one), every `interval` seconds."""

    def __init__(self, server: str, token: str | None = None, interval: float = 2.0) -> None:
        check_loopback(server.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]"))
        self.server = server.rstrip("/")
        self.token = token
        self.interval = interval
        self._pods: list[Pod] = []
        self._read = 0.0

    @classmethod
    def from_kubeconfig(cls, path: str, interval: float = 2.0) -> "HttpPodSource":
        import yaml

        doc = yaml.safe_load(open(path))
        context = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
        cluster = next(c for c in doc["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next((u for u in doc.get("users") or [] if u["name"] == context.get("user")), {}).get("user") or {}
        return cls(cluster["server"], user.get("token"), interval)

    def _get(self, path: str) -> dict:
        import ssl
        import urllib.request

        request = urllib.request.Request(self.server + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        context = ssl._create_unverified_context() if self.server.startswith("https") else None  # loopback sim only
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return json.load(response)

    def __call__(self) -> list[Pod]:
        now = time.monotonic()
        if now - self._read >= self.interval:
            self._read = now
            try:
                self._pods = pods_from_objects(self._get("/api/v1/pods")["items"], self._get("/api/v1/nodes")["items"])
            except OSError as exc:
                log.warning("cannot read pods from %s: %s", self.server, exc)
        return self._pods


def check_loopback(host: str) -> None:
    """Raise LoopbackOnly unless `host` is a loopback address or localhost."""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise LoopbackOnly(f"the simulated switch only sends to loopback addresses, not {host!r}")


# ---------------------------------------------------------------------- the exporter

class SflowExporter:
    """Sends sFlow v5 datagrams built from the traffic model to collectors on loopback.

    ``SflowExporter(targets, pod_source, agent_address="192.0.2.11")``;
    ``await start()``, ``await stop()``; ``datagrams`` and ``samples`` count
    what was sent.  ``rate`` is datagrams per second; each carries up to
    ``samples_per_datagram`` flow samples, and every ``counter_interval``
    seconds one interface counter sample.
    """

    def __init__(self, targets: list[tuple[str, int]], pod_source: Callable[[], list[Pod]], *,
                 agent_address: str = "192.0.2.11", sub_agent_id: int = 0, rate: float = 20.0,
                 sampling_rate: int = 64, samples_per_datagram: int = 8, conversations: int = 24,
                 vxlan_port: int = FLANNEL_VXLAN_PORT, vni: int = FLANNEL_VNI, underlay_vlan: int = 100,
                 counter_interval: float = 5.0, seed: int | None = None) -> None:
        for host, _port in targets:
            check_loopback(host)
        self.targets = list(targets)
        self.pod_source = pod_source
        self.agent_address = agent_address
        self.sub_agent_id = sub_agent_id
        self.rate = rate
        self.sampling_rate = max(1, sampling_rate)
        self.samples_per_datagram = samples_per_datagram
        self.vxlan_port = vxlan_port
        self.vni = vni
        self.underlay_vlan = underlay_vlan
        self.counter_interval = counter_interval
        self.model = TrafficModel(conversations, seed)
        self.rng = random.Random(seed)
        self.datagrams = 0
        self.samples = 0
        self._sequence = 0
        self._flow_sequence = 0
        self._counter_sequence = 0
        self._pool = 0
        self._octets = [0, 0]
        self._packets = [0, 0]
        self._backlog: list[bytes] = []
        self._boot = time.monotonic()
        self._last_counters = 0.0
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        self._task = asyncio.create_task(self._run(), name="sflow-exporter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _run(self) -> None:
        interval = 1.0 / self.rate
        next_tick = time.monotonic()
        while True:
            now = time.monotonic()
            try:
                datagram = self.next_datagram(now)
            except Exception:  # a bug here must not stop the demo
                log.exception("building an sFlow datagram failed")
                datagram = None
            if datagram is not None and self._transport is not None:
                for target in self.targets:
                    self._transport.sendto(datagram, target)
            if now >= next_tick:
                next_tick = now + interval
            # wake for the next tick, or earlier when a handshake answer is due (so the
            # SYN-ACK leaves one round-trip time after the SYN, as on the wire)
            wake = min(next_tick, self.model.next_due())
            await asyncio.sleep(max(0.0002, wake - time.monotonic()))

    def next_datagram(self, now: float) -> bytes | None:
        """The next datagram (None when there is nothing to report yet)."""
        for packet in self.model.step(self.pod_source(), now):
            direction = 0 if packet.src.node_ip < packet.dst.node_ip else 1
            header, length = self._frame(packet)
            self._octets[direction] += length
            self._packets[direction] += 1
            self._pool += 1
            if packet.always_sample or self.sampling_rate == 1 or not self.rng.randrange(self.sampling_rate):
                self._backlog.append(self._flow_sample(header, length, direction))
        self._backlog = self._backlog[-512:]  # a real agent drops samples it cannot send, too
        samples, self._backlog = self._backlog[: self.samples_per_datagram], self._backlog[self.samples_per_datagram:]
        if now - self._last_counters >= self.counter_interval:
            self._last_counters = now
            samples.append(self._counter_sample())
        if not samples:
            return None
        self._sequence += 1
        self.datagrams += 1
        self.samples += len(samples)
        uptime = int((now - self._boot) * 1000)
        return encode_datagram(self.agent_address, self.sub_agent_id, self._sequence, uptime, samples)

    def _frame(self, p: TcpPacket) -> tuple[bytes, int]:
        src_vtep = p.src.vtep_mac or _node_mac(p.src.node_ip, "0a:58")
        dst_vtep = p.dst.vtep_mac or _node_mac(p.dst.node_ip, "0a:58")
        return vxlan_frame(_node_mac(p.src.node_ip, "52:54"), _node_mac(p.dst.node_ip, "52:54"),
                           p.src.node_ip, p.dst.node_ip, src_vtep, dst_vtep, p.src.ip, p.dst.ip,
                           p.sport, p.dport, p.seq, p.ack, p.flags, p.payload, self.vni, self.vxlan_port)

    def _flow_sample(self, header: bytes, length: int, direction: int) -> bytes:
        self._flow_sequence += 1
        in_if, out_if = (1, 2) if direction == 0 else (2, 1)
        records = [raw_header_record(header, length), extended_switch_record(self.underlay_vlan, self.underlay_vlan)]
        return encode_flow_sample(self._flow_sequence, in_if, self.sampling_rate, self._pool, 0, in_if, out_if, records)

    def _counter_sample(self) -> bytes:
        self._counter_sequence += 1
        record = generic_interface_counters(1, 25_000_000_000, self._octets[0], self._packets[0],
                                            self._octets[1], self._packets[1])
        return encode_counter_sample(self._counter_sequence, 1, [record])


# ---------------------------------------------------------------------- standalone

def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    check_loopback(host)
    return host, int(port)


async def _serve(args: argparse.Namespace) -> None:
    source = HttpPodSource.from_kubeconfig(args.kubeconfig) if args.kubeconfig else HttpPodSource(args.api_server)
    exporter = SflowExporter([_target(t) for t in args.target], source, agent_address=args.agent_address,
                             rate=args.rate, sampling_rate=args.sampling_rate, conversations=args.conversations,
                             vxlan_port=args.vxlan_port, vni=args.vni)
    await exporter.start()
    print(f"simulated switch {args.agent_address}: sFlow to {', '.join(args.target)}", flush=True)
    try:
        if args.duration:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await exporter.stop()
        print(f"sent {exporter.datagrams} datagrams, {exporter.samples} samples", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.sflow_exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", required=True, metavar="HOST:PORT",
                        help="collector address on loopback (repeatable)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--kubeconfig", help="kubeconfig of the (simulated) cluster whose pods talk")
    src.add_argument("--api-server", help="API server URL on loopback (no auth)")
    parser.add_argument("--agent-address", default="192.0.2.11", help="the switch's address in the datagrams")
    parser.add_argument("--rate", type=float, default=20.0, help="datagrams per second")
    parser.add_argument("--sampling-rate", type=int, default=64, help="1 in N data packets sampled")
    parser.add_argument("--conversations", type=int, default=24, help="concurrent TCP conversations")
    parser.add_argument("--vxlan-port", type=int, default=FLANNEL_VXLAN_PORT)
    parser.add_argument("--vni", type=int, default=FLANNEL_VNI)
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args))
    except LoopbackOnly as exc:
        print(f"sflow_exporter: {exc}")
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
