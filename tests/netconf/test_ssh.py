"""SSH side of NETCONF: public-key login with roles, a host key kept across restarts, the session cap."""
from __future__ import annotations

import asyncssh
import pytest
from ncclient import manager
from ncclient.operations import RPCError

from agent.auth import UserEntry

from .helpers import InProcessAgent, connect, connection_xml


def test_public_key_login_uses_the_users_role(tmp_path):
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    other = asyncssh.generate_private_key("ssh-ed25519")
    other_file = tmp_path / "id_other"
    other_file.write_bytes(other.export_private_key())
    other_file.chmod(0o600)
    pub = key.export_public_key().decode().strip()
    users = [UserEntry("robot", "", "read-only", (pub,)), UserEntry("ops", "", "network-admin", (pub,))]
    agent = InProcessAgent(tmp_path / "data", extra_users=users).start()
    try:
        kwargs = dict(host="127.0.0.1", port=agent.port, hostkey_verify=False, look_for_keys=False,
                      allow_agent=False, timeout=30)
        with manager.connect(username="robot", key_filename=str(key_file), **kwargs) as m:
            assert m.get_config("running").ok
            with pytest.raises(RPCError) as err:
                m.edit_config(target="running", config=connection_xml("pk"))
            assert err.value.tag == "access-denied"
        with manager.connect(username="ops", key_filename=str(key_file), **kwargs) as m:
            m.edit_config(target="running", config=connection_xml("pk"))
        with pytest.raises(Exception):
            manager.connect(username="ops", key_filename=str(other_file), **kwargs)
    finally:
        agent.stop()


def _host_key_fingerprint(port: int) -> str:
    import paramiko

    with paramiko.Transport(("127.0.0.1", port)) as t:
        t.start_client(timeout=10)
        return t.get_remote_server_key().get_fingerprint().hex()


def test_host_key_is_generated_once_and_kept(tmp_path):
    agent = InProcessAgent(tmp_path).start()
    first = _host_key_fingerprint(agent.port)
    agent.stop()
    key_file = tmp_path / "netconf-ssh-host-key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o077) == 0
    agent = InProcessAgent(tmp_path).start()
    try:
        assert _host_key_fingerprint(agent.port) == first
    finally:
        agent.stop()


def test_session_count_is_bounded(tmp_path):
    agent = InProcessAgent(tmp_path, max_sessions=2).start()
    try:
        a, b = connect(agent.port), connect(agent.port)
        with pytest.raises(Exception):
            connect(agent.port)
        assert agent.call(lambda: agent.server.stats.dropped_sessions) == 1
        a.close_session()
        import time
        for _ in range(50):
            if agent.call(lambda: len(agent.server.sessions)) < 2:
                break
            time.sleep(0.05)
        with connect(agent.port) as c:
            assert c.get_config("running").ok
        b.close_session()
    finally:
        agent.stop()
