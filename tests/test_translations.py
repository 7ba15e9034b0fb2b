"""The translation files follow hassfest's rules, and en.json is strings.json resolved.

hassfest (``script/hassfest/translations.py`` in HA core) rejects keys that are not
``[a-z0-9-_]+`` without leading, trailing or doubled ``-``/``_`` in the places listed
in ``_KEYED`` below, and strings with URLs, HTML, stray spaces or bad placeholders.
It runs only in GitHub; these tests catch the same mistakes in ``scripts/test``.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import re
import string
from typing import Any

from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import SelectSelector
import pytest
import voluptuous as vol
import yaml

from custom_components.cloudsync.const import DOMAIN
from custom_components.cloudsync.flow_schemas import (
    REAUTH_SCHEMA,
    TLS_SCHEMA,
    USER_SCHEMA,
    options_schema,
)

COMPONENT = Path(__file__).resolve().parent.parent / "custom_components" / DOMAIN
FILES = ("strings.json", "translations/en.json")

TRANSLATION_KEY = re.compile(r"^(?![-_])(?!.*[-_]{2})[a-z0-9-_]+(?<![-_])$")
SLUG = re.compile(r"^[a-z0-9_]+$")
URL = re.compile(
    r"((ftp|ftps|scp|http|https|mqtt|mqtts|socket|socks5)://|www\.)"
    r"[a-z0-9]+([-.][a-z0-9]+)*\.[a-z]{2,5}",
    re.IGNORECASE,
)
HTML = re.compile(r"<[a-z][\s\S]*>", re.IGNORECASE)
REFERENCE = re.compile(r"\[%key:([^%]+)%\]")

# Paths (``*`` = any key) whose children's keys hassfest checks as translation keys.
_KEYED = (
    ("selector", "*", "options"),
    ("selector", "*", "choices"),
    ("selector", "*", "unit_of_measurement"),
    ("selector", "*", "fields"),
    ("entity", "*"),
    ("entity", "*", "*", "state"),
    ("entity", "*", "*", "state_attributes"),
    ("device",),
    ("services",),
    ("services", "*", "fields"),
    ("services", "*", "sections"),
    ("system_health", "info"),
)
# Paths whose children's keys must be slugs (cv.slug).
_SLUGGED = (("exceptions",), ("entity",), ("selector",))


def _load(name: str) -> dict[str, Any]:
    return json.loads((COMPONENT / name).read_text(encoding="utf-8"))


def _matches(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(
        want in ("*", got) for got, want in zip(path, pattern, strict=True)
    )


def _walk(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Yield (path, key, value) for every key in the tree."""
    for key, value in node.items():
        yield path, key, value
        if isinstance(value, dict):
            yield from _walk(value, (*path, key))


def _strings(name: str) -> Iterator[tuple[str, str]]:
    for path, key, value in _walk(_load(name)):
        if isinstance(value, str):
            yield ".".join((*path, key)), value


@pytest.mark.parametrize("name", FILES)
def test_keys_are_valid_translation_keys(name: str) -> None:
    bad = [
        f"{'.'.join(path)}: {key!r}"
        for path, key, _ in _walk(_load(name))
        if (any(_matches(path, p) for p in _KEYED) and not TRANSLATION_KEY.match(key))
        or (any(_matches(path, p) for p in _SLUGGED) and not SLUG.match(key))
    ]
    assert not bad, f"{name}: keys hassfest rejects: {bad}"


@pytest.mark.parametrize("name", FILES)
def test_strings_have_no_urls_html_or_bad_placeholders(name: str) -> None:
    bad: list[str] = []
    for where, text in _strings(name):
        if URL.search(text):
            bad.append(f"{where}: a URL (use a description placeholder)")
        if HTML.search(text):
            bad.append(f"{where}: HTML")
        if text != text.strip():
            bad.append(f"{where}: leading or trailing spaces")
        if re.search(r"'\{\w+\}'", text):
            bad.append(f"{where}: a placeholder in single quotes")
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
        bad.extend(
            f"{where}: placeholder {f!r}" for f in fields if not f.isidentifier()
        )
    assert not bad, f"{name}: {bad}"


@pytest.mark.parametrize("name", FILES)
def test_data_descriptions_describe_existing_fields(name: str) -> None:
    for path, key, value in _walk(_load(name)):
        if key == "data_description":
            parent = _load(name)
            for part in path:
                parent = parent[part]
            assert set(value) <= set(parent["data"]), f"{'.'.join(path)}: {value}"


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """Replace ``[%key:component::cloudsync::a::b%]`` with the string it points to."""
    if isinstance(node, dict):
        return {key: _resolve(value, root) for key, value in node.items()}

    def replace(match: re.Match[str]) -> str:
        prefix, _, rest = match.group(1).partition(f"component::{DOMAIN}::")
        assert not prefix, f"{match.group(0)}: only references into {DOMAIN} resolve"
        target: Any = root
        for part in rest.split("::"):
            target = target[part]
        return target

    return REFERENCE.sub(replace, node)


def test_en_json_is_strings_json_resolved() -> None:
    strings = _load("strings.json")
    assert _load("translations/en.json") == _resolve(strings, strings)


def _selectors(schema: vol.Schema) -> Iterator[tuple[str, list[str]]]:
    """Yield (translation_key, option values) of every select selector in a form."""
    for value in schema.schema.values():
        if isinstance(value, section):
            yield from _selectors(value.schema)
        for validator in getattr(value, "validators", [value]):
            if isinstance(validator, SelectSelector):
                config = validator.config
                options = [
                    option if isinstance(option, str) else option["value"]
                    for option in config["options"]
                ]
                yield config["translation_key"], options


@pytest.mark.parametrize(
    "schema",
    [USER_SCHEMA, TLS_SCHEMA, REAUTH_SCHEMA, options_schema()],
    ids=["user", "tls", "reauth", "options"],
)
def test_select_options_are_translated(schema: vol.Schema) -> None:
    selectors = _load("strings.json")["selector"]
    for translation_key, options in _selectors(schema):
        translated = selectors[translation_key]["options"]
        assert sorted(translated) == sorted(options), translation_key
        assert all(TRANSLATION_KEY.match(option) for option in options)


def test_every_form_field_has_a_description() -> None:
    """Gold's data_description rule: every field of every step says what it is for."""
    strings = _load("strings.json")
    steps = [*strings["config"]["step"].items(), *strings["options"]["step"].items()]
    for step_id, step in steps:
        parts = [(step_id, step), *step.get("sections", {}).items()]
        for part_id, part in parts:
            data = set(part.get("data", {}))
            assert data == set(part.get("data_description", {})), part_id


def test_every_action_has_a_name_and_an_icon() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    icons = json.loads((COMPONENT / "icons.json").read_text(encoding="utf-8"))
    assert set(_load("strings.json")["services"]) == set(services)
    assert set(icons["services"]) == set(services)
    assert all(i["service"].startswith("mdi:") for i in icons["services"].values())
