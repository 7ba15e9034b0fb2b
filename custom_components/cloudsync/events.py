"""The cloudsync_message_received event, fired for every message on a subscribed filter."""

from __future__ import annotations

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from .const import EVENT_MESSAGE_RECEIVED
from .models import CloudSyncConfigEntry
from .payload import encode_payload
from .registry import LatestData


@callback
def async_setup_events(
    hass: HomeAssistant, entry: CloudSyncConfigEntry
) -> CALLBACK_TYPE:
    """Fire an event per received message; return the function that stops it."""
    broker = entry.runtime_data
    url = str(broker.url)

    @callback
    def _fire(data: LatestData) -> None:
        payload, encoding = encode_payload(data.payload)
        hass.bus.async_fire(
            EVENT_MESSAGE_RECEIVED,
            {
                "entry_id": entry.entry_id,
                "broker": url,
                "topic": data.topic,
                "payload": payload,
                "encoding": encoding,
                "qos": data.qos,
                "retained": data.retain,
            },
        )

    return broker.add_message_listener(_fire)
