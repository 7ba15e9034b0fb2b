"""Test PKI generated at test time: CAs, server and client certificates."""

from __future__ import annotations

from dataclasses import dataclass
import datetime
import ipaddress
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path

CLIENT_CN = "cloudsync-test-client"
OTHER_CLIENT_CN = "cloudsync-other-client"
CLIENT_KEY_PASSWORD = "key-pass"

_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
_PKCS8 = serialization.PrivateFormat.PKCS8


@dataclass(frozen=True)
class Pki:
    """PEM (str) and DER (bytes) material of the test PKI."""

    ca_pem: str
    server_cert_pem: str
    server_key_pem: str
    client_cert_pem: str
    client_key_pem: str
    client_key_encrypted_pem: str
    client_key_password: str
    other_ca_pem: str
    other_client_cert_pem: str
    other_client_key_pem: str
    ca_der: bytes
    client_cert_der: bytes
    client_key_der: bytes
    # The client key's certificate, expiring in 10 days / expired yesterday.
    client_cert_expiring_pem: str = ""
    client_cert_expired_pem: str = ""

    def write_files(self, directory: Path) -> dict[str, Path]:
        """Write every item to `directory` (mode 0o644) and return name -> path."""
        contents: dict[str, str | bytes] = {
            "ca": self.ca_pem,
            "server_cert": self.server_cert_pem,
            "server_key": self.server_key_pem,
            "client_cert": self.client_cert_pem,
            "client_key": self.client_key_pem,
            "client_key_encrypted": self.client_key_encrypted_pem,
            "other_ca": self.other_ca_pem,
            "other_client_cert": self.other_client_cert_pem,
            "other_client_key": self.other_client_key_pem,
            "ca_der": self.ca_der,
            "client_cert_der": self.client_cert_der,
            "client_key_der": self.client_key_der,
        }
        paths: dict[str, Path] = {}
        for name, data in contents.items():
            suffix = ".der" if isinstance(data, bytes) else ".pem"
            path = directory / f"{name.removesuffix('_der')}{suffix}"
            if isinstance(data, bytes):
                path.write_bytes(data)
            else:
                path.write_text(data, encoding="ascii")
            path.chmod(0o644)
            paths[name] = path
        return paths


def _key() -> ec.EllipticCurvePrivateKey:
    """Return a new P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    """Return a subject name with the given CN."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloudsync tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    valid_days: int = 3650,
) -> x509.CertificateBuilder:
    """Return a certificate builder valid from 60 days ago until ``valid_days`` on."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )


def _make_ca(
    common_name: str,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Return a self-signed CA certificate and its key."""
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
    key: ec.EllipticCurvePrivateKey | None = None,
    valid_days: int = 3650,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Return a server or client certificate signed by `ca`, and its key."""
    ca_cert, ca_key = ca
    key = key or _key()
    usage = (
        ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    builder = (
        _builder(_name(common_name), ca_cert.subject, key, valid_days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def _cert_pem(cert: x509.Certificate) -> str:
    """Return a certificate as PEM text."""
    return cert.public_bytes(_PEM).decode("ascii")


def _key_pem(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> str:
    """Return a private key as PKCS#8 PEM text, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(_PEM, _PKCS8, encryption).decode("ascii")


def generate_pki() -> Pki:
    """Generate a complete, fresh test PKI."""
    ca = _make_ca("cloudsync test CA")
    server_cert, server_key = _make_leaf("localhost", ca, server=True)
    client_cert, client_key = _make_leaf(CLIENT_CN, ca, server=False)
    other_ca = _make_ca("cloudsync other CA")
    other_cert, other_key = _make_leaf(OTHER_CLIENT_CN, other_ca, server=False)
    expiring, _ = _make_leaf(CLIENT_CN, ca, server=False, key=client_key, valid_days=10)
    expired, _ = _make_leaf(CLIENT_CN, ca, server=False, key=client_key, valid_days=-1)
    return Pki(
        client_cert_expiring_pem=_cert_pem(expiring),
        client_cert_expired_pem=_cert_pem(expired),
        ca_pem=_cert_pem(ca[0]),
        server_cert_pem=_cert_pem(server_cert),
        server_key_pem=_key_pem(server_key),
        client_cert_pem=_cert_pem(client_cert),
        client_key_pem=_key_pem(client_key),
        client_key_encrypted_pem=_key_pem(client_key, CLIENT_KEY_PASSWORD),
        client_key_password=CLIENT_KEY_PASSWORD,
        other_ca_pem=_cert_pem(other_ca[0]),
        other_client_cert_pem=_cert_pem(other_cert),
        other_client_key_pem=_key_pem(other_key),
        ca_der=ca[0].public_bytes(_DER),
        client_cert_der=client_cert.public_bytes(_DER),
        client_key_der=client_key.private_bytes(
            _DER, _PKCS8, serialization.NoEncryption()
        ),
    )
