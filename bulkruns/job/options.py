"""How a job runs: :class:`JobOptions`, checked once, wherever its values come from (the
library, the command line, or the settings a result log recorded)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from bulkruns import settings
from bulkruns.api import MAX_PER_PAGE
from bulkruns.errors import ConfigError, JournalError
from bulkruns.model import ARCHIVED_STYLES, ArchivedStyle

__all__ = ["TALLYFY_RATE", "JobOptions"]

TALLYFY_RATE = 10.0
"""Tallyfy's limit: 600 requests a minute."""

# The settings a log records for the sessions after the first, which take them as defaults.
_RECORDED = (
    "concurrency",
    "rate",
    "max_attempts",
    "max_failures",
    "max_wait",
    "limit",
    "archived",
    "per_page",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    """How a job runs.

    Attributes:
        concurrency: requests in flight at once.
        rate: requests per second for listing and changes together; 0 means unpaced.
        max_attempts: attempts per request, the first included.
        max_elapsed: seconds after which a failing request is no longer retried.
        max_wait: the longest pause a 429 may ask for (an hourly cap, say), or that 429s
            with nothing let through between may add up to: the job waits it out, and
            ends resumably when the server holds it longer.
        max_failures: abort once more items than this have failed; None for no budget.
        limit: process at most this many items.
        journal: the result log's path; None keeps no log (the job cannot be resumed).
        dry_run: list and record the plan, change nothing.
        archived: how archived runs are listed: ``only`` (``archived=only``, as Tallyfy's own
            clients do) or ``status`` (``status=archived``, as its docs say, which servers
            have been seen to ignore).
        per_page: runs per list page (Tallyfy allows at most 100).
        max_sweeps: passes over the query before the job gives up proving it is complete.
        page_concurrency: list pages fetched at once.
        grace: seconds in-flight items get to finish after ``Job.stop``.

    Raises:
        ConfigError: a value out of range, naming the setting (``setting``).
    """

    concurrency: int = 16
    rate: float = TALLYFY_RATE
    max_attempts: int = 8
    max_elapsed: float = 300.0
    max_wait: float = 3600.0
    max_failures: int | None = 100
    limit: int | None = None
    journal: str | os.PathLike[str] | None = None
    dry_run: bool = False
    archived: ArchivedStyle = "only"
    per_page: int = 100
    max_sweeps: int = 10
    page_concurrency: int = 4
    grace: float = 5.0

    def __post_init__(self) -> None:
        settings.whole("concurrency", self.concurrency, low=1)
        settings.number("rate", self.rate, low=0, meaning="requests per second, 0 for unpaced")
        settings.whole("max_attempts", self.max_attempts, low=1)
        settings.number("max_elapsed", self.max_elapsed, low=0, above=True, meaning="seconds")
        settings.number("max_wait", self.max_wait, low=0, meaning="seconds")
        settings.whole("max_failures", self.max_failures, low=0, none_ok=True)
        settings.whole("limit", self.limit, low=1, none_ok=True)
        settings.choice("archived", self.archived, ARCHIVED_STYLES)
        settings.whole("per_page", self.per_page, low=1, high=MAX_PER_PAGE)
        settings.whole("max_sweeps", self.max_sweeps, low=1)
        settings.whole("page_concurrency", self.page_concurrency, low=1)
        settings.number("grace", self.grace, low=0, meaning="seconds")

    @property
    def journal_path(self) -> Path | None:
        """``journal`` as a path."""
        return None if self.journal is None else Path(self.journal)

    def to_record(self) -> dict[str, Any]:
        """The settings a resumed job takes as its defaults, for the journal's header.

        The limit is the job's, across all its sessions: a resumed job takes at most that many
        runs in all.
        """
        return {name: getattr(self, name) for name in _RECORDED}

    def replace(self, **changes: Any) -> JobOptions:
        """A copy with some settings changed, checked as a new one is."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return JobOptions(**values)

    @staticmethod
    def recorded(header: Mapping[str, Any], *, where: str | os.PathLike[str]) -> dict[str, Any]:
        """The settings a result log's header records (``params``), checked, to be the
        defaults of a resumed or undone job. Settings this version does not know are left
        out (a newer version's log).

        Raises:
            JournalError: ``params`` is not an object, or holds a value a setting cannot
                take, naming the log and the setting.
        """
        params = header.get("params")
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise JournalError(
                f"{os.fspath(where)}: the job's recorded settings (params) are not an object; "
                "the log is damaged"
            )
        values = {name: params[name] for name in _RECORDED if name in params}
        try:
            JobOptions(**values)
        except ConfigError as exc:
            shown = orjson.dumps(values.get(exc.setting or "")).decode()
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise JournalError(
                f"{os.fspath(where)}: the recorded setting params.{exc.setting} is {shown} "
                f"({exc}); the log is damaged"
            ) from None
        return values
