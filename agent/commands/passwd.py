"""`kubefabric passwd`: read a password on stdin, print its hash for `users:`."""
from __future__ import annotations

import getpass
import sys

from agent.auth import hash_password


def add_parser(subparsers) -> None:
    """Register the subcommand."""
    p = subparsers.add_parser("passwd", help="hash a password (read from standard input) for the users: list")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print the scrypt hash of the password given on stdin (or at a prompt)."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("kubefabric passwd: passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("kubefabric passwd: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
