"""Errors every face reports the same way.

A rejected config change carries what RFC 6241 Appendix A asks of an
rpc-error (error-type, error-tag, error-app-tag, error-path, message) so
gNMI Set and NETCONF edit-config/commit can say the same thing; gNMI maps
the tag to a gRPC status code with `grpc_code_name`.
"""
from __future__ import annotations

from dataclasses import dataclass

# error-tag -> gRPC status name; anything not listed is INVALID_ARGUMENT.
_GRPC_FOR_TAG = {
    "too-many-elements": "FAILED_PRECONDITION",
    "must-violation": "FAILED_PRECONDITION",
    "data-exists": "ALREADY_EXISTS",
    "data-missing": "NOT_FOUND",
    "access-denied": "PERMISSION_DENIED",
    "resource-denied": "RESOURCE_EXHAUSTED",
    "lock-denied": "ABORTED",
    "in-use": "ABORTED",
    "unavailable": "UNAVAILABLE",
    "operation-failed": "INTERNAL",
    # app tags of the confirmed-commit machine and the running lock (gnmi-commit-confirmed.md 3.2)
    "commit-pending": "FAILED_PRECONDITION",
    "no-commit-pending": "FAILED_PRECONDITION",
    "commit-id-mismatch": "INVALID_ARGUMENT",
    "locked": "FAILED_PRECONDITION",
}


@dataclass
class ConfigError(Exception):
    """A config change that was refused; nothing was changed."""

    error_tag: str
    message: str
    path: str = ""
    app_tag: str = ""
    error_type: str = "application"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def grpc_code_name(self) -> str:
        """gRPC status name a gNMI face returns for this error."""
        key = self.app_tag if self.app_tag in _GRPC_FOR_TAG else self.error_tag
        return _GRPC_FOR_TAG.get(key, "INVALID_ARGUMENT")

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        tag = f" ({self.app_tag})" if self.app_tag else ""
        return f"{self.error_tag}{tag}{where}: {self.message}"


class UnavailableError(ConfigError):
    """The replicated store cannot take writes now (e.g. etcd lost quorum)."""

    def __init__(self, message: str) -> None:
        super().__init__("resource-denied", message, app_tag="unavailable")


class ConflictError(Exception):
    """The base revision of a fabric write is stale: re-read and retry."""
