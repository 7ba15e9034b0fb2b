"""What a mirror subentry says: which entities, to which topics, in which form.

A mirror publishes Home Assistant's states to its broker (mirror.py); this module turns
the subentry's data into a checked ``MirrorConfig`` for the flow and for setup alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
import fnmatch
from functools import lru_cache
import re
import string
from typing import Any, Final

from .client import CloudSyncError, ProfileLimits, Will, validate_topic
from .const import CONF_QOS, CONF_RETAIN

SUBENTRY_MIRROR: Final = "mirror"
BASE: Final = "base"  # a form-wide error

CONF_BASE_TOPIC: Final = "base_topic"
CONF_TOPIC_TEMPLATE: Final = "topic_template"
CONF_INCLUDE_ENTITIES: Final = "include_entities"
CONF_INCLUDE_DOMAINS: Final = "include_domains"
CONF_INCLUDE_GLOBS: Final = "include_globs"
CONF_EXCLUDE_ENTITIES: Final = "exclude_entities"
CONF_EXCLUDE_DOMAINS: Final = "exclude_domains"
CONF_EXCLUDE_GLOBS: Final = "exclude_globs"
CONF_PAYLOAD: Final = "payload"
CONF_EXCLUDE_ATTRIBUTES: Final = "exclude_attributes"
CONF_MIN_INTERVAL: Final = "min_interval"
CONF_LATEST_ONLY: Final = "latest_only"

DEFAULT_BASE_TOPIC: Final = "home"
DEFAULT_TOPIC_TEMPLATE: Final = "{base}/{domain}/{object_id}/state"
DEFAULT_EXCLUDE_ATTRIBUTES: Final = ("entity_picture",)
DEFAULT_MIRROR_QOS: Final = 1
# Retained, so that a cloud app reading later sees the latest value.
DEFAULT_MIRROR_RETAIN: Final = True
MAX_MIN_INTERVAL: Final = 86_400
STATUS_ONLINE: Final = b"online"
STATUS_OFFLINE: Final = b"offline"
TEMPLATE_FIELDS: Final = frozenset({"base", "domain", "object_id", "entity_id"})
_FILTER_CACHE: Final = 16_384  # entity ids whose answer is kept
_DOMAIN = re.compile(r"^[a-z0-9_]+$")
# A made-up entity to check what a template makes of one.
_SAMPLE = {"domain": "sensor", "object_id": "example", "entity_id": "sensor.example"}


class MirrorPayload(StrEnum):
    """What a mirrored state's message holds."""

    STATE = "state"  # the state alone, as text
    JSON = "json"  # {"state", "attributes", "last_changed", "last_updated"}


class MirrorConfigError(ValueError):
    """A mirror setting that cannot work; ``field`` and ``key`` name it for the form."""

    def __init__(self, message: str, *, field: str, key: str) -> None:
        """Keep the form field, the translation key of the error and a message."""
        super().__init__(message)
        self.field = field
        self.key = key


@dataclass(frozen=True, slots=True)
class MirrorConfig:
    """One broker's mirror, checked."""

    base_topic: str
    topic_template: str
    include_entities: tuple[str, ...]
    include_domains: tuple[str, ...]
    include_globs: tuple[str, ...]
    exclude_entities: tuple[str, ...]
    exclude_domains: tuple[str, ...]
    exclude_globs: tuple[str, ...]
    payload: MirrorPayload
    exclude_attributes: frozenset[str]
    qos: int
    retain: bool
    min_interval: float
    latest_only: bool

    @property
    def status_topic(self) -> str:
        """Return the availability topic: ``online`` while linked, else ``offline``."""
        return f"{self.base_topic}/status"

    @property
    def will(self) -> Will:
        """Return the last will that says ``offline`` when the link is lost."""
        return Will(self.status_topic, STATUS_OFFLINE, self.qos, retain=True)

    def entity_filter(self) -> Callable[[str], bool]:
        """Return whether an entity id is mirrored (answers cached per id).

        A picked entity always is; otherwise one of the chosen domains or patterns
        must match, and no exception (entity, domain or pattern).
        """
        picked = frozenset(self.include_entities)
        domains = frozenset(self.include_domains)
        globs = _globs(self.include_globs)
        excluded = frozenset(self.exclude_entities)
        excluded_domains = frozenset(self.exclude_domains)
        excluded_globs = _globs(self.exclude_globs)

        @lru_cache(maxsize=_FILTER_CACHE)
        def wanted(entity_id: str) -> bool:
            if entity_id in picked:
                return True
            domain = entity_id.partition(".")[0]
            if not (domain in domains or (globs and globs.match(entity_id))):
                return False
            return not (
                entity_id in excluded
                or domain in excluded_domains
                or (excluded_globs and excluded_globs.match(entity_id))
            )

        return wanted

    def topic_for(self, entity_id: str) -> str:
        """Return the topic an entity's state goes to."""
        domain, _, object_id = entity_id.partition(".")
        return self.topic_template.format(
            base=self.base_topic,
            domain=domain,
            object_id=object_id,
            entity_id=entity_id,
        )


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """Return one pattern matching any of the globs (None for none)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in patterns))


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """Return a list setting without blanks and repeats, in the order given."""
    values = (str(value).strip() for value in data.get(key) or ())
    return tuple(dict.fromkeys(value for value in values if value))


def _check_template(template: str, base: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as err:
        msg = f"{template!r}: {err}"
        raise MirrorConfigError(
            msg, field=CONF_TOPIC_TEMPLATE, key="invalid_topic_template"
        ) from err
    if unknown := fields - TEMPLATE_FIELDS:
        msg = f"{template!r} uses {', '.join(sorted(unknown))}"
        raise MirrorConfigError(
            msg, field=CONF_TOPIC_TEMPLATE, key="invalid_topic_template"
        )
    if not fields & {"object_id", "entity_id"}:
        msg = f"{template!r} would send every entity to the same topic"
        raise MirrorConfigError(
            msg, field=CONF_TOPIC_TEMPLATE, key="invalid_topic_template"
        )
    try:
        validate_topic(template.format(base=base, **_SAMPLE))
    except CloudSyncError as err:
        raise MirrorConfigError(
            str(err), field=CONF_TOPIC_TEMPLATE, key="invalid_topic_template"
        ) from err


def mirror_config(
    data: Mapping[str, Any], profile: ProfileLimits | None = None
) -> MirrorConfig:
    """Return the checked mirror a subentry's data describes; raise MirrorConfigError."""
    base = str(data.get(CONF_BASE_TOPIC, DEFAULT_BASE_TOPIC)).strip()
    try:
        validate_topic(base)
    except CloudSyncError as err:
        raise MirrorConfigError(
            str(err), field=CONF_BASE_TOPIC, key="invalid_base_topic"
        ) from err
    if base.endswith("/"):
        msg = f"{base!r} ends with '/'"
        raise MirrorConfigError(msg, field=CONF_BASE_TOPIC, key="invalid_base_topic")
    template = str(data.get(CONF_TOPIC_TEMPLATE, DEFAULT_TOPIC_TEMPLATE)).strip()
    _check_template(template, base)
    include_domains = _strings(data, CONF_INCLUDE_DOMAINS)
    exclude_domains = _strings(data, CONF_EXCLUDE_DOMAINS)
    for key, domains in (
        (CONF_INCLUDE_DOMAINS, include_domains),
        (CONF_EXCLUDE_DOMAINS, exclude_domains),
    ):
        if bad := [domain for domain in domains if not _DOMAIN.match(domain)]:
            msg = f"not a domain: {bad[0]!r}"
            raise MirrorConfigError(msg, field=key, key="invalid_domain")
    config = MirrorConfig(
        base_topic=base,
        topic_template=template,
        include_entities=_strings(data, CONF_INCLUDE_ENTITIES),
        include_domains=include_domains,
        include_globs=_strings(data, CONF_INCLUDE_GLOBS),
        exclude_entities=_strings(data, CONF_EXCLUDE_ENTITIES),
        exclude_domains=exclude_domains,
        exclude_globs=_strings(data, CONF_EXCLUDE_GLOBS),
        payload=MirrorPayload(data.get(CONF_PAYLOAD, MirrorPayload.STATE)),
        exclude_attributes=frozenset(
            _strings(data, CONF_EXCLUDE_ATTRIBUTES)
            if CONF_EXCLUDE_ATTRIBUTES in data
            else DEFAULT_EXCLUDE_ATTRIBUTES
        ),
        qos=int(data.get(CONF_QOS, DEFAULT_MIRROR_QOS)),
        retain=bool(data.get(CONF_RETAIN, DEFAULT_MIRROR_RETAIN)),
        min_interval=float(data.get(CONF_MIN_INTERVAL, 0)),
        latest_only=bool(data.get(CONF_LATEST_ONLY, False)),
    )
    if not (config.include_entities or config.include_domains or config.include_globs):
        msg = "choose entities, domains or globs to mirror"
        raise MirrorConfigError(msg, field=BASE, key="nothing_selected")
    if not 0 <= config.min_interval <= MAX_MIN_INTERVAL:
        msg = f"the minimum interval must be 0 to {MAX_MIN_INTERVAL} s"
        raise MirrorConfigError(msg, field=CONF_MIN_INTERVAL, key="invalid_interval")
    if profile is not None:
        try:
            profile.check_publish(config.topic_for("sensor.example"), b"", config.qos)
            profile.check_publish(config.status_topic, STATUS_OFFLINE, config.qos)
        except CloudSyncError as err:
            raise MirrorConfigError(str(err), field=BASE, key="profile_limit") from err
    return config


def mirror_data(entry_subentries: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the data of an entry's mirror subentry, or None when it has none."""
    for subentry in entry_subentries.values():
        if subentry.subentry_type == SUBENTRY_MIRROR:
            return subentry.data  # type: ignore[no-any-return]
    return None
