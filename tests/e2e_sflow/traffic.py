"""Real TCP traffic for the end-to-end test (run with ``ip netns exec``).

    python traffic.py server HOST:PORT [HOST:PORT ...]
        echo server on every address; prints "listening" when all are bound.
    python traffic.py client HOST PORT [--hold] [--bind ADDRESS:PORT]
        connects, sends 300 bytes, reads the echo, prints the local port
        ("port N"); without --hold it closes at once, with --hold it keeps
        talking (a few bytes every 0.2 s) until SIGTERM, then closes.

Standard library only, so the system interpreter can run it too.
"""
from __future__ import annotations

import signal
import socket
import sys
import threading
import time


def serve(addrs: list[str]) -> None:
    listeners = []
    for addr in addrs:
        host, _, port = addr.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(64)
        listeners.append(s)

    def echo(conn: socket.socket) -> None:
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept(s: socket.socket) -> None:
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in listeners:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("listening", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def client(host: str, port: int, hold: bool, bind: tuple[str, int] | None = None) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with socket.create_connection((host, port), timeout=10, source_address=bind) as s:
        s.sendall(b"x" * 300)
        got = 0
        while got < 300:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        print(f"port {s.getsockname()[1]}", flush=True)
        while hold and not stop.is_set():
            s.sendall(b"ping")
            s.recv(64)
            time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2:])
    else:
        rest = sys.argv[4:]
        bound = None
        if "--bind" in rest:
            address, _, local_port = rest[rest.index("--bind") + 1].rpartition(":")
            bound = (address, int(local_port))
        client(sys.argv[2], int(sys.argv[3]), "--hold" in rest, bound)
