"""A delaying forwarder between two interfaces (the lab's slow cable), standard library only.

    python relay.py DEV_A DEV_B DELAY_SECONDS

Every frame received on one interface is sent out of the other DELAY
seconds later, in order.  The kernel here has no netem, so this stands in
for it: it makes the handshake latency the switch sees non-trivial.  The
sockets use PACKET_VNET_HDR so checksum-offload and segmentation metadata
travel with each frame (a veth hands over TCP packets with their checksum
still to be completed).  Prints "relaying" once both sockets are bound; runs
until SIGTERM.
"""
from __future__ import annotations

import collections
import select
import signal
import socket
import sys
import time

PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003


def open_dev(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(263, PACKET_VNET_HDR, 1)  # SOL_PACKET
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((name, ETH_P_ALL))
    s.setblocking(False)
    return s


def main(a: str, b: str, delay: float) -> None:
    socks = {open_dev(a): None, open_dev(b): None}
    first, second = list(socks)
    other = {first: second, second: first}
    queue: collections.deque = collections.deque()
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print("relaying", flush=True)
    while running[0]:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        try:
            readable, _, _ = select.select(list(socks), [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for sock in readable:
            while True:
                try:
                    data, address = sock.recvfrom(70000)
                except (BlockingIOError, InterruptedError):
                    break
                if address[2] == PACKET_OUTGOING:
                    continue  # our own transmissions
                queue.append((now + delay, other[sock], data))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, out, data = queue.popleft()
            try:
                out.send(data)
            except OSError:
                pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
