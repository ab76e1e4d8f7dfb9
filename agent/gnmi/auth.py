"""Per-RPC credentials: `username` / `password` gRPC metadata on every call.

gNMI (gnmi-authentication.md) carries credentials in metadata on each
RPC; a missing or wrong pair is UNAUTHENTICATED, a read-only user's Set is
PERMISSION_DENIED.  The password check (scrypt, ~50 ms on a miss) runs in
a worker thread so a wrong password never stalls other subscribers.
"""
from __future__ import annotations

import asyncio

import grpc


class AuthError(Exception):
    """Refused credentials; `code` is the gRPC status to return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def credentials(metadata) -> tuple[str | None, str | None]:
    """(username, password) from invocation metadata."""
    username = password = None
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if key == "username":
            username = value
        elif key == "password":
            password = value
    return username, password


async def authenticate(authenticator, context):
    """The User making this RPC, or AuthError(UNAUTHENTICATED)."""
    username, password = credentials(context.invocation_metadata())
    if not username or not password:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "username and password metadata are required")
    user = await asyncio.to_thread(authenticator.authenticate, username, password)
    if user is None:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
    return user


def require_write(user) -> None:
    """AuthError(PERMISSION_DENIED) unless the user may change config."""
    if not getattr(user, "can_write", False):
        raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                        f"user {user.name!r} (role {user.role}) may not change configuration")
