"""What a job tells its caller: :class:`Progress` events as it runs, a :class:`Summary` when
it ends. Frozen values, so a hook can keep them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkruns.model import ItemResult

__all__ = ["Progress", "ProgressHook", "Summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A snapshot of a running job, passed to the progress hook.

    Attributes:
        ok, failed, skipped, planned: items by outcome so far, this session.
        total: the best estimate of this session's items, or None while unknown.
        listing: whether the selection is still being listed.
        sweeps: passes made over the query.
        requests, retries, throttled: HTTP requests sent, retries among them, 429s received.
        rate: the pacer's current rate in requests per second (0 when unpaced).
        elapsed: seconds since the session started.
        item: the item that has just finished, when the event is about one.
        bound: while ``total`` is unknown (bulkruns filters dates itself), the most it can
            be: the runs the server counts for the query.
        earlier: items earlier sessions of the job finished (a resumed job's).
        in_flight: requests sent and not answered yet.
        paused_until: when a pause of every request ends (epoch seconds), while one holds.
        pause_reason: why the requests are paused ("Tallyfy asked to wait 12 s").
    """

    ok: int
    failed: int
    skipped: int
    planned: int
    total: int | None
    listing: bool
    sweeps: int
    requests: int
    retries: int
    throttled: int
    rate: float
    elapsed: float
    item: ItemResult | None = None
    bound: int | None = None
    earlier: int = 0
    in_flight: int = 0
    paused_until: float | None = None
    pause_reason: str | None = None

    @property
    def done(self) -> int:
        """Items finished this session, whatever their outcome."""
        return self.ok + self.failed + self.skipped + self.planned


ProgressHook = Callable[[Progress], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """How a job session ended.

    Attributes:
        operation: the operation applied.
        journal: the result log, if one was kept.
        ok, failed, skipped, planned: items by outcome in this session.
        requests, retries, throttled: HTTP requests sent, retries among them, 429s received.
        elapsed: seconds the session took.
        sweeps: passes made over the query (0 for a job over pinned IDs).
        verified: a final pass, made with no change in flight, found nothing left to do.
        aborted: why the job stopped early (``auth``, ``failure-budget``, ``listing``,
            ``journal``, ``throttled``, ``filter-ignored``, ``interrupted``), or None.
        message: a sentence about the abort or an incomplete selection, or None.
        dry_run: nothing was changed.
        mismatched: runs the server listed that showed they do not match the filter (it
            ignored part of it): left alone.
        limit_found: the requests per second the server seemed to allow, when it was below
            the configured rate (from its 429s or its ``X-RateLimit-*`` headers).
    """

    operation: str
    journal: Path | None
    ok: int
    failed: int
    skipped: int
    planned: int
    requests: int
    retries: int
    throttled: int
    elapsed: float
    sweeps: int
    verified: bool
    aborted: str | None
    message: str | None
    dry_run: bool
    mismatched: int = 0
    limit_found: float | None = None

    @property
    def items(self) -> int:
        """Items finished in this session."""
        return self.ok + self.failed + self.skipped + self.planned

    @property
    def items_per_second(self) -> float:
        """Throughput of this session."""
        return self.items / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "operation": self.operation,
            "journal": str(self.journal) if self.journal else None,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "planned": self.planned,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "elapsed": round(self.elapsed, 3),
            "items_per_second": round(self.items_per_second, 2),
            "sweeps": self.sweeps,
            "verified": self.verified,
            "aborted": self.aborted,
            "message": self.message,
            "dry_run": self.dry_run,
            "mismatched": self.mismatched,
            "limit_found": None if self.limit_found is None else round(self.limit_found, 2),
        }
