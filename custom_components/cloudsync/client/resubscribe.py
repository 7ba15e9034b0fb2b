"""Subscribing every tracked filter again after a reconnect, in batches."""

from __future__ import annotations

from collections.abc import Mapping
import logging

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

_LOGGER = logging.getLogger(__name__)

BATCH = 100


class Resubscription:
    """The SUBSCRIBE packets of one resubscription and the SUBACKs still missing."""

    def __init__(self, url: str, batch: int = BATCH) -> None:
        """Resubscribe at the broker ``url`` (named in warnings), ``batch`` per packet."""
        self._url = url
        self._batch = batch
        self._batches: dict[int, list[str]] = {}

    def start(self, mqttc: mqtt.Client, filters: Mapping[str, int]) -> bool:
        """Send SUBSCRIBE for all filters; return True when there is nothing to wait for."""
        self._batches.clear()
        items = list(filters.items())
        for start in range(0, len(items), self._batch):
            batch = items[start : start + self._batch]
            rc, mid = mqttc.subscribe(batch)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._batches[mid] = [topic_filter for topic_filter, _qos in batch]
        return not self._batches

    def owns(self, mid: int) -> bool:
        """Return True when SUBACK ``mid`` answers one of the batches."""
        return mid in self._batches

    def acknowledged(self, mid: int, reasons: list[ReasonCode]) -> bool:
        """Account for one batch's SUBACK; return True once every batch is answered."""
        for topic_filter, reason in zip(self._batches.pop(mid), reasons, strict=False):
            if reason.is_failure:
                _LOGGER.warning(
                    "%s refused the resubscription to %s: %s",
                    self._url,
                    topic_filter,
                    reason,
                )
        return not self._batches

    def cancel(self) -> None:
        """Forget the batches (the connection is gone)."""
        self._batches.clear()
