"""One run handled: skipped, planned, or changed by the operation's steps in order, each
through the paced send, with what a 404 means at each; the outcome recorded.

Some rules come from how Tallyfy really behaves. An update empties the assignee lists it is
not sent, so every update carries the run's current ``users`` and ``groups`` unless it sets
them: from this session's listing, or read (``GET``) just before, for a run given by ID or
plan, or whose listing does not show a field the update sets (its undo needs the value); a
run whose assignees cannot be known is not sent anything. An activate answers 200 for a run
that is live already, so a run given by ID or plan is read first, and one that reads (live)
is skipped: the log, and so the undo, holds only the runs the job restored (an undo's runs
are those its log shows archived, and are not read). And a run whose earlier attempt lost
its answer is read first where reading tells whether the change was made.

A run's claim is written as its first change request leaves, after the pacer's slot: never
for a request that was not sent.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from bulkruns.api import Client, Reply
from bulkruns.errors import APIError, JournalError, NotFound, TransportError
from bulkruns.job.record import Recorder
from bulkruns.model import ItemResult, Operation, Step, Work
from bulkruns.pace import Attempts

__all__ = ["Applier", "Send"]

T = TypeVar("T")


class Send(Protocol):
    """Sends one request the job's way (paced, retried, counted), updating ``attempts``.

    ``read`` says the request only reads; ``on_send`` is called as each attempt leaves.
    """

    def __call__(
        self,
        request: Callable[[], Awaitable[T]],
        attempts: Attempts,
        *,
        read: bool,
        on_send: Callable[[], None] | None = None,
    ) -> Awaitable[T]: ...


class _Failed(Exception):
    """One run's change cannot go on: its result is the failure carried."""

    def __init__(self, result: ItemResult, unknown: bool) -> None:
        self.result = result
        self.unknown = unknown


class Applier:
    """Applies an operation to runs, one call at a time.

    Args:
        client: makes the calls.
        operation: the steps to make for each run, and the fields an update sets.
        send: sends each request, paced and retried.
        recorder: records each outcome.
        dry_run: plan the runs instead of changing them.
        plan_written: a dry run's plan is in the log already (it was pinned).
        undoing: the runs are those of a log this job undoes, which shows what its job did
            to them: an activate need not read them first.
    """

    def __init__(
        self,
        client: Client,
        operation: Operation,
        send: Send,
        recorder: Recorder,
        *,
        dry_run: bool,
        plan_written: bool,
        undoing: bool = False,
    ) -> None:
        self._client = client
        self._operation = operation
        self._send = send
        self._recorder = recorder
        self._dry_run = dry_run
        self._plan_written = plan_written
        self._reads_first = operation.name == "activate" and not undoing

    async def handle(self, work: Work) -> ItemResult | None:
        """Skip, plan or change one run, and record what came of it.

        Returns:
            the outcome recorded, or None when none was (a dry run's plan, a log that
            failed: the job is then aborting).
        """
        operation, recorder = self._operation, self._recorder
        fields = work.fields if work.fields is not None else dict(operation.fields)
        if work.skip is None and operation.name == "update" and not fields:
            work.skip = "nothing to set"
        if work.skip is not None:
            recorder.skip(work)
            return ItemResult(work.id, "skipped", note=work.skip)
        if self._dry_run:
            recorder.planned(work, write=not self._plan_written)
            return None
        try:
            result, unknown = await self._apply(work, fields)
        except _Failed as failed:
            result, unknown = failed.result, failed.unknown
        except JournalError:
            return None  # the claim could not be written: nothing was sent
        recorder.finish(result, work.before, unknown=unknown)
        return result

    async def _apply(self, work: Work, fields: dict[str, Any]) -> tuple[ItemResult, bool]:
        """Make every step for one run: the outcome, and whether a failed run may have been
        changed all the same (an attempt's answer was lost)."""
        steps = self._operation.steps
        claimed = False
        total = 0
        notes: list[str] = []
        reply: Reply | None = None

        def claim() -> None:
            nonlocal claimed
            if not claimed:
                claimed = True
                if not self._recorder.claim(work):
                    raise JournalError("the result log cannot be written")

        body: Mapping[str, Any] = fields
        if self._operation.name == "update":
            body, total, done = await self._update_body(work, fields)
            if done is not None:
                return done, False
        elif self._reads_first and not work.listed and not work.unknown:
            total, done = await self._live_already(work)
            if done is not None:
                return done, False
        made: list[str] = []  # the steps made so far: a later one's failure says so
        for step in steps:
            attempts = Attempts(unknown=work.unknown)
            if work.unknown and step.settles_by_reading is not None and step.name != "update":
                known, note = await self._settle(work, step, body, attempts)
                total += attempts.count
                if note is not None:
                    notes.append(note)
                    continue
                # read, so known not to be applied; unread, it may still have been
                attempts = Attempts(unknown=not known)
            call = functools.partial(step.call, self._client, work.id, body)
            try:
                reply = await self._send(call, attempts, read=False, on_send=claim)
            except NotFound as exc:
                note = step.when_missing(unknown=attempts.unknown)
                if note is None:
                    raise _Failed(
                        _failure(work, exc, total + attempts.count, made=made), attempts.unknown
                    ) from None
                notes.append(note)
                reply = Reply(status=exc.status, data=None, request_id=exc.request_id)
            except (APIError, TransportError) as exc:
                raise _Failed(
                    _failure(work, exc, total + attempts.count, made=made), attempts.unknown
                ) from None
            else:
                if step.idempotent and attempts.unknown and attempts.count > 1:
                    notes.append(f"retried after an answer was lost; an {step.name} is idempotent")
            total += attempts.count
            made.append(step.name)
        result = ItemResult(
            work.id,
            "ok",
            status=reply.status if reply is not None else None,  # None: settled by reading
            attempts=total,
            request_id=reply.request_id if reply is not None else None,
            note="; ".join(notes) or None,
        )
        return result, False

    async def _update_body(
        self, work: Work, fields: dict[str, Any]
    ) -> tuple[Mapping[str, Any], int, ItemResult | None]:
        """An update's body, with the run's current assignees: (body, reads made, and the
        outcome when the run, read, needs no change after all)."""
        current = work.before if work.listed else None
        if current is not None and any(k not in current for k in fields):
            current = None  # the listing does not show a field set: read, for its undo
        body = None if current is None else Operation.update_body(fields, current)
        if body is not None:
            return body, 0, None
        reads = Attempts()
        try:
            run = await self._read(work.id, reads)
        except (APIError, TransportError) as exc:
            raise _Failed(
                _failure(
                    work,
                    exc,
                    reads.count,
                    f"cannot read the run's current assignees ({exc}); nothing was sent, "
                    "so none were removed",
                ),
                work.unknown,  # an earlier session's update may still have been applied
            ) from None
        body = Operation.update_body(fields, run)
        if body is None:
            raise _Failed(
                _failure(
                    work,
                    None,
                    reads.count,
                    "Tallyfy's answer shows no users or groups for the run; nothing was sent, "
                    "so none were removed",
                ),
                work.unknown,
            )
        if work.before is None or not work.unknown:
            # a run's state before the change; after a lost answer, the claim's stands: the
            # run read now may hold what the earlier attempt set
            work.before = self._operation.before(run, work.fields)
        note = self._operation.steps[0].settled(run, fields)
        if note is None:
            return body, reads.count, None
        if not work.unknown:  # as requested before this job came: nothing of its to undo
            return body, reads.count, ItemResult(work.id, "skipped", note="already as requested")
        done = ItemResult(work.id, "ok", attempts=reads.count, note=note)
        return body, reads.count, done

    async def _live_already(self, work: Work) -> tuple[int, ItemResult | None]:
        """Whether a run given by ID is live already, read first, so that an activate
        records only the runs it restored (its undo archives those alone): (reads made,
        the outcome when it needs no activate)."""
        reads = Attempts()
        try:
            await self._read(work.id, reads)
        except NotFound:
            return reads.count, None  # not live: archived (or no such run), to activate
        except (APIError, TransportError) as exc:
            raise _Failed(
                _failure(
                    work,
                    exc,
                    reads.count,
                    f"cannot read the run to tell whether it is archived ({exc}); nothing was sent",
                ),
                False,
            ) from None
        return reads.count, ItemResult(work.id, "skipped", note="already live")

    async def _settle(
        self, work: Work, step: Step, fields: Mapping[str, Any], attempts: Attempts
    ) -> tuple[bool, str | None]:
        """Read a run whose earlier change may have been applied: whether it could be read,
        and the note if the change was made."""
        try:
            run: dict[str, Any] | None = await self._read(work.id, attempts)
        except NotFound:
            run = None
        except (APIError, TransportError):
            return False, None  # unread: the step is made, and its 404 rule decides
        return True, step.settled(run, fields)

    async def _read(self, run_id: str, attempts: Attempts) -> dict[str, Any]:
        reply = await self._send(
            functools.partial(self._client.get_run, run_id), attempts, read=True
        )
        if reply.data is None:
            raise NotFound(404, "the run read as empty", request_id=reply.request_id)
        return reply.data


def _failure(
    work: Work,
    exc: APIError | TransportError | None,
    attempts: int,
    error: str | None = None,
    *,
    made: list[str] | None = None,
) -> ItemResult:
    api = exc if isinstance(exc, APIError) else None
    error = error if error is not None else str(exc)
    if made:  # the only operation of two steps: delete --archive-first
        error += " (archived first: the run is archived, not deleted)"
    return ItemResult(
        work.id,
        "failed",
        status=api.status if api is not None else None,
        attempts=attempts,
        error=error,
        request_id=api.request_id if api is not None else None,
    )
