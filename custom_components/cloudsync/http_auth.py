"""Who may call the REST API: HA's own auth, the seed's raw token, or (opt-in) loopback."""

from __future__ import annotations

from ipaddress import ip_address

from aiohttp import hdrs, web
from homeassistant.components.http.auth import async_user_not_allowed_do_auth
from homeassistant.components.http.const import KEY_HASS_REFRESH_TOKEN_ID, KEY_HASS_USER
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.http import KEY_AUTHENTICATED

from .const import CONF_ALLOW_LOCAL_UNAUTHENTICATED, DOMAIN
from .errors import UnauthorizedError


def _local_unauthenticated_allowed(hass: HomeAssistant) -> bool:
    """Return True when an enabled entry allows token-less calls from loopback."""
    return any(
        entry.options.get(CONF_ALLOW_LOCAL_UNAUTHENTICATED, False)
        for entry in hass.config_entries.async_entries(
            DOMAIN, include_ignore=False, include_disabled=False
        )
    )


def _is_loopback(remote: str | None) -> bool:
    """Return True for a loopback peer (HA has already applied trusted proxies)."""
    try:
        return remote is not None and ip_address(remote).is_loopback
    except ValueError:
        return False


@callback
def async_authenticate(hass: HomeAssistant, request: web.Request) -> None:
    """Accept HA's own auth, the seed's raw token, or (opt-in) a loopback caller."""
    if request.get(KEY_AUTHENTICATED):
        return
    if header := request.headers.get(hdrs.AUTHORIZATION, "").strip():
        scheme, _, rest = header.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else header
        refresh_token = hass.auth.async_validate_access_token(token)
        if refresh_token is None or async_user_not_allowed_do_auth(
            hass, refresh_token.user, request
        ):
            msg = "the access token is not valid"
            raise UnauthorizedError(msg)
        request[KEY_HASS_USER] = refresh_token.user
        request[KEY_HASS_REFRESH_TOKEN_ID] = refresh_token.id
        return
    if _local_unauthenticated_allowed(hass) and _is_loopback(request.remote):
        return
    msg = "send a long-lived access token in the Authorization header"
    raise UnauthorizedError(msg)
