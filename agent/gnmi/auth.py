"""Who makes an RPC: `username` / `password` metadata, or the verified client certificate.

gNMI (gnmi-authentication.md) carries credentials in metadata on each
RPC; a missing or wrong pair is UNAUTHENTICATED, a read-only user's Set is
PERMISSION_DENIED.  The password check (scrypt, ~50 ms on a miss) runs in
a worker thread so a wrong password never stalls other subscribers.

With mutual TLS (`--tls-client-ca`), gRPC has already verified the client's
certificate against the CA before the RPC starts; its subject common name
or a subject alternative name then names the user (the user's name, or one
of its `certificate-names:` in the settings file), with no password: that is
how collectors are deployed.  A username in metadata without a password is
accepted only when it is the user the certificate names.  Without a
verified certificate, username-only metadata stays refused.
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


def certificate_names(context) -> list[str]:
    """Subject CN and SANs of the client certificate gRPC verified, or [] (no mutual TLS)."""
    try:
        auth = context.auth_context() or {}
    except Exception:  # noqa: BLE001 - no TLS, no certificate
        return []
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if text and text not in names:
                names.append(text)
    return names


async def authenticate(authenticator, context, client_certificates: bool = False):
    """The User making this RPC, or AuthError(UNAUTHENTICATED).

    `client_certificates`: the server runs mutual TLS, so a certificate,
    if present, was verified against the client CA.
    """
    username, password = credentials(context.invocation_metadata())
    if username and password:
        user = await asyncio.to_thread(authenticator.authenticate, username, password)
        if user is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
        return user
    names = certificate_names(context) if client_certificates else []
    if not names:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "username and password metadata are required "
                        "(or a client certificate, on an agent running mutual TLS)")
    user = authenticator.user_for_certificate(names)
    if user is None:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                        f"the client certificate ({', '.join(names)}) names no configured user")
    if username and username != user.name:
        raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                        f"the client certificate is {user.name!r}'s, not {username!r}'s")
    return user


def require_write(user) -> None:
    """AuthError(PERMISSION_DENIED) unless the user may change config."""
    if not getattr(user, "can_write", False):
        raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                        f"user {user.name!r} (role {user.role}) may not change configuration")
