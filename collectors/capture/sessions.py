"""Per mirror session: sequence-number loss and the hardware clock, as sFlow's statistics do per exporter.

A session is (source address, session id).  Its GRE sequence numbers
(ERSPAN II and III always carry one) count what was lost between the switch
and the agent, modulo 2^32:

=========================================  ==========================================
next number, relative to the last          meaning
=========================================  ==========================================
last + 1                                   in order
last + k, 1 < k <= 2^20                    k - 1 packets lost
last - k, k < 1024                         late (reordered) or duplicate: a late one gives back one lost
anything else                              the session restarted: counted, not as loss
=========================================  ==========================================

ERSPAN type III carries a 32-bit hardware timestamp whose origin is the
switch's own and whose tick is its granularity (100 us, 100 ns or 1 ns).
Only differences between two packets matter for a handshake, so the
session anchors the counter to the arrival time of its first packet and
advances from packet to packet by the counter's (wrapping) steps; a step that
disagrees with the arrival clock by more than ``resync`` seconds (the
counter wrapped more than once while the session was quiet, or the switch
restarted) re-anchors.
"""
from __future__ import annotations

__all__ = ["Session"]

_WRAP = 1 << 32
_MAX_GAP = 1 << 20
_MAX_LATE = 1024


class Session:
    """Counters and clock of one mirror session."""

    __slots__ = ("source", "session_id", "erspan_type", "packets", "lost", "restarts", "last_sequence",
                 "last_seen", "anchor_ticks", "anchor_time", "hardware", "changed")

    def __init__(self, source: str, session_id: int, erspan_type: int) -> None:
        self.source = source
        self.session_id = session_id
        self.erspan_type = erspan_type
        self.packets = 0
        self.lost = 0
        self.restarts = 0
        self.last_sequence: int | None = None
        self.last_seen = 0.0
        self.anchor_ticks = 0
        self.anchor_time: float | None = None
        self.hardware = False
        self.changed = True

    def sequence(self, number: int) -> int:
        """Account one sequence number; returns the packets newly counted as lost (may be -1 for a late one)."""
        last = self.last_sequence
        if last is None:
            self.last_sequence = number
            return 0
        ahead = (number - last) % _WRAP
        if ahead == 1:
            self.last_sequence = number
            return 0
        if 1 < ahead <= _MAX_GAP:
            self.last_sequence = number
            self.lost += ahead - 1
            return ahead - 1
        behind = (last - number) % _WRAP
        if behind < _MAX_LATE:
            if behind and self.lost:
                self.lost -= 1  # a late packet: one we counted as lost arrived after all
                return -1
            return 0
        self.restarts += 1
        self.last_sequence = number
        return 0

    def hardware_time(self, ticks: int, unit: float, arrival: float, resync: float = 1.0) -> float:
        """The packet's time from its hardware timestamp (epoch seconds on the arrival clock's scale)."""
        self.hardware = True
        anchor = self.anchor_time
        if anchor is not None:
            step = (ticks - self.anchor_ticks) % _WRAP
            if step >= _WRAP // 2:
                step -= _WRAP  # a packet stamped before the anchor (reordered)
            t = anchor + step * unit
            if abs(t - arrival) <= resync:
                if step > 0:  # follow the counter, so it may wrap any number of times while packets flow
                    self.anchor_ticks = ticks
                    self.anchor_time = t
                return t
        self.anchor_ticks = ticks
        self.anchor_time = arrival
        return arrival
