"""The interactive shell: prompt, `?` help, completion; shared by the terminal and SSH.

`respond()` is the per-line logic both shells use (a trailing `?` shows the
help for what was typed so far, as on a switch); `run_terminal()` is the
local loop with readline completion; ssh.py runs the same `respond()` over
an SSH channel.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Callable

from .engine import Engine, Outcome
from .parser import complete, context_help


def prompt(user: str, node: str) -> str:
    """Netvisor's prompt: `CLI (USER@NODE) > `."""
    return f"CLI ({user}@{node}) > "


async def respond(engine: Engine, line: str) -> Outcome:
    """Run one interactive line; `...?` shows help instead of running."""
    stripped = line.strip()
    if stripped.endswith("?"):
        return Outcome(context_help(stripped[:-1]))
    return await engine.run(line)


def readline_completer(get_line: Callable[[], str]) -> Callable[[str, int], str | None]:
    """A readline completer over `complete()`; `get_line` returns the text before the cursor."""
    cache: list[str] = []

    def completer(text: str, state: int) -> str | None:
        if state == 0:
            cache[:] = complete(get_line())
        return cache[state] if state < len(cache) else None

    return completer


def _setup_readline() -> None:
    try:
        import readline
    except ImportError:  # no readline: still a working shell, without completion
        return
    readline.set_completer_delims(" \t")
    readline.set_completer(readline_completer(lambda: readline.get_line_buffer()[: readline.get_endidx()]))
    readline.parse_and_bind("tab: complete")
    readline.parse_and_bind("set show-all-if-ambiguous on")


def run_terminal(runner: asyncio.Runner, engine: Engine, user: str, node: str) -> int:
    """The local interactive loop (blocking input, one event loop for the backend)."""
    if sys.stdin.isatty():
        _setup_readline()
    text = prompt(user, node)
    while True:
        try:
            line = input(text)
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        outcome = runner.run(respond(engine, line))
        if outcome.output:
            print(outcome.output)
        if outcome.error:
            print(outcome.error)
        if outcome.exit:
            return 0
