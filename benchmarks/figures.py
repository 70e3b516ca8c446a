"""The figures of a benchmark run: rows of measures, their medians and spreads, and tables."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.harness import Measure

DASH = "\u2013"  # en dash, for ranges


@dataclass
class Row:
    """One line of a table: a client in a configuration, over its repetitions."""

    label: str
    measures: list[Measure] = field(default_factory=list)
    note: str = ""

    def values(self, name: str) -> list[float]:
        found = [m.figures()[name] for m in self.measures]
        return [v for v in found if v is not None]

    def median(self, name: str) -> float | None:
        values = self.values(name)
        return statistics.median(values) if values else None


def _fmt(value: float, digits: int) -> str:
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def spread(values: Sequence[float], digits: int, scale: float = 1.0) -> str:
    """``median (min-max)``, or the one value (with an en dash, as in print)."""
    if not values:
        return DASH
    scaled = [v * scale for v in values]
    mid = _fmt(statistics.median(scaled), digits)
    lo, hi = _fmt(min(scaled), digits), _fmt(max(scaled), digits)
    if len(scaled) == 1 or lo == hi:
        return mid
    return f"{mid} ({lo}{DASH}{hi})"


COLUMNS: list[tuple[str, str, int, float]] = [
    # (figure, heading, digits, scale)
    ("selected", "runs selected", 0, 1.0),
    ("items_per_s", "items/s", 1, 1.0),
    ("efficiency", "efficiency", 3, 1.0),
    ("throttled", "429s", 0, 1.0),
    ("missed", "runs missed", 0, 1.0),
    ("failed", "runs failed", 0, 1.0),
    ("requests_per_item", "requests/item", 3, 1.0),
    ("cpu_per_1000", "client CPU-s/1k items", 2, 1.0),
    ("peak_rss_mib", "peak RSS MiB", 1, 1.0),
    ("first_mutation", "first change ms", 0, 1000.0),
]


def table(rows: Sequence[Row], columns: Sequence[tuple[str, str, int, float]]) -> str:
    head = ["client", *(c[1] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label] + [
            spread(row.values(name), digits, scale) for name, _, digits, scale in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
