"""Benchmark: NETCONF RPC round trips per second on one session, beside a bare asyncssh ceiling.

Against a real `kubefabric run` process (NETCONF on loopback, one connection in the config):

* ``ncclient``   what ncclient users see: get-config, and edit-config (candidate) + commit pairs, one
                 at a time, with ``ncclient.transport.session.TICK`` lowered from 100 ms to 1 ms;
* ``pipelined``  the server's own rate: an asyncssh client writes N RPCs back to back (base:1.1 chunks)
                 and waits for the N replies (get-config; edit-config on running, each a real change
                 through the datastore's one write path: validated, persisted, published);
* ``ceiling``    in the same run, a bare asyncssh NETCONF loop in its own process that answers every
                 framed message with a fixed <ok/> reply: SSH + framing and nothing else.

Each figure is the best of --repeat runs (the machine is shared; the best run is the one least
disturbed by other processes).

Usage: python benchmarks/netconf_rpc.py [--rpcs 2000] [--seconds 1] [--repeat 3]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncssh  # noqa: E402

from tests.agentproc import USERS, AgentProcess, free_port  # noqa: E402

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
K8S = "urn:kubefabric:yang:kubefabric-k8s"
CONN = "urn:kubefabric:yang:kubefabric-connection"
HELLO = (f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability>'
         "<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>]]>]]>").encode()
GET_CONFIG = "<get-config><source><running/></source></get-config>"
PASSWORD = USERS["admin"][0]


def chunk(message: str) -> bytes:
    data = message.encode()
    return b"\n#%d\n%s\n##\n" % (len(data), data)


def rpc(i: int, body: str) -> bytes:
    return chunk(f'<rpc xmlns="{NC}" message-id="{i}">{body}</rpc>')


def edit_running(i: int) -> str:
    return (f'<edit-config><target><running/></target><config><connection-stats-settings xmlns="{CONN}">'
            f"<idle-timeout>{100 + i % 1000}</idle-timeout></connection-stats-settings></config></edit-config>")


# -- pipelined asyncssh client ----------------------------------------------------------------------
class _Counter(asyncssh.SSHClientSession):
    """Counts base:1.1 end-of-chunks markers (one per reply) after the server's hello."""

    def __init__(self) -> None:
        self.buf = b""
        self.hello = asyncio.get_event_loop().create_future()
        self.replies = 0
        self.errors = 0
        self.target = 0
        self.done: asyncio.Future | None = None

    def data_received(self, data: bytes, datatype) -> None:
        if not self.hello.done():
            self.buf += data
            if b"]]>]]>" in self.buf:
                self.buf = self.buf.split(b"]]>]]>", 1)[1]
                self.hello.set_result(True)
            return
        self.errors += data.count(b"<rpc-error")
        self.buf = self.buf[-3:] + data
        self.replies += self.buf.count(b"\n##\n")
        if self.done is not None and self.replies >= self.target and not self.done.done():
            self.done.set_result(True)


async def pipelined(port: int, n: int, make_body) -> tuple[float, int]:
    async with asyncssh.connect("127.0.0.1", port, username="admin", password=PASSWORD, known_hosts=None) as conn:
        chan, session = await conn.create_session(_Counter, subsystem="netconf", encoding=None)
        await session.hello
        chan.write(HELLO)
        # warm up (first RPC builds caches), then measure
        session.target, session.done = 1, asyncio.get_running_loop().create_future()
        chan.write(rpc(0, make_body(0)))
        await session.done
        session.replies = 0
        session.target, session.done = n, asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        chan.write(b"".join(rpc(i + 1, make_body(i + 1)) for i in range(n)))
        await asyncio.wait_for(session.done, 300)
        elapsed = time.perf_counter() - start
        chan.close()
        return n / elapsed, session.errors


# -- the ceiling: a bare asyncssh NETCONF loop with a fixed reply -----------------------------------------
class _BareSession(asyncssh.SSHServerSession):
    REPLY = chunk(f'<rpc-reply xmlns="{NC}" message-id="1"><ok/></rpc-reply>')

    def connection_made(self, chan) -> None:
        self.chan = chan
        self.hello_seen = False
        self.tail = b""

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "netconf"

    def session_started(self) -> None:
        self.chan.write(HELLO)

    def data_received(self, data: bytes, datatype) -> None:
        if not self.hello_seen:
            if b"]]>]]>" not in data:
                return
            self.hello_seen = True
            data = data.split(b"]]>]]>", 1)[1]
        buf = self.tail + data
        count = buf.count(b"\n##\n")
        self.tail = buf[-3:]
        if count:
            self.chan.write(self.REPLY * count)


class _BareServer(asyncssh.SSHServer):
    def connection_made(self, conn) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return password == PASSWORD

    def session_requested(self):
        return self.conn.create_server_channel(encoding=None), _BareSession()


def _run_bare(port: int) -> None:
    async def main():
        key = asyncssh.generate_private_key("ssh-ed25519")
        await asyncssh.create_server(_BareServer, "127.0.0.1", port, server_host_keys=[key])
        await asyncio.Event().wait()

    asyncio.run(main())


# -- ncclient -------------------------------------------------------------------------------------------------
def ncclient_rates(port: int, seconds: float) -> dict[str, float]:
    import ncclient.transport.session as nc_session
    from ncclient import manager

    nc_session.TICK = 0.001
    out = {}
    with manager.connect(host="127.0.0.1", port=port, username="admin", password=PASSWORD, hostkey_verify=False,
                         look_for_keys=False, allow_agent=False) as m:
        m.get_config("running")
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            m.get_config("running")
            n += 1
        out["get-config"] = n / (time.perf_counter() - start)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            m.edit_config(target="candidate", config=f'<config><connection-stats-settings xmlns="{CONN}">'
                          f"<idle-timeout>{200 + n % 1000}</idle-timeout></connection-stats-settings></config>")
            m.commit()
            n += 1
        out["edit-config+commit"] = n / (time.perf_counter() - start)
    return out


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rpcs", type=int, default=2000, help="RPCs per pipelined run")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per ncclient measurement")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is printed")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        nc_port = free_port()
        agent = AgentProcess(Path(tmp), extra_args=["--netconf-addr", f"127.0.0.1:{nc_port}", "--log-level", "info"])
        agent.start()
        ctx = multiprocessing.get_context("spawn")
        bare_port = free_port()
        bare = ctx.Process(target=_run_bare, args=(bare_port,), daemon=True)
        bare.start()
        try:
            _wait_port(bare_port)
            from ncclient import manager
            with manager.connect(host="127.0.0.1", port=nc_port, username="admin", password=PASSWORD,
                                 hostkey_verify=False, look_for_keys=False, allow_agent=False) as m:
                m.edit_config(target="running", config=f'<config><k8s xmlns="{K8S}"><connection><cluster-name>bench'
                              "</cluster-name><kube-config>/etc/kubefabric/bench.conf</kube-config></connection></k8s></config>")
            print(f"NETCONF RPC round trips on one session ({socket.gethostname()}, loopback, agent in its own process)")
            runs = [ncclient_rates(nc_port, args.seconds) for _ in range(args.repeat)]
            nc = {k: max(r[k] for r in runs) for k in runs[0]}
            print(f"  ncclient (TICK=1 ms)   get-config          {nc['get-config']:9.0f} /s")
            print(f"  ncclient (TICK=1 ms)   edit-config+commit  {nc['edit-config+commit']:9.0f} /s")

            def best(port: int, n: int, make_body) -> tuple[float, int]:
                results = [asyncio.run(pipelined(port, n, make_body)) for _ in range(args.repeat)]
                return max(r[0] for r in results), sum(r[1] for r in results)

            rate, errors = best(nc_port, args.rpcs, lambda i: GET_CONFIG)
            print(f"  pipelined (server)     get-config          {rate:9.0f} /s   ({args.rpcs} RPCs, {errors} errors)")
            edits = max(200, args.rpcs // 4)
            rate, errors = best(nc_port, edits, edit_running)
            print(f"  pipelined (server)     edit-config running {rate:9.0f} /s   ({edits} RPCs, {errors} errors)")
            ceiling_n = args.rpcs * 10
            rate, _ = best(bare_port, ceiling_n, lambda i: GET_CONFIG)
            print(f"  ceiling (bare asyncssh fixed reply)         {rate:9.0f} /s   ({ceiling_n} RPCs)")
            print(f"  (best of {args.repeat} runs each)")
        finally:
            bare.terminate()
            bare.join(5)
            agent.stop()


if __name__ == "__main__":
    main()
