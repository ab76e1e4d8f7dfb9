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


def _playbooks(names: list[str], port: int, home: Path) -> subprocess.CompletedProcess:
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
    return subprocess.run([playbook, "-i", str(EXAMPLES / "inventory.yml"), *(str(EXAMPLES / n) for n in names)],
                          cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=240)


def test_playbooks_create_modify_show_delete(port, tmp_path):
    """One ansible-playbook run of the four playbooks; each asserts what the previous one did."""
    pytest.importorskip("ansible_collections.ansible.netcommon", reason="the ansible package is in the test extra")
    pytest.importorskip("xmltodict", reason="netconf_get display=native needs xmltodict (test extra)")
    with connect(port) as m:
        assert running_names(m) == []
    result = _playbooks(["create.yml", "modify.yml", "show.yml", "delete.yml"], port, tmp_path)
    out = result.stdout
    assert result.returncode == 0, f"{out[-6000:]}\n{result.stderr[-2000:]}"
    for play in ("Create Kubernetes connections", "Modify a Kubernetes connection", "Show Kubernetes connections",
                 "Delete Kubernetes connections"):
        assert f"PLAY [{play}]" in out
    assert out.count("All assertions passed") == 4
    assert '"prod"' in out and '"staging"' in out  # show.yml printed the connections
    assert "At most one Kubernetes connection" in out  # the refused second overlay connection
    with connect(port) as m:
        assert running_names(m) == []


def test_ncclient_example(port):
    script = REPO / "examples" / "ncclient" / "k8s_connections.py"
    result = subprocess.run([sys.executable, str(script), "--port", str(port), "--password", USERS["admin"][0]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created:" in result.stdout and "prod:" in result.stdout
    assert "refused: operation-failed (must-violation)" in result.stdout
    with connect(port) as m:
        assert running_names(m) == []
