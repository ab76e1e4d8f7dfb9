"""RFC 6242 message framing: base:1.0 end-of-message and base:1.1 chunks.

Hand-written rather than taken from a library: the server needs a framer
that (a) works on the raw byte callbacks asyncssh delivers, (b) never holds
more than `max_message` bytes of one message in memory however the client
misbehaves, and (c) can skip an over-long message and keep the session in
step.  ncclient's framer is client-side and blocking, asyncssh has none,
and the whole thing is ~100 lines.
"""
from __future__ import annotations

import re

EOM = b"]]>]]>"
MAX_CHUNK = 4294967295
_CHUNK_HEADER = re.compile(rb"\n#([1-9][0-9]{0,9})\n")
_END_OF_CHUNKS = b"\n##\n"


class FramingError(Exception):
    """The byte stream broke the framing rules: the session cannot continue."""


class Oversize:
    """Stands in for a message longer than the limit (its bytes were skipped)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"Oversize({self.size})"


class FrameDecoder:
    """Splits a byte stream into messages; `chunked` switches to base:1.1.

    `feed()` returns complete messages (bytes), or `Oversize` markers for
    messages longer than `max_message`, whose bytes are dropped as they
    arrive so memory stays bounded.
    """

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.chunked = False
        #: while True, feed() stops after the first message (the hello decides the framing)
        self.awaiting_hello = True
        self._buf = bytearray()
        # base:1.1 state
        self._msg = bytearray()
        self._chunk_left = 0
        self._skipping = False
        self._skipped = 0

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        """Add received bytes; returns the messages they completed."""
        self._buf += data
        out: list[bytes | Oversize] = []
        if self.chunked:
            self._feed_chunked(out)
        else:
            self._feed_eom(out)
        return out

    # -- base:1.0 ------------------------------------------------------------
    def _feed_eom(self, out: list) -> None:
        while True:
            idx = self._buf.find(EOM)
            if idx < 0:
                if len(self._buf) > self.max_message + len(EOM):
                    keep = len(EOM) - 1  # the delimiter may straddle the next read
                    self._skipped += len(self._buf) - keep
                    self._skipping = True
                    del self._buf[:-keep]
                return
            message = bytes(self._buf[:idx])
            del self._buf[: idx + len(EOM)]
            if self._skipping or len(message) > self.max_message:
                out.append(Oversize(self._skipped + len(message)))
                self._skipping, self._skipped = False, 0
            else:
                out.append(message)
            if self.awaiting_hello:  # framing may change after the hello
                return

    # -- base:1.1 ------------------------------------------------------------
    def _feed_chunked(self, out: list) -> None:
        buf = self._buf
        while buf:
            if self._chunk_left:
                take = min(self._chunk_left, len(buf))
                if self._skipping:
                    self._skipped += take
                else:
                    self._msg += buf[:take]
                del buf[:take]
                self._chunk_left -= take
                if not self._skipping and len(self._msg) > self.max_message:
                    self._skipping, self._skipped = True, len(self._msg)
                    self._msg = bytearray()
                continue
            if len(buf) < 4:
                if buf[:1] != b"\n":
                    raise FramingError("expected a chunk header")
                return
            if buf.startswith(_END_OF_CHUNKS):
                del buf[:4]
                if self._skipping:
                    out.append(Oversize(self._skipped))
                    self._skipping, self._skipped = False, 0
                elif not self._msg:
                    raise FramingError("end-of-chunks without any chunk")
                else:
                    out.append(bytes(self._msg))
                self._msg = bytearray()
                continue
            match = _CHUNK_HEADER.match(buf)
            if match is None:
                if len(buf) >= 13 or not re.fullmatch(rb"\n(#([1-9][0-9]{0,9})?)?", bytes(buf)):
                    raise FramingError("malformed chunk header")
                return
            size = int(match.group(1))
            if size > MAX_CHUNK:
                raise FramingError("chunk-size larger than 4294967295")
            del buf[: match.end()]
            self._chunk_left = size


def encode(message: bytes, chunked: bool) -> bytes:
    """Frame one outgoing message."""
    if chunked:
        return b"\n#%d\n%s\n##\n" % (len(message), message)
    return message + EOM
