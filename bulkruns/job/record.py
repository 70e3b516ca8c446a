"""The job's side of its result log: every record a job writes goes through the
:class:`Recorder`, and every outcome is counted once it is recorded, so that the summary
and the log agree even when the log fails."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import anyio

from bulkruns.api import Client
from bulkruns.errors import ConfigError, JournalError
from bulkruns.job.spec import JobSpec
from bulkruns.job.tally import Tally
from bulkruns.journal import JournalWriter
from bulkruns.journal.schema import (
    Record,
    claim_record,
    item_record,
    job_record,
    plan_end_record,
    planned_record,
    summary_record,
)
from bulkruns.model import ItemResult, Work
from bulkruns.select import pin

__all__ = ["Recorder"]

_SYNC_TICK = 0.2  # seconds between checks that the log's fsync is due


class Recorder:
    """Writes a job's log and counts its outcomes.

    Args:
        path: the log; None keeps none (the job cannot be resumed).
        resumed: the log is the job's own from an earlier session, appended to.
        tally: counts each outcome once it is recorded.
        on_item: told of each outcome recorded.
        on_failure: told, once, that the log can no longer be written: the job aborts.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        resumed: bool,
        tally: Tally,
        on_item: Callable[[ItemResult], None],
        on_failure: Callable[[str], None],
    ) -> None:
        self._path = path
        self._resumed = resumed
        self._tally = tally
        self._on_item = on_item
        self._on_failure = on_failure
        self._journal: JournalWriter | None = None
        self._touched = False  # a claim or an outcome was recorded

    @property
    def path(self) -> Path | None:
        """The log, once it is open."""
        return self._journal.path if self._journal is not None else None

    def open(self) -> None:
        """Open the log (a new job's must not exist yet).

        Raises:
            ConfigError: a new job's log exists already, or cannot be created.
        """
        if self._path is None:
            return
        # fsyncs happen in a worker thread (keep_synced), off the event loop
        self._journal = JournalWriter(self._path, new=not self._resumed, sync_on_write=False)

    def begin(self, spec: JobSpec, client: Client, *, limit: int | None) -> Iterable[Work] | None:
        """Start the session's part of the log: a new job's header and any pinned plan, with
        every pinned ID checked before any request.

        Returns:
            the pinned runs to process (a resumed plan's pending ones), or None for a job
            that lists a query.

        Raises:
            ConfigError: a bad ID, an unusable undo source, or a log that cannot take the
                header or the plan: nothing was sent (and a log without its plan is removed).
        """
        if spec.resumed is not None:
            if spec.query is None:  # a plan, resumed: exactly its pending runs
                self._tally.coverage.total = len(spec.resumed.pending)
                return spec.resumed.pending.values()
            return None
        header = job_record(
            operation=spec.operation,
            # and the client's wait for an answer, which a resumed job's client takes again
            params={**spec.options.to_record(), "timeout": client.read_timeout},
            selection=spec.query,
            org=client.org,
            base_url=client.base_url,
            dry_run=spec.options.dry_run,
            undo_of=str(spec.undo_of) if spec.undo_of else None,
        )
        if self._journal is not None:
            self._journal.write(header)
        if spec.pinned is None:
            return None
        try:
            plan, self._tally.coverage.total = pin(
                spec.pinned, self._journal, limit=limit, skipped=self.skip
            )
        except ConfigError:
            if self._journal is not None:
                self._journal.close()
                self._journal.path.unlink(missing_ok=True)
                self._journal = None
            raise
        return plan

    def write(self, record: Record) -> bool:
        """Append one record; False, and the job told, when the log cannot be written.
        Once the log is closed (the job is over), nothing more is written."""
        if self._journal is None or self._journal.closed:
            return True
        try:
            self._journal.write(record)
        except JournalError as exc:
            self._failed(exc)
            return False
        return True

    def claim(self, work: Work) -> bool:
        """Record that a run is about to be changed; False if the log failed."""
        self._touched = True
        return self.write(claim_record(work))

    def planned(self, work: Work, *, write: bool) -> None:
        """Count a run a dry run plans, writing it to the plan unless it is there already."""
        if not write or self.write(planned_record(work)):
            self._count(ItemResult(work.id, "planned"))

    def plan_end(self) -> None:
        """Close a dry run's plan: without this line, resume refuses it as cut short."""
        self.write(plan_end_record(self._tally.counts["planned"]))

    def skip(self, work: Work) -> None:
        """Record and count a run that needs no request."""
        self.finish(ItemResult(work.id, "skipped", note=work.skip), work.before)

    def finish(
        self, result: ItemResult, before: dict[str, Any] | None, *, unknown: bool = False
    ) -> None:
        """Record an item's outcome, then count it."""
        if self.write(item_record(result, before, unknown=unknown)):
            self._count(result)

    def _count(self, result: ItemResult) -> None:
        self._touched = True
        self._tally.counts[result.outcome] += 1
        self._on_item(result)

    async def keep_synced(self) -> None:
        """fsync the log at least every second, in a worker thread, so that a slow disk
        never holds up the event loop."""
        journal = self._journal
        while journal is not None:
            await anyio.sleep(_SYNC_TICK)
            if not journal.sync_due:
                continue
            try:
                await anyio.to_thread.run_sync(journal.fsync)
            except JournalError as exc:
                self._failed(exc)
                return

    def close(self, summary: dict[str, Any], *, discard: bool = False) -> bool:
        """Write the session's summary as the log's last line, and close the log.

        Args:
            summary: the session's summary.
            discard: remove a new job's log instead, if nothing was claimed or recorded
                in it: a job refused before its first change leaves nothing to resume.

        Returns:
            whether the log was removed.
        """
        journal = self._journal
        if journal is None:
            return False
        if discard and not self._resumed and not self._touched:
            journal.close()
            journal.path.unlink(missing_ok=True)
            self._journal = None
            return True
        try:
            self.write(summary_record(summary))
        finally:
            try:
                journal.close()
            except JournalError as exc:
                self._failed(exc)
        return False

    def _failed(self, exc: JournalError) -> None:
        self._on_failure(f"{exc}; resume the job once it can be written")
