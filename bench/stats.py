"""Small statistics helpers shared by the bench and its helper processes."""

from __future__ import annotations

import math
import statistics


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of the values (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    """Return the median (0 when empty)."""
    return statistics.median(values) if values else 0.0
