"""Crash-safe file writes for config.

A config file is either the old one or the new one, never half of each:
write a temporary file in the same directory, fsync it, rename it over the
old one, then fsync the directory so the rename itself survives a crash.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: Path, data: object) -> None:
    """Replace `path` with `data` as JSON, atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    payload = json.dumps(data, indent=1, sort_keys=True).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: Path, default: object) -> object:
    """Load a JSON file written by `write_json_atomic`, or `default` when absent."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
