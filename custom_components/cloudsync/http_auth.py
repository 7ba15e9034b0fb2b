"""Who may call the REST API: HA's own auth, the seed's raw token, or (opt-in) loopback."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from homeassistant.components.http.auth import async_user_not_allowed_do_auth
from homeassistant.components.http.ban import process_success_login
from homeassistant.components.http.const import KEY_HASS_REFRESH_TOKEN_ID, KEY_HASS_USER
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.http import KEY_AUTHENTICATED

from .const import CONF_ALLOW_LOCAL_UNAUTHENTICATED, DOMAIN
from .errors import UnauthorizedError

if TYPE_CHECKING:
    from homeassistant.auth.models import User

    from .broker import CloudSyncBroker


# Made per message (per request), so not frozen: a frozen dataclass's __init__ sets
# each field through object.__setattr__, 3-5 times the cost. Nothing changes them.
@dataclass(slots=True)
class Caller:
    """Who sent a request: an HA user, or a token-less loopback peer (``user`` None)."""

    user: User | None
    origin: str | None = None

    @property
    def local(self) -> bool:
        """Return True for a token-less caller from this machine."""
        return self.user is None


def _any_broker_allows_local(hass: HomeAssistant) -> bool:
    """Return True when some entry may let token-less loopback calls in."""
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


def _foreign_origin(request: web.Request) -> str | None:
    """Return the Origin header when it names a site other than the one asked."""
    if (origin := request.headers.get(hdrs.ORIGIN)) is None:
        return None
    try:
        if urlsplit(origin).netloc.lower() == request.host.lower():
            return None
    except ValueError:
        pass
    return origin


@callback
def async_authenticate(hass: HomeAssistant, request: web.Request) -> Caller:
    """Accept HA's own auth, the seed's raw token, or (maybe) a loopback caller.

    A token-less loopback caller is only let through here; the broker the request
    names decides with ``check_local_allowed``.
    """
    if request.get(KEY_AUTHENTICATED):
        # HA's middleware took the token; HA's own views do not count that as a login.
        return Caller(request[KEY_HASS_USER])
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
        # A token checked here resets the failed-login count, as HA's websocket auth.
        process_success_login(request)
        return Caller(refresh_token.user)
    if _is_loopback(request.remote) and _any_broker_allows_local(hass):
        return Caller(None, _foreign_origin(request))
    raise UnauthorizedError(_ASK_FOR_CREDENTIALS)


def check_local_allowed(caller: Caller, broker: CloudSyncBroker) -> None:
    """Refuse a token-less caller unless this broker allows it, from no other site.

    A web page open in a browser on this machine reaches loopback too, and simple
    (text/plain) POSTs need no CORS preflight: such requests carry a foreign Origin.
    """
    if not caller.local:
        return
    if not broker.options.get(CONF_ALLOW_LOCAL_UNAUTHENTICATED, False):
        raise UnauthorizedError(_ASK_FOR_CREDENTIALS)
    if caller.origin is not None:
        msg = f"token-less requests from a web page ({caller.origin}) are refused"
        raise UnauthorizedError(msg)


_ASK_FOR_CREDENTIALS = "send a long-lived access token in the Authorization header"
