"""Message listeners that outlive a broker's reloads: what the trigger platform uses.

Automations can attach before a broker entry is loaded, and stay attached while it
reloads. Their filters therefore live here, per config entry ID, at the domain level;
a loaded CloudSyncBroker binds to its hub, subscribes the hub's filters at the broker
(tracked, so they come back after a reconnect) and hands every message to it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.util.hass_dict import HassKey

from .client import FilterTrie
from .const import DOMAIN, LOGGER
from .errors import HANDLED
from .registry import LatestData

if TYPE_CHECKING:
    from .broker import CloudSyncBroker

type HubListener = Callable[[LatestData], None]

HUBS: HassKey[dict[str, MessageHub]] = HassKey(f"{DOMAIN}_hubs")


@dataclass(slots=True)
class _Filter:
    qos: int
    listeners: list[HubListener] = field(default_factory=list)


class MessageHub:
    """The filters automations listen to on one broker, and their listeners."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start with no filters and no broker."""
        self._hass = hass
        self._filters: dict[str, _Filter] = {}
        self._trie = FilterTrie[_Filter]()
        self._broker: CloudSyncBroker | None = None

    @property
    def filters(self) -> dict[str, int]:
        """Return the filters listened to and their QoS."""
        return {topic_filter: item.qos for topic_filter, item in self._filters.items()}

    @property
    def active(self) -> bool:
        """Return True when some listener waits for messages."""
        return bool(self._filters)

    @callback
    def bind(self, broker: CloudSyncBroker | None) -> None:
        """Attach the loaded broker (None once it unloads)."""
        self._broker = broker

    @callback
    def add(self, topic_filter: str, qos: int, listener: HubListener) -> CALLBACK_TYPE:
        """Listen on a filter; return the function that stops listening."""
        item = self._filters.get(topic_filter)
        if item is None:
            item = self._filters[topic_filter] = _Filter(qos)
            self._trie[topic_filter] = item
            self._at_broker(topic_filter, qos, listen=True)
        elif qos > item.qos:
            item.qos = qos
            self._at_broker(topic_filter, qos, listen=True)
        item.listeners.append(listener)

        @callback
        def _remove() -> None:
            item.listeners.remove(listener)
            if not item.listeners:
                del self._filters[topic_filter]
                del self._trie[topic_filter]
                self._at_broker(topic_filter, item.qos, listen=False)

        return _remove

    @callback
    def dispatch(self, data: LatestData) -> None:
        """Hand a message to every listener whose filter matches its topic."""
        for item in self._trie.iter_match(data.topic):
            for listener in list(item.listeners):
                listener(data)

    def _at_broker(self, topic_filter: str, qos: int, *, listen: bool) -> None:
        if (broker := self._broker) is None:
            return  # the broker subscribes the hub's filters when it starts
        coro = (
            broker.async_listen(topic_filter, qos)
            if listen
            else broker.async_stop_listening(topic_filter)
        )
        self._hass.async_create_background_task(
            _logged(coro, topic_filter), f"cloudsync trigger filter {topic_filter}"
        )


async def _logged(coro: Coroutine[Any, Any, None], topic_filter: str) -> None:
    """Run a subscribe/unsubscribe for a trigger; log when the broker refuses it."""
    try:
        await coro
    except HANDLED as err:
        LOGGER.warning("The trigger's filter %s: %s", topic_filter, err)


@callback
def async_get_hub(hass: HomeAssistant, entry_id: str) -> MessageHub:
    """Return the hub of a config entry, creating it on first use."""
    hubs = hass.data.setdefault(HUBS, {})
    if (hub := hubs.get(entry_id)) is None:
        hub = hubs[entry_id] = MessageHub(hass)
    return hub


@callback
def async_drop_hub(hass: HomeAssistant, entry_id: str) -> None:
    """Forget a removed entry's hub unless an automation still listens on it."""
    hubs = hass.data.get(HUBS, {})
    if (hub := hubs.get(entry_id)) is not None and not hub.active:
        del hubs[entry_id]
