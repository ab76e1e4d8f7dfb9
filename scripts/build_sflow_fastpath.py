"""Build the optional compiled sFlow decoder (``collectors/sflow/_fast``) with mypyc.

The pure-Python modules ``collectors/sflow/{records,packet,decoder,producer}.py``
are the only source: this script copies them, unchanged, into a scratch
package named ``collectors.sflow._fast`` and compiles that with mypyc (from
the ``mypy`` package), then puts the resulting extension modules into
``collectors/sflow/_fast/`` next to a stamp holding the SHA-256 of the
sources they were built from.  ``collectors/sflow/__init__.py`` uses them only
when that stamp matches the current sources, so an edited ``decoder.py`` is
never shadowed by a stale build; otherwise (no build, failed build, stale
build, ``KUBEFABRIC_SFLOW_PURE=1``) the pure-Python modules run.

Usage: python scripts/build_sflow_fastpath.py [--clean]
Exit code 0 on success; non-zero (with the reason on stderr) when mypyc or
the C compiler is missing or fails -- ``make venv`` carries on regardless.
Nothing it writes is committed (see .gitignore).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "collectors" / "sflow"
TARGET = PACKAGE / "_fast"

sys.path.insert(0, str(REPO))
from collectors.sflow._fast import (  # noqa: E402
    COMPILED_MODULES, EXTERNAL_MODULES, SHARED_MODULES, STAMP_NAME, source_digest,
)

SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="kubefabric-sflow-fast",
    ext_modules=mypycify(
        [{paths}],
        opt_level="3",
        debug_level="0",
        group_name="collectors.sflow._fast.lib",
    ),
    script_args=["build_ext", "--inplace"],
)
"""


def for_mypyc(source: str) -> str:
    """The one edit made to the copies: ``dataclass(slots=True)`` -> ``dataclass``.

    Under mypyc a ``dataclass(slots=True)`` stays an interpreted class
    (``slots=True`` makes the dataclasses module build a new class), while a
    plain ``dataclass`` becomes a native class: a C struct with no
    ``__dict__``, i.e. slotted anyway, and built without a Python-level
    ``__init__``.
    """
    return source.replace("@dataclass(slots=True)", "@dataclass")


def built_files() -> list[Path]:
    """What a build leaves in collectors/sflow/_fast (extension modules and the stamp)."""
    return sorted(p for p in TARGET.iterdir() if p.suffix in (".so", ".pyd") or p.name == STAMP_NAME)


def clean() -> None:
    for path in built_files():
        path.unlink()


def build() -> int:
    digest = source_digest()
    with tempfile.TemporaryDirectory(prefix="sflow-fastpath-") as scratch:
        root = Path(scratch)
        package = root / "collectors" / "sflow" / "_fast"
        package.mkdir(parents=True)
        for init in (root / "collectors", root / "collectors" / "sflow", package):
            (init / "__init__.py").write_text("")
        for name in COMPILED_MODULES:
            (package / f"{name}.py").write_text(for_mypyc((PACKAGE / f"{name}.py").read_text()))
        for name in SHARED_MODULES:  # imported by absolute name, type-checked, not compiled
            shutil.copyfile(PACKAGE / f"{name}.py", root / "collectors" / "sflow" / f"{name}.py")
        for relative in EXTERNAL_MODULES:  # the port the producer builds (type-checked, imported at run time)
            target = root / relative
            for parent in reversed(target.relative_to(root).parents[:-1]):
                (root / parent).mkdir(exist_ok=True)
                init = root / parent / "__init__.py"
                if not init.exists():
                    init.write_text("")
            shutil.copyfile(REPO / relative, target)
        paths = ", ".join(repr(f"collectors/sflow/_fast/{name}.py") for name in COMPILED_MODULES)
        (root / "setup.py").write_text(SETUP.format(paths=paths))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        done = subprocess.run(
            [sys.executable, "setup.py"], cwd=root, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            print("build-sflow-fastpath: mypyc build failed; the pure-Python decoder will be used", file=sys.stderr)
            return 1
        outputs = sorted(package.glob("*.so")) + sorted(package.glob("*.pyd"))
        if len(outputs) < len(COMPILED_MODULES):
            print(f"build-sflow-fastpath: expected extension modules, found {outputs}", file=sys.stderr)
            return 1
        clean()
        for output in outputs:
            shutil.copyfile(output, TARGET / output.name)
    (TARGET / STAMP_NAME).write_text(digest + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules instead")
    args = parser.parse_args()
    if args.clean:
        clean()
        return 0
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("build-sflow-fastpath: mypyc is not installed (pip install mypy); pure-Python decoder", file=sys.stderr)
        return 1
    status = build()
    if status == 0:
        check = subprocess.run(
            [sys.executable, "-c", "import collectors.sflow as s; print(s.IMPLEMENTATION)"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"build-sflow-fastpath: sFlow decoder: {check.stdout.strip() or check.stderr.strip()}")
        if check.returncode != 0 or not check.stdout.startswith("compiled"):
            return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
