"""The `kubefabric` command: one entry point, one module per subcommand.

Each module in agent/commands exposes `add_parser(subparsers)` (which sets
`func`) so a subcommand can be added without touching the others.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in `kubefabric --help` order; missing ones are skipped
COMMANDS = ("run", "passwd", "cli", "sflow_decode", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="kubefabric",
        description="Kubernetes visibility agent for switch fabrics (gNMI, NETCONF, CLI).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agent.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
