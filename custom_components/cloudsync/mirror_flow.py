"""The mirror's config subentry flow: add or change a broker's mirror in the UI."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigSubentryFlow, SubentryFlowResult
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
)
import voluptuous as vol

from .const import CONF_QOS, CONF_RETAIN
from .entry_data import broker_config
from .flow_schemas import QOS_SELECTOR, number_box
from .mirror_config import (
    BASE,
    CONF_BASE_TOPIC,
    CONF_EXCLUDE_ATTRIBUTES,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_GLOBS,
    CONF_LATEST_ONLY,
    CONF_MIN_INTERVAL,
    CONF_PAYLOAD,
    CONF_TOPIC_TEMPLATE,
    DEFAULT_BASE_TOPIC,
    DEFAULT_EXCLUDE_ATTRIBUTES,
    DEFAULT_MIRROR_QOS,
    DEFAULT_MIRROR_RETAIN,
    DEFAULT_TOPIC_TEMPLATE,
    MAX_MIN_INTERVAL,
    SUBENTRY_MIRROR,
    TEMPLATE_FIELDS,
    MirrorConfigError,
    MirrorPayload,
    mirror_config,
    mirror_data,
)

_ENTITIES = EntitySelector(EntitySelectorConfig(multiple=True))
_TEXTS = TextSelector(TextSelectorConfig(multiple=True))


def _domains(options: list[str]) -> SelectSelector:
    return SelectSelector(
        SelectSelectorConfig(
            options=options, multiple=True, custom_value=True, sort=True
        )
    )


def mirror_schema(domains: list[str]) -> vol.Schema:
    """Return the mirror form; ``domains`` are those Home Assistant has now."""
    return vol.Schema(
        {
            vol.Required(CONF_BASE_TOPIC, default=DEFAULT_BASE_TOPIC): TextSelector(),
            vol.Optional(CONF_INCLUDE_ENTITIES): _ENTITIES,
            vol.Optional(CONF_INCLUDE_DOMAINS): _domains(domains),
            vol.Optional(CONF_INCLUDE_GLOBS): _TEXTS,
            vol.Optional(CONF_EXCLUDE_ENTITIES): _ENTITIES,
            vol.Optional(CONF_EXCLUDE_DOMAINS): _domains(domains),
            vol.Optional(CONF_EXCLUDE_GLOBS): _TEXTS,
            vol.Required(CONF_PAYLOAD, default=MirrorPayload.STATE.value): (
                SelectSelector(
                    SelectSelectorConfig(
                        options=[payload.value for payload in MirrorPayload],
                        mode=SelectSelectorMode.LIST,
                        translation_key=CONF_PAYLOAD,
                    )
                )
            ),
            vol.Optional(CONF_EXCLUDE_ATTRIBUTES): _TEXTS,
            vol.Required(
                CONF_TOPIC_TEMPLATE, default=DEFAULT_TOPIC_TEMPLATE
            ): TextSelector(),
            vol.Required(CONF_QOS, default=str(DEFAULT_MIRROR_QOS)): QOS_SELECTOR,
            vol.Required(CONF_RETAIN, default=DEFAULT_MIRROR_RETAIN): BooleanSelector(),
            vol.Required(CONF_MIN_INTERVAL, default=0): number_box(
                0, MAX_MIN_INTERVAL, "s", step=0.1
            ),
            vol.Required(CONF_LATEST_ONLY, default=False): BooleanSelector(),
        }
    )


class MirrorSubentryFlow(ConfigSubentryFlow):
    """Add a broker's mirror (one per broker) or change it."""

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add the mirror."""
        if mirror_data(self._get_entry().subentries) is not None:
            return self.async_abort(reason="mirror_exists")
        return await self._async_form(
            "user",
            user_input,
            {CONF_EXCLUDE_ATTRIBUTES: list(DEFAULT_EXCLUDE_ATTRIBUTES)},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change the mirror."""
        subentry = self._get_reconfigure_subentry()
        current = dict(subentry.data)
        current[CONF_QOS] = str(
            current.get(CONF_QOS, DEFAULT_MIRROR_QOS)
        )  # the select's
        return await self._async_form("reconfigure", user_input, current)

    async def _async_form(
        self,
        step_id: str,
        user_input: dict[str, Any] | None,
        current: dict[str, Any],
    ) -> SubentryFlowResult:
        errors: dict[str, str] = {}
        # The template's own fields, shown as they are typed in the field.
        placeholders = {name: f"{{{name}}}" for name in TEMPLATE_FIELDS}
        placeholders["error"] = ""
        if user_input is not None:
            # A list the user emptied is left out of the form's answer.
            user_input.setdefault(CONF_EXCLUDE_ATTRIBUTES, [])
            entry = self._get_entry()
            try:
                config = mirror_config(user_input, broker_config(entry.data).profile)
            except MirrorConfigError as err:
                errors[err.field] = err.key
                if err.field != BASE or err.key == "profile_limit":
                    placeholders["error"] = str(err)  # the detail the banner lacks
            else:
                title = f"Mirror to {config.base_topic}"
                if step_id == "user":
                    return self.async_create_entry(title=title, data=user_input)
                return self.async_update_and_abort(
                    entry,
                    self._get_reconfigure_subentry(),
                    title=title,
                    data=user_input,
                )
        domains = sorted({state.domain for state in self.hass.states.async_all()})
        shown = dict(user_input or current)
        # The select offers QoS as text; the stored and validated value is a number.
        shown[CONF_QOS] = str(shown.get(CONF_QOS, DEFAULT_MIRROR_QOS))
        schema = self.add_suggested_values_to_schema(mirror_schema(domains), shown)
        return self.async_show_form(
            step_id=step_id,
            data_schema=schema,
            errors=errors,
            description_placeholders=placeholders,
        )


SUBENTRY_FLOWS: dict[str, type[ConfigSubentryFlow]] = {
    SUBENTRY_MIRROR: MirrorSubentryFlow
}
