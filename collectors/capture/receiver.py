"""The ERSPAN / GRE receiver: mirror sessions a switch sends to the agent's address over GRE.

GRE (IP protocol 47) has no port, so the receiver is a raw socket for
protocol 47 bound to the configured local address: the kernel hands it every
GRE packet sent there (for IPv4 with the IP header, for IPv6 without),
stamped with the kernel's receive time (SO_TIMESTAMPNS).  Each packet is
taken apart by :func:`collectors.capture.erspan.parse_gre`; the mirrored
frame by :func:`collectors.capture.frames.decode_frame`.  A packet's time is
the session's hardware timestamp (ERSPAN type III with a known granularity)
or else the kernel's.  The exporter of its events is the session:
``"<source> session <id>"`` (plain GRE without a key: ``"<source>"``).

Opening the socket needs CAP_NET_RAW; without it the receiver reports the
reason in its state and the agent serves everything else.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import AbstractSet, Callable

from core.ports.flows import ControlPacket

from .erspan import MALFORMED_GRE, parse_gre
from .frames import MALFORMED, decode_frame
from .interface import CaptureError
from .sessions import Session

__all__ = ["ErspanReceiver", "MAX_SESSIONS"]

SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; the socket module does not name it
SO_RCVBUFFORCE = 33
_TIMESPEC = struct.Struct("=qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
MAX_SESSIONS = 1024
_new = tuple.__new__


class ErspanReceiver:
    """``open()``, ``fileno()``, ``read(...)``, ``close()``; counters and ``sessions``."""

    def __init__(self, address: str = "0.0.0.0", receive_buffer: int = 32 << 20) -> None:
        self.address = address or "0.0.0.0"
        self.receive_buffer = receive_buffer
        self._sock: socket.socket | None = None
        self._ipv4 = True
        self.error: str | None = None
        self.received = 0
        self.not_mirror = 0
        self.filtered = 0
        self.malformed = 0
        self.events = 0
        self.sessions: dict[tuple[str, int], Session] = {}
        self.untracked = 0  # packets of sessions beyond MAX_SESSIONS

    @property
    def receiving(self) -> bool:
        return self._sock is not None

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.sessions.values())

    def open(self) -> None:
        """Open and bind the GRE socket; CaptureError with the reason otherwise."""
        self.close()
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_GRE)
        except PermissionError as exc:
            self.error = (f"cannot receive GRE on {self.address}: {exc.strerror or exc} "
                          "(a raw socket needs CAP_NET_RAW)")
            raise CaptureError(self.error) from None
        except OSError as exc:
            self.error = f"cannot receive GRE on {self.address}: {exc.strerror or exc}"
            raise CaptureError(self.error) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.bind((self.address, 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self.error = f"cannot receive GRE on {self.address}: {exc.strerror or exc}"
            raise CaptureError(self.error) from None
        self._sock = sock
        self._ipv4 = family == socket.AF_INET
        self.error = None

    def fileno(self) -> int:
        if self._sock is None:
            raise CaptureError(f"the GRE receiver on {self.address} is not open")
        return self._sock.fileno()

    def read(self, vxlan_ports: AbstractSet[int], geneve_port: int,
             append: Callable[[ControlPacket], None] | None, budget: int = 512) -> bool:
        """Receive up to ``budget`` packets; True when more may be waiting."""
        if self._sock is None:
            raise CaptureError(f"the GRE receiver on {self.address} is not open")
        recvmsg = self._sock.recvmsg
        for _ in range(budget):
            try:
                data, ancillary, _flags, peer = recvmsg(65535, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return False
            t = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    t = sec + nsec * 1e-9
            self.packet(data, peer[0], t if t is not None else time.time(), vxlan_ports, geneve_port, append)
        return True

    def packet(self, data: bytes, source: str, arrival: float, vxlan_ports: AbstractSet[int], geneve_port: int,
               append: Callable[[ControlPacket], None] | None) -> None:
        """Account one GRE packet as received (IPv4: with its IP header); never raises on its content."""
        self.received += 1
        off = 0
        if self._ipv4:
            if not data or data[0] >> 4 != 4:
                self.malformed += 1
                return
            off = (data[0] & 0x0F) << 2
        gre = parse_gre(data, off)
        if type(gre) is int:
            if gre == MALFORMED_GRE:
                self.malformed += 1
            else:
                self.not_mirror += 1
            return
        key = (source, gre.session)  # type: ignore[union-attr]
        session = self.sessions.get(key)
        if session is None and len(self.sessions) < MAX_SESSIONS:
            session = self.sessions[key] = Session(source, gre.session, gre.erspan)  # type: ignore[union-attr]
        t = arrival
        if session is not None:
            session.packets += 1
            session.last_seen = arrival
            session.changed = True
            if gre.sequence is not None:  # type: ignore[union-attr]
                session.sequence(gre.sequence)  # type: ignore[union-attr]
            if gre.timestamp is not None and gre.unit is not None:  # type: ignore[union-attr]
                t = session.hardware_time(gre.timestamp, gre.unit, arrival)  # type: ignore[union-attr]
        else:
            self.untracked += 1
        result = decode_frame(data[gre.offset:], vxlan_ports, geneve_port, gre.kind)  # type: ignore[union-attr]
        if type(result) is tuple:
            self.events += 1
            if append is not None:
                exporter = f"{source} session {gre.session}" if gre.erspan >= 2 or gre.session else source  # type: ignore[union-attr]
                append(_new(ControlPacket, (t, exporter, len(data) - gre.offset) + result))  # type: ignore[union-attr]
        elif result == MALFORMED:
            self.malformed += 1
        else:
            self.filtered += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def leaves(self, enabled: bool) -> dict:
        """The YANG capture-state/erspan leaves."""
        status = "disabled" if not enabled else ("receiving" if self._sock is not None else "error")
        row = {"status": status, "address": self.address, "received": self.received,
               "not-mirror": self.not_mirror, "filtered": self.filtered, "malformed": self.malformed,
               "events": self.events, "lost": self.lost}
        if self.error and enabled and self._sock is None:
            row["error"] = self.error
        return row
