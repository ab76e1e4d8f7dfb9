"""Multi-process sFlow reception for rates one core cannot decode.

Each worker process binds the collector's UDP port with ``SO_REUSEPORT``
(the kernel spreads exporters over the sockets by source address, so one
exporter's datagrams stay in one worker), decodes every datagram and sends
the main process compact batches over a pipe:

    ("batch", stats, samples, interfaces)
        stats:   [(agent or None, sub_agent_id, sequence, uptime, n_samples, malformed), ...]
        samples: [core.ports.flows.FlowObservation, ...]   (only while tracking is on)
        interfaces: (counters, sightings) of collectors.sflow.interfaces, or None

A batch leaves every ``BATCH_SECONDS`` or ``BATCH_DATAGRAMS`` datagrams,
whichever comes first.  A worker drains its socket, then sleeps in
``select`` until datagrams (or a control message) arrive, and rests
``READ_PAUSE`` before reading so each wake-up reads several datagrams.  The main process keeps the statistics, the
connection tracker and every datastore write, so the workers share nothing.
Control messages go the other way: ``("config", vxlan_ports, geneve_port,
track)`` and ``("stop",)``.

Workers are fresh interpreters (``python -m collectors.sflow.workers``)
joined to the main process by a socketpair carrying
``multiprocessing.connection`` messages: forking a process that runs an
asyncio loop and gRPC threads is not safe, and multiprocessing's ``spawn``
re-imports the parent's ``__main__``, which an embedding program may not
allow.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

__all__ = ["WorkerPool", "bind_udp", "BATCH_SECONDS", "BATCH_DATAGRAMS", "RCVBUF_BYTES"]

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.05
BATCH_DATAGRAMS = 256
#: Rest after draining the socket, so the next wake-up reads a batch (seconds).
READ_PAUSE = 0.002
#: Receive buffer asked for (SO_RCVBUFFORCE as root, else SO_RCVBUF capped by net.core.rmem_max).
RCVBUF_BYTES = 32 * 1024 * 1024
#: Python's socket module does not export SO_RCVBUFFORCE; it is 33 on Linux.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)


def bind_udp(host: str, port: int, reuseport: bool = False, rcvbuf: int = RCVBUF_BYTES) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port) with a large receive buffer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            if _SO_RCVBUFFORCE is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # no CAP_NET_ADMIN: the kernel caps this at net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _worker_main(index: int, host: str, port: int, conn: Connection, vxlan_ports, geneve_port: int, track: bool,
                 read_pause: float = READ_PAUSE) -> None:
    """Body of one worker process.

    Drains the socket, then waits (select on the socket and the control
    connection) and, when datagrams are back, rests ``read_pause`` so that
    each wake-up finds a batch rather than one datagram.
    """
    from collectors.sflow.decoder import decode_datagram
    from collectors.sflow.interfaces import InterfaceTally
    from collectors.sflow.producer import observations_from_datagram

    sock = bind_udp(host, port, reuseport=True)
    conn.send(("ready", index, sock.getsockname()[1], os.getpid()))
    vxlan_ports = frozenset(vxlan_ports)
    stats: list = []
    samples: list = []
    tally = InterfaceTally()
    next_send = time.monotonic() + BATCH_SECONDS
    recv = sock.recv
    clock = time.time
    monotonic = time.monotonic
    parent = os.getppid()
    waitables = [sock, conn]
    while True:
        drained = False
        for _ in range(BATCH_DATAGRAMS):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                drained = True
                break
            t = clock()
            try:
                dg = decode_datagram(data, vxlan_ports, geneve_port)
                stats.append((dg.agent or None, dg.sub_agent_id, dg.sequence, dg.uptime, len(dg.samples),
                              dg.malformed is not None))
                if track:
                    samples += observations_from_datagram(dg, t)
                tally.add(dg, t)
            except Exception:  # the decoder never raises; this guards the extraction
                stats.append((None, 0, 0, 0, 0, True))
        now = monotonic()
        try:
            if stats and (len(stats) >= BATCH_DATAGRAMS or now >= next_send):
                conn.send(("batch", stats, samples, tally.take() if tally else None))
                stats, samples = [], []
                next_send = now + BATCH_SECONDS
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stop":
                    return
                if msg[0] == "config":
                    vxlan_ports, geneve_port, track = frozenset(msg[1]), msg[2], msg[3]
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            return  # the main process is gone
        if not drained:
            continue
        if os.getppid() != parent:
            return
        timeout = max(0.0, next_send - monotonic()) if stats else BATCH_SECONDS
        readable, _, _ = select.select(waitables, [], [], timeout)
        if sock in readable and read_pause > 0:
            time.sleep(read_pause)


class WorkerPool:
    """``workers`` processes receiving on one port; batches go to ``on_batch(stats, samples, interfaces)``.

    ``on_batch`` is called in the event loop thread.  A worker that dies
    after start-up is started again after ``respawn_delay`` seconds (its
    exporters' datagrams go to the other workers meanwhile: the kernel
    re-spreads the SO_REUSEPORT group); ``restarts`` counts them.
    """

    def __init__(self, host: str, port: int, workers: int, on_batch: Callable[..., None],
                 vxlan_ports=frozenset({4789, 8472}), geneve_port: int = 6081, track: bool = False,
                 respawn_delay: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.workers = workers
        self.on_batch = on_batch
        self.respawn_delay = respawn_delay
        self._config = (tuple(sorted(vxlan_ports)), geneve_port, track)
        self._procs: list[subprocess.Popen | None] = [None] * workers
        self._conns: list[Connection | None] = [None] * workers
        self._threads: list[threading.Thread] = []
        self._ready: dict[int, object] = {}  # index -> future resolved with the pid (or None)
        self._loop = None
        self._stopping = False
        self._tasks: set = set()
        self.pids: list[int] = [0] * workers
        self.restarts = 0

    def _spawn(self, index: int):
        """Start worker ``index``; returns the future of its pid."""
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        args = json.dumps({"index": index, "host": self.host, "port": self.port, "fd": theirs.fileno(),
                           "vxlan_ports": list(self._config[0]), "geneve_port": self._config[1],
                           "track": self._config[2]})
        try:
            proc = subprocess.Popen([sys.executable, "-m", "collectors.sflow.workers", args],
                                    pass_fds=[theirs.fileno()], env=env, cwd=root)
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._procs[index] = proc
        self._conns[index] = conn
        ready = self._loop.create_future()
        self._ready[index] = ready
        thread = threading.Thread(target=self._read, args=(index, conn, proc), name=f"sflow-pipe-{index}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return ready

    async def start(self, loop, timeout: float = 30.0) -> None:
        """Start the workers and wait until each has bound the port."""
        import asyncio

        self._loop = loop
        futures = [self._spawn(index) for index in range(self.workers)]
        done, pending = await asyncio.wait(futures, timeout=timeout)
        if pending:
            raise TimeoutError(f"sFlow workers did not start within {timeout}s")
        for index, future in enumerate(futures):
            if future.result() is None:
                raise RuntimeError("an sFlow worker exited during start-up (port in use?)")

    def _set_ready(self, index: int, pid: int | None) -> None:
        if pid:
            self.pids[index] = pid
        future = self._ready.get(index)
        if future is not None and not future.done():
            future.set_result(pid)

    def _read(self, index: int, conn: Connection, proc) -> None:
        """Pipe reader thread: hand each batch to the loop."""
        loop = self._loop
        try:
            while True:
                msg = conn.recv()
                if msg[0] == "batch":
                    loop.call_soon_threadsafe(self.on_batch, *msg[1:4])
                elif msg[0] == "ready":
                    loop.call_soon_threadsafe(self._set_ready, index, msg[3])
        except (EOFError, OSError):
            pass
        except RuntimeError:  # loop closed
            return
        if self._stopping:
            return
        try:
            loop.call_soon_threadsafe(self._worker_died, index, proc)
        except RuntimeError:
            pass

    def _worker_died(self, index: int, proc) -> None:
        future = self._ready.get(index)
        if future is not None and not future.done():
            future.set_result(None)  # died during start-up: start() reports it
            return
        if self._stopping or self._procs[index] is not proc:
            return
        log.error("sFlow worker %d (pid %s) exited with %s; restarting in %.1fs", index, proc.pid, proc.poll(),
                  self.respawn_delay)
        import asyncio

        async def respawn() -> None:
            await asyncio.sleep(self.respawn_delay)
            if self._stopping:
                return
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            self.restarts += 1
            pid = await self._spawn(index)
            if pid is None:
                log.error("sFlow worker %d could not be restarted", index)

        task = asyncio.ensure_future(respawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def configure(self, vxlan_ports, geneve_port: int, track: bool) -> None:
        """Send new decode settings to every worker."""
        config = (tuple(sorted(vxlan_ports)), geneve_port, track)
        if config == self._config:
            return
        self._config = config
        for conn in self._conns:
            if conn is None:
                continue
            try:
                conn.send(("config", *config))
            except OSError:
                pass

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the workers to stop; kill the ones that do not."""
        import asyncio

        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for conn in self._conns:
            if conn is None:
                continue
            try:
                conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            if proc is None:
                continue
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for thread in self._threads:
            thread.join(1.0)
        for conn in self._conns:
            if conn is not None:
                conn.close()
        self._procs = [None] * self.workers
        self._conns = [None] * self.workers
        self._threads.clear()


def _main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    conn = Connection(args["fd"])
    try:
        _worker_main(args["index"], args["host"], args["port"], conn, args["vxlan_ports"], args["geneve_port"],
                     args["track"])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
