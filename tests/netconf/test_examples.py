"""examples/ansible (ansible.netcommon netconf_config / netconf_get) and examples/ncclient against a real agent."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentproc import REPO, USERS

from .helpers import connect, running_names


EXAMPLES = REPO / "examples" / "ansible"


def _playbook(name: str, port: int, home: Path) -> subprocess.CompletedProcess:
    bindir = Path(sys.executable).parent
    playbook = shutil.which("ansible-playbook", path=str(bindir)) or shutil.which("ansible-playbook")
    assert playbook, "ansible-playbook not found"
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",  # ansible-connection must be found too
        "HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": str(home / "pc"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_CONFIG": str(EXAMPLES / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "KUBEFABRIC_NETCONF_PORT": str(port),
        "KUBEFABRIC_USER": "admin",
        "KUBEFABRIC_PASSWORD": USERS["admin"][0],
    }
    return subprocess.run([playbook, "-i", str(EXAMPLES / "inventory.yml"), str(EXAMPLES / name)],
                          cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=180)


def test_playbooks_create_modify_show_delete(port, tmp_path):
    pytest.importorskip("ansible_collections.ansible.netcommon", reason="the ansible package is in the test extra")
    pytest.importorskip("xmltodict", reason="netconf_get display=native needs xmltodict (test extra)")
    with connect(port) as m:
        assert running_names(m) == []
    for name, expect in (("create.yml", ["prod", "staging"]), ("modify.yml", ["prod", "staging"]),
                         ("show.yml", ["prod", "staging"]), ("delete.yml", [])):
        result = _playbook(name, port, tmp_path)
        assert result.returncode == 0, f"{name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
        assert "failed=0" in result.stdout
        with connect(port) as m:
            assert running_names(m) == expect, name
            if name == "modify.yml":
                data = m.get_config("running").data_xml
                assert "<create-vport>true</create-vport>" in data


def test_ncclient_example(port):
    script = REPO / "examples" / "ncclient" / "k8s_connections.py"
    result = subprocess.run([sys.executable, str(script), "--port", str(port), "--password", USERS["admin"][0]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created:" in result.stdout and "prod:" in result.stdout
    assert "refused: operation-failed (must-violation)" in result.stdout
    with connect(port) as m:
        assert running_names(m) == []
