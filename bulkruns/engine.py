"""The job engine: select runs, apply one operation to each, record every outcome.

A job streams its selection into a bounded queue that a pool of workers drains. Listing and
mutations share one pacer, so the whole job stays under Tallyfy's rate limit. Every item's
outcome goes to the journal (a JSON-lines log) as it happens, so a job that stops for any
reason, a ``kill -9`` included, can be resumed from its log, and a finished one undone.

Selection by filter is complete even though the job's own changes shift Tallyfy's offset
pages: pages after the first are fetched from the last one down (removing a run only moves the
runs after it), and the query is swept again until a pass made while no change was in flight
finds nothing new. That last pass is the job's proof that nothing matching was left behind.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bulkruns.client import Client, Page, Reply, server_key
from bulkruns.errors import (
    APIError,
    AuthError,
    ConfigError,
    JournalError,
    NotFound,
    RateLimited,
    TransportError,
)
from bulkruns.filters import ArchivedStyle, RunFilter, is_run_id
from bulkruns.journal import (
    JOURNAL_VERSION,
    JournalState,
    JournalWriter,
    id_key,
    ok_items,
    read_journal,
)
from bulkruns.ops import Operation, Step
from bulkruns.pacing import Pacer
from bulkruns.retry import RetryPolicy, outcome_unknown

__all__ = [
    "Attempts",
    "ItemResult",
    "Job",
    "JobOptions",
    "Outcome",
    "Progress",
    "ProgressHook",
    "Summary",
    "check_owner",
    "send_paced",
]

Outcome = Literal["ok", "failed", "skipped", "planned"]

T = TypeVar("T")

TALLYFY_RATE = 10.0
"""Tallyfy's limit: 600 requests a minute."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    """How a job runs.

    Attributes:
        concurrency: requests in flight at once.
        rate: requests per second for listing and changes together; 0 means unpaced.
        max_attempts: attempts per request, the first included.
        max_elapsed: seconds after which a failing request is no longer retried.
        max_failures: abort once more items than this have failed; None for no budget.
        limit: process at most this many items.
        journal: the result log's path; None keeps no log (the job cannot be resumed).
        dry_run: list and record the plan, change nothing.
        archived: how archived runs are listed, ``status`` (status=archived) or ``only``
            (archived=only).
        per_page: runs per list page (Tallyfy allows at most 100).
        max_sweeps: passes over the query before the job gives up proving it is complete.
        page_concurrency: list pages fetched at once.
        grace: seconds in-flight items get to finish after ``Job.stop``.
    """

    concurrency: int = 16
    rate: float = TALLYFY_RATE
    max_attempts: int = 8
    max_elapsed: float = 300.0
    max_failures: int | None = 100
    limit: int | None = None
    journal: str | os.PathLike[str] | None = None
    dry_run: bool = False
    archived: ArchivedStyle = "status"
    per_page: int = 100
    max_sweeps: int = 10
    page_concurrency: int = 4
    grace: float = 5.0

    def __post_init__(self) -> None:
        checks = (
            (self.concurrency >= 1, "concurrency must be at least 1"),
            (
                math.isfinite(self.rate) and self.rate >= 0,
                "rate must be a number of requests per second, or 0 for unpaced",
            ),
            (self.max_attempts >= 1, "max attempts must be at least 1"),
            (self.max_elapsed > 0, "max elapsed must be a positive number of seconds"),
            (self.max_failures is None or self.max_failures >= 0, "max failures must be >= 0"),
            (self.limit is None or self.limit >= 1, "limit must be at least 1"),
            (self.archived in ("status", "only"), "archived style must be 'status' or 'only'"),
            (1 <= self.per_page <= 100, "per page must be between 1 and 100"),
            (self.max_sweeps >= 1, "max sweeps must be at least 1"),
            (self.page_concurrency >= 1, "page concurrency must be at least 1"),
            (self.grace >= 0, "grace must be a non-negative number of seconds"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_record(self) -> dict[str, Any]:
        """The settings a resumed job takes as its defaults, for the journal's header.

        The limit is the job's, across all its sessions: a resumed job takes at most that many
        runs in all.
        """
        return {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_attempts": self.max_attempts,
            "max_failures": self.max_failures,
            "limit": self.limit,
            "archived": self.archived,
            "per_page": self.per_page,
        }


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

    @property
    def done(self) -> int:
        """Items finished, whatever their outcome."""
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
            ``interrupted``), or None.
        message: a sentence about the abort or an incomplete selection, or None.
        dry_run: nothing was changed.
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
        }


@dataclass(slots=True)
class _Work:
    """One run to process."""

    id: str
    before: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None
    unknown: bool = False  # an earlier attempt may already have applied the change
    skip: str | None = None  # why no request is needed


@dataclass(slots=True)
class Attempts:
    """What the tries of one request came to: how many, and whether any may have applied."""

    count: int = 0
    unknown: bool = False


async def send_paced(
    request: Callable[[], Awaitable[T]],
    pacer: Pacer,
    policy: RetryPolicy,
    attempts: Attempts | None = None,
    *,
    on_send: Callable[[], None] | None = None,
    on_error: Callable[[APIError | TransportError, bool], None] | None = None,
) -> T:
    """Send one request through ``pacer``, retrying as ``policy`` allows.

    A 429 pauses the pacer for everyone; the error of the last attempt is raised.

    Args:
        request: makes the request afresh for each attempt.
        pacer: the budget the request takes its slot from.
        policy: which failures are retried, and after how long.
        attempts: updated as the attempts go: their count, and whether one may have applied.
        on_send: called as each attempt is sent.
        on_error: called with each failed attempt's error, and whether it will be retried.
    """
    tries = attempts if attempts is not None else Attempts()
    started = time.monotonic()
    while True:
        tries.count += 1
        await pacer.acquire()
        if on_send is not None:
            on_send()
        try:
            result = await request()
        except (APIError, TransportError) as exc:
            if isinstance(exc, RateLimited):
                pacer.throttled(exc.retry_after)
            if outcome_unknown(exc):
                tries.unknown = True
            elapsed = time.monotonic() - started
            delay = policy.next_delay(exc, attempt=tries.count, elapsed=elapsed)
            if on_error is not None:
                on_error(exc, delay is not None)
            if delay is None:
                raise
            await anyio.sleep(delay)
            continue
        pacer.succeeded()
        return result


class _Abort(Exception):
    """Raised inside the pipeline once the job has been told to abort."""


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _record(kind: str, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"type": kind}
    record.update((k, v) for k, v in values.items() if v is not None)
    return record


class Job:
    """One bulk operation over a selection of runs.

    Build it with ``Job(client, operation, selection, options)`` for a new job, or with
    ``Job.resume`` / ``Job.undo`` from a result log; then ``await job.run()``.

    Args:
        client: an open ``Client``.
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
        if isinstance(selection, RunFilter):
            self._setup(client, operation, options, on_progress, selection=selection)
        else:
            plan = (_Work(run_id) for run_id in selection)
            self._setup(client, operation, options, on_progress, plan=plan)

    def _setup(
        self,
        client: Client,
        operation: Operation,
        options: JobOptions | None,
        on_progress: ProgressHook | None,
        *,
        selection: RunFilter | None = None,
        plan: Iterable[_Work] | None = None,
        state: JournalState | None = None,
        undo_of: Path | None = None,
    ) -> None:
        self.client = client
        self.operation = operation
        self.options = options or JobOptions()
        self._on_progress = on_progress
        self._filter = selection
        self._plan = plan
        self._state = state
        self._undo_of = undo_of
        # IDs met so far, as ints: the one thing a job keeps per run
        self._seen: set[int] = set()
        per_item_fields = undo_of is not None or (state is not None and state.pinned)
        if operation.name == "update" and not operation.fields and not per_item_fields:
            raise ConfigError("update needs at least one field to set, such as --set starred=true")
        if selection is not None and operation.selects_archived:
            selection.params(archived=self.options.archived)  # raises on a conflicting status

        self._pacer = Pacer(self.options.rate)
        self._policy = RetryPolicy(
            max_attempts=self.options.max_attempts, max_elapsed=self.options.max_elapsed
        )
        self._journal: JournalWriter | None = None
        self._scope = anyio.CancelScope()
        self._feed_scope = anyio.CancelScope()
        self._counts: dict[str, int] = {"ok": 0, "failed": 0, "skipped": 0, "planned": 0}
        self._requests = self._retries = self._throttled = 0
        self._sweeps = 0
        self._emitted = 0
        self._total: int | None = None
        self._listing = False
        self._verified = False
        self._aborted: str | None = None
        self._message: str | None = None
        self._outstanding = 0
        # the runs this session may still take: the job's limit, less those done before
        self._limit = self.options.limit
        if self._limit is not None and state is not None:
            self._limit = max(0, self._limit - len(state.done))
        self._idle = anyio.Event()
        self._stop_at: float | None = None
        self._started = 0.0
        self._ran = False

    # -- building from a journal ---------------------------------------------------------

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
        """The job a result log describes, continued: done items are skipped, failed and
        unfinished ones retried, and the rest of the selection processed. It appends to the
        same log. A dry run's log is a plan: resuming it applies exactly the planned items.
        The job's recorded limit holds across sessions unless ``options`` sets another.
        ``state`` is the log as ``read_journal`` read it, when the caller has it already.

        Raises:
            JournalError: the log is unreadable, belongs to another organisation or server,
                or holds a plan that was cut short.
        """
        path = Path(journal)
        if state is None:
            state = read_journal(path)
        header = state.header
        check_owner(header, client.org, client.base_url, path)
        if state.pinned and not state.plan_complete:
            raise JournalError(
                f"{path}: the job's plan was cut short before any change was made; "
                "start the job again instead"
            )
        operation = Operation.from_record(header)
        for item in state.pending.values():
            for name in ("before", "fields"):
                if not isinstance(getattr(item, name), dict | None):
                    raise JournalError(f"{path}: run {item.id} has a malformed {name} record")
        selection = None
        if not state.pinned:
            if header.get("filter") is None:
                raise JournalError(f"{path}: the log has neither a filter nor planned items")
            selection = RunFilter.from_record(header["filter"])
        base = options or JobOptions()
        recorded = header.get("params")
        limit = recorded.get("limit") if isinstance(recorded, dict) else None
        if base.limit is not None or not isinstance(limit, int) or isinstance(limit, bool):
            limit = base.limit
        opts = JobOptions(**{**_option_fields(base), "journal": path, "limit": limit})
        job = cls.__new__(cls)
        job._setup(client, operation, opts, on_progress, selection=selection, state=state)
        job._seen = set(state.done) | set(state.pending)
        return job

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
        """The job that reverses a finished one, from its result log: archive and activate
        undo each other; an update is undone by setting each run's recorded before-state.
        The undo keeps its own log (``options.journal``). ``state`` is the log as
        ``read_journal`` read it, when the caller has it already.

        Raises:
            JournalError: the log is unreadable or belongs to another organisation or server.
            ConfigError: the job was a permanent delete, which nothing undoes.
        """
        source = Path(journal)
        if state is None:
            state = read_journal(source)
        check_owner(state.header, client.org, client.base_url, source)
        original = Operation.from_record(state.header)
        inverse = original.inverse()
        own = options.journal if options is not None else None
        if own is not None and Path(own).resolve() == source.resolve():
            raise ConfigError("the undo needs a log of its own, not the log it undoes")

        unfinished = sum(1 for p in state.pending.values() if p.unknown)
        if unfinished:
            raise JournalError(
                f"{source}: {unfinished} runs may have been changed without a recorded "
                "outcome; resume the job first, then undo it"
            )

        def plan() -> Iterator[_Work]:
            for run_id, before in ok_items(source):
                if original.name != "update":
                    yield _Work(run_id)
                    continue
                if before is not None and not isinstance(before, dict):
                    raise JournalError(f"{source}: run {run_id} has a malformed before-state")
                # an update sets its own fields; an undo of an undo, each run's recorded ones
                keys = original.fields or before or {}
                fields = {k: v for k, v in (before or {}).items() if k in keys}
                if fields:
                    yield _Work(run_id, before=dict(original.fields) or None, fields=fields)
                else:
                    yield _Work(run_id, skip="no before-state was recorded for this run")

        job = cls.__new__(cls)
        job._setup(client, inverse, options, on_progress, plan=plan(), undo_of=source.resolve())
        return job

    # -- running -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking new items; in-flight ones get ``options.grace`` seconds to finish.

        Safe to call from a signal handler running in the event loop. ``run`` then returns a
        summary with ``aborted="interrupted"``.
        """
        if self._stop_at is None:
            self._stop_at = time.monotonic() + self.options.grace
            self._aborted = self._aborted or "interrupted"
            self._message = self._message or "stopped on request; resume the job to finish it"
            self._feed_scope.cancel()

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
        self._started = time.monotonic()
        self._journal = self._open_journal()
        try:
            with contextlib.suppress(_Abort):  # the log failed: the pipeline's scope is cancelled
                self._begin()
            async with anyio.create_task_group() as ticker:
                ticker.start_soon(self._tick)
                with self._scope:
                    await self._pipeline()
                ticker.cancel_scope.cancel()
            # a dry run's plan is marked complete; one cut short stays unmarked, and resume
            # refuses it
            if self._filter is not None and self.options.dry_run and not self._aborted:
                with contextlib.suppress(_Abort):
                    self._write({"type": "planned", "count": self._counts["planned"]})
        except anyio.get_cancelled_exc_class():
            self._aborted = self._aborted or "interrupted"
            raise
        finally:
            summary = self._close_journal()
        return summary

    def _close_journal(self) -> Summary:
        """Write the session's summary as the log's last line, and close the log."""
        journal = self._journal
        if journal is None:
            return self._summary()
        try:
            with contextlib.suppress(_Abort):
                self._write(_record("summary", **self._summary().to_dict(), ended_at=_utcnow()))
        finally:
            try:
                journal.close()
            except JournalError as exc:
                self._abort("journal", f"{exc}; resume the job once it can be written")
        return self._summary()

    def _open_journal(self) -> JournalWriter | None:
        path = self.options.journal
        if path is None:
            return None
        if self._state is None and Path(path).exists():
            raise ConfigError(
                f"{os.fspath(path)} already exists: resume it, or choose another --log"
            )
        return JournalWriter(path)

    def _begin(self) -> None:
        """Write the header and any pinned plan; validate everything before any request."""
        if self._state is not None:
            if self._filter is None:
                self._plan = (
                    _Work(p.id, before=p.before, fields=p.fields, unknown=p.unknown)
                    for p in self._state.pending.values()
                )
                self._total = len(self._state.pending)
            return
        header = _record(
            "job",
            version=JOURNAL_VERSION,
            job_id=uuid.uuid4().hex,
            **self.operation.to_record(),
            params=self.options.to_record(),
            filter=self._filter.to_record() if self._filter is not None else None,
            org=self.client.org,
            base_url=self.client.base_url,
            created_at=_utcnow(),
            dry_run=self.options.dry_run,
            undo_of=str(self._undo_of) if self._undo_of else None,
        )
        if self._journal is not None:
            self._journal.write(header)  # a failure here is a JournalError: nothing was sent
        if self._plan is None:
            return
        try:
            self._plan = self._pin(self._plan)
        except ConfigError:
            if self._journal is not None:
                self._journal.close()
                self._journal.path.unlink(missing_ok=True)
                self._journal = None
            raise

    def _pin(self, source: Iterable[_Work]) -> Iterable[_Work]:
        """Validate and dedupe pinned items, and write them as the plan before any request.

        With a journal, the plan is then streamed back from it, so memory stays flat.
        """
        seen: set[int] = set()
        kept: list[_Work] = []
        limit = self._limit
        batch: list[dict[str, Any]] = []
        for work in source:
            if not isinstance(work.id, str) or not is_run_id(work.id):
                raise ConfigError(
                    f"{work.id!r} is not a run ID (32 lowercase hexadecimal characters)"
                )
            key = id_key(work.id)
            if key in seen:
                continue
            seen.add(key)
            if work.skip is not None:
                self._finish(ItemResult(work.id, "skipped", note=work.skip))
            elif self._journal is None:
                kept.append(work)
            else:
                batch.append(_planned(work))
                if len(batch) >= 1000:
                    self._journal.write_many(batch)
                    batch.clear()
            if limit is not None and len(seen) >= limit:
                break
        self._total = len(seen)
        if self._journal is None:
            return kept
        batch.append({"type": "planned", "count": len(seen)})
        self._journal.write_many(batch)
        self._journal.sync()
        return _read_plan(self._journal.path)

    async def _tick(self) -> None:
        """Keep the journal fsynced every second, and end a stop's grace period."""
        while True:
            await anyio.sleep(0.2)
            if self._journal is not None:
                try:
                    self._journal.sync_if_due()
                except JournalError as exc:
                    self._abort("journal", f"{exc}; resume the job once it can be written")
            if self._stop_at is not None and time.monotonic() >= self._stop_at:
                self._scope.cancel()

    async def _pipeline(self) -> None:
        send, receive = anyio.create_memory_object_stream[_Work](self.options.concurrency)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._feed, send)
            async with receive:
                for _ in range(self.options.concurrency):
                    tg.start_soon(self._work, receive.clone())

    # -- feeding -------------------------------------------------------------------------

    async def _feed(self, send: MemoryObjectSendStream[_Work]) -> None:
        async with send:
            with self._feed_scope:
                try:
                    if self._state is not None and self._filter is not None:
                        # a resumed filter job retries its failed and unfinished items first
                        for p in self._state.pending.values():
                            work = _Work(p.id, before=p.before, fields=p.fields, unknown=p.unknown)
                            if not await self._emit(send, work):
                                return
                    if self._plan is not None:
                        for work in self._plan:
                            if not await self._emit(send, work):
                                return
                        self._verified = True
                    elif self._filter is not None:
                        await self._sweep_until_complete(send, self._filter)
                except _Abort:
                    return
                finally:
                    self._listing = False
                    if self._aborted is None:
                        self._total = self._emitted
                    self._report()

    async def _emit(self, send: MemoryObjectSendStream[_Work], work: _Work) -> bool:
        """Queue one item; False once the job's limit is reached."""
        if self._limit is not None and self._emitted >= self._limit:
            return False
        self._emitted += 1
        self._outstanding += 1
        try:
            await send.send(work)
        except BaseException:
            # never queued: a stopped job leaves it to be found again on resume
            self._emitted -= 1
            self._outstanding -= 1
            raise
        return True

    async def _sweep_until_complete(
        self, send: MemoryObjectSendStream[_Work], selection: RunFilter
    ) -> None:
        archived = self.options.archived if self.operation.selects_archived else None
        params = selection.params(archived=archived)
        if self._limit is not None and self._emitted >= self._limit:
            return  # the job has taken all the runs its limit allows
        self._listing = True
        while self._sweeps < self.options.max_sweeps:
            self._sweeps += 1
            quiet = self._outstanding == 0
            new = await self._sweep(send, params, selection)
            if new is None:  # the limit was reached: the rest is left for another job
                return
            if self.options.dry_run or (new == 0 and quiet):
                # nothing changed while this pass listed, so it saw the live set exactly
                self._verified = True
                return
            await self._drained()
        self._message = (
            f"the query still found new runs after {self._sweeps} passes; "
            "resume the job to carry on"
        )

    async def _sweep(
        self,
        send: MemoryObjectSendStream[_Work],
        params: list[tuple[str, str]],
        selection: RunFilter,
    ) -> int | None:
        """One pass over the query; the number of new items queued, None at the limit."""
        first = await self._fetch(params, 1)
        if self._sweeps == 1 and not selection.filters_locally:
            self._total = max(first.total, self._emitted)
            if self._limit is not None:
                self._total = min(self._total, self._limit)
        self._report()
        emitted = await self._emit_page(send, first, selection)
        if emitted is None:
            return None
        new = emitted
        # Last page first: a change only shifts the runs after it, so pages still to be
        # fetched keep their content; only the first page's changes shift the rest, and
        # the next pass picks up the few runs that moves.
        pages = iter(range(first.page_count, 1, -1))
        limit_hit = False

        async def fetcher() -> None:
            nonlocal new, limit_hit
            for number in pages:
                if limit_hit:
                    return  # not cancelled: a sibling may be queueing an item it has counted
                try:
                    page = await self._fetch(params, number)
                except _Abort:
                    return  # the job's scope is cancelled: the whole pipeline winds down
                count = await self._emit_page(send, page, selection)
                if count is None:
                    limit_hit = True
                    return
                new += count

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.options.page_concurrency, max(0, first.page_count - 1))):
                tg.start_soon(fetcher)
        return None if limit_hit else new

    async def _emit_page(
        self, send: MemoryObjectSendStream[_Work], page: Page, selection: RunFilter
    ) -> int | None:
        new = 0
        for run in page.runs:
            run_id = run.get("id")
            if not isinstance(run_id, str) or not is_run_id(run_id):
                continue
            key = id_key(run_id)
            if key in self._seen:
                continue
            self._seen.add(key)
            if not selection.accepts(run):
                continue
            work = _Work(run_id, before=self.operation.before(run))
            if self.operation.already_done(run):
                work.skip = "already as requested"
            if not await self._emit(send, work):
                return None
            new += 1
        if self._total is not None and self._emitted > self._total:
            self._total = self._emitted
        return new

    async def _fetch(self, params: list[tuple[str, str]], number: int) -> Page:
        try:
            return await self._attempt(
                lambda: self.client.list_runs(params, page=number, per_page=self.options.per_page),
                Attempts(),
            )
        except (APIError, TransportError) as exc:
            self._abort("listing", f"listing page {number} failed: {exc}")
            raise _Abort from exc

    async def _drained(self) -> None:
        while self._outstanding:
            self._idle = anyio.Event()
            await self._idle.wait()

    # -- working -------------------------------------------------------------------------

    async def _work(self, receive: MemoryObjectReceiveStream[_Work]) -> None:
        async with receive:
            async for work in receive:
                if self._stop_at is not None:
                    return  # left in the queue: resume finds it again
                try:
                    await self._process(work)
                except _Abort:
                    return
                finally:
                    self._outstanding -= 1
                    if self._outstanding == 0:
                        self._idle.set()

    async def _process(self, work: _Work) -> None:
        fields = work.fields if work.fields is not None else dict(self.operation.fields)
        if work.skip is None and self.operation.name == "update" and not fields:
            work.skip = "nothing to set"
        if work.skip is not None:
            self._finish(ItemResult(work.id, "skipped", note=work.skip), work.before)
            return
        if self.options.dry_run:
            if self._filter is not None:  # a pinned job's plan is written already
                self._write(_planned(work))
            self._finish(ItemResult(work.id, "planned"))
            return
        self._write(_record("claim", id=work.id, before=work.before))
        attempts = Attempts()
        steps = self.operation.steps
        notes: list[str] = []
        reply: Reply | None = None
        for step in steps:
            tried = attempts.count
            attempts.unknown = work.unknown
            try:
                call = functools.partial(self._call, step, work.id, fields)
                reply = await self._attempt(call, attempts)
            except NotFound as exc:
                if step == "archive" and len(steps) > 1:
                    notes.append("was already archived")
                    continue
                if attempts.unknown and step in ("archive", "delete"):
                    # an earlier attempt whose answer was lost must have made the change
                    done = "archived" if step == "archive" else "deleted"
                    notes.append(f"already {done} by an earlier attempt")
                    reply = Reply(status=exc.status, data=None, request_id=exc.request_id)
                    continue
                self._fail(work, exc, attempts)
                return
            except (APIError, TransportError) as exc:
                self._fail(work, exc, attempts)
                return
            if attempts.count - tried > 1 and attempts.unknown and step == "update":
                notes.append("retried after an answer was lost; an update is idempotent")
        assert reply is not None
        self._finish(
            ItemResult(
                work.id,
                "ok",
                status=reply.status,
                attempts=attempts.count,
                request_id=reply.request_id,
                note="; ".join(notes) or None,
            ),
            work.before,
        )

    def _call(self, step: Step, run_id: str, fields: Mapping[str, Any]) -> Awaitable[Reply]:
        if step == "archive":
            return self.client.archive(run_id)
        if step == "activate":
            return self.client.activate(run_id)
        if step == "update":
            return self.client.update(run_id, fields)
        return self.client.delete(run_id)

    async def _attempt(self, request: Callable[[], Awaitable[T]], attempts: Attempts) -> T:
        """Send one request through the job's pacer, retrying as its policy allows."""
        try:
            return await send_paced(
                request,
                self._pacer,
                self._policy,
                attempts,
                on_send=self._sent,
                on_error=self._failed_attempt,
            )
        except AuthError as exc:
            self._abort(
                "auth",
                f"Tallyfy refused the access token ({exc}); check TALLYFY_ACCESS_TOKEN "
                "or --token-file, then resume the job",
            )
            raise _Abort from exc

    def _sent(self) -> None:
        self._requests += 1

    def _failed_attempt(self, error: APIError | TransportError, retrying: bool) -> None:
        if isinstance(error, RateLimited):
            self._throttled += 1
        if retrying:
            self._retries += 1
            self._report()

    def _fail(self, work: _Work, exc: APIError | TransportError, attempts: Attempts) -> None:
        status = exc.status if isinstance(exc, APIError) else None
        request_id = exc.request_id if isinstance(exc, APIError) else None
        result = ItemResult(
            work.id,
            "failed",
            status=status,
            attempts=attempts.count,
            error=str(exc),
            request_id=request_id,
        )
        self._finish(result, work.before, unknown=attempts.unknown or None)
        budget = self.options.max_failures
        if budget is not None and self._counts["failed"] > budget:
            self._abort(
                "failure-budget",
                f"more than {budget} items failed (the last: {exc}); "
                "fix the cause, then resume the job",
            )
            raise _Abort

    def _finish(
        self,
        result: ItemResult,
        before: dict[str, Any] | None = None,
        *,
        unknown: bool | None = None,
    ) -> None:
        if result.outcome != "planned":
            self._write(
                _record(
                    "item",
                    id=result.id,
                    outcome=result.outcome,
                    status=result.status,
                    attempts=result.attempts or None,
                    error=result.error,
                    request_id=result.request_id,
                    before=before,
                    note=result.note,
                    unknown=unknown,
                )
            )
        # counted once recorded: the summary and the log agree even when the log fails
        self._counts[result.outcome] += 1
        self._report(result)

    def _write(self, record: Mapping[str, Any]) -> None:
        """Append to the log; a log that cannot be written aborts the job."""
        if self._journal is None:
            return
        try:
            self._journal.write(record)
        except JournalError as exc:
            self._abort("journal", f"{exc}; resume the job once it can be written")
            raise _Abort from exc

    def _abort(self, reason: str, message: str) -> None:
        if self._aborted is None or self._aborted == "interrupted":
            self._aborted, self._message = reason, message
        self._scope.cancel()

    # -- reporting -----------------------------------------------------------------------

    def _report(self, item: ItemResult | None = None) -> None:
        if self._on_progress is None:
            return
        c = self._counts
        self._on_progress(
            Progress(
                ok=c["ok"],
                failed=c["failed"],
                skipped=c["skipped"],
                planned=c["planned"],
                total=self._total,
                listing=self._listing,
                sweeps=self._sweeps,
                requests=self._requests,
                retries=self._retries,
                throttled=self._throttled,
                rate=self._pacer.current_rate,
                elapsed=time.monotonic() - self._started,
                item=item,
            )
        )

    def _summary(self) -> Summary:
        c = self._counts
        return Summary(
            operation=self.operation.name,
            journal=self._journal.path if self._journal is not None else None,
            ok=c["ok"],
            failed=c["failed"],
            skipped=c["skipped"],
            planned=c["planned"],
            requests=self._requests,
            retries=self._retries,
            throttled=self._throttled,
            elapsed=time.monotonic() - self._started,
            sweeps=self._sweeps,
            verified=self._verified and self._aborted is None,
            aborted=self._aborted,
            message=self._message,
            dry_run=self.options.dry_run,
        )


def _planned(work: _Work) -> dict[str, Any]:
    return _record("item", id=work.id, outcome="planned", fields=work.fields, before=work.before)


def _read_plan(path: Path) -> Iterator[_Work]:
    """The plan this job has just written, streamed back a line at a time.

    Line by line rather than in the large blocks of ``read_journal``: a plan of 100,000
    runs would otherwise be held in memory whole, which is what streaming it avoids.
    """
    with path.open("rb") as log:
        for line in log:
            record = orjson.loads(line)
            kind = record.get("type")
            if kind == "planned":
                return
            if kind == "item" and record.get("outcome") == "planned":
                yield _Work(record["id"], before=record.get("before"), fields=record.get("fields"))


def _option_fields(options: JobOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in JobOptions.__dataclass_fields__}


def check_owner(header: Mapping[str, Any], org: str, base_url: str, path: Path) -> None:
    """Refuse a result log written for another organisation or server (a server's base URL
    may be spelt another way: ``https://api.tallyfy.com`` is ``https://go.tallyfy.com/api``).

    Raises:
        JournalError: the log's org or base URL differs from the ones given.
    """
    if header.get("org") != org:
        raise JournalError(
            f"{path} records a job of organisation {header.get('org')!r}, "
            f"not {org!r}: use the same --org, or the right log"
        )
    recorded = header.get("base_url")
    try:
        same = isinstance(recorded, str) and server_key(recorded) == server_key(base_url)
    except ConfigError:
        same = False
    if not same:
        raise JournalError(
            f"{path} records a job against {header.get('base_url')!r}, "
            f"not {base_url!r}: pass the same --base-url"
        )
