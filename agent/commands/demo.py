"""`kubefabric demo`: a three-node fabric on loopback, ready to explore (what `make demo` runs).

    kubefabric demo [--duration SECONDS] [--base-port N] [--workdir DIR]

Starts a three-member etcd, three `kubefabric run` agents (leaf1..leaf3), a
simulated Kubernetes cluster (Flannel VXLAN, churning deployments, a
ClusterIP and a NodePort service) and a simulated switch exporting sFlow
to leaf1; configures the k8s connection through gNMI Set; prints a banner
with a generated admin password and the commands to try.  Ctrl-C (SIGINT)
or SIGTERM stops everything; nothing is left behind (processes, and the
work directory unless --workdir was given).  Binds 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from core.tasks import wait_event

STATUS_INTERVAL = 15.0


def add_parser(subparsers) -> None:
    """Register `demo` and its flags."""
    from agent.demo.plan import DEFAULT_BASE_PORT

    p = subparsers.add_parser(
        "demo", help="run a three-node demo fabric on loopback (simulated cluster and switch)",
        description="Three agents, a three-member etcd, a simulated Kubernetes cluster and an sFlow-exporting "
                    "simulated switch, all on 127.0.0.1. Ctrl-C stops everything.",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop by itself after this many seconds of running (scripted runs)")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, metavar="N",
                   help=f"first of the 40 ports used (default {DEFAULT_BASE_PORT}; 0 = any free ports)")
    p.add_argument("--workdir", type=Path, metavar="DIR",
                   help="keep logs, data and demo.json here (default: a temporary directory removed at exit)")
    p.add_argument("--pods", type=int, default=24, help="pods in the simulated cluster (default 24)")
    p.add_argument("--churn", type=float, default=0.2, metavar="PODS_PER_SECOND",
                   help="pods replaced per second in the simulated cluster (default 0.2; 0 = none)")
    p.set_defaults(func=run)


def _say(text: str) -> None:
    print(text, flush=True)


def run(args) -> int:
    """Run the demo until Ctrl-C, SIGTERM or --duration; 0 on a clean stop."""
    from agent.demo.plan import PortPlan, available_parts

    if args.base_port and not 1024 <= args.base_port <= 65535 - 40:
        print(f"kubefabric demo: --base-port must be 1024..{65535 - 40} (or 0)", file=sys.stderr)
        return 2
    ports = PortPlan.free() if args.base_port == 0 else PortPlan.from_base(args.base_port)
    busy = ports.busy()
    if busy:
        print(f"kubefabric demo: ports already in use on 127.0.0.1: {', '.join(map(str, busy[:8]))}"
              f"{' ...' if len(busy) > 8 else ''}; choose another --base-port (or 0 for any free ports)",
              file=sys.stderr)
        return 1
    keep = args.workdir is not None
    workdir = args.workdir.resolve() if keep else Path(tempfile.mkdtemp(prefix="kubefabric-demo-"))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(args, ports, available_parts(), workdir, keep))
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _main(args, ports, parts, workdir: Path, keep: bool) -> int:
    from agent.demo.banner import banner
    from agent.demo.fabric import DemoError, DemoFabric

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    demo = DemoFabric(workdir, ports, parts, pods=args.pods, churn=args.churn, out=_say)
    code = 0
    starting = asyncio.create_task(demo.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            _say(f"{received[0] if received else 'stop'} received while starting: stopping")
            try:
                await starting
            except (asyncio.CancelledError, Exception):
                pass
            return 130 if received and received[0] == "SIGINT" else 0
        try:
            starting.result()
        except DemoError as exc:
            print(f"kubefabric demo: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:
            print(f"kubefabric demo: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
            print(f"kubefabric demo: logs in {workdir}" + ("" if keep else " (removed at exit: use --workdir to keep)"),
                  file=sys.stderr)
            return 1
        _say(banner(demo, "kept" if keep else "removed at exit"))
        deadline = loop.time() + args.duration if args.duration else None
        while not stop.is_set():
            timeout = STATUS_INTERVAL if deadline is None else max(0.0, min(STATUS_INTERVAL, deadline - loop.time()))
            await wait_event(stop, timeout)
            if deadline is not None and loop.time() >= deadline:
                _say(f"--duration {args.duration:g}s reached")
                break
            if not stop.is_set():
                crashed = [c.name for c in demo.agents if not c.running]
                if crashed:
                    print(f"kubefabric demo: agent {', '.join(crashed)} exited; see {workdir}", file=sys.stderr)
                    code = 1
                    break
                line = await asyncio.to_thread(demo.status_line)
                if line:
                    _say(line)
        if received:
            _say(f"{received[0]} received")
        return code
    finally:
        stopping.cancel()
        _say("stopping the simulated switch, agents, etcd and the simulated cluster ...")
        await demo.stop()
        _say("demo stopped" + (f"; logs and data kept in {workdir}" if keep else ""))
