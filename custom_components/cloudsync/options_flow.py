"""The options flow: a broker's defaults, caps and switches."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow

from .const import CONF_CACHE, CONF_MAX_AGE, CONF_OUTBOX, CONF_QOS, DEFAULT_QOS
from .flow_profiles import options_errors
from .flow_schemas import options_schema
from .outbox import max_age_hours


class CloudSyncOptionsFlow(OptionsFlow):
    """Default QoS, retain flag, keepalive and the outbox caps of a broker."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and store the options."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = options_errors(self.config_entry.data, user_input)
            if not errors:
                return self.async_create_entry(data=user_input)
        options = user_input or self.config_entry.options
        outbox = options.get(CONF_OUTBOX, {})
        suggested = {
            **options,
            CONF_QOS: str(options.get(CONF_QOS, DEFAULT_QOS)),
            CONF_OUTBOX: {**outbox, CONF_MAX_AGE: max_age_hours(outbox)},
            CONF_CACHE: options.get(CONF_CACHE, {}),
        }
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                options_schema(), suggested
            ),
            errors=errors,
        )
