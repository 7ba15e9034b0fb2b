"""Repair issues a broker raises over time: a taken-over client id, expiring certificates.

Both are fixable: ``repairs.py`` generates a new client id, or takes new certificate files.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from .client import BrokerConnection, CertificateError, certificate_expiry
from .const import CONF_CA_CERT, CONF_CLIENT_CERT, CONF_URL, DOMAIN, LOGGER
from .models import CloudSyncConfigEntry

EXPIRY_WARNING: Final = timedelta(days=30)
EXPIRY_CHECK_INTERVAL: Final = timedelta(hours=12)
# The certificates whose expiry is watched, with the name the issue gives them.
CERTIFICATES: Final = {
    CONF_CLIENT_CERT: "client certificate",
    CONF_CA_CERT: "CA certificate",
}
TAKEOVER_ISSUE: Final = "client_id_taken"
EXPIRING_ISSUE: Final = "certificate_expiring"
EXPIRED_ISSUE: Final = "certificate_expired"


def issue_id(kind: str, entry_id: str, certificate: str = "") -> str:
    """Return the id of one of an entry's issues (per certificate for expiry)."""
    return "_".join(part for part in (kind, certificate, entry_id) if part)


def _read_expiry(data: Mapping[str, Any]) -> dict[str, datetime]:
    """Return when the entry's certificates expire (blocking: run in the executor)."""
    expiry: dict[str, datetime] = {}
    for key in CERTIFICATES:
        if pem := data.get(key):
            try:
                expiry[key] = certificate_expiry(pem)
            except CertificateError:
                LOGGER.debug("The stored %s cannot be read for its expiry", key)
    return expiry


async def async_certificate_expiry(
    hass: HomeAssistant, data: Mapping[str, Any]
) -> dict[str, datetime]:
    """Return when the entry's client and CA certificates expire."""
    return await hass.async_add_executor_job(_read_expiry, data)


@callback
def async_check_certificates(
    hass: HomeAssistant, entry: CloudSyncConfigEntry, expiry: Mapping[str, datetime]
) -> None:
    """Raise an issue for a certificate within 30 days of expiry, another once expired."""
    now = dt_util.utcnow()
    for key, name in CERTIFICATES.items():
        expired = issue_id(EXPIRED_ISSUE, entry.entry_id, key)
        expiring = issue_id(EXPIRING_ISSUE, entry.entry_id, key)
        when = expiry.get(key)
        kind = None
        if when is not None and when <= now:
            kind = EXPIRED_ISSUE
        elif when is not None and when - now <= EXPIRY_WARNING:
            kind = EXPIRING_ISSUE
        for other in (expired, expiring):
            if kind is None or other != issue_id(kind, entry.entry_id, key):
                ir.async_delete_issue(hass, DOMAIN, other)
        if kind is None or when is None:
            continue
        ir.async_create_issue(
            hass,
            DOMAIN,
            issue_id(kind, entry.entry_id, key),
            is_fixable=True,
            is_persistent=False,
            severity=ir.IssueSeverity.ERROR
            if kind == EXPIRED_ISSUE
            else ir.IssueSeverity.WARNING,
            translation_key=kind,
            translation_placeholders={
                "broker": entry.data[CONF_URL],
                "certificate": name,
                "expires": when.isoformat(),
            },
            data={"entry_id": entry.entry_id},
        )


@callback
def async_watch_certificates(
    hass: HomeAssistant, entry: CloudSyncConfigEntry, expiry: Mapping[str, datetime]
) -> CALLBACK_TYPE:
    """Check the certificates now and twice a day; return the function that stops it."""
    async_check_certificates(hass, entry, expiry)

    @callback
    def _check(_now: datetime) -> None:
        async_check_certificates(hass, entry, expiry)

    return async_track_time_interval(
        hass, _check, EXPIRY_CHECK_INTERVAL, cancel_on_shutdown=True
    )


@callback
def async_watch_takeover(
    hass: HomeAssistant, entry: CloudSyncConfigEntry, connection: BrokerConnection
) -> CALLBACK_TYPE:
    """Raise a fixable issue while another client seems to use the entry's client id."""
    issue = issue_id(TAKEOVER_ISSUE, entry.entry_id)

    @callback
    def _changed(suspected: bool) -> None:  # noqa: FBT001
        if not suspected:
            ir.async_delete_issue(hass, DOMAIN, issue)
            return
        ir.async_create_issue(
            hass,
            DOMAIN,
            issue,
            is_fixable=True,
            is_persistent=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=TAKEOVER_ISSUE,
            translation_placeholders={
                "broker": entry.data[CONF_URL],
                "client_id": connection.client_id,
            },
            data={"entry_id": entry.entry_id},
        )

    return connection.add_takeover_listener(_changed)
