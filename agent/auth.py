"""Users, roles and password hashes shared by every face.

Passwords are stored as stdlib scrypt hashes in the config file's
`users:` list; there is no default password anywhere.  Two roles:
`network-admin` may change config, `read-only` may only read.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

ROLES = ("network-admin", "read-only")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """Hash a password as `scrypt$N$r$p$salt$hash` (base64)."""
    if not password:
        raise ValueError("empty password")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of a password against a stored hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class User:
    """An authenticated user."""

    name: str
    role: str

    @property
    def can_write(self) -> bool:
        """Whether this user may change config."""
        return self.role == "network-admin"


@dataclass(frozen=True)
class UserEntry:
    """A configured user: name, password hash, role and SSH public keys."""

    name: str
    password_hash: str
    role: str
    ssh_keys: tuple[str, ...] = ()
    #: client-certificate subject CNs or SANs that log in as this user (its name always does)
    certificate_names: tuple[str, ...] = ()
    #: NACM groups besides the role's own group (RFC 8341)
    groups: tuple[str, ...] = ()


class Authenticator:
    """Checks credentials against the configured users.

    scrypt costs ~50 ms per check, too much for every gNMI RPC, so a
    successful (username, password) pair is remembered by its keyed digest
    for the life of the process.
    """

    def __init__(self, users: list[UserEntry]) -> None:
        for u in users:
            if u.role not in ROLES:
                raise ValueError(f"user {u.name!r}: unknown role {u.role!r} (expected one of {', '.join(ROLES)})")
        self._users = {u.name: u for u in users}
        self._cache_key = os.urandom(32)
        self._ok: dict[bytes, User] = {}

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None."""
        entry = self._users.get(username)
        if entry is None or not password:
            return None
        token = hmac.new(self._cache_key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._ok.get(token)
        if cached is not None:
            return cached
        if not verify_password(password, entry.password_hash):
            return None
        user = User(entry.name, entry.role)
        if len(self._ok) > 1024:
            self._ok.clear()
        self._ok[token] = user
        return user

    def user_for_certificate(self, names: list[str]) -> User | None:
        """The user a verified client certificate names (subject CN or SAN = user name or certificate-names)."""
        for name in names:
            entry = self._users.get(name)
            if entry is not None:
                return User(entry.name, entry.role)
        for entry in self._users.values():
            if any(n in entry.certificate_names for n in names):
                return User(entry.name, entry.role)
        return None

    def groups(self, username: str) -> tuple[str, ...]:
        """NACM groups of a user from the settings file: its role, then any `groups:` it lists."""
        entry = self._users.get(username)
        if entry is None:
            return ()
        return (entry.role, *[g for g in entry.groups if g != entry.role])

    def user(self, username: str) -> User | None:
        """The user by name (for public-key logins, after the key was checked)."""
        entry = self._users.get(username)
        return None if entry is None else User(entry.name, entry.role)

    def ssh_keys(self, username: str) -> tuple[str, ...]:
        """Authorized SSH public keys (OpenSSH format) of a user."""
        entry = self._users.get(username)
        return entry.ssh_keys if entry else ()

    @property
    def usernames(self) -> list[str]:
        """Configured user names."""
        return sorted(self._users)
