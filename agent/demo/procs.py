"""Child processes of the demo: own session, logs to a file, gone when the demo goes.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
the demo, which then stops the children in order (agents before etcd).  On
Linux each child also asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG; SIGKILL for etcd, whose SIGTERM path waits seconds for
a leadership transfer that cannot happen), so even a SIGKILLed demo leaves
no process behind.
The kernel sends that signal when the *thread* that forked the child ends,
so children must be started from the main thread, never from a worker.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
try:  # loaded here, not in the child: only the prctl call runs between fork and exec
    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def _die_with_parent(sig: int):
    def set_death_signal() -> None:  # runs in the child between fork and exec
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
    return set_death_signal


class Child:
    """One child process; `start()`, `running`, `stop()`."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None, death_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.death_signal = death_signal
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
                preexec_fn=_die_with_parent(self.death_signal) if _LIBC is not None else None,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def terminate(self) -> None:
        """Send SIGTERM without waiting (to stop several children at once)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it will not go; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
        code = self.proc.wait()
        # the child's session may hold helpers it started: leave none behind
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return code
