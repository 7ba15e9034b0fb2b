"""App isolation: an app id belongs to the Home Assistant user who first used it.

With the broker's ``app_isolation`` option on, each app id is owned by one user (stored,
per broker, at most ``MAX_APPS``); another non-admin user naming it is refused. Actions
run by automations or the system (no user) act as an admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypedDict

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from .const import DOMAIN
from .errors import AppNotOwnedError, LimitReachedError

STORAGE_VERSION: Final = 1
SAVE_DELAY: Final = 1.0
MAX_APPS: Final = 10_000
LOCAL_OWNER: Final = "loopback"  # token-less callers from this machine, one owner


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: an HA user id (None: the system) and whether it may do anything."""

    user_id: str | None
    is_admin: bool


SYSTEM: Final = Principal(None, is_admin=True)
LOCAL: Final = Principal(LOCAL_OWNER, is_admin=False)


class _StoredOwners(TypedDict):
    owners: dict[str, str]


class AppOwners:
    """Which user owns which app id on one broker."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Start empty; async_load() reads the stored owners."""
        self._store: Store[_StoredOwners] = Store(
            hass, STORAGE_VERSION, storage_key(entry_id)
        )
        self._owners: dict[str, str] = {}

    def __len__(self) -> int:
        """Return how many app ids are owned."""
        return len(self._owners)

    async def async_load(self) -> None:
        """Read the stored owners."""
        if stored := await self._store.async_load():
            self._owners = dict(stored["owners"])

    async def async_flush(self) -> None:
        """Write pending changes now."""
        await self._store.async_save(self._data_to_save())

    def owner(self, app_id: str) -> str | None:
        """Return the user id that owns an app id, if any."""
        return self._owners.get(app_id)

    def check(self, principal: Principal, app_id: str) -> None:
        """Let the owner (or an admin) use an app id; a first user claims it."""
        owner = self._owners.get(app_id)
        if owner is None:
            if principal.user_id is None:
                return
            if len(self._owners) >= MAX_APPS:
                msg = f"this broker already has {MAX_APPS} apps"
                raise LimitReachedError(msg)
            self._owners[app_id] = principal.user_id
            self._store.async_delay_save(self._data_to_save, SAVE_DELAY)
        elif owner != principal.user_id and not principal.is_admin:
            msg = f"the app {app_id} belongs to another user"
            raise AppNotOwnedError(msg)

    def _data_to_save(self) -> _StoredOwners:
        return {"owners": dict(self._owners)}


def storage_key(entry_id: str) -> str:
    """Return the HA storage key of an entry's app owners."""
    return f"{DOMAIN}.{entry_id}.apps"
