"""Real TCP for the capture lab (run with ``ip netns exec``), standard library only.

    python traffic.py server HOST:PORT:MODE [...]     MODE echo | reset | bulk
        echo: echo what arrives; reset: read a little, then close with SO_LINGER 0 (a RST after the
        handshake); bulk: send 16 MB, then close.  Prints "listening".
    python traffic.py client HOST PORT COUNT [TIMEOUT]
        COUNT connections one after the other; each sends 300 bytes and reads until the server closes
        or has echoed them.  Prints one line per connection: "conn LOCALPORT RESULT" where RESULT is
        completed, refused, timeout or reset.
"""
from __future__ import annotations

import signal
import socket
import struct
import sys
import threading


def serve(specs: list[str]) -> None:
    def handle(conn: socket.socket, mode: str) -> None:
        with conn:
            try:
                if mode == "reset":
                    conn.recv(100)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if mode == "bulk":
                    conn.recv(300)
                    conn.sendall(b"b" * (16 << 20))
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass
                    return
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def accept(s: socket.socket, mode: str) -> None:
        while True:
            conn, _ = s.accept()
            threading.Thread(target=handle, args=(conn, mode), daemon=True).start()

    for spec in specs:
        host, port, mode = spec.rsplit(":", 2)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(128)
        threading.Thread(target=accept, args=(s, mode), daemon=True).start()
    print("listening", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def connect(host: str, port: int, timeout: float) -> tuple[int, str]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind(("", 0))
    local = s.getsockname()[1]
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        s.close()
        return local, "refused"
    except (socket.timeout, TimeoutError):
        s.close()
        return local, "timeout"
    try:
        s.sendall(b"x" * 300)
        got = 0
        while got < 300:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        return local, "completed"
    except ConnectionResetError:
        return local, "reset"
    finally:
        s.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2:])
    else:
        host, port, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
        for _ in range(count):
            local, result = connect(host, port, timeout)
            print(f"conn {local} {result}", flush=True)
