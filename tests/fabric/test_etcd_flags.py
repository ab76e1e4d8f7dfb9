"""`kubefabric run` with etcd TLS flags and settings-file keys, as a user starts it: unusable files or
credentials are refused before anything starts, with one line naming the flag and the file; a good
set starts and logs whom the agent connects as."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.agentproc import REPO, AgentProcess
from tests.fabric.agents import wait_ready


def run_agent(tmp_path, *args: str, settings: dict | None = None) -> subprocess.CompletedProcess:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(settings or {}))
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "run", "--config", str(config), "--insecure",
         "--data-dir", str(tmp_path / "data"), "--gnmi-addr", "127.0.0.1:0", "--fabric", "f1", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60)


@pytest.fixture
def pki(tmp_path):
    from agent.demo.pki import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki", "flags")
    return ca, ca.issue("leaf1", "leaf1")


def test_missing_or_unreadable_files_are_refused_in_one_line(tmp_path, pki):
    ca, cert = pki
    https = "https://127.0.0.1:2379"
    cases = [
        (["--etcd", https, "--etcd-ca", str(tmp_path / "nope.pem")], f"--etcd-ca {tmp_path / 'nope.pem'}: no such file"),
        (["--etcd", https, "--etcd-ca", str(ca.ca_path), "--etcd-cert", str(cert.cert), "--etcd-key", str(tmp_path)],
         "is a directory"),
        (["--etcd", https, "--etcd-ca", str(ca.ca_path), "--etcd-cert", str(cert.key), "--etcd-key", str(cert.key)],
         "not a PEM certificate file"),
        (["--etcd", https, "--etcd-ca", str(ca.ca_path), "--etcd-cert", str(cert.cert)],
         "--etcd-cert and --etcd-key go together"),
        (["--etcd", https], "https:// etcd endpoints need --etcd-ca"),
        (["--etcd", "http://127.0.0.1:2379", "--etcd-ca", str(ca.ca_path)], "need https:// etcd endpoints"),
        (["--etcd", "https://127.0.0.1:2379,https://127.0.0.2:2379", "--etcd-ca", str(ca.ca_path)],
         "give --etcd-server-name"),
        (["--etcd", https, "--etcd-ca", str(ca.ca_path), "--etcd-user", "leaf1"], "needs etcd-password"),
    ]
    for args, expected in cases:
        done = run_agent(tmp_path, *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, (args, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("kubefabric run: ") and expected in lines[0], (args, lines)
        assert "Traceback" not in done.stderr


def test_settings_file_keys_work_like_the_flags(tmp_path, pki, etcd_tls_cluster):
    """etcd-ca/etcd-cert/etcd-key/etcd-server-name/etcd-user/etcd-password in the settings file; the
    agent starts in-sync and logs its identity (the password never appears in the log)."""
    from tests.fabric.conftest import grant_fabric
    from tests.fabric.etcdcluster import SERVER_NAME

    cluster = etcd_tls_cluster
    grant_fabric(cluster, "flagfab", "flag-user", password="Flag-Pw-1")
    cert = cluster.client_cert("flag-user")
    agent = AgentProcess(tmp_path, node_name="leaf1", extra_args=[
        "--etcd", cluster.endpoints_arg, "--fabric", "flagfab"], settings={
        "etcd-ca": str(cluster.ca.ca_path), "etcd-cert": str(cert.cert), "etcd-key": str(cert.key),
        "etcd-server-name": SERVER_NAME, "etcd-user": "flag-user", "etcd-password": "Flag-Pw-1"})
    agent.start(expect_ready=False)
    try:
        wait_ready(agent, 60)
        log = agent.log()
        assert "as client certificate CN=flag-user issued by CN=test-etcd CA" in log
        assert "etcd user 'flag-user' (password from the settings file)" in log
        assert "sync-state in-sync" in log
        assert "Flag-Pw-1" not in log
    finally:
        agent.stop()
