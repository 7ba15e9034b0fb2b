"""Print the requirements Home Assistant would install at runtime that are missing.

Usage: python scripts/ha_runtime_requirements.py MANIFEST DOMAIN...

Covers the given domains, HA's always-loaded ones, their dependencies and the
custom integration's manifest requirements (run with the venv's interpreter).
"""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path
import sys

from homeassistant import bootstrap, components
from packaging.requirements import Requirement


def main(manifest: str, *domains: str) -> None:
    """Print each missing or mismatched requirement on its own line."""
    base = Path(components.__file__).parent
    todo = [*domains, *bootstrap.CORE_INTEGRATIONS, *bootstrap.DEFAULT_INTEGRATIONS]
    seen: set[str] = set()
    requirements: list[str] = []
    while todo:
        domain = todo.pop()
        if domain in seen:
            continue
        seen.add(domain)
        data = json.loads((base / domain / "manifest.json").read_text())
        todo.extend(data.get("dependencies", []))
        requirements.extend(data.get("requirements", []))
    if (custom := Path(manifest)).exists():
        requirements.extend(json.loads(custom.read_text()).get("requirements", []))
    for requirement in dict.fromkeys(requirements):
        req = Requirement(requirement)
        try:
            installed: str | None = md.version(req.name)
        except md.PackageNotFoundError:
            installed = None
        if installed is None or not req.specifier.contains(installed, prereleases=True):
            print(requirement)


if __name__ == "__main__":
    main(*sys.argv[1:])
