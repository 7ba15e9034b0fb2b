"""TLS context building and certificate conversion; everything here blocks (run it in an executor)."""

from __future__ import annotations

from datetime import datetime
import os
from pathlib import Path
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .config import BrokerConfig
from .errors import CertificateError

_PEM_MARKER = b"-----BEGIN "


def certificate_to_pem(data: bytes) -> str:
    """Return PEM text for a certificate given as PEM or DER, or raise CertificateError."""
    try:
        if _PEM_MARKER in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as err:
        msg = "not a PEM or DER X.509 certificate"
        raise CertificateError(msg) from err
    return "".join(
        cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certs
    )


def private_key_to_pem(data: bytes, password: str | None) -> str:
    """Return PEM text for a private key given as PEM or DER, keeping its encryption."""
    secret = password.encode() if password else None
    loader = (
        serialization.load_pem_private_key
        if _PEM_MARKER in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=secret)
    except TypeError as err:
        msg = "the private key is encrypted: give its password"
        if secret is not None:
            msg = "the private key is not encrypted: leave the key password empty"
        raise CertificateError(msg) from err
    except ValueError as err:
        msg = "not a PEM or DER private key, or the key password is wrong"
        raise CertificateError(msg) from err
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret)
        if secret
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def certificate_expiry(pem: str) -> datetime:
    """Return when the first certificate of a PEM bundle to expire does (UTC)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as err:
        msg = "not a PEM X.509 certificate"
        raise CertificateError(msg) from err
    return min(cert.not_valid_after_utc for cert in certs)


def build_ssl_context(config: BrokerConfig) -> ssl.SSLContext:
    """Build the client SSLContext: the server chain is always verified."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if config.ca_cert:
            context.load_verify_locations(cadata=config.ca_cert)
        if config.client_cert and config.client_key:
            _load_client_chain(context, config)
    except ssl.SSLError as err:
        msg = f"cannot load the TLS certificates: {err.reason or err}"
        raise CertificateError(msg) from err
    if alpn := config.profile.alpn_for(config.port):
        context.set_alpn_protocols(alpn)
    if not config.verify_hostname:
        # The chain is still verified against the CA; only the name check is off.
        context.check_hostname = False
    return context


def _load_client_chain(context: ssl.SSLContext, config: BrokerConfig) -> None:
    """Load the client certificate and key; ssl only reads them from files."""
    with tempfile.TemporaryDirectory(prefix="cloudsync-") as tmp:
        cert_path = Path(tmp, "client.crt")
        key_path = Path(tmp, "client.key")
        cert_path.write_text(config.client_cert or "")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as key_file:
            key_file.write(config.client_key or "")
        context.load_cert_chain(
            cert_path, key_path, password=config.key_password or None
        )
