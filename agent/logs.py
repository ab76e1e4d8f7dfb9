"""Logging set-up: text for people, JSON lines for log shippers."""
from __future__ import annotations

import json
import logging
import sys

from core.times import format_rfc3339


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": format_rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # grpc and asyncssh are chatty at info level
    for noisy in ("asyncssh", "aiohttp.access", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class AuditFormatter(logging.Formatter):
    """One JSON object per config change: ts, user, face, peer, node, revision, changes."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": format_rfc3339(record.created)}
        out.update(getattr(record, "audit", None) or {"msg": record.getMessage()})
        return json.dumps(out, sort_keys=False)


def setup_audit_log(path: str) -> logging.Handler:
    """Append the "kubefabric.audit" records to `path` (created 0600) as JSON lines, beside the agent log.

    Raises OSError when the file cannot be opened.
    """
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(AuditFormatter())
    handler.setLevel(logging.INFO)
    audit = logging.getLogger("kubefabric.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)
    return handler
