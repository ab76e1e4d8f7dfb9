"""A small certificate authority for the demo's etcd (and the fabric tests): CA, member and client certificates.

The demo's default path is the secure one: its three etcd members serve TLS
and demand client certificates, and each agent connects with a certificate
of its own whose common name is its etcd user (etcd's certificate CN
authentication).  Everything is generated with ``cryptography`` (ECDSA P-256,
the curve etcd's own tooling examples use), written PEM, keys mode 0600.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """Paths of one issued certificate and its key (and the CA that signed it)."""

    cert: Path
    key: Path
    ca: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class CertificateAuthority:
    """A self-signed CA in ``directory`` (``<name>-ca.pem`` / ``<name>-ca-key.pem``) that issues certificates."""

    def __init__(self, directory: Path, name: str = "kubefabric-etcd") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.directory / f"{name}-ca.pem"
        _write_cert(self.ca_path, self.cert)

    def issue(self, filename: str, common_name: str, *, server_names: Iterable[str] = (),
              client: bool = True, server: bool = False, valid_days: float = 825,
              expired: bool = False) -> CertFiles:
        """A certificate for ``common_name`` (``<filename>.pem``, ``<filename>-key.pem``).

        ``server_names`` become subjectAltNames (IP addresses or DNS names).
        ``expired`` issues one whose validity ended an hour ago (for tests of
        what an agent says about it).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        if expired:
            start, end = now - dt.timedelta(days=2), now - dt.timedelta(hours=1)
        else:
            start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=valid_days)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        names = _alt_names(server_names)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        files = CertFiles(self.directory / f"{filename}.pem", self.directory / f"{filename}-key.pem", self.ca_path)
        _write_cert(files.cert, cert)
        _write_key(files.key, key)
        return files


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out
