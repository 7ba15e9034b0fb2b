"""Fix flows of the repair issues: a new client id, new certificate files."""

from __future__ import annotations

from typing import Any

from homeassistant import data_entry_flow
from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import voluptuous as vol

from .certificates import async_tls_data
from .client import new_client_id
from .const import CONF_CLIENT_ID, CONF_URL, CONF_VERIFY_HOSTNAME
from .flow_profiles import certificate_errors
from .flow_schemas import TLS_SCHEMA
from .lifecycle import TAKEOVER_ISSUE
from .probe import async_validate


class _EntryRepairFlow(RepairsFlow):
    """A fix flow bound to one config entry."""

    def __init__(self, entry_id: str) -> None:
        """Fix the entry ``entry_id``."""
        self._entry_id = entry_id

    def _entry_data(self) -> dict[str, Any] | None:
        """Return the entry's data, or None when the entry is gone."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        return None if entry is None else dict(entry.data)

    def _update(self, data: dict[str, Any]) -> data_entry_flow.FlowResult:
        """Store new entry data (the entry reloads) and finish."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        assert entry is not None  # noqa: S101 - checked when the flow started
        self.hass.config_entries.async_update_entry(entry, data=data)
        if entry.state is not ConfigEntryState.LOADED:
            # A loaded entry reloads through its update listener; others have none.
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_create_entry(data={})


class ClientIdRepairFlow(_EntryRepairFlow):
    """Give the entry a new, generated client id."""

    async def async_step_init(
        self,
        user_input: dict[str, str] | None = None,  # noqa: ARG002 - the issue's id
    ) -> data_entry_flow.FlowResult:
        """Start at the confirmation."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Ask, then replace the client id."""
        if (data := self._entry_data()) is None:
            return self.async_abort(reason="entry_not_found")
        if user_input is not None:
            return self._update(data | {CONF_CLIENT_ID: new_client_id()})
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders={
                "broker": data[CONF_URL],
                "client_id": data.get(CONF_CLIENT_ID, ""),
            },
        )


class CertificateRepairFlow(_EntryRepairFlow):
    """Take new certificate files, checked like the config flow's, and reconnect."""

    async def async_step_init(
        self,
        user_input: dict[str, Any] | None = None,  # noqa: ARG002 - the issue's id
    ) -> data_entry_flow.FlowResult:
        """Start at the upload form."""
        return await self.async_step_upload()

    async def async_step_upload(
        self, user_input: dict[str, Any] | None = None
    ) -> data_entry_flow.FlowResult:
        """Show the upload form; check the files and the broker with them."""
        if (stored := self._entry_data()) is None:
            return self.async_abort(reason="entry_not_found")
        errors: dict[str, str] = {}
        if user_input is not None:
            tls_data, errors = await async_tls_data(self.hass, user_input, stored)
            data = stored | tls_data
            errors = errors or certificate_errors(data)
            if not errors and not (error := await async_validate(self.hass, data)):
                return self._update(data)
            errors = errors or {"base": error or "unknown"}
        suggested = {CONF_VERIFY_HOSTNAME: stored.get(CONF_VERIFY_HOSTNAME, True)}
        return self.async_show_form(
            step_id="upload",
            data_schema=self.add_suggested_values_to_schema(TLS_SCHEMA, suggested),
            description_placeholders={"broker": stored[CONF_URL]},
            errors=errors,
        )


async def async_create_fix_flow(
    hass: HomeAssistant,  # noqa: ARG001 - HA's signature
    issue_id: str,
    data: dict[str, str | int | float | None] | None,
) -> RepairsFlow:
    """Return the fix flow of a cloudsync issue."""
    entry_id = str((data or {}).get("entry_id", ""))
    if issue_id.startswith(TAKEOVER_ISSUE):
        return ClientIdRepairFlow(entry_id)
    if issue_id.startswith("certificate_"):
        return CertificateRepairFlow(entry_id)
    return ConfirmRepairFlow()
