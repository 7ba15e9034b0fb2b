"""A broker's outbox in Home Assistant: its file, its caps, events and sensor updates.

The file lives in ``.storage/cloudsync/`` of the config directory. A file that cannot be
read is set aside and reported as a repair issue; the broker starts a new outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_call_later, async_track_time_interval
from homeassistant.helpers.storage import STORAGE_DIR

from .client import (
    BrokerConnection,
    DroppedMessage,
    DropReason,
    Outbox,
    OutboxError,
    OutboxLimits,
    OverflowPolicy,
    QueuedMessage,
    count_queued,
    remove_files,
)
from .const import (
    CONF_DRAIN_RATE,
    CONF_MAX_AGE,
    CONF_MAX_MESSAGES,
    CONF_MAX_SIZE,
    CONF_OUTBOX,
    CONF_OVERFLOW,
    CONF_URL,
    DEFAULT_DRAIN_RATE,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_SIZE,
    DEFAULT_OVERFLOW,
    DOMAIN,
    EVENT_MESSAGES_DELIVERED,
    EVENT_MESSAGES_DROPPED,
    LOGGER,
    MIB,
    signal_outbox,
)
from .models import CloudSyncConfigEntry, entry_task_factory
from .receipts import ReceiptBatcher

STATS_DELAY: Final = 1.0  # sensor updates are coalesced to one a second
AGE_INTERVAL: Final = timedelta(seconds=10)  # the oldest message's age moves on


def outbox_path(hass: HomeAssistant, entry_id: str) -> Path:
    """Return the outbox file of a config entry."""
    return Path(hass.config.path(STORAGE_DIR, DOMAIN, f"{entry_id}.outbox.db"))


def max_age_hours(settings: Mapping[str, Any]) -> float:
    """Return the outbox's maximum message age in hours (or from an older duration)."""
    value = settings.get(CONF_MAX_AGE, DEFAULT_MAX_AGE)
    if isinstance(value, Mapping):
        age: timedelta = cv.time_period_dict(value)
        return age.total_seconds() / 3600
    return float(value)


def outbox_limits(options: Mapping[str, Any]) -> OutboxLimits:
    """Return the caps the entry's options set (ValueError when they cannot work)."""
    settings: Mapping[str, Any] = options.get(CONF_OUTBOX, {})
    return OutboxLimits(
        max_messages=int(settings.get(CONF_MAX_MESSAGES, DEFAULT_MAX_MESSAGES)),
        max_bytes=round(float(settings.get(CONF_MAX_SIZE, DEFAULT_MAX_SIZE)) * MIB),
        max_age=max_age_hours(settings) * 3600,
        overflow=OverflowPolicy(settings.get(CONF_OVERFLOW, DEFAULT_OVERFLOW)),
        rate=float(settings.get(CONF_DRAIN_RATE, DEFAULT_DRAIN_RATE)),
    )


def issue_id(entry_id: str) -> str:
    """Return the repair issue id for an entry's set-aside outbox."""
    return f"outbox_corrupt_{entry_id}"


class OutboxNotifier:
    """Tells the outbox sensors about changes, at most once per STATS_DELAY."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Notify for one entry."""
        self._hass = hass
        self._signal = signal_outbox(entry_id)
        self._cancel_timer: CALLBACK_TYPE | None = None
        self._closed = False

    @callback
    def changed(self) -> None:
        """Schedule an update unless one is pending."""
        if self._cancel_timer is None and not self._closed:
            self._cancel_timer = async_call_later(
                self._hass, STATS_DELAY, HassJob(self._send, cancel_on_shutdown=True)
            )

    @callback
    def _send(self, _now: Any = None) -> None:
        self._cancel_timer = None
        async_dispatcher_send(self._hass, self._signal)

    @callback
    def start(self) -> CALLBACK_TYPE:
        """Refresh the age now and then; return the function that stops everything."""
        stop_interval = async_track_time_interval(
            self._hass, self._send, AGE_INTERVAL, cancel_on_shutdown=True
        )

        @callback
        def _stop() -> None:
            self._closed = True
            stop_interval()
            if self._cancel_timer is not None:
                self._cancel_timer()
                self._cancel_timer = None

        return _stop


async def async_open_outbox(
    hass: HomeAssistant,
    entry: CloudSyncConfigEntry,
    connection: BrokerConnection,
    limits: OutboxLimits,
) -> Outbox:
    """Open the entry's outbox; a corrupt file becomes a repair issue, not a failure."""
    broker = str(connection.config.url)
    notifier = OutboxNotifier(hass, entry.entry_id)

    base = {"entry_id": entry.entry_id, "broker": broker}
    delivered = ReceiptBatcher(hass, EVENT_MESSAGES_DELIVERED, base)
    dropped = ReceiptBatcher(hass, EVENT_MESSAGES_DROPPED, base)
    entry.async_on_unload(delivered.flush)
    entry.async_on_unload(dropped.flush)

    @callback
    def _delivered(message: QueuedMessage) -> None:
        delivered.add(message.id)

    @callback
    def _dropped(message: DroppedMessage) -> None:
        dropped.add(message.id, str(message.reason))
        if message.reason is DropReason.DEAD_LETTER:
            _async_report_dead_letter(hass, entry, broker, message)

    outbox = Outbox(
        connection,
        outbox_path(hass, entry.entry_id),
        limits,
        create_task=entry_task_factory(hass, entry),
        on_delivered=_delivered,
        on_dropped=_dropped,
        on_change=notifier.changed,
    )
    try:
        aside, error = await outbox.open()
    except OutboxError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="outbox_unavailable",
            translation_placeholders={"url": broker, "error": str(err)},
        ) from err
    entry.async_on_unload(notifier.start())
    if aside is not None:
        _async_report_corrupt(hass, entry, broker, aside, error or "")
    return outbox


@callback
def _async_report_dead_letter(
    hass: HomeAssistant,
    entry: CloudSyncConfigEntry,
    broker: str,
    message: DroppedMessage,
) -> None:
    """Tell the user a message was set aside because the broker kept dropping the link."""
    _async_warn(
        hass,
        f"dead_letter_{entry.entry_id}",
        "dead_letter",
        {
            "broker": broker,
            "topic": message.topic,
            "id": message.id,
            "path": str(outbox_path(hass, entry.entry_id)),
        },
    )


@callback
def _async_report_corrupt(
    hass: HomeAssistant,
    entry: CloudSyncConfigEntry,
    broker: str,
    aside: Path,
    error: str,
) -> None:
    LOGGER.error(
        "The outbox of %s could not be read (%s); it was moved to %s and a new one "
        "was started",
        broker,
        error,
        aside,
    )
    _async_warn(
        hass,
        issue_id(entry.entry_id),
        "outbox_corrupt",
        {"broker": broker, "path": str(aside), "error": error},
        persistent=True,
    )


@callback
def _async_warn(
    hass: HomeAssistant,
    issue: str,
    translation_key: str,
    placeholders: dict[str, str],
    *,
    persistent: bool = False,
) -> None:
    """Raise a repair issue (a warning the user reads; nothing to fix in a flow)."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue,
        is_fixable=False,
        is_persistent=persistent,
        severity=ir.IssueSeverity.WARNING,
        translation_key=translation_key,
        translation_placeholders=placeholders,
    )


async def async_remove_outbox(hass: HomeAssistant, entry_id: str) -> None:
    """Delete an entry's outbox file and its repair issue."""
    await hass.async_add_executor_job(remove_files, outbox_path(hass, entry_id))
    ir.async_delete_issue(hass, DOMAIN, issue_id(entry_id))


async def async_queued_count(hass: HomeAssistant, entry: CloudSyncConfigEntry) -> int:
    """Return how many messages wait in an entry's outbox, loaded or not."""
    if entry.state is ConfigEntryState.LOADED:
        return entry.runtime_data.outbox_stats.queued
    return await hass.async_add_executor_job(
        count_queued, outbox_path(hass, entry.entry_id)
    )


async def async_discard_queue(
    hass: HomeAssistant, entry: CloudSyncConfigEntry, count: int
) -> None:
    """Delete an unloaded entry's queued messages, at the user's request, visibly."""
    broker = entry.data[CONF_URL]
    await async_remove_outbox(hass, entry.entry_id)
    LOGGER.warning(
        "Discarded %d queued messages meant for %s: the broker was reconfigured",
        count,
        broker,
    )
    hass.bus.async_fire(
        EVENT_MESSAGES_DROPPED,
        {
            "entry_id": entry.entry_id,
            "broker": broker,
            "count": count,
            "ids": [],
            "ids_truncated": count > 0,
            "reasons": {"discarded": count},
        },
    )
