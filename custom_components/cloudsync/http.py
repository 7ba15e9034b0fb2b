"""Placeholder until the http helper lands."""

from homeassistant.core import HomeAssistant, callback


@callback
def async_register_views(hass: HomeAssistant) -> None:
    """Nothing yet."""
