"""Placeholder until the services helper lands."""

from homeassistant.core import HomeAssistant, callback


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Nothing yet."""
