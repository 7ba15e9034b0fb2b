"""quality_scale.yaml rates every rule of the current quality scale, with reasons."""

from __future__ import annotations

from pathlib import Path

import yaml

FILE = (
    Path(__file__).resolve().parent.parent
    / "custom_components"
    / "cloudsync"
    / "quality_scale.yaml"
)
# hassfest's ALL_RULES (script/hassfest/quality_scale.py), Bronze to Platinum.
RULES = {
    "bronze": """action-setup appropriate-polling brands common-modules config-flow
        config-flow-test-coverage dependency-transparency docs-actions docs-conditions
        docs-high-level-description docs-installation-instructions
        docs-removal-instructions docs-triggers entity-event-setup entity-unique-id
        has-entity-name runtime-data test-before-configure test-before-setup
        unique-config-entry""",
    "silver": """action-exceptions config-entry-unloading docs-configuration-parameters
        docs-installation-parameters entity-unavailable integration-owner
        log-when-unavailable parallel-updates reauthentication-flow test-coverage""",
    "gold": """devices diagnostics discovery discovery-update-info docs-data-update
        docs-examples docs-known-limitations docs-supported-devices
        docs-supported-functions docs-troubleshooting docs-use-cases dynamic-devices
        entity-category entity-device-class entity-disabled-by-default
        entity-translations exception-translations icon-translations
        reconfiguration-flow repair-issues stale-devices""",
    "platinum": "async-dependency inject-websession strict-typing",
}


def _rules() -> dict[str, str | dict[str, str]]:
    return yaml.safe_load(FILE.read_text(encoding="utf-8"))["rules"]


def test_every_rule_is_rated() -> None:
    expected = {rule for tier in RULES.values() for rule in tier.split()}
    assert set(_rules()) == expected


def test_status_is_valid_and_not_done_says_why() -> None:
    """hassfest's schema: a bare done/todo, or a status with a comment (always for exempt)."""
    for name, rule in _rules().items():
        if isinstance(rule, str):
            assert rule in {"done", "todo"}, name
            continue
        assert set(rule) == {"status", "comment"}, name
        assert rule["status"] in {"done", "todo", "exempt"}, name
        assert rule["comment"].strip(), name


def test_bronze_silver_and_gold_are_reached() -> None:
    rules = _rules()
    for tier in ("bronze", "silver", "gold"):
        for name in RULES[tier].split():
            rule = rules[name]
            status = rule if isinstance(rule, str) else rule["status"]
            assert status in {"done", "exempt"}, f"{tier} rule {name} is {status}"
