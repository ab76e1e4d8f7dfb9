"""The connection table (Netvisor's connection-show) built from sampled packets.

One :class:`Connection` per (vlan, vxlan, protocol, two endpoints).  Both
halves of a conversation land on the same entry: the lookup key orders the
two endpoints, and the entry remembers which one is the client:

* the sender of a SYN (without ACK) is the client, the sender of a SYN-ACK
  the server, whenever such a packet is sampled -- even after the entry was
  created, in which case the entry turns round;
* without a sampled SYN the **lower port is the server** (services listen on
  low or well-known ports, clients use ephemeral ones); equal ports keep the
  orientation of the first sampled packet.

``cur-state`` follows the sampled TCP flags: ``syn`` -> ``syn-ack`` ->
``established`` (any other packet of a connection not yet closing), ``fin``
(one side sent FIN), ``closed`` (both sides sent FIN, or ``close_linger``
seconds without a sample after a FIN or RST), ``rst``; a new SYN on a closed
entry starts a new connection on it.  UDP, ICMP and other protocols are
``active``.  ``latency`` is the time from the latest sampled SYN to the
sampled SYN-ACK, in microseconds, from the collector's arrival times (so
its resolution is the exporter's batching: a SYN and SYN-ACK in the same
datagram give 0).

Packets and bytes are scaled by the sampling rate (each sample stands for
``rate`` packets of ``frame_length`` bytes).  For an encapsulated sample
the connection is the *inner* flow and ``vxlan`` is the VNI.

The hot path (:meth:`ConnectionTracker.observe`) touches only a dict (an
OrderedDict kept in last-seen order, so both idle expiry and eviction of the
oldest idle entry read it from the front) and the entry's slots; rows for
the datastore are built only for changed entries, by :meth:`take_changes`.

Exact events (``observe_control``): a capture (a mirror port, ERSPAN) hands
over *every* TCP control packet (SYN, FIN, RST) of the connections it
watches, with its own timestamps.  An entry that a capture has seen is
``exact``: from then on its state follows only the captured packets
(sampled packets still count volume, and a sampled data packet tells a
handshake completed), ``latency`` is SYN-ACK time minus the latest SYN's
time as the switch saw them (``latency-source`` capture), a SYN with the
sequence number of the one before is a retransmission, and the tracker may
conclude from what it does not see: a SYN unanswered for
``no_response_timeout`` seconds is ``no-response``.  Every finished
connection gets an ``outcome``: ``completed`` (the handshake completed),
``refused`` (a RST answered the SYN), ``no-response``, ``reset`` (a RST
after the handshake).  Sampled control packets give outcomes too when they
show them (a sampled RST answering a sampled SYN), never ``no-response``.

With ``events`` set to a list (the connection table does), the tracker
appends ``(kind, connection, value)`` for what per-service statistics count:
``EVENT_NEW`` (a connection opened: value = how many SYNs it stands for),
``EVENT_OUTCOME`` (value = the outcome), ``EVENT_LATENCY`` (value = the
latency in microseconds) and ``EVENT_RETRANSMIT``.  Nothing is appended
while ``events`` is None.

Per-exporter quotas: every entry belongs to the exporter (sFlow agent
address) whose sample created it, and a new entry may only displace an
entry of **its own exporter**.  An exporter holding ``exporter_quota``
entries recycles its own least recently seen one (the table's oldest entry
when that is its own, else found by a second-chance pass over the
exporter's entries, so hits cost nothing extra); when the whole table is
full, an exporter that already holds entries recycles its own, and one that
holds none is refused (``refused``) until idle expiry frees room.  So a
flood from an unknown (or spoofed) exporter can fill free room and churn
its own entries, but never evicts the connections of the exporters already
in the table.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

from core import schema_paths
from core.ports.flows import ControlPacket, FlowObservation, address_text
from core.times import format_rfc3339

__all__ = ["Connection", "ConnectionTracker", "TrackerStats", "FIN", "SYN", "RST", "ACK", "CONNECTIONS_PATH",
           "EVENT_NEW", "EVENT_OUTCOME", "EVENT_LATENCY", "EVENT_RETRANSMIT", "DUPLICATE_WINDOW"]

CONNECTIONS_PATH = schema_paths.CONNECTION

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_PORTED = frozenset({6, 17, 132})  # protocols whose samples are useless without ports
_OPENING = (None, "syn", "syn-ack")
_CLOSING = ("fin", "rst")
_FINISHED = ("fin", "rst", "closed")
EVENT_NEW, EVENT_OUTCOME, EVENT_LATENCY, EVENT_RETRANSMIT = 0, 1, 2, 3
#: a second copy of the same SYN within this many seconds is the mirror's duplicate, not a retransmission
#: (TCP retransmits a SYN after 1 s at the earliest, RFC 6298; Linux's minimum RTO is 200 ms)
DUPLICATE_WINDOW = 0.05


class Connection:
    """One tracked connection; ``src`` is the client (see the module docstring)."""

    __slots__ = ("switch", "vlan", "vxlan", "protocol", "src_ip", "dst_ip", "src_port", "dst_port",
                 "encapsulation", "state", "fins", "syn_time", "latency", "first_seen", "last_seen",
                 "packets", "bytes", "published", "first_text", "attribution", "attributed_at", "dirty", "alive",
                 "written_at", "owner", "lookup", "queued",
                 "src_key", "dst_key", "outcome", "latency_source",
                 "exact", "client_isn", "server_isn", "synack_time", "ack_latency", "syn_retransmits")

    def __init__(self, switch: str, vlan: int, vxlan: int, protocol: int, src_ip: str, dst_ip: str,
                 src_port: int, dst_port: int, encapsulation: str, t: float) -> None:
        self.switch = switch
        self.vlan = vlan
        self.vxlan = vxlan
        self.protocol = protocol
        self.src_ip = src_ip
        self.dst_ip = dst_ip
        self.src_port = src_port
        self.dst_port = dst_port
        self.encapsulation = encapsulation
        self.state: str | None = None if protocol == 6 else "active"
        self.fins = 0  # 1: client sent FIN, 2: server sent FIN
        self.syn_time: float | None = None
        self.latency: int | None = None
        self.first_seen = t
        self.last_seen = t
        self.packets = 0
        self.bytes = 0
        self.published: tuple | None = None  # datastore key of the row, once written
        self.first_text: str | None = None
        self.attribution: dict | None = None  # pod/service leaves, once known
        self.attributed_at = 0.0
        self.dirty = False  # queued for the next take_changes
        self.alive = True  # still in the table
        self.written_at = 0.0  # when the row was last written (ConnectionTable)
        self.owner = switch  # the exporter whose sample created the entry (its quota counts it)
        self.lookup: tuple = ()  # the tracker's table key
        self.queued = t  # last_seen when placed at the end of its exporter's order (second chance)
        self.src_key: str | bytes = src_ip  # the addresses as samples carry them (packed or text)
        self.dst_key: str | bytes = dst_ip
        #: completed | refused | no-response | reset, once known (YANG leaf outcome)
        self.outcome: str | None = None
        #: capture | sflow: where ``latency`` came from (YANG leaf latency-source)
        self.latency_source: str | None = None
        self.exact = False  # a capture has seen this connection: its state follows the captured packets only
        self.client_isn: int | None = None  # sequence number of the captured SYN (retransmissions repeat it)
        self.server_isn: int | None = None  # sequence number of the captured SYN-ACK
        self.synack_time: float | None = None
        self.ack_latency: int | None = None  # SYN-ACK -> the client's ACK, microseconds (when the ACK is captured)
        self.syn_retransmits = 0

    @property
    def key(self) -> tuple:
        """The datastore key: (vlan, vxlan, src-ip, dst-ip, src-port, dst-port, protocol)."""
        return (self.vlan, self.vxlan, self.src_ip, self.dst_ip, self.src_port, self.dst_port, self.protocol)

    def turn(self) -> None:
        """Swap client and server (a SYN or SYN-ACK showed the guess was wrong)."""
        self.client_isn, self.server_isn = self.server_isn, self.client_isn
        self.src_ip, self.dst_ip = self.dst_ip, self.src_ip
        self.src_port, self.dst_port = self.dst_port, self.src_port
        self.src_key, self.dst_key = self.dst_key, self.src_key
        self.fins = ((self.fins & 1) << 1) | ((self.fins & 2) >> 1)
        self.attribution = None
        self.attributed_at = 0.0

    def restart(self, t: float) -> None:
        """A new SYN on a finished entry: the same 5-tuple carries a new connection."""
        self.first_seen = t
        self.first_text = None
        self.packets = self.bytes = 0
        self.fins = 0
        self.latency = None
        self.latency_source = None
        self.outcome = None
        self.syn_time = None
        self.state = None
        self.client_isn = self.server_isn = self.synack_time = self.ack_latency = None
        self.syn_retransmits = 0

    def row(self, now: float) -> dict:
        """The connection's leaves (keys and attribution excluded)."""
        if self.first_text is None:
            self.first_text = format_rfc3339(self.first_seen)
        row = {
            "switch": self.switch,
            "cur-state": self.state or "established",
            "age": max(0, int(now - self.first_seen)),
            "packets": self.packets,
            "bytes": self.bytes,
            "encapsulation": self.encapsulation,
            "first-seen": self.first_text,
            "last-seen": format_rfc3339(self.last_seen),
        }
        if self.latency is not None:
            row["latency"] = self.latency
            if self.latency_source is not None:
                row["latency-source"] = self.latency_source
        if self.outcome is not None:
            row["outcome"] = self.outcome
        if self.ack_latency is not None:
            row["ack-latency"] = self.ack_latency
        if self.syn_retransmits:
            row["syn-retransmits"] = self.syn_retransmits
        return row

    def __repr__(self) -> str:
        return (f"Connection({self.src_ip}:{self.src_port} -> {self.dst_ip}:{self.dst_port} proto {self.protocol} "
                f"vlan {self.vlan} vxlan {self.vxlan} {self.state} pkts {self.packets} bytes {self.bytes} "
                f"latency {self.latency})")


class ConnectionTracker:
    """Sampled packets in, connection entries out.

    ``observe(observation)`` per packet (a ``core.ports.flows.FlowObservation``
    from any flow source), ``expire(now)`` now and then, ``take_changes()`` to
    collect the entries to write and the datastore keys to delete.
    """

    def __init__(self, max_connections: int = 100_000, idle_timeout: float = 300.0, close_linger: float = 10.0,
                 exporter_quota: int | None = None, no_response_timeout: float = 5.0) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.close_linger = close_linger
        #: entries one exporter may hold (None: up to max_connections); see the module docstring
        self.exporter_quota = exporter_quota
        self.table: OrderedDict[tuple, Connection] = OrderedDict()
        #: exporter -> its entries, oldest placed first (see _evict_own)
        self.by_exporter: dict[str, OrderedDict[tuple, Connection]] = {}
        self._dirty: list[Connection] = []
        self._closing: dict[int, Connection] = {}
        self._gone: list[tuple] = []
        # counters
        self.samples = 0
        self.skipped = 0
        self.created = 0
        self.expired = 0
        self.evicted = 0
        self.refused = 0  # new entries refused: the table was full and their exporter held none
        self.controls = 0  # exact control packets accounted (observe_control)
        #: seconds a captured SYN may stay unanswered before the connection's outcome is no-response
        self.no_response_timeout = no_response_timeout
        #: per-service events for the connection table (see the module docstring); None: not collected
        self.events: list | None = None
        self._pending: dict[int, Connection] = {}  # exact entries whose handshake is not settled yet

    def __len__(self) -> int:
        return len(self.table)

    # ------------------------------------------------------------------ hot path
    def observe(self, observation: FlowObservation) -> None:
        """Account one observed packet (standing for ``rate`` packets)."""
        t, switch, rate, length, vlan, vni, encap, src, dst, proto, sport, dport, flags = observation
        self.samples += 1
        if sport is None or dport is None:
            if proto in _PORTED:
                self.skipped += 1  # header cut before the ports: cannot tell which connection
                return
            sport = dport = 0
        # src and dst of one observation are both packed or both text (core.ports.flows)
        if src < dst or (src == dst and sport <= dport):  # type: ignore[operator]
            lookup = (vlan, vni, proto, src, sport, dst, dport)
        else:
            lookup = (vlan, vni, proto, dst, dport, src, sport)
        table = self.table
        conn = table.get(lookup)
        if conn is None:
            if proto == 6 and flags is not None and flags & SYN:
                client_sent = not flags & ACK
            else:
                client_sent = sport >= dport  # lower port = server
            conn = self._create(lookup, switch, vlan, vni, proto, encap, src, dst, sport, dport, client_sent, t)
            if conn is None:
                return
        else:
            table.move_to_end(lookup)
            conn.switch = switch
        if proto == 6 and flags is not None and (flags & 0x07 or conn.state in _OPENING):  # not plain data/ACK
            self._tcp(conn, flags, conn.src_port == sport and conn.src_key == src, t, rate)
        conn.last_seen = t
        conn.packets += rate
        conn.bytes += length * rate
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)

    def _create(self, lookup: tuple, switch: str, vlan: int, vni: int, proto: int, encap: str,
                src: bytes | str, dst: bytes | str, sport: int, dport: int, client_sent: bool,
                t: float) -> Connection | None:
        """A new entry (None when refused: the table is full and ``switch`` holds no entry)."""
        table = self.table
        own = self.by_exporter.get(switch)
        if own is None:
            if len(table) >= self.max_connections:
                self.refused += 1  # full: a newcomer may not displace other exporters' entries
                return None
            own = self.by_exporter[switch] = OrderedDict()
        elif len(table) >= self.max_connections or len(own) >= (self.exporter_quota or self.max_connections):
            self._evict_own(switch, own)
        src_text, dst_text = address_text(src), address_text(dst)  # once per connection, not per sample
        if client_sent:
            conn = Connection(switch, vlan, vni, proto, src_text, dst_text, sport, dport, encap, t)
            conn.src_key, conn.dst_key = src, dst
        else:
            conn = Connection(switch, vlan, vni, proto, dst_text, src_text, dport, sport, encap, t)
            conn.src_key, conn.dst_key = dst, src
        conn.lookup = lookup
        table[lookup] = conn
        own[lookup] = conn
        self.created += 1
        return conn

    def _tcp(self, conn: Connection, flags: int, from_client: bool, t: float, rate: int) -> None:
        """A sampled control packet, or any sampled packet of a connection still opening."""
        state = conn.state
        if conn.exact:
            # a capture sees every control packet of this connection: a (late) sample of one changes nothing,
            # but a sampled data packet after the SYN-ACK shows the handshake completed
            if not flags & 0x07 and state == "syn-ack":
                self._established(conn)
            return
        if flags & RST:
            if state == "syn" and not from_client:
                if conn.outcome is None:
                    self._outcome(conn, "refused")
            elif state in ("syn-ack", "established", "fin") and conn.outcome != "reset":
                self._outcome(conn, "reset")  # (a completed handshake that ends in a RST)
            conn.state = "rst"
            self._closing[id(conn)] = conn
        elif flags & SYN:
            if flags & ACK:  # SYN-ACK: sent by the server
                if from_client:
                    conn.turn()
                if state in _OPENING:
                    conn.state = "syn-ack"
                    if conn.syn_time is not None and conn.latency is None and t >= conn.syn_time:
                        conn.latency = round((t - conn.syn_time) * 1_000_000)
                        conn.latency_source = "sflow"
                        if self.events is not None:
                            self.events.append((EVENT_LATENCY, conn, conn.latency))
            else:  # SYN: sent by the client
                if state in _FINISHED:
                    conn.restart(t)
                    self._closing.pop(id(conn), None)
                    state = None
                if not from_client:
                    conn.turn()
                if state in _OPENING:
                    conn.state = "syn"
                    if conn.syn_time is None and self.events is not None:
                        self.events.append((EVENT_NEW, conn, rate))  # a sampled SYN stands for `rate` SYNs
                    conn.syn_time = t
        elif flags & FIN:
            if state in _OPENING and conn.outcome is None:
                self._outcome(conn, "completed")
            conn.fins |= 1 if from_client else 2
            if conn.fins == 3:
                conn.state = "closed"
                self._closing.pop(id(conn), None)
            elif state != "closed":
                conn.state = "fin"
                self._closing[id(conn)] = conn
        elif state in _OPENING:
            conn.state = "established"
            if conn.outcome is None:
                self._outcome(conn, "completed")

    def _outcome(self, conn: Connection, outcome: str) -> None:
        conn.outcome = outcome
        if self.events is not None:
            self.events.append((EVENT_OUTCOME, conn, outcome))

    def _established(self, conn: Connection) -> None:
        conn.state = "established"
        self._pending.pop(id(conn), None)
        if conn.outcome is None:
            self._outcome(conn, "completed")
        self._mark(conn)

    # ------------------------------------------------------------------ exact events
    def observe_control(self, packet: ControlPacket) -> None:
        """Account one captured control packet: an exact event with the capture's timestamp."""
        t, switch, _length, vlan, vni, encap, src, dst, sport, dport, flags, seq, ack = packet
        self.controls += 1
        if src < dst or (src == dst and sport <= dport):  # type: ignore[operator]
            lookup = (vlan, vni, 6, src, sport, dst, dport)
        else:
            lookup = (vlan, vni, 6, dst, dport, src, sport)
        conn = self.table.get(lookup)
        if conn is None:
            client_sent = not flags & ACK if flags & SYN else sport >= dport
            conn = self._create(lookup, switch, vlan, vni, 6, encap, src, dst, sport, dport, client_sent, t)
            if conn is None:
                return
        else:
            self.table.move_to_end(lookup)
        if not conn.exact:
            conn.exact = True
            if conn.state in ("syn", "syn-ack") and conn.latency_source != "capture":
                conn.syn_time = None  # a sampled SYN's arrival time is not the capture's clock
        self._control(conn, flags, conn.src_port == sport and conn.src_key == src, t, seq, ack)
        if t > conn.last_seen:
            conn.last_seen = t
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)

    def _control(self, conn: Connection, flags: int, from_client: bool, t: float, seq: int, ack: int) -> None:
        state = conn.state
        events = self.events
        if flags & RST:
            if state in _FINISHED and state != "fin":
                return  # a second RST, or one after the close
            if state == "syn" and not from_client:
                if conn.outcome != "refused":
                    self._outcome(conn, "refused")  # the RST answers the SYN: nothing listens
            elif state is not None and state != "syn" and conn.outcome != "reset":
                self._outcome(conn, "reset")  # after the handshake (a completed one that ends in a RST)
            conn.state = "rst"
            self._pending.pop(id(conn), None)
            self._closing[id(conn)] = conn
        elif flags & SYN:
            if flags & ACK:  # SYN-ACK: sent by the server
                if from_client:
                    conn.turn()
                if state is None or state == "syn":
                    conn.state = "syn-ack"
                    conn.server_isn = seq
                    conn.synack_time = t
                    if conn.outcome == "no-response":  # answered after all (a late SYN-ACK)
                        conn.outcome = None
                    syn_time = conn.syn_time
                    if syn_time is not None and t >= syn_time:
                        conn.latency = round((t - syn_time) * 1_000_000)
                        conn.latency_source = "capture"
                        if events is not None:
                            events.append((EVENT_LATENCY, conn, conn.latency))
                    self._pending[id(conn)] = conn  # settles as established unless a RST follows
                # else: a retransmitted SYN-ACK (the client's ACK was lost): nothing changes
            else:  # SYN: sent by the client
                if not from_client:
                    conn.turn()
                if state is not None and (state in _FINISHED or seq != conn.client_isn):
                    if state not in _FINISHED and conn.client_isn is None:
                        conn.client_isn = seq  # the first captured SYN of an entry sampled before
                        conn.syn_time = t
                        conn.state = "syn"
                        self._pending[id(conn)] = conn
                        return
                    conn.restart(t)  # a new connection on the same 5-tuple (a new initial sequence number)
                    self._closing.pop(id(conn), None)
                    state = None
                if state is None:
                    conn.state = "syn"
                    conn.client_isn = seq
                    conn.syn_time = t
                    self._pending[id(conn)] = conn
                    if events is not None:
                        events.append((EVENT_NEW, conn, 1))
                elif conn.syn_time is None or t - conn.syn_time > DUPLICATE_WINDOW:
                    conn.syn_retransmits += 1  # the same SYN again: retransmitted
                    if state == "syn":
                        conn.syn_time = t  # the latency counts from the SYN the server answers
                    if events is not None:
                        events.append((EVENT_RETRANSMIT, conn, 1))
        elif flags & FIN:
            if state in _OPENING and state is not None:
                self._established(conn)
            conn.fins |= 1 if from_client else 2
            if conn.fins == 3:
                conn.state = "closed"
                self._closing.pop(id(conn), None)
            elif conn.state != "closed" and conn.state != "rst":
                conn.state = "fin"
                self._closing[id(conn)] = conn
        elif state == "syn-ack" and from_client:
            # the client's ACK completing the handshake (a mirror that copies it)
            if ack == ((conn.server_isn or 0) + 1) & 0xFFFFFFFF and conn.synack_time is not None:
                conn.ack_latency = round((t - conn.synack_time) * 1_000_000)
            self._established(conn)

    # ------------------------------------------------------------------ upkeep
    def _evict(self) -> None:
        _, conn = self.table.popitem(last=False)  # the oldest idle entry
        self.evicted += 1
        self._forget(conn)

    def _evict_own(self, exporter: str, own: OrderedDict) -> None:
        """Evict the least recently seen entry of one exporter."""
        lookup, conn = next(iter(self.table.items()))
        if conn.owner != exporter:
            # second chance: an entry seen since it was placed goes to the back of its exporter's order
            while True:
                lookup, conn = next(iter(own.items()))
                if conn.last_seen <= conn.queued:
                    break
                conn.queued = conn.last_seen
                own.move_to_end(lookup)
        del self.table[lookup]
        self.evicted += 1
        self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        own = self.by_exporter.get(conn.owner)
        if own is not None:
            own.pop(conn.lookup, None)
            if not own:
                del self.by_exporter[conn.owner]
        conn.alive = False
        self._closing.pop(id(conn), None)
        self._pending.pop(id(conn), None)
        if conn.published is not None:
            self._gone.append(conn.published)
            conn.published = None

    def expire(self, now: float) -> int:
        """Remove entries idle for ``idle_timeout``; close FIN/RST entries idle for ``close_linger``."""
        table = self.table
        limit = now - self.idle_timeout
        removed = 0
        while table:
            lookup, conn = next(iter(table.items()))
            if conn.last_seen > limit:
                break
            del table[lookup]
            self._forget(conn)
            removed += 1
        self.expired += removed
        if self._pending:
            self._settle(now)
        if self._closing:
            linger = now - self.close_linger
            for ident, conn in list(self._closing.items()):
                if conn.state not in _CLOSING:
                    del self._closing[ident]
                elif conn.last_seen <= linger:
                    conn.state = "closed"
                    del self._closing[ident]
                    self._mark(conn)
        return removed

    def _settle(self, now: float) -> None:
        """Exact handshakes past the timeout: an unanswered SYN is no-response, an answered one established."""
        limit = now - self.no_response_timeout
        for ident, conn in list(self._pending.items()):
            if not conn.alive:
                del self._pending[ident]
            elif conn.state == "syn":
                if conn.first_seen <= limit:  # the first SYN of the attempt (retransmissions do not extend it)
                    del self._pending[ident]
                    if conn.outcome is None:
                        self._outcome(conn, "no-response")
                        self._mark(conn)
            elif conn.state == "syn-ack":
                if conn.synack_time is None or conn.synack_time <= limit:
                    self._established(conn)  # accepted, and no RST came back: the handshake completed
            else:
                del self._pending[ident]

    def mark(self, conn: Connection) -> None:
        """Queue an entry for the next take_changes (e.g. to refresh its age)."""
        if conn.alive and not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)

    def _mark(self, conn: Connection) -> None:
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)

    def resize(self, max_connections: int, idle_timeout: float) -> None:
        """Apply new limits; entries over the new maximum are evicted at once."""
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.close_linger = min(self.close_linger, idle_timeout)
        while len(self.table) > max_connections:
            self._evict()

    def clear(self) -> list[tuple]:
        """Forget every entry; returns the datastore keys of the rows that must go."""
        for conn in self.table.values():
            self._forget(conn)
        self.table.clear()
        self.by_exporter.clear()
        self._pending.clear()
        if self.events is not None:
            self.events.clear()
        gone, self._gone = self._gone, []
        return gone

    def take_changes(self, limit: int | None = None) -> tuple[list[Connection], list[tuple]]:
        """(entries changed since the last call, datastore keys to delete).

        An entry that turned round since it was written appears in both: its
        old key is deleted and it is written under the new one.  ``limit``
        caps the entries and the keys returned (each); the rest stay pending
        for the next call.  A pending delete of a key that an entry writes
        again is dropped.
        """
        dirty = self._dirty
        if limit is None or len(dirty) <= limit:
            taken, self._dirty = dirty, []
        else:
            taken, self._dirty = dirty[:limit], dirty[limit:]
        changed = []
        for conn in taken:
            conn.dirty = False
            if conn.alive:
                changed.append(conn)
        gone = self._gone
        if changed:
            keys = set()
            for conn in changed:
                key = conn.key
                if conn.published is not None and conn.published != key:
                    gone.append(conn.published)
                conn.published = key
                keys.add(key)
            gone = [k for k in gone if k not in keys]  # a key written again needs no delete
        if limit is not None and len(gone) > limit:
            gone, self._gone = gone[:limit], gone[limit:]
        else:
            self._gone = []
        return changed, gone

    def observe_all(self, observations: Iterable[FlowObservation]) -> None:
        """``observe`` each observation."""
        observe = self.observe
        for observation in observations:
            observe(observation)

    def stats(self) -> "TrackerStats":
        """Tracker counters (published as connection-statistics, used by benchmarks)."""
        return TrackerStats(len(self.table), self.samples, self.skipped, self.created, self.expired, self.evicted,
                            self.refused, len(self.by_exporter), self.controls)


@dataclass(frozen=True)
class TrackerStats:
    """The tracker's counters; ``as_leaves()`` gives the YANG connection-statistics leaves."""

    connections: int
    samples: int      # observations accounted
    skipped: int      # observations without ports for a ported protocol (header cut short)
    created: int      # entries created
    expired: int      # entries removed after their idle timeout
    evicted: int      # entries displaced because the table (or their exporter's quota) was full
    refused: int      # new entries refused: the table was full and their exporter held none
    exporters: int    # exporters holding entries
    controls: int = 0  # exact control packets accounted (captures)

    def as_leaves(self) -> dict[str, int]:
        return {"connections": self.connections, "samples": self.samples, "skipped": self.skipped,
                "created": self.created, "expired": self.expired, "evicted": self.evicted,
                "refused": self.refused, "exporters": self.exporters, "control-packets": self.controls}
