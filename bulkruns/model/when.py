"""Moments and durations: a date, a date-time or an age (``90d``) as a filter takes them, a
wait (``30min``) as a setting takes it, and Tallyfy's timestamps as runs carry them.

Ages and durations take ``s``, ``min``, ``h``, ``d``, ``w``, and for ages ``mo`` and ``y``
(calendar months and years). A bare ``m`` is refused: ``6m`` written for six months would
otherwise mean six minutes, and a cron job would archive nearly everything.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bulkruns.errors import ConfigError

__all__ = ["parse_duration", "parse_timestamp", "parse_when"]

_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_CALENDAR = ("mo", "y")

_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def _split(text: str) -> tuple[float, str] | None:
    """(amount, unit) of an age or duration ("" for a bare number), None when the text is
    not one.

    Raises:
        ConfigError: a bare ``m``.
    """
    found = _AMOUNT.fullmatch(text.strip().lower())
    if found is None:
        return None
    amount, unit = float(found.group(1)), found.group(2)
    if unit == "m":
        raise ConfigError(
            f"{text.strip()!r}: 'm' could be minutes or months; write {found.group(1)}min "
            f"or {found.group(1)}mo"
        )
    if unit and unit not in _SECONDS and unit not in _CALENDAR:
        return None
    return amount, unit


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A moment from an ISO 8601 date or date-time, or an age before ``now`` (``90d``, ``6mo``).

    A date or time without a zone is read as UTC; months and years are calendar ones (the
    day is kept, or the month's last day when it has fewer).

    Raises:
        ConfigError: the text is neither, uses a bare ``m``, or reaches before the year 1.
    """
    text = text.strip()
    age = _split(text)
    if age is None or not age[1]:
        return _parse_moment(text)
    amount, unit = age
    start = now or datetime.now(UTC)
    try:
        if unit in _SECONDS:
            return start - timedelta(seconds=amount * _SECONDS[unit])
        if amount != int(amount):
            raise ConfigError(f"{text!r}: months and years are counted whole, such as 6mo or 1y")
        months = int(amount) * (12 if unit == "y" else 1)
        return _months_before(start, months)
    except (OverflowError, ValueError):
        raise ConfigError(f"{text!r} reaches back before the year 1") from None


def _months_before(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a date or an age: give an ISO date such as 2025-01-31, "
            "a date-time such as 2025-01-31T18:00:00Z, or an age such as 90d, 12h or 6mo"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> float:
    """Seconds from a duration such as ``90s``, ``30min``, ``1h`` or ``2d``; a bare number is
    seconds.

    Raises:
        ConfigError: not a duration, or a bare ``m``.
    """
    parts = _split(text)
    if parts is None or parts[1] in _CALENDAR:
        raise ConfigError(
            f"{text.strip()!r} is not a duration: use a number with one of s, min, h, d, w"
        )
    amount, unit = parts
    return amount * _SECONDS.get(unit, 1.0)


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
