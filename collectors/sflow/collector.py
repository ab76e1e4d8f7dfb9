"""The sFlow collector the agent runs (``kubefabric run --sflow-addr HOST:PORT``).

Receives sFlow v5 over UDP, decodes each datagram (``decode_datagram``,
with the VXLAN ports from config plus those learned from detected CNIs),
keeps per-exporter statistics, and hands flow observations to a
``FlowSink`` (the connection table, wired by ``agent.runtime``; the
collector does not know what consumes them).

* Reception: a non-blocking UDP socket with a large receive buffer, read by
  the event loop (``add_reader``) until it would block, so one wake-up
  drains a burst; once drained, reading rests ``read_pause`` (2 ms) so the
  next wake-up finds a batch rather than one datagram (the buffer holds
  seconds of traffic, the delay is invisible in flow data).  With ``workers > 1`` the port is served instead by that
  many ``SO_REUSEPORT`` worker processes (:mod:`collectors.sflow.workers`)
  that decode and send compact batches to this process.
* Config (``ConfigFollower.on_config``): ``kubefabric-sflow:sflow-collector``
  enable, vxlan-port, geneve-port.  The listening address is the command
  line's: the ``port`` leaf is the fabric default a deployment tool reads,
  not re-bound live.  Observations are built only while the sink is
  ``accepting`` (connection-stats-settings enable).
* CNI rows (``/kubefabric-k8s:k8s/cni`` udp-port, followed on the feed) add
  their VXLAN ports to the configured ones.
* Interfaces: with an ``interface_sink`` (the topology producer, wired by
  ``agent.runtime``) the collector also hands over the exporters' interface
  counters and, aggregated, which outer source addresses arrive on which
  input ifIndex (:mod:`collectors.sflow.interfaces`), every
  ``publish_interval``.
* Statistics are SAMPLE data: counters change per datagram but reach the
  datastore at most once per ``stats_interval`` (1 s), totals in
  ``sflow-collector/statistics`` and one row per exporter below it.
  Connection rows are written every ``publish_interval`` (0.25 s).

Malformed datagrams are counted (totals, and the exporter's when the header
decoded) and skipped; nothing in a datagram can raise out of the collector.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time

from core import schema_paths
from core.ports.flows import FlowSink
from core.ports.topology import InterfaceSink
from core.ports.state import ChangeSource, ConfigFollower, StateWriter, Unsubscribe
from core.tasks import cancel_and_wait

from .decoder import decode_datagram
from .interfaces import InterfaceTally
from .producer import observations_from_datagram
from .stats import CollectorStats
from .workers import WorkerPool, bind_udp

__all__ = ["SflowCollector", "parse_addr", "DEFAULT_PORT", "STATS_PATH", "EXPORTER_PATH", "CNI_PATH"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 6343
DEFAULT_VXLAN_PORTS = (4789, 8472)
DEFAULT_GENEVE_PORT = 6081
SFLOW_TOP = "kubefabric-sflow:sflow-collector"
STATS_PATH = schema_paths.SFLOW_STATS
EXPORTER_PATH = schema_paths.SFLOW_EXPORTER
CNI_PATH = schema_paths.K8S_CNI
_READ_BURST = 512


def parse_addr(addr: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``HOST`` or ``:PORT`` -> (host, port)."""
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    elif ":" in addr:  # a bare IPv6 address
        host, port = addr, ""
    else:
        host, port = addr, ""
    host = host or "0.0.0.0"
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad sFlow address {addr!r}: port must be a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad sFlow address {addr!r}: port out of range")
    return host, number


class SflowCollector:
    """``SflowCollector(state, config, feed, sink, addr="0.0.0.0:6343", workers=1)``; ``await start()``,
    ``await stop()``, ``address``.

    ``stats`` (:class:`~collectors.sflow.stats.CollectorStats`) is public for
    tests; ``sink`` receives the flow observations (None: decode and count only).
    """

    def __init__(self, state: StateWriter, config: ConfigFollower, feed: ChangeSource, sink: FlowSink | None = None,
                 addr: str = f"0.0.0.0:{DEFAULT_PORT}", workers: int = 1, *,
                 stats_interval: float = 1.0, publish_interval: float = 0.25, read_pause: float = 0.002,
                 interface_sink: InterfaceSink | None = None) -> None:
        self.state = state
        self.config = config
        self.feed = feed
        self.sink = sink
        self.host, self.port = parse_addr(addr)
        self.workers = max(1, int(workers or 1))
        self.stats_interval = stats_interval
        self.publish_interval = publish_interval
        self.read_pause = read_pause
        self._reading = False
        self.stats = CollectorStats()
        self.enabled = True
        self._tracking = False
        self.vxlan_ports: frozenset[int] = frozenset(DEFAULT_VXLAN_PORTS)
        self.geneve_port = DEFAULT_GENEVE_PORT
        self._config_ports: frozenset[int] = frozenset(DEFAULT_VXLAN_PORTS)
        self._cni_ports: frozenset[int] = frozenset()
        self._sock: socket.socket | None = None
        self._pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._unsubscribe: list[Unsubscribe] = []
        self._errors = 0
        self._stopped = False
        self.interface_sink = interface_sink
        self._tally = InterfaceTally() if interface_sink is not None else None

    # ------------------------------------------------------------------ life cycle
    @property
    def address(self) -> str:
        """Where the collector listens, ``HOST:PORT`` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def ignored(self) -> int:
        """Datagrams dropped unread while sflow-collector enable is false."""
        return self.stats.ignored

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty in single-process mode)."""
        return list(self._pool.pids) if self._pool is not None else []

    @property
    def worker_restarts(self) -> int:
        """Worker processes restarted after dying."""
        return self._pool.restarts if self._pool is not None else 0

    @property
    def tracking(self) -> bool:
        """Whether observations are being built for the sink now."""
        return self.sink is not None and self.sink.accepting

    async def start(self) -> None:
        """Bind the port (or start the workers) and begin publishing."""
        self._loop = asyncio.get_running_loop()
        self._tracking = self.tracking
        self._unsubscribe = [self.config.on_config(self._on_config), self.feed.subscribe(self._on_changes)]
        self._learn_cni_ports()
        try:
            if self.workers == 1:
                self._sock = bind_udp(self.host, self.port)
                self.port = self._sock.getsockname()[1]
                self._reading = True
                self._loop.add_reader(self._sock.fileno(), self._readable)
            else:
                await self._start_workers()
        except BaseException:
            self._stopped = True
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []
            raise
        self._task = asyncio.create_task(self._publisher(), name="sflow-publisher")
        log.info("sFlow collector on %s (%d worker%s), VXLAN ports %s", self.address, self.workers,
                 "" if self.workers == 1 else "s", sorted(self.vxlan_ports))

    async def _start_workers(self) -> None:
        # Hold the port (learning it when 0 was asked) while the workers join the
        # SO_REUSEPORT group, then leave it to them; what reached us meanwhile is decoded here.
        probe = bind_udp(self.host, self.port, reuseport=True)
        self.port = probe.getsockname()[1]
        self._pool = WorkerPool(self.host, self.port, self.workers, self._on_batch, self.vxlan_ports,
                                self.geneve_port, self._tracking)
        try:
            await self._pool.start(self._loop)
        except BaseException:
            probe.close()
            await self._pool.stop()
            self._pool = None
            raise
        self._sock = probe
        self._readable()
        self._sock = None
        probe.close()

    async def stop(self) -> None:
        """Stop receiving; write the last counters and rows."""
        self._stopped = True
        await cancel_and_wait(self._task)
        self._task = None
        if self._sock is not None:
            if self._reading:
                self._loop.remove_reader(self._sock.fileno())
                self._reading = False
            self._sock.close()
            self._sock = None
        if self._pool is not None:
            await self._pool.stop()
            self._pool = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        try:
            self.flush()
        except Exception:
            log.exception("final sFlow flush failed")

    # ------------------------------------------------------------------ config
    def _on_config(self, running: dict) -> None:
        if self._stopped:
            return
        sflow = running.get(SFLOW_TOP) or {}
        self.enabled = bool(sflow.get("enable", True))
        ports = sflow.get("vxlan-port")
        self._config_ports = frozenset(int(p) for p in (DEFAULT_VXLAN_PORTS if ports is None else ports))
        self.geneve_port = int(sflow.get("geneve-port", DEFAULT_GENEVE_PORT))
        # the sink follows the same config (agent.runtime starts it first, so it has applied this change):
        # tell the workers at once whether to build observations
        self._tracking = self.tracking
        self._ports_changed()

    def _on_changes(self, changes: list) -> None:
        for change in changes:
            if change.path == CNI_PATH:
                self._learn_cni_ports()
                return

    def _learn_cni_ports(self) -> None:
        ports = set()
        for row in self.state.entries(CNI_PATH).values():
            port = row.get("udp-port")
            if port:
                ports.add(int(port))
        self._cni_ports = frozenset(ports)
        self._ports_changed()

    def _ports_changed(self) -> None:
        ports = self._config_ports | self._cni_ports
        if ports != self.vxlan_ports:
            log.info("sFlow: decoding VXLAN on UDP ports %s", sorted(ports))
        self.vxlan_ports = ports
        if self._pool is not None:
            self._pool.configure(self.vxlan_ports, self.geneve_port, self._tracking)

    def _check_tracking(self) -> None:
        """Follow the sink's ``accepting`` (it changes with its own config); tell the workers."""
        tracking = self.tracking
        if tracking != self._tracking:
            self._tracking = tracking
            if self._pool is not None:
                self._pool.configure(self.vxlan_ports, self.geneve_port, tracking)

    # ------------------------------------------------------------------ reception
    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recv = sock.recv
        datagram = self.datagram
        clock = time.time
        for _ in range(_READ_BURST):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("sFlow receive failed: %s", exc)
                break
            datagram(data, clock())
        else:
            return  # more is waiting: stay armed, the loop comes back after other callbacks
        if self.read_pause > 0 and self._reading:
            # Drained: rest a moment so the next wake-up finds several datagrams instead of one
            # (an epoll round per datagram costs more than decoding it at high rates).
            self._reading = False
            self._loop.remove_reader(sock.fileno())
            self._loop.call_later(self.read_pause, self._resume)

    def _resume(self) -> None:
        if self._sock is not None and not self._reading and not self._stopped:
            self._reading = True
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def datagram(self, data: bytes, t: float | None = None) -> None:
        """Process one received datagram (the UDP payload); never raises."""
        if not self.enabled:
            self.stats.ignored += 1
            return
        t = t or time.time()
        try:
            dg = decode_datagram(data, self.vxlan_ports, self.geneve_port)
            self.stats.account(dg.agent or None, dg.sub_agent_id, dg.sequence, dg.uptime, len(dg.samples),
                               dg.malformed is not None, t)
            sink = self.sink
            if sink is not None and sink.accepting:
                sink.observe(observations_from_datagram(dg, t))
            if self._tally is not None:
                self._tally.add(dg, t)
        except Exception:  # the decoder never raises; this guards everything after it
            self._errors += 1
            self.stats.account(None, 0, 0, 0, 0, True, t)
            if self._errors == 1:
                log.exception("sFlow datagram could not be processed (counted as malformed)")

    def _on_batch(self, stats: list, samples: list, interfaces: tuple | None = None) -> None:
        """A worker's batch (see :mod:`collectors.sflow.workers`)."""
        if not self.enabled:
            self.stats.ignored += len(stats)
            return
        if interfaces and self.interface_sink is not None:
            self._hand_over(*interfaces)
        account = self.stats.account
        now = time.time()
        for agent, sub, seq, uptime, n, malformed in stats:
            account(agent, sub, seq, uptime, n, malformed, now)
        sink = self.sink
        if samples and sink is not None and sink.accepting:
            sink.observe(samples)

    # ------------------------------------------------------------------ publishing
    async def _publisher(self) -> None:
        next_stats = 0.0
        while True:
            await asyncio.sleep(self.publish_interval)
            now = time.time()
            try:
                self._check_tracking()
                self.flush_interfaces()
                if now >= next_stats:
                    next_stats = now + self.stats_interval
                    self.flush_stats()
            except Exception:
                log.exception("sFlow publishing failed")

    def flush_stats(self) -> None:
        """Write the counters that changed since the last flush."""
        stats = self.stats
        if not stats.dirty:
            return
        stats.dirty = False
        state = self.state
        with state.batch():
            state.merge(STATS_PATH, (), stats.totals())
            for exporter in stats.take_dirty():
                state.merge(EXPORTER_PATH, (exporter.agent, exporter.sub_agent_id), exporter.row())

    def flush_interfaces(self) -> None:
        """Hand what the datagrams told about interfaces to the interface sink."""
        tally = self._tally
        if tally:
            self._hand_over(*tally.take())

    def _hand_over(self, counters: list, sightings: list) -> None:
        sink = self.interface_sink
        if sink is None:
            return
        try:
            if counters:
                sink.interface_counters(counters)
            if sightings:
                sink.source_sightings(sightings)
        except Exception:
            log.exception("the interface sink failed on a batch")

    def flush(self) -> None:
        """Write the counters now (tests, stop)."""
        self.flush_stats()
        self.flush_interfaces()
