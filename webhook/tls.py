"""Making certificates (a CA and serving certificates) with `cryptography`. The server itself
does not import this (see webhook/tlscontext.py): `cryptography` costs each worker 7 MB."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: Key

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(subject: str, key: Key, days: float) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_ca(name: str = "mlflow-webhook-ca", days: float = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, key, days)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def make_serving_cert(ca: KeyPair, hosts: list[str], days: float = 365) -> KeyPair:
    """A server certificate for DNS names and IP addresses (Go clients need SANs, not a CN)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        _builder(hosts[0], key, days)
        .issuer_name(ca.cert.subject)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def load_pair(cert_pem: bytes, key_pem: bytes) -> KeyPair:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"expected an EC private key, got {type(key).__name__}")
    return KeyPair(x509.load_pem_x509_certificate(cert_pem), key)


def remaining(cert: x509.Certificate) -> datetime.timedelta:
    return cert.not_valid_after_utc - _now()


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_dev_certs(directory: Path, hosts: list[str] | None = None) -> tuple[Path, Path, Path]:
    """A self-signed CA and a serving certificate for localhost in `directory`, made once and
    remade when missing or within 30 days of expiry. Returns (cert, key, ca) file paths."""
    hosts = hosts or ["localhost", "127.0.0.1"]
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file, ca_file = (directory / n for n in ("tls.crt", "tls.key", "ca.crt"))
    if cert_file.exists() and key_file.exists() and ca_file.exists():
        current = x509.load_pem_x509_certificate(cert_file.read_bytes())
        if remaining(current) > datetime.timedelta(days=30):
            return cert_file, key_file, ca_file
    ca = make_ca()
    serving = make_serving_cert(ca, hosts)
    write_atomic(ca_file, ca.cert_pem(), 0o644)
    write_atomic(key_file, serving.key_pem())
    write_atomic(cert_file, serving.cert_pem(), 0o644)
    return cert_file, key_file, ca_file
