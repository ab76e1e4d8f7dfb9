"""A test CA, a server certificate for 127.0.0.1/localhost and client certificates, as PEM files."""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def make_certs(directory: Path, clients: dict[str, list[str]]) -> dict[str, Path]:
    """Files "ca", "server", "server-key", and "<client>", "<client>-key" for each client CN (SANs: DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(name, issuer=None, issuer_key=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key or key, hashes.SHA256()), key

    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make("kubefabric test CA", ca=True)
    issued = {"server": make("leaf1", ca.subject, ca_key, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                x509.DNSName("localhost")])}
    for cn, sans in clients.items():
        issued[cn] = make(cn, ca.subject, ca_key, san=[x509.DNSName(s) for s in sans] or None)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, (cert, key) in issued.items():
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}-key"] = directory / f"{name}-key.pem"
        files[f"{name}-key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return files
