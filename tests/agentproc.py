"""Start real `kubefabric run` processes for protocol tests.

Every face is tested against a real agent process (not an in-process
object), with the clients people use; this module is the one place that
knows how to start, wait for and stop one.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# test users: name -> (password, role)
USERS = {
    "admin": ("admin-Secret-1", "network-admin"),
    "viewer": ("viewer-Secret-1", "read-only"),
}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@lru_cache(maxsize=None)
def users_config() -> list[dict]:
    """The users: list with real scrypt hashes of the test passwords."""
    from agent.auth import hash_password

    return [{"name": n, "password-hash": hash_password(p), "role": r} for n, (p, r) in USERS.items()]


class AgentProcess:
    """One `kubefabric run` child process on loopback."""

    def __init__(
        self,
        workdir: Path,
        node_name: str = "leaf1",
        extra_args: list[str] | tuple[str, ...] = (),
        settings: dict | None = None,
        insecure: bool = True,
        gnmi_port: int | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.node_name = node_name
        self.data_dir = data_dir or self.workdir / f"data-{node_name}"
        self.gnmi_port = gnmi_port or free_port()
        self.gnmi_addr = f"127.0.0.1:{self.gnmi_port}"
        self.extra_args = list(extra_args)
        self.insecure = insecure
        self.settings = {"users": users_config(), **(settings or {})}
        self.config_path = self.workdir / f"{node_name}.yaml"
        self.log_path = self.workdir / f"{node_name}.log"
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        """The command line (also handy to print when a test fails)."""
        cmd = [
            sys.executable, "-m", "agent.main", "run",
            "--config", str(self.config_path),
            "--node-name", self.node_name,
            "--data-dir", str(self.data_dir),
            "--gnmi-addr", self.gnmi_addr,
            "--log-level", "debug",
        ]
        if self.insecure:
            cmd.append("--insecure")
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0, expect_ready: bool = True) -> "AgentProcess":
        """Spawn the agent and wait for its 'ready' line (or its exit)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.settings))
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        log.close()
        if not expect_ready:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"agent {self.node_name} ready" in self.log():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"agent not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """What this run of the agent has logged so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; returns its code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the agent and wait; returns the exit code (None if not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def gnmi_kwargs(self, user: str = "admin") -> dict:
        """Keyword arguments for pygnmi's gNMIclient as `user`."""
        return {
            "target": ("127.0.0.1", self.gnmi_port),
            "username": user,
            "password": USERS[user][0],
            "insecure": True,
        }
