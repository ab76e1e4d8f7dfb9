"""One capture interface: a libpcap handle with the control-packet kernel filter, read in batches.

libpcap (through pcapy-ng, which ships it) opens an AF_PACKET socket with a
TPACKET_V3 memory-mapped ring of ``buffer_bytes`` (32 MiB: about 130,000
mirrored control frames at the 256-byte snap length, a burst of over a
second at 100,000 packets/s), compiles the filter expression
(:mod:`collectors.capture.bpf`) and attaches it to the socket, and stamps
every frame with the kernel's receive time.  The agent reads the ring from
the event loop: the socket's descriptor is non-blocking and becomes readable
when the kernel retires a ring block (full, or after ``timeout_ms``);
``next_batch`` hands over up to 1,024 frames in one call.

Counters: ``received`` (frames read), ``kernel_drops`` (frames the kernel
dropped for want of ring space, libpcap's ``ps_drop`` + ``ps_ifdrop`` from
PACKET_STATISTICS), ``filtered`` (read, but not a control packet),
``malformed``, ``events`` (control packets handed on).
"""
from __future__ import annotations

import struct
import time
from typing import AbstractSet, Any, Callable

from core.ports.flows import ControlPacket

from .frames import MALFORMED, decode_frame

__all__ = ["CaptureError", "InterfaceCapture"]

_META = struct.Struct("=IIII").iter_unpack  # next_batch: (seconds, microseconds, offset, captured length)
_new = tuple.__new__
_BATCH = 1024


class CaptureError(Exception):
    """The interface cannot be captured; the message is for the operator (it goes into the YANG state)."""


#: pcap_activate() results (pcap/pcap.h); pcapy-ng returns them instead of raising
_ACTIVATE_ERRORS = {
    -1: "libpcap could not open the interface",
    -5: "No such device exists",
    -8: "You don't have permission to capture on that device (socket: Operation not permitted)",
    -9: "The interface is not up",
    -11: "You don't have permission to capture in promiscuous mode",
}


def _explain(exc: Exception, name: str) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "ermission" in text or "not permitted" in text:
        return f"cannot capture on {name}: {text} (capturing needs CAP_NET_RAW)"
    return f"cannot capture on {name}: {text}"


class InterfaceCapture:
    """``open(expression)``, ``fileno()``, ``read(...)``, ``update_kernel_stats()``, ``close()``."""

    def __init__(self, name: str, source: str = "config", snaplen: int = 256, buffer_bytes: int = 32 << 20,
                 timeout_ms: int = 10) -> None:
        self.name = name
        self.source = source
        self.snaplen = snaplen
        self.buffer_bytes = buffer_bytes
        self.timeout_ms = timeout_ms
        self._cap: Any = None  # the pcapy handle while capturing
        self.enabled = True
        self.error: str | None = None
        self.instructions = 0
        self.received = 0
        self.filtered = 0
        self.malformed = 0
        self.events = 0
        self.kernel_drops = 0
        self._drops_before = 0  # drops of earlier handles (the interface was reopened)
        self.last_seen = 0.0

    @property
    def capturing(self) -> bool:
        return self._cap is not None

    def open(self, expression: str, instructions: int = 0) -> None:
        """Open the handle and attach the filter; CaptureError with the reason otherwise."""
        import pcapy

        self.close()
        try:
            cap = pcapy.create(self.name)
            cap.set_snaplen(self.snaplen)
            cap.set_promisc(True)  # a mirror port delivers frames addressed to other stations
            cap.set_timeout(self.timeout_ms)
            cap.set_buffer_size(self.buffer_bytes)
            status = cap.activate()
            if isinstance(status, int) and status < 0:  # pcapy-ng returns pcap_activate's error codes
                raise pcapy.PcapError(_ACTIVATE_ERRORS.get(status, f"pcap_activate failed ({status})"))
            if cap.datalink() != pcapy.DLT_EN10MB:
                raise CaptureError(f"cannot capture on {self.name}: not an Ethernet interface "
                                   f"(link type {cap.datalink()})")
            cap.setdirection(pcapy.PCAP_D_IN)  # what the switch sends to this port (on lo: each packet once)
            cap.setfilter(expression)
            cap.setnonblock(1)
        except pcapy.PcapError as exc:
            self.error = _explain(exc, self.name)
            raise CaptureError(self.error) from None
        except CaptureError as exc:
            self.error = str(exc)
            raise
        self._cap = cap
        self.error = None
        self.instructions = instructions

    def set_filter(self, expression: str, instructions: int = 0) -> None:
        """Replace the kernel filter (the tunnel ports changed); the kernel swaps it atomically."""
        if self._cap is not None:
            self._cap.setfilter(expression)
            self.instructions = instructions

    def fileno(self) -> int:
        return self._cap.getfd()

    def read(self, vxlan_ports: AbstractSet[int], geneve_port: int,
             append: Callable[[ControlPacket], None] | None, max_batches: int = 64) -> bool:
        """Read what the ring holds (up to ``max_batches`` x 1,024 frames); True when more may be waiting.

        Each control packet becomes a ``ControlPacket`` passed to ``append``
        (None: count only).  Raises CaptureError when the interface went away.
        """
        import pcapy

        cap = self._cap
        name = self.name
        received = filtered = malformed = events = 0
        t = 0.0
        try:
            for _ in range(max_batches):
                packets, meta = cap.next_batch(_BATCH)
                if not meta:
                    return False
                for sec, usec, off, caplen in _META(meta):
                    result = decode_frame(packets[off:off + caplen], vxlan_ports, geneve_port)
                    if type(result) is tuple:
                        events += 1
                        if append is not None:
                            t = sec + usec * 1e-6
                            append(_new(ControlPacket, (t, name, caplen) + result))
                    elif result == MALFORMED:
                        malformed += 1
                    else:
                        filtered += 1
                received += len(meta) >> 4
            return True
        except pcapy.PcapError as exc:
            self.error = _explain(exc, name)
            self.close()
            raise CaptureError(self.error) from None
        finally:
            self.received += received
            self.filtered += filtered
            self.malformed += malformed
            self.events += events
            if received:
                self.last_seen = t or time.time()

    def update_kernel_stats(self) -> None:
        """Read the kernel's drop counters (cumulative for this handle)."""
        cap = self._cap
        if cap is None:
            return
        try:
            _, drops, if_drops = cap.stats()
        except Exception:  # noqa: BLE001 -- the handle is going away; the next read says why
            return
        self.kernel_drops = self._drops_before + drops + if_drops

    def close(self) -> None:
        cap = self._cap
        if cap is not None:
            self.update_kernel_stats()
            self._drops_before = self.kernel_drops
            self._cap = None
            try:
                cap.close()
            except Exception:  # noqa: BLE001
                pass

    def leaves(self) -> dict:
        """The YANG capture-state/interface leaves."""
        from core.times import format_rfc3339

        row = {"source": self.source,
               "status": "disabled" if not self.enabled else ("capturing" if self._cap is not None else "error"),
               "filter-instructions": self.instructions, "received": self.received,
               "kernel-drops": self.kernel_drops, "filtered": self.filtered, "malformed": self.malformed,
               "events": self.events}
        if self.error and self._cap is None and self.enabled:
            row["error"] = self.error
        if self.last_seen:
            row["last-seen"] = format_rfc3339(self.last_seen)
        return row
