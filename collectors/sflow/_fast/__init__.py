"""The optional compiled sFlow decoder: the same modules built with mypyc.

``scripts/build_sflow_fastpath.py`` (run by ``make venv``) compiles copies of
``records.py``, ``packet.py``, ``decoder.py`` and ``producer.py`` as
``collectors.sflow._fast.<name>`` and leaves the extension modules here with
a stamp of the sources' SHA-256.  Nothing but this file is committed.

``activate()`` (called by ``collectors/sflow/__init__.py`` before anything
else of the package is imported) installs the compiled modules under the
public names (``collectors.sflow.decoder`` ...) when they load and were built
from the current sources, so every consumer sees one set of classes.  In
every other case -- not built, build failed, sources edited since, an import
error, or ``KUBEFABRIC_SFLOW_PURE=1`` in the environment -- it leaves the
pure-Python modules in place and says why.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__all__ = ["COMPILED_MODULES", "EXTERNAL_MODULES", "SHARED_MODULES", "STAMP_NAME", "activate", "source_digest"]

#: In import order (each only imports the ones before it).
COMPILED_MODULES = ("packet", "records", "decoder", "producer")
#: Plain-Python modules the compiled ones import by absolute name (so both decoders share their classes).
SHARED_MODULES = ("packet_types",)
#: Modules outside the package the compiled ones import (repository-relative): the flow port they produce.
EXTERNAL_MODULES = ("core/ports/flows.py",)
STAMP_NAME = "SOURCES.sha256"
PURE_ENV = "KUBEFABRIC_SFLOW_PURE"

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[2]


def source_digest() -> str:
    """SHA-256 over the pure-Python sources the compiled modules are built from."""
    digest = hashlib.sha256()
    for name in COMPILED_MODULES + SHARED_MODULES:
        digest.update(name.encode() + b"\0")
        digest.update((_HERE.parent / f"{name}.py").read_bytes())
    for relative in EXTERNAL_MODULES:
        digest.update(relative.encode() + b"\0")
        digest.update((_REPO / relative).read_bytes())
    return digest.hexdigest()


def activate(package: str) -> str:
    """Install the compiled modules as ``<package>.<name>`` if usable; return a one-line description."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return f"pure Python ({PURE_ENV} is set)"
    stamp = _HERE / STAMP_NAME
    try:
        built_from = stamp.read_text().strip()
    except OSError:
        return "pure Python (compiled decoder not built: make venv builds it)"
    try:
        if built_from != source_digest():
            return "pure Python (compiled decoder is stale: sources changed since it was built; make venv rebuilds it)"
        modules = {}
        for name in COMPILED_MODULES:
            __import__(f"{__name__}.{name}")
            modules[name] = sys.modules[f"{__name__}.{name}"]
    except Exception as exc:  # noqa: BLE001 -- any failure means: use the pure-Python modules
        return f"pure Python (compiled decoder failed to load: {type(exc).__name__}: {exc})"
    parent = sys.modules[package]
    for name, module in modules.items():
        sys.modules[f"{package}.{name}"] = module
        setattr(parent, name, module)
    return "compiled (mypyc)"
