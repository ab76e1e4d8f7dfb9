"""The YANG modules are the contract every face shares: they must pass
both reference linters and define the names the seeds' CLI uses."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.schema import Schema

REPO = Path(__file__).resolve().parents[2]
YANG = REPO / "core" / "yang"
MODULES = sorted((YANG).glob("kubefabric-*.yang"))


def test_six_modules_present():
    names = {p.name.split("@")[0] for p in MODULES}
    assert names == {"kubefabric-k8s", "kubefabric-vport", "kubefabric-connection", "kubefabric-fabric",
                     "kubefabric-sflow", "kubefabric-capture", "kubefabric-topology"}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_pyang_strict_lint(module):
    pyang = Path(sys.executable).with_name("pyang")
    result = subprocess.run(
        [str(pyang), "--strict", "--lint", "-p", str(YANG / "ietf"), str(module)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_yanglint(module):
    yanglint = shutil.which("yanglint")
    if yanglint is None:
        pytest.skip("yanglint not installed (make venv installs Debian's libyang2-tools as root)")
    result = subprocess.run([yanglint, "-p", str(YANG / "ietf"), str(module)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_module_file_names_match_revisions():
    for path in MODULES:
        name, revision = path.stem.split("@")
        text = path.read_text()
        assert f"module {name} " in text
        assert f"revision {revision}" in text


def test_seed_cli_names_are_leaves():
    """Leaf names are the Netvisor CLI parameters and columns from the seed."""
    schema = Schema(YANG)
    conn = schema.nodes["/kubefabric-k8s:k8s/connection"]
    assert {"cluster-name", "kube-config", "enable", "create-vport", "overlay-vxlan-analytics", "owner"} <= set(conn.leaves)
    vport = schema.nodes["/kubefabric-vport:vports/vport"]
    assert {"owner", "mac", "vlan", "ip", "svc-name", "hostname", "entity", "power", "portgroup", "status"} <= set(vport.leaves)
    cni = schema.nodes["/kubefabric-k8s:k8s/cni"]
    assert {"cluster-name", "cni-plugin", "backend", "udp-port", "vxlan", "network-type"} <= set(cni.leaves)
    connection = schema.nodes["/kubefabric-connection:connections/connection"]
    assert {"switch", "vlan", "src-ip", "dst-ip", "dst-port", "cur-state", "latency", "age"} <= set(connection.leaves)
    assert not vport.config and conn.config


def test_yang_tree_docs_are_current():
    """docs/yang/*.tree.txt is what `make yang-tree` writes from the modules."""
    pyang = Path(sys.executable).with_name("pyang")
    for module in MODULES:
        name = module.stem.split("@")[0]
        tree = subprocess.run(
            [str(pyang), "-f", "tree", "-p", str(YANG / "ietf"), str(module)],
            capture_output=True, text=True, check=True,
        ).stdout
        assert (REPO / "docs" / "yang" / f"{name}.tree.txt").read_text() == tree, f"run make yang-tree ({name})"
