"""The job: select runs, apply one operation to each, record every outcome.

A job streams its selection (:mod:`bulkruns.select`) into a bounded queue that a pool of
workers drains (:mod:`bulkruns.job.pool`), each run handled by the operation's steps
(:mod:`bulkruns.job.apply`). Listing and changes share one pacer, so the whole job stays
under Tallyfy's rate limit. Every outcome goes to the result log as it happens
(:mod:`bulkruns.job.record`), so a job that stops for any reason, a ``kill -9`` included,
can be resumed from its log, and a finished one undone.

A job stops early in one way: :meth:`Job._abort` records why and cancels the job's scope,
and every task of the job ends at its next wait. :meth:`Job.stop` is gentler: no new run is
taken, and those in hand get ``options.grace`` seconds to finish.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import NoReturn

import anyio

from bulkruns.api import Client
from bulkruns.errors import FilterIgnored
from bulkruns.job.apply import Applier
from bulkruns.job.options import JobOptions
from bulkruns.job.pool import Pool
from bulkruns.job.record import Recorder
from bulkruns.job.sender import Sender
from bulkruns.job.spec import JobSpec
from bulkruns.job.tally import Tally
from bulkruns.job.values import ProgressHook, Summary
from bulkruns.journal import JournalState
from bulkruns.journal.schema import rate_record
from bulkruns.model import ItemResult, Operation, RunFilter, Work
from bulkruns.select import Coverage, Outlet, Sweeper, feed

__all__ = ["Job"]

# Aborts that come before any change (the token refused at the first request, a filter the
# server ignores): a new job's log is then of no use.
_NOTHING_DONE = frozenset({"auth", "filter-ignored"})


class Job:
    """One bulk operation over a selection of runs.

    Build it with ``Job(client, operation, selection, options)`` for a new job, with
    ``Job.resume`` / ``Job.undo`` from a result log, or with ``Job.from_spec``; then
    ``await job.run()``. Building one sends nothing and needs no event loop.

    Args:
        client: a ``Client`` (open by the time the job runs).
        operation: what to do to each run.
        selection: a ``RunFilter``, or run IDs (32 lowercase hex characters each).
        options: how to run.
        on_progress: called with a ``Progress`` after each item and at each stage.
    """

    def __init__(
        self,
        client: Client,
        operation: Operation,
        selection: RunFilter | Iterable[str],
        options: JobOptions | None = None,
        *,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self._prepare(client, JobSpec.new(operation, selection, options), on_progress)

    @classmethod
    def from_spec(
        cls, client: Client, spec: JobSpec, *, on_progress: ProgressHook | None = None
    ) -> Job:
        """The job a :class:`JobSpec` describes.

        Raises:
            JournalError: the spec comes from a log of another organisation or server.
        """
        job = cls.__new__(cls)
        job._prepare(client, spec, on_progress)
        return job

    @classmethod
    def resume(
        cls,
        client: Client,
        journal: str | os.PathLike[str],
        options: JobOptions | None = None,
        *,
        on_progress: ProgressHook | None = None,
        state: JournalState | None = None,
    ) -> Job:
        """The job a result log describes, continued in it: see :meth:`JobSpec.resume`, which
        raises what it refuses, and a log of another organisation or server."""
        spec = JobSpec.resume(journal, options, state=state)
        return cls.from_spec(client, spec, on_progress=on_progress)

    @classmethod
    def undo(
        cls,
        client: Client,
        journal: str | os.PathLike[str],
        options: JobOptions | None = None,
        *,
        on_progress: ProgressHook | None = None,
        state: JournalState | None = None,
    ) -> Job:
        """The job that reverses a finished one, from its log: see :meth:`JobSpec.undo`,
        which raises what it refuses, and a log of another organisation or server."""
        spec = JobSpec.undo(journal, options, state=state)
        return cls.from_spec(client, spec, on_progress=on_progress)

    def _prepare(self, client: Client, spec: JobSpec, on_progress: ProgressHook | None) -> None:
        spec.check_owner(client.org, client.base_url)
        self.client = client
        self.spec = spec
        self.operation = spec.operation
        self.options = options = spec.options
        self._on_progress = on_progress
        self._pool = Pool(options.concurrency)
        self._coverage = Coverage()
        earlier = len(spec.resumed.done) if spec.resumed is not None else 0
        self._tally = Tally(spec.operation.name, self._coverage, earlier=earlier)
        self._sender = Sender(options, self._tally, on_retry=self._report, halt=self._halt)
        self._recorder = Recorder(
            options.journal_path,
            resumed=spec.resumed is not None,
            tally=self._tally,
            on_item=self._report,
            on_failure=functools.partial(self._abort, "journal"),
        )
        self._applier = Applier(
            client,
            spec.operation,
            self._sender.send,
            self._recorder,
            dry_run=options.dry_run,
            plan_written=spec.query is None,
            undoing=spec.undo_of is not None,
        )
        self._stopped: tuple[str, str] | None = None  # why the job stops early, and a sentence
        self._scope: anyio.CancelScope | None = None
        self._feed_scope: anyio.CancelScope | None = None
        # the runs met so far, as ints: the one thing a job keeps per run
        resumed = spec.resumed
        self._seen: set[int] = set(resumed.done) | set(resumed.pending) if resumed else set()
        # the runs this session may still take: the job's limit, less those done before
        self._limit = options.limit
        if self._limit is not None and resumed is not None:
            self._limit = max(0, self._limit - len(resumed.done))
        self._ran = False

    def set_rate(self, rate: float) -> None:
        """Change the job's pace at once: requests per second, listing and changes together
        (0 for unpaced). The change is written to the log and shown in the progress.

        Raises:
            ConfigError: not a number of requests per second.
        """
        self._sender.set_rate(rate)
        self._recorder.write(rate_record(rate))
        self._report()

    # -- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking new items; in-flight ones get ``options.grace`` seconds to finish.

        Safe to call from a signal handler running in the event loop. ``run`` then returns a
        summary with ``aborted="interrupted"``.
        """
        if self._stopped is None:
            self._stopped = ("interrupted", "stopped on request; resume the job to finish it")
        if self._feed_scope is not None:
            self._feed_scope.cancel()
        self._pool.stop(self.options.grace)

    def _abort(self, reason: str, message: str) -> None:
        """Stop the job now: record why (over an interruption, which is the mildest reason),
        and cancel its scope."""
        if self._stopped is None or self._stopped[0] == "interrupted":
            self._stopped = (reason, message)
        if self._scope is not None:
            self._scope.cancel()

    async def _halt(self, reason: str, message: str) -> NoReturn:
        """Abort the job and end the calling task, which the cancelled scope stops."""
        self._abort(reason, message)
        await anyio.sleep_forever()
        raise AssertionError("a cancelled scope ends every wait")  # pragma: no cover

    # -- running -------------------------------------------------------------------------

    async def run(self) -> Summary:
        """Run the job to its end, an abort, or ``stop``.

        Returns:
            the session's summary, also written as the journal's last line.

        Raises:
            ConfigError: bad input found before any request (an ID that is not a run ID, a
                log that already exists for a new job).
        """
        if self._ran:
            raise RuntimeError("a Job runs once; build another to run again")
        self._ran = True
        self._tally.start()
        self._recorder.open()
        try:
            with anyio.CancelScope() as self._scope:
                plan = self._recorder.begin(self.spec, self.client, limit=self._limit)
                async with anyio.create_task_group() as ticker:
                    ticker.start_soon(self._recorder.keep_synced)
                    await self._pipeline(plan)
                    ticker.cancel_scope.cancel()
            if self.spec.query is not None and self.options.dry_run and self._stopped is None:
                self._recorder.plan_end()
        except anyio.get_cancelled_exc_class():
            if self._stopped is None:
                self._stopped = ("interrupted", "cancelled; resume the job to finish it")
            raise
        finally:
            reason, message = self._stopped or (None, None)
            # a job refused before it changed anything leaves no log behind to resume
            discarded = self._recorder.close(
                self._summary().to_dict(), discard=reason in _NOTHING_DONE
            )
            if discarded and reason == "auth":
                self._stopped = (reason, f"{message}; nothing was changed: run the job again")
        return self._summary()

    async def _pipeline(self, plan: Iterable[Work] | None) -> None:
        send, receive = anyio.create_memory_object_stream[Work](self.options.concurrency)
        outlet = Outlet(send, limit=self._limit)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._feed, outlet, plan)
            await self._pool.run(receive, self._handle, outlet.finished)

    async def _feed(self, outlet: Outlet, plan: Iterable[Work] | None) -> None:
        spec = self.spec
        sweep = None
        if spec.query is not None:
            fetch = functools.partial(self._sender.page, self.client, self.options.per_page)
            sweep = Sweeper(
                spec.query,
                spec.operation,
                self.options,
                fetch=fetch,
                outlet=outlet,
                coverage=self._coverage,
                seen=self._seen,
                on_progress=self._report,
            ).run
        # a resumed filter job retries its failed and unfinished items first
        retry = spec.resumed.pending.values() if spec.resumed and spec.query else ()
        with anyio.CancelScope() as self._feed_scope:
            if self._stopped is not None:
                self._feed_scope.cancel()  # stopped before it started
            try:
                await feed(
                    outlet,
                    self._coverage,
                    retry=retry,
                    plan=plan,
                    sweep=sweep,
                    on_progress=self._report,
                )
            except FilterIgnored as exc:
                await self._halt("filter-ignored", str(exc))

    async def _handle(self, work: Work) -> None:
        result = await self._applier.handle(work)
        budget = self.options.max_failures
        if result is None or result.outcome != "failed" or budget is None:
            return
        if self._tally.counts["failed"] > budget:
            self._abort(
                "failure-budget",
                f"more than {budget} items failed (the last: {result.error}); "
                "fix the cause, then resume the job",
            )

    # -- reporting -----------------------------------------------------------------------

    def _report(self, item: ItemResult | None = None) -> None:
        if self._on_progress is not None:
            sender = self._sender
            progress = self._tally.progress(sender.rate, item, pause=sender.pause())
            self._on_progress(progress)

    def _summary(self) -> Summary:
        reason, message = self._stopped or (None, None)
        return self._tally.summary(
            journal=self._recorder.path,
            aborted=reason,
            message=message,
            dry_run=self.options.dry_run,
            limit_found=self._sender.found,
        )
