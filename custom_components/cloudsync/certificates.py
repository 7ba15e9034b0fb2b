"""Certificates and keys uploaded in the config flow, read off the event loop."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from homeassistant.components.file_upload import process_uploaded_file
from homeassistant.core import HomeAssistant

from .client import (
    CertificateError,
    certificate_to_pem,
    private_key_to_pem,
)
from .const import (
    CONF_CA_CERT,
    CONF_CLIENT_CERT,
    CONF_CLIENT_KEY,
    CONF_KEY_PASSWORD,
    CONF_VERIFY_HOSTNAME,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


_STORED_TLS = (CONF_CA_CERT, CONF_CLIENT_CERT, CONF_CLIENT_KEY, CONF_KEY_PASSWORD)


def _read_upload(
    hass: HomeAssistant, file_id: str, to_pem: Callable[[bytes], str]
) -> str:
    """Read an uploaded file and convert it to PEM text (blocking)."""
    with process_uploaded_file(hass, file_id) as path:
        return to_pem(path.read_bytes())


async def _async_read_uploads(
    hass: HomeAssistant, user_input: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """Return the uploaded certificates and key as PEM, and the fields that failed."""
    password = user_input.get(CONF_KEY_PASSWORD) or None
    uploads: dict[str, tuple[str, Callable[[bytes], str]]] = {
        CONF_CA_CERT: ("invalid_ca_cert", certificate_to_pem),
        CONF_CLIENT_CERT: ("invalid_client_cert", certificate_to_pem),
        CONF_CLIENT_KEY: (
            "invalid_client_key",
            partial(private_key_to_pem, password=password),
        ),
    }
    pems: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, (error, to_pem) in uploads.items():
        if file_id := user_input.get(key):
            try:
                pems[key] = await hass.async_add_executor_job(
                    _read_upload, hass, file_id, to_pem
                )
            except (CertificateError, ValueError):
                errors[key] = error
    if CONF_CLIENT_KEY in pems and password:
        pems[CONF_KEY_PASSWORD] = password
    return pems, errors


async def async_tls_data(
    hass: HomeAssistant, user_input: Mapping[str, Any], stored: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the TLS entry data (uploads replace what is stored) and the form errors."""
    pems, errors = await _async_read_uploads(hass, user_input)
    data: dict[str, Any] = {k: stored[k] for k in _STORED_TLS if stored.get(k)}
    if CONF_CLIENT_KEY in pems:
        data.pop(CONF_KEY_PASSWORD, None)  # the stored password was the replaced key's
    data |= pems
    data[CONF_VERIFY_HOSTNAME] = user_input[CONF_VERIFY_HOSTNAME]
    if not errors and (CONF_CLIENT_CERT in data) != (CONF_CLIENT_KEY in data):
        errors["base"] = "client_cert_and_key"
    return data, errors
