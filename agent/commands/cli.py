"""`kubefabric cli`: the Netvisor-style CLI against a local or remote agent over gNMI.

    kubefabric cli [--gnmi-addr HOST:PORT] [--username U] [--insecure | --tls-ca F ...] [--json] [COMMAND ...]

With a command it runs it once (exit 0, or 1 with one error line on
stderr); without, it opens the interactive shell `CLI (USER@NODE) > `.
The password comes from KUBEFABRIC_PASSWORD or a prompt, never from the
command line; KUBEFABRIC_GNMI_ADDR and KUBEFABRIC_USERNAME replace the flags.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

DEFAULT_ADDR = "127.0.0.1:9339"


def add_parser(subparsers) -> None:
    """Register `cli` and its flags."""
    p = subparsers.add_parser(
        "cli", help="Netvisor-style CLI (one command, or an interactive shell) over gNMI",
        description="Run one CLI command (e.g. 'vport-show hostname server1') or, without one, the interactive shell.",
    )
    p.add_argument("--gnmi-addr", metavar="HOST:PORT",
                   help=f"agent gNMI address (default $KUBEFABRIC_GNMI_ADDR or {DEFAULT_ADDR})")
    p.add_argument("--username", help="user name (default $KUBEFABRIC_USERNAME or your login name)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true", help="gNMI without TLS (loopback testing)")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA certificate the agent's certificate must chain to")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="client private key (mutual TLS)")
    p.add_argument("--tls-server-name", metavar="NAME", help="name to verify in the agent's certificate")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    p.add_argument("--json", action="store_true", help="one-shot output as JSON (raw YANG values)")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="a CLI command and its parameters")
    p.set_defaults(func=run)


def run(args) -> int:
    """Connect, then run one command or the shell."""
    from agent.cli.errors import CliError

    words = list(args.words)
    as_json = args.json
    if "--json" in words:  # `kubefabric cli vport-show --json` works too
        words.remove("--json")
        as_json = True
    if bool(args.tls_cert) != bool(args.tls_key):
        print("kubefabric cli: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    addr = args.gnmi_addr or os.environ.get("KUBEFABRIC_GNMI_ADDR") or DEFAULT_ADDR
    username = args.username or os.environ.get("KUBEFABRIC_USERNAME") or getpass.getuser()
    password = os.environ.get("KUBEFABRIC_PASSWORD")
    if password is None:
        try:
            password = getpass.getpass(f"Password for {username}@{addr}: ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 1
    try:
        with asyncio.Runner() as runner:
            return _session(runner, args, addr, username, password, words, as_json)
    except CliError as exc:
        print(f"kubefabric cli: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `kubefabric cli vport-show | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _session(runner: asyncio.Runner, args, addr: str, username: str, password: str, words: list[str], as_json: bool) -> int:
    from agent.cli.engine import Engine
    from agent.cli.gnmi_backend import GnmiBackend
    from agent.cli.shell import run_terminal

    backend = GnmiBackend(
        addr, username, password, insecure=args.insecure, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_server_name=args.tls_server_name, timeout=args.timeout,
    )
    try:
        runner.run(backend.connect())
        engine = Engine(backend, as_json=as_json and bool(words))
        if not words:
            return run_terminal(runner, engine, username, backend.node)
        outcome = runner.run(engine.run(words))
        if outcome.output:
            print(outcome.output)
        if outcome.error:
            print(outcome.error, file=sys.stderr)
            return 1
        return 0
    finally:
        runner.run(backend.close())

