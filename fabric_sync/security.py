"""Who an agent is to etcd: TLS files (CA, client certificate and key) and an optional etcd user.

Checked once before the agent starts (``EtcdSecurity.check``: every file
there, readable and PEM, or one line saying which is not), described in one
log line (``identity()``: the certificate's subject, issuer and expiry, the
etcd user), then used for every channel to etcd: the store's asyncio
channel and the lease keeper's thread channel.

Authentication comes in two forms, both least privilege on the fabric's
prefix (see docs/operations.md):

* certificate common-name: with etcd's ``--client-cert-auth`` and auth
  enabled, etcd takes the client certificate's CN as the user name;
  nothing to send.
* ``--etcd-user NAME`` with ``etcd-password`` in the settings file: etcd's
  Authenticate returns a token that must travel as ``token`` metadata on
  every call and is refused (UNAUTHENTICATED, "invalid auth token") once it
  expired (simple tokens after ``--auth-token-ttl``, 300 s idle; JWTs at
  their expiry).  ``AuthInterceptor`` adds it to every call and watch and
  authenticates again on that refusal, once per call.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from aetcd import rpc

log = logging.getLogger("kubefabric.fabric.security")

AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"


class SecurityError(ValueError):
    """TLS files or credentials for etcd that cannot be used (the agent refuses to start with this message)."""


@dataclass(frozen=True)
class EtcdSecurity:
    """TLS files and etcd user of one agent; every field optional (plain http, no user)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return bool(self.ca or self.cert)

    def check(self, scheme: str) -> None:
        """Refuse unusable settings with one line (files missing, unreadable, not PEM; half a pair)."""
        if scheme == "https" and not self.ca:
            raise SecurityError("https:// etcd endpoints need --etcd-ca (the CA the members' certificates chain to)")
        if scheme != "https" and (self.ca or self.cert or self.key):
            raise SecurityError("--etcd-ca/--etcd-cert/--etcd-key need https:// etcd endpoints")
        if bool(self.cert) != bool(self.key):
            raise SecurityError("--etcd-cert and --etcd-key go together (the client certificate and its key)")
        if self.user and not self.password:
            raise SecurityError(f"etcd user {self.user!r} needs etcd-password in the settings file")
        if self.password and not self.user:
            raise SecurityError("etcd-password is set but no etcd user (--etcd-user) is")
        for flag, path, marker in (("--etcd-ca", self.ca, b"CERTIFICATE"), ("--etcd-cert", self.cert, b"CERTIFICATE"),
                                   ("--etcd-key", self.key, b"PRIVATE KEY")):
            if path:
                data = _read(flag, path)
                if b"-----BEGIN" not in data or marker not in data:
                    raise SecurityError(f"{flag} {path}: not a PEM {marker.decode().lower()} file")
        if self.cert:
            _load_cert(self.cert)

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials: trust the CA, present the client certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read("--etcd-ca", self.ca) if self.ca else None,
            private_key=_read("--etcd-key", self.key) if self.key else None,
            certificate_chain=_read("--etcd-cert", self.cert) if self.cert else None,
        )

    def identity(self) -> str:
        """One line: whom etcd sees (client certificate subject, issuer, validity; etcd user)."""
        parts = []
        if self.cert:
            cert = _load_cert(self.cert)
            end = cert.not_valid_after_utc
            state = "EXPIRED" if end < dt.datetime.now(dt.timezone.utc) else "valid"
            parts.append(f"client certificate {cert.subject.rfc4514_string()} issued by "
                         f"{cert.issuer.rfc4514_string()}, {state} until {end:%Y-%m-%dT%H:%M:%SZ}")
        elif self.tls:
            parts.append("TLS without a client certificate")
        else:
            parts.append("plain gRPC (no TLS)")
        if self.user:
            parts.append(f"etcd user {self.user!r} (password from the settings file)")
        elif self.cert:
            parts.append("etcd user = the certificate's common name when etcd auth is on")
        else:
            parts.append("no etcd user")
        return "; ".join(parts)

    def expired(self) -> bool:
        """The client certificate's validity has ended (etcd will refuse the handshake)."""
        if not self.cert:
            return False
        return _load_cert(self.cert).not_valid_after_utc < dt.datetime.now(dt.timezone.utc)


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SecurityError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise SecurityError(f"{flag} {path}: is a directory") from None
    except OSError as exc:
        raise SecurityError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None


def _load_cert(path: str):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(_read("--etcd-cert", path))
    except ValueError:
        raise SecurityError(f"--etcd-cert {path}: not a valid PEM certificate") from None


class TokenAuth:
    """An etcd user's password and its current token (refreshed when etcd refuses it)."""

    def __init__(self, user: str, password: str | None) -> None:
        self.user = user
        self.password = password or ""
        self.token: str | None = None
        self._lock = threading.Lock()

    def request(self) -> rpc.AuthenticateRequest:
        return rpc.AuthenticateRequest(name=self.user, password=self.password)

    def take(self, token: str) -> None:
        with self._lock:
            self.token = token

    def drop(self, token: str | None) -> None:
        """Forget ``token`` (etcd refused it); a newer one taken meanwhile stays."""
        with self._lock:
            if self.token == token:
                self.token = None

    def authenticate_sync(self, channel: grpc.Channel, timeout: float) -> str:
        """Authenticate over a synchronous channel (the lease keeper's thread)."""
        try:
            reply = rpc.AuthStub(channel).Authenticate(self.request(), timeout=timeout)
        except grpc.RpcError as exc:
            raise auth_failure(self.user, exc) from None
        self.take(reply.token)
        return reply.token


def is_invalid_token(code: grpc.StatusCode | None, details: str | None) -> bool:
    """etcd's answer to an expired or unknown token (re-authenticate and send again)."""
    return code == grpc.StatusCode.UNAUTHENTICATED and "token" in (details or "")


def auth_failure(user: str, exc: grpc.RpcError) -> grpc.RpcError:
    """Authenticate was refused: an UNAUTHENTICATED error naming the user (etcd says INVALID_ARGUMENT)."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return exc
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAUTHENTICATED, None, None,
                                f"etcd refused user {user!r}: {details}")


class AuthInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor,
                      grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    """Adds ``extra`` metadata (require-leader) and the user's token to every call; re-authenticates once."""

    def __init__(self, auth: TokenAuth | None, extra: tuple, timeout: float | None) -> None:
        self.auth = auth
        self.extra = tuple(extra)
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._authenticating = None

    def bind(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    async def _token(self) -> str | None:
        auth = self.auth
        if auth is None:
            return None
        if auth.token is None:
            import asyncio

            if self._authenticating is None or self._authenticating.done():
                self._authenticating = asyncio.ensure_future(self._authenticate())
            await asyncio.shield(self._authenticating)
        return auth.token

    async def _authenticate(self) -> None:
        if self.auth is None or self._channel is None:
            raise RuntimeError("AuthInterceptor used before bind() or without a user")
        try:
            reply = await rpc.AuthStub(self._channel).Authenticate(self.auth.request(), timeout=self.timeout)
        except grpc.RpcError as exc:
            raise auth_failure(self.auth.user, exc) from None
        self.auth.take(reply.token)
        log.debug("authenticated to etcd as %s", self.auth.user)

    def _details(self, details, token: str | None):
        metadata = list(details.metadata or ()) + [m for m in self.extra]
        if token:
            metadata.append(("token", token))
        return details._replace(metadata=grpc.aio.Metadata(*metadata))

    def _is_auth_call(self, details) -> bool:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        return method == AUTHENTICATE

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        if self._is_auth_call(client_call_details):
            return await continuation(client_call_details, request)
        token = await self._token()
        call = await continuation(self._details(client_call_details, token), request)
        if self.auth is None:
            return call
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            if not is_invalid_token(exc.code(), exc.details()):
                raise
            log.info("etcd token of user %s expired: authenticating again", self.auth.user)
            self.auth.drop(token)
            token = await self._token()
            return await (await continuation(self._details(client_call_details, token), request))

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details, await self._token()), request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details, await self._token()), request_iterator)

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details, await self._token()), request_iterator)
