"""One run as a job handles it: the work to do (:class:`Work`) and what came of it
(:class:`ItemResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ItemResult", "Outcome", "Work"]

Outcome = Literal["ok", "failed", "skipped", "planned"]


@dataclass(slots=True)
class Work:
    """One run to process, from a listing, a plan, a resumed log or an undo.

    Attributes:
        id: the run ID.
        before: the run's state before the change, for the fields the operation changes.
        fields: the fields to set on this run (an update plan, an undo), when they are its
            own rather than the operation's.
        unknown: an earlier attempt may already have applied the change: the run was
            claimed without an outcome, or its last attempt's outcome is unknown.
        error: the last error recorded for the run, when a resumed log holds one.
        attempts: the attempts that last failure took.
        skip: why no request is needed, when none is.
        listed: the run comes from this session's listing, so ``before`` is what it is now;
            otherwise (an ID, a plan, a resumed log) it may have changed since, and an update
            reads it before sending anything.
        name: the run's name, when it was listed: what a plan shows a person.
    """

    id: str
    before: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None
    unknown: bool = False
    error: str | None = None
    attempts: int = 0
    skip: str | None = None
    listed: bool = False
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What happened to one run."""

    id: str
    outcome: Outcome
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    request_id: str | None = None
    note: str | None = None
