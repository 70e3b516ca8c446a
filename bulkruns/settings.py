"""The rules settings are checked by, each written once.

Every setting a person can get wrong (a job's concurrency, rate, attempts, limit…; a
client's timeouts) is checked by one of these functions where the setting is made:
:class:`~bulkruns.job.options.JobOptions` for a job, whether its values come from the
library, the command line or a result log, and :class:`~bulkruns.api.client.Client` for a
connection. A failed check is a :class:`~bulkruns.errors.ConfigError` that names the
setting (``setting``) and says what it takes.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from bulkruns.errors import ConfigError

__all__ = ["choice", "number", "whole"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _refuse(name: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"{name} must be {what}, not {_shown(value)}", setting=name)


def whole(
    name: str, value: Any, *, low: int, high: int | None = None, none_ok: bool = False
) -> None:
    """Check a whole number (never a bool) of at least ``low`` and at most ``high``."""
    if value is None and none_ok:
        return
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        what = (
            f"a whole number from {low} to {high}"
            if high is not None
            else (f"a whole number of at least {low}")
        )
        raise _refuse(name, what + (", or none" if none_ok else ""), value)


def number(
    name: str,
    value: Any,
    *,
    low: float,
    above: bool = False,
    high: float = math.inf,
    below: bool = False,
    meaning: str = "",
) -> None:
    """Check a finite number (never a bool) in a range; ``above``/``below`` exclude the bounds.

    The message reads ``rate must be at least 0 (requests per second), not inf``.
    """
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if above else value >= low)
        and (value < high if below else value <= high)
    )
    if not ok:
        what = f"above {low:g}" if above else f"at least {low:g}"
        if high != math.inf:
            what += f" and below {high:g}" if below else f" and at most {high:g}"
        raise _refuse(name, what + (f" ({meaning})" if meaning else ""), value)


def choice(name: str, value: Any, choices: Collection[str]) -> None:
    """Check one of a few words."""
    if value not in choices:
        raise _refuse(name, "one of " + ", ".join(repr(c) for c in choices), value)
