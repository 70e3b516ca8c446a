"""Moments: a date, a date-time or an age (``90d``) as a filter takes them, and Tallyfy's
timestamps as runs carry them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bulkruns.errors import ConfigError

__all__ = ["parse_timestamp", "parse_when"]

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A moment from an ISO 8601 date or date-time, or an age before ``now`` (``90d``, ``12h``).

    Ages take s, m, h, d or w. A date or time without a zone is read as UTC.

    Raises:
        ConfigError: the text is neither.
    """
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        amount, unit = float(age.group(1)), _AGE_UNITS[age.group(2)]
        try:
            return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
        except OverflowError:
            raise ConfigError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a date or an age: give an ISO date such as 2025-01-31, "
            "a date-time such as 2025-01-31T18:00:00Z, or an age such as 90d or 12h"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_timestamp(value: Any) -> datetime | None:
    """A run's timestamp (``created_at``, ``last_updated``) as an aware datetime, or None
    when it is missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
