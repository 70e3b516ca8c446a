"""A session's counts, and the frozen snapshots made of them: :class:`Progress` as the job
goes, :class:`Summary` at its end."""

from __future__ import annotations

import time
from pathlib import Path

from bulkruns.errors import APIError, RateLimited, TransportError
from bulkruns.job.values import Progress, Summary
from bulkruns.model import ItemResult, Outcome
from bulkruns.select import Coverage

__all__ = ["Tally"]


class Tally:
    """Items by outcome, and the requests, retries and 429s it took, this session.

    Args:
        operation: the operation's name, for the summary.
        coverage: the selection's progress, read at each snapshot.
    """

    def __init__(self, operation: str, coverage: Coverage, *, earlier: int = 0) -> None:
        self.operation = operation
        self.coverage = coverage
        self.earlier = earlier
        self.counts: dict[Outcome, int] = {"ok": 0, "failed": 0, "skipped": 0, "planned": 0}
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self.in_flight = 0
        self.started = time.monotonic()

    def start(self) -> None:
        """The session starts now."""
        self.started = time.monotonic()

    def sent(self) -> None:
        """One request left."""
        self.requests += 1

    def failed_attempt(self, error: APIError | TransportError, retrying: bool) -> None:
        """One request failed, and will be retried or not."""
        if isinstance(error, RateLimited):
            self.throttled += 1
        if retrying:
            self.retries += 1

    def progress(
        self,
        rate: float,
        item: ItemResult | None = None,
        *,
        pause: tuple[float, str] | None = None,
    ) -> Progress:
        """A snapshot of the session, at the pacer's current ``rate``; ``pause`` is the end
        (epoch seconds) and reason of a pause that holds every request."""
        c, coverage = self.counts, self.coverage
        return Progress(
            ok=c["ok"],
            failed=c["failed"],
            skipped=c["skipped"],
            planned=c["planned"],
            total=coverage.total,
            listing=coverage.listing,
            sweeps=coverage.sweeps,
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            rate=rate,
            elapsed=time.monotonic() - self.started,
            item=item,
            bound=coverage.bound if coverage.total is None else None,
            earlier=self.earlier,
            in_flight=self.in_flight,
            paused_until=pause[0] if pause else None,
            pause_reason=pause[1] if pause else None,
        )

    def summary(
        self,
        *,
        journal: Path | None,
        aborted: str | None,
        message: str | None,
        dry_run: bool,
        limit_found: float | None = None,
    ) -> Summary:
        """How the session ended."""
        c, coverage = self.counts, self.coverage
        return Summary(
            operation=self.operation,
            journal=journal,
            ok=c["ok"],
            failed=c["failed"],
            skipped=c["skipped"],
            planned=c["planned"],
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            elapsed=time.monotonic() - self.started,
            sweeps=coverage.sweeps,
            verified=coverage.verified and aborted is None,
            aborted=aborted,
            message=message if message is not None else coverage.message,
            dry_run=dry_run,
            mismatched=coverage.mismatched,
            limit_found=limit_found,
        )
