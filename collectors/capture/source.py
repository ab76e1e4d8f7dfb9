"""The capture source the agent runs: interfaces and the ERSPAN receiver, feeding the connection table.

``CaptureSource(state, config, feed, sink, interfaces=(), erspan_addr=None)``
is a component (``start``/``stop``) wired by ``agent.runtime`` to a
``ControlSink`` (the connection table).  It follows:

* ``kubefabric-capture:capture`` (node-local config): the ``interface`` list
  and the ``erspan`` receiver.  ``kubefabric run --capture-interface NAME``
  (repeatable) replaces the interface list on this node, ``--erspan-addr
  HOST`` turns the receiver on at that address: the command line overrides
  the YANG config of its node, as ``--sflow-addr`` does.
* the tunnel ports, shared with the sFlow collector:
  ``kubefabric-sflow:sflow-collector`` ``vxlan-port`` and ``geneve-port``,
  plus the ``udp-port`` of every ``/kubefabric-k8s:k8s/cni`` row (followed
  on the change feed).  A change rebuilds the kernel filter of every open
  interface.

Each input is read from the event loop (``add_reader``) until its ring or
socket is drained, and its control packets go to the sink as one batch per
read.  An input that cannot open (no such interface, no CAP_NET_RAW, the
address is not local) shows ``status error`` with the reason and is retried
every ``retry_interval`` seconds; the agent keeps serving everything else.
Counters reach ``/kubefabric-capture:capture-state`` once a second.
"""
from __future__ import annotations

import asyncio
import logging
import time

from core import schema_paths
from core.ports.flows import ControlSink
from core.ports.state import ChangeSource, ConfigFollower, StateWriter, Unsubscribe
from core.tasks import cancel_and_wait
from core.times import format_rfc3339

from .bpf import FilterError, compile_filter, control_filter
from .frames import DEFAULT_GENEVE_PORT, DEFAULT_VXLAN_PORTS
from .interface import CaptureError, InterfaceCapture
from .receiver import ErspanReceiver

__all__ = ["CaptureSource", "CAPTURE_TOP"]

log = logging.getLogger(__name__)

CAPTURE_TOP = "kubefabric-capture:capture"
SFLOW_TOP = "kubefabric-sflow:sflow-collector"
INTERFACE_PATH = schema_paths.CAPTURE_INTERFACE_STATE
ERSPAN_PATH = schema_paths.CAPTURE_ERSPAN_STATE
SESSION_PATH = schema_paths.CAPTURE_ERSPAN_SESSION
CNI_PATH = schema_paths.K8S_CNI


class CaptureSource:
    """Capture interfaces and the ERSPAN receiver as one component (see the module docstring)."""

    def __init__(self, state: StateWriter, config: ConfigFollower, feed: ChangeSource, sink: ControlSink | None,
                 interfaces: tuple[str, ...] | list[str] = (), erspan_addr: str | None = None, *,
                 stats_interval: float = 1.0, retry_interval: float = 5.0, snaplen: int = 256,
                 buffer_bytes: int = 32 << 20) -> None:
        self.state = state
        self.config = config
        self.feed = feed
        self.sink = sink
        self.cli_interfaces = tuple(dict.fromkeys(interfaces))
        self.cli_erspan = erspan_addr
        self.stats_interval = stats_interval
        self.retry_interval = retry_interval
        self.snaplen = snaplen
        self.buffer_bytes = buffer_bytes
        self.interfaces: dict[str, InterfaceCapture] = {}
        self.receiver: ErspanReceiver | None = None
        self.erspan_enabled = False
        self._config_ports: frozenset[int] = DEFAULT_VXLAN_PORTS
        self._cni_ports: frozenset[int] = frozenset()
        self.vxlan_ports: frozenset[int] = DEFAULT_VXLAN_PORTS
        self.geneve_port = DEFAULT_GENEVE_PORT
        self.expression = control_filter(self.vxlan_ports, self.geneve_port)
        self.instructions = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._unsubscribe: list[Unsubscribe] = []
        self._readers: dict[int, object] = {}
        self._published: set[str] = set()
        self._published_sessions: set[tuple] = set()
        self._erspan_published = False
        self._stopped = False
        self._next_retry = 0.0
        self._errors = 0

    # ------------------------------------------------------------------ life cycle
    @property
    def address(self) -> str | None:
        """What the start-up line shows."""
        parts = [f"interface {n}" for n in self.interfaces]
        if self.receiver is not None and self.erspan_enabled:
            parts.append(f"ERSPAN on {self.receiver.address}")
        return ", ".join(parts) or None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = [self.config.on_config(self._on_config), self.feed.subscribe(self._on_changes)]
        self._learn_cni_ports()
        self._task = asyncio.create_task(self._publisher(), name="capture-publisher")

    async def stop(self) -> None:
        self._stopped = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        await cancel_and_wait(self._task)
        self._task = None
        for capture in self.interfaces.values():
            self._unwatch(capture)
            capture.close()
        if self.receiver is not None:
            self._unwatch(self.receiver)
            self.receiver.close()
        try:
            self.publish()
        except Exception:
            log.exception("final capture statistics failed")

    # ------------------------------------------------------------------ config
    def _on_config(self, running: dict) -> None:
        if self._stopped:
            return
        capture = running.get(CAPTURE_TOP) or {}
        if self.cli_interfaces:
            wanted = {name: ("command-line", True) for name in self.cli_interfaces}
        else:
            wanted = {str(e["name"]): ("config", bool(e.get("enable", True))) for e in capture.get("interface", [])}
        sflow = running.get(SFLOW_TOP) or {}
        ports = sflow.get("vxlan-port")
        self._config_ports = frozenset(int(p) for p in (DEFAULT_VXLAN_PORTS if ports is None else ports))
        self.geneve_port = int(sflow.get("geneve-port", DEFAULT_GENEVE_PORT))
        erspan = capture.get("erspan") or {}
        if self.cli_erspan:
            erspan_on, address = True, self.cli_erspan
        else:
            erspan_on, address = bool(erspan.get("enable", False)), str(erspan.get("address", "0.0.0.0"))
        self._ports_changed()
        self._apply_interfaces(wanted)
        self._apply_erspan(erspan_on, address)

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
        expression = control_filter(ports, self.geneve_port)
        if ports == self.vxlan_ports and expression == self.expression and self.instructions:
            return
        try:
            instructions = len(compile_filter(expression, self.snaplen))
        except FilterError as exc:  # cannot happen with valid ports; keep the filter that works
            log.error("capture: the filter for VXLAN ports %s does not compile: %s", sorted(ports), exc)
            return
        self.vxlan_ports, self.expression, self.instructions = ports, expression, instructions
        log.info("capture: control packets plain, in VXLAN on UDP ports %s, Geneve on %d, IP-in-IP "
                 "(filter of %d instructions)", sorted(ports), self.geneve_port, instructions)
        for capture in self.interfaces.values():
            if capture.capturing:
                try:
                    capture.set_filter(expression, instructions)
                except Exception as exc:  # noqa: BLE001 -- reopen on the next retry
                    capture.error = f"cannot set the filter on {capture.name}: {exc}"
                    self._unwatch(capture)
                    capture.close()

    def _apply_interfaces(self, wanted: dict[str, tuple[str, bool]]) -> None:
        for name in list(self.interfaces):
            if name not in wanted:
                capture = self.interfaces.pop(name)
                self._unwatch(capture)
                capture.close()
                log.info("capture: stopped on %s", name)
        for name, (source, enable) in wanted.items():
            known = self.interfaces.get(name)
            if known is None:
                capture = self.interfaces[name] = InterfaceCapture(name, source, self.snaplen, self.buffer_bytes)
            else:
                capture = known
            capture.source = source
            capture.enabled = enable
            if not enable and capture.capturing:
                self._unwatch(capture)
                capture.close()
            elif enable and not capture.capturing:
                self._open(capture)

    def _apply_erspan(self, enable: bool, address: str) -> None:
        receiver = self.receiver
        if receiver is not None and (not enable or receiver.address != address):
            self._unwatch(receiver)
            receiver.close()
            if receiver.address != address:
                self.receiver = receiver = None
        self.erspan_enabled = enable
        if enable:
            if receiver is None:
                receiver = self.receiver = ErspanReceiver(address)
            if not receiver.receiving:
                self._open(receiver)

    # ------------------------------------------------------------------ reading
    def _open(self, source: InterfaceCapture | ErspanReceiver) -> bool:
        try:
            if isinstance(source, InterfaceCapture):
                source.open(self.expression, self.instructions)
                log.info("capture: control packets on %s (kernel filter of %d instructions)", source.name,
                         self.instructions)
            else:
                source.open()
                log.info("capture: ERSPAN/GRE receiver on %s", source.address)
        except CaptureError as exc:
            log.warning("%s (retried every %.0f s)", exc, self.retry_interval)
            return False
        fd = source.fileno()
        self._readers[fd] = source
        if self._loop is None:
            raise RuntimeError("CaptureSource.start() first")
        self._loop.add_reader(fd, self._readable, source)
        return True

    def _unwatch(self, source: InterfaceCapture | ErspanReceiver) -> None:
        for fd, watched in list(self._readers.items()):
            if watched is source:
                del self._readers[fd]
                if self._loop is not None:
                    self._loop.remove_reader(fd)

    def _readable(self, source: InterfaceCapture | ErspanReceiver) -> None:
        sink = self.sink
        batch: list = []
        append = batch.append if sink is not None and sink.accepting else None
        try:
            # at most 8 x 1,024 frames a wake-up (~35 ms of the loop); the descriptor stays readable for the rest
            if isinstance(source, InterfaceCapture):
                source.read(self.vxlan_ports, self.geneve_port, append, max_batches=8)
            else:
                source.read(self.vxlan_ports, self.geneve_port, append)
        except CaptureError as exc:
            log.warning("%s", exc)
            self._unwatch(source)
        except Exception:  # anything unexpected: count it, never let it out of the event loop
            self._errors += 1
            if self._errors == 1:
                log.exception("capture: a batch could not be processed")
        if batch:
            try:
                sink.observe_control(batch)  # type: ignore[union-attr]
            except Exception:
                self._errors += 1
                if self._errors == 1:
                    log.exception("capture: the connection table refused a batch")

    # ------------------------------------------------------------------ publishing
    async def _publisher(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            try:
                now = time.time()
                if now >= self._next_retry:
                    self._next_retry = now + self.retry_interval
                    self._retry()
                self.publish()
            except Exception:
                log.exception("capture publishing failed")

    def _retry(self) -> None:
        for capture in self.interfaces.values():
            if capture.enabled and not capture.capturing:
                self._open(capture)
        if self.erspan_enabled and self.receiver is not None and not self.receiver.receiving:
            self._open(self.receiver)

    def publish(self) -> None:
        """Write the counters and statuses (only changed leaves reach the feed)."""
        state = self.state
        with state.batch():
            for name in self._published - set(self.interfaces):
                state.delete(INTERFACE_PATH, (name,))
            for name, capture in self.interfaces.items():
                capture.update_kernel_stats()
                state.upsert(INTERFACE_PATH, (name,), capture.leaves())
            self._published = set(self.interfaces)
            receiver = self.receiver
            if receiver is not None:
                state.upsert(ERSPAN_PATH, (), receiver.leaves(self.erspan_enabled))
                self._erspan_published = True
                for key, session in receiver.sessions.items():
                    if session.changed:
                        session.changed = False
                        row = {"erspan-type": session.erspan_type, "packets": session.packets,
                               "lost": session.lost, "hardware-timestamps": session.hardware,
                               "last-seen": format_rfc3339(session.last_seen)}
                        if session.last_sequence is not None:
                            row["last-sequence"] = session.last_sequence
                        state.upsert(SESSION_PATH, key, row)
                        self._published_sessions.add(key)
            elif self._erspan_published:
                for key in self._published_sessions:
                    state.delete(SESSION_PATH, key)
                self._published_sessions.clear()
                state.upsert(ERSPAN_PATH, (), {"status": "disabled"})
                self._erspan_published = False
