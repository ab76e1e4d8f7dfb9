"""Helpers for tests that build network namespaces (tests/e2e_sflow, tests/e2e_capture, benchmarks).

Every namespace a test creates carries its process id in its name, so a run
killed half-way leaves names that the next run recognises as stale (their
pid is gone) and deletes.
"""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a command (ip, tc ...), text output; raise with its stderr when ``check`` and it fails."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def remove_stale(prefix: str) -> None:
    """Delete namespaces named ``<prefix><pid>...`` whose creating process is gone."""
    listing = sh("ip", "netns", "list", check=False).stdout
    for match in re.finditer(rf"^({re.escape(prefix)}(\d+)\w*)", listing, re.M):
        if not Path(f"/proc/{match.group(2)}").exists():
            sh("ip", "netns", "del", match.group(1), check=False)


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a child politely, then firmly."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_line(proc: subprocess.Popen, prefix: str, timeout: float = 20.0) -> str:
    """The first line of ``proc``'s stdout starting with ``prefix`` (AssertionError when none comes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line from {proc.args}")
