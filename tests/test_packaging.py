"""An installed wheel works from any directory: the YANG models travel as package data."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_every_yang_module_and_loads_them_from_elsewhere(tmp_path):
    had_build_dir = (REPO / "build").exists()
    try:
        _check_wheel(tmp_path)
    finally:
        if not had_build_dir:  # setuptools builds in the source tree: leave it as it was
            shutil.rmtree(REPO / "build", ignore_errors=True)


def _check_wheel(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("kubefabric-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "core" / "yang").rglob("*.yang")}
    assert shipped and shipped <= names, shipped - names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import core.schema as s; schema = s.Schema(); "
            "print(s.__file__); print(len(schema.implemented)); print(s.netconf_yang_dir().exists())")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    where, implemented, netconf = done.stdout.split()
    assert where.startswith(str(target))  # the installed copy, not the checkout
    assert int(implemented) >= 5 and netconf == "True"
