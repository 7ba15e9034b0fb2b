"""Config flow for cloudsync: one config entry per MQTT broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import callback

from .certificates import async_tls_data
from .client import parse_broker_url
from .const import (
    CONF_APP_ISOLATION,
    CONF_QUEUED_MESSAGES,
    CONF_URL,
    CONF_VERIFY_HOSTNAME,
    DOMAIN,
    ENTRY_MINOR_VERSION,
    ENTRY_VERSION,
)
from .entry_data import (
    connection_data,
    credentials,
    default_title,
    keep_password,
    reconfigured_title,
)
from .flow_profiles import certificate_errors, form_url
from .flow_schemas import (
    QUEUE_DISCARD,
    QUEUE_SCHEMA,
    REAUTH_SCHEMA,
    TLS_SCHEMA,
    URL_PLACEHOLDERS,
    USER_SCHEMA,
)
from .mirror_flow import SUBENTRY_FLOWS
from .options_flow import CloudSyncOptionsFlow
from .outbox import async_discard_queue, async_queued_count
from .probe import async_validate

if TYPE_CHECKING:
    from collections.abc import Mapping


_RELOAD_STATES = (ConfigEntryState.SETUP_ERROR, ConfigEntryState.SETUP_RETRY)


class CloudSyncConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up, reconfigure and re-authenticate a connection to one MQTT broker."""

    VERSION = ENTRY_VERSION
    MINOR_VERSION = ENTRY_MINOR_VERSION

    def __init__(self) -> None:
        """Start with no connection data."""
        self._data: dict[str, Any] = {}
        self._user_input: dict[str, Any] = {}
        self._queued = 0
        self._discard_queue = False
        # Uploads the broker refused, kept for a retry.
        self._kept_tls: dict[str, Any] = {}

    @staticmethod
    @callback
    def async_get_options_flow(
        config_entry: ConfigEntry,  # noqa: ARG004 - HA's signature
    ) -> CloudSyncOptionsFlow:
        """Return the options flow."""
        return CloudSyncOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls,
        config_entry: ConfigEntry,  # noqa: ARG003 - HA's signature
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Return the subentries a broker can have: its mirror."""
        return SUBENTRY_FLOWS

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the broker URL and credentials."""
        errors: dict[str, str] = {}
        if user_input is not None and (url := form_url(user_input, errors)):
            # A flow left open at the TLS step (a closed tab) must not block a new one.
            await self.async_set_unique_id(url, raise_on_progress=False)
            self._abort_if_unique_id_configured()
            self._data = connection_data(url, user_input)
            return await self._async_connect("user", user_input)
        return self._async_show_user_form("user", user_input, errors)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the broker URL, credentials, client id or protocol."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None and (url := form_url(user_input, errors)):
            self._data = keep_password(connection_data(url, user_input), entry.data)
            self._user_input = user_input
            if url != entry.unique_id:
                await self.async_set_unique_id(url)
                self._abort_if_unique_id_configured()
                if queued := await async_queued_count(self.hass, entry):
                    self._queued = queued
                    return await self.async_step_reconfigure_queue()
            return await self._async_connect("reconfigure", user_input)
        suggested = {k: v for k, v in entry.data.items() if k != CONF_PASSWORD}
        return self._async_show_user_form(
            "reconfigure", user_input or suggested, errors
        )

    async def async_step_reconfigure_queue(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask what becomes of messages queued for the old broker: nothing crosses silently."""
        if user_input is not None:
            self._discard_queue = user_input[CONF_QUEUED_MESSAGES] == QUEUE_DISCARD
            return await self._async_connect("reconfigure", self._user_input)
        entry = self._get_reconfigure_entry()
        return self.async_show_form(
            step_id="reconfigure_queue",
            data_schema=QUEUE_SCHEMA,
            description_placeholders={
                "count": str(self._queued),
                "old_url": entry.data[CONF_URL],
                "new_url": self._data[CONF_URL],
            },
        )

    async def async_step_tls(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the certificates of a TLS broker."""
        return await self._async_tls_step("tls", user_input, {})

    async def async_step_tls_retry(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask again after the broker refused the certificates; uploaded files stay."""
        return await self._async_tls_step("tls_retry", user_input, self._kept_tls)

    async def async_step_reconfigure_tls(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new certificates; the stored ones stay when nothing is uploaded."""
        stored = self._get_reconfigure_entry().data
        return await self._async_tls_step("reconfigure_tls", user_input, stored)

    async def async_step_reauth(
        self,
        entry_data: Mapping[str, Any],  # noqa: ARG002 - HA's signature
    ) -> ConfigFlowResult:
        """Start re-authentication after the broker refused the credentials."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for new credentials and check them against the broker."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = {
                k: v
                for k, v in entry.data.items()
                if k not in (CONF_USERNAME, CONF_PASSWORD)
            } | credentials(user_input)
            if not (error := await async_validate(self.hass, data)):
                # Reloads too: an entry whose setup failed has no update listener.
                return self.async_update_reload_and_abort(entry, data=data)
            errors["base"] = error
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=self.add_suggested_values_to_schema(
                REAUTH_SCHEMA, {CONF_USERNAME: entry.data.get(CONF_USERNAME)}
            ),
            description_placeholders={CONF_URL: entry.data[CONF_URL]},
            errors=errors,
        )

    async def _async_connect(
        self, step_id: str, user_input: dict[str, Any]
    ) -> ConfigFlowResult:
        """Go on to the TLS step, or probe the plain broker and finish."""
        if parse_broker_url(self._data[CONF_URL]).tls:
            return await (
                self.async_step_reconfigure_tls()
                if self.source == SOURCE_RECONFIGURE
                else self.async_step_tls()
            )
        if error := await async_validate(self.hass, self._data):
            return self._async_show_user_form(step_id, user_input, {"base": error})
        return await self._async_finish(self._data)

    async def _async_tls_step(
        self, step_id: str, user_input: dict[str, Any] | None, stored: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Read the uploaded certificates, probe the broker and finish."""
        errors: dict[str, str] = {}
        if user_input is not None:
            tls_data, errors = await async_tls_data(self.hass, user_input, stored)
            errors = errors or certificate_errors(self._data | tls_data)
            if not errors:
                data = self._data | tls_data
                if not (error := await async_validate(self.hass, data)):
                    return await self._async_finish(data)
                errors["base"] = error
                if self.source != SOURCE_RECONFIGURE:
                    # The files read fine: re-picking all of them would be a chore.
                    step_id, self._kept_tls = "tls_retry", tls_data
        suggested = {CONF_VERIFY_HOSTNAME: stored.get(CONF_VERIFY_HOSTNAME, True)}
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(TLS_SCHEMA, suggested),
            description_placeholders={CONF_URL: self._data[CONF_URL]},
            errors=errors,
        )

    @callback
    def _async_show_user_form(
        self, step_id: str, suggested: Mapping[str, Any] | None, errors: dict[str, str]
    ) -> ConfigFlowResult:
        """Show the URL and credentials form, keeping what was entered."""
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(
                USER_SCHEMA,
                {k: v for k, v in (suggested or {}).items() if k != CONF_PASSWORD},
            ),
            description_placeholders=URL_PLACEHOLDERS,
            errors=errors,
        )

    async def _async_finish(self, data: dict[str, Any]) -> ConfigFlowResult:
        """Create the entry, or update the one being reconfigured."""
        url = data[CONF_URL]
        if self.source != SOURCE_RECONFIGURE:
            # New brokers isolate apps; older entries keep their behaviour.
            return self.async_create_entry(
                title=default_title(url),
                data=data,
                options={CONF_APP_ISOLATION: True},
            )
        entry = self._get_reconfigure_entry()
        reload = entry.state in _RELOAD_STATES
        if self._discard_queue:
            # Unloaded first, so that nothing drains into the new broker meanwhile.
            reload = reload or entry.state is ConfigEntryState.LOADED
            await self.hass.config_entries.async_unload(entry.entry_id)
            await async_discard_queue(self.hass, entry, self._queued)
        title = reconfigured_title(entry.title, entry.data[CONF_URL], url)
        self.hass.config_entries.async_update_entry(
            entry, title=title, unique_id=url, data=data
        )
        if reload:
            # A loaded entry reloads through its update listener; these have none.
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_abort(reason="reconfigure_successful")
