"""One run handled: skipped, planned, or changed by the operation's steps in order, each
through the paced send, with what a 404 means at each; the outcome recorded."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bulkruns.api import Client, Reply
from bulkruns.errors import APIError, NotFound, TransportError
from bulkruns.job.record import Recorder
from bulkruns.model import ItemResult, Operation, Work
from bulkruns.pace import Attempts

__all__ = ["Applier", "Send"]

Send = Callable[[Callable[[], Awaitable[Reply]], Attempts], Awaitable[Reply]]
"""Sends one request the job's way (paced, retried, counted), updating the attempts."""


class Applier:
    """Applies an operation to runs, one call at a time.

    Args:
        client: makes the calls.
        operation: the steps to make for each run, and the fields an update sets.
        send: sends each step's request, paced and retried.
        recorder: records each outcome.
        dry_run: plan the runs instead of changing them.
        plan_written: a dry run's plan is in the log already (it was pinned).
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
    ) -> None:
        self._client = client
        self._operation = operation
        self._steps = operation.steps
        self._send = send
        self._recorder = recorder
        self._dry_run = dry_run
        self._plan_written = plan_written

    async def handle(self, work: Work) -> ItemResult | None:
        """Skip, plan or change one run, and record what came of it.

        Returns:
            the outcome of a change, or None when no request was made.
        """
        operation, recorder = self._operation, self._recorder
        fields = work.fields if work.fields is not None else dict(operation.fields)
        if work.skip is None and operation.name == "update" and not fields:
            work.skip = "nothing to set"
        if work.skip is not None:
            recorder.skip(work)
            return None
        if self._dry_run:
            recorder.planned(work, write=not self._plan_written)
            return None
        if not recorder.claim(work):
            return None  # the log failed: the job is aborting, and nothing was sent
        result, unknown = await self.apply(work, fields)
        recorder.finish(result, work.before, unknown=unknown)
        return result

    async def apply(self, work: Work, fields: Mapping[str, Any]) -> tuple[ItemResult, bool]:
        """Make every step for one run.

        Args:
            work: the run; ``work.unknown`` says an earlier session's attempt may have
                applied the change already.
            fields: the fields an update sets on it.

        Returns:
            the outcome (``ok`` or ``failed``), and whether a failed run may have been
            changed all the same (an attempt's answer was lost).
        """
        attempts = Attempts()
        notes: list[str] = []
        reply: Reply | None = None
        for step in self._steps:
            tried = attempts.count
            attempts.unknown = work.unknown
            call = functools.partial(step.call, self._client, work.id, fields)
            try:
                reply = await self._send(call, attempts)
            except NotFound as exc:
                note = step.when_missing(unknown=attempts.unknown)
                if note is None:
                    return _failure(work, exc, attempts), attempts.unknown
                notes.append(note)
                reply = Reply(status=exc.status, data=None, request_id=exc.request_id)
                continue
            except (APIError, TransportError) as exc:
                return _failure(work, exc, attempts), attempts.unknown
            if step.idempotent and attempts.unknown and attempts.count - tried > 1:
                notes.append(f"retried after an answer was lost; an {step.name} is idempotent")
        assert reply is not None  # every operation has a step
        result = ItemResult(
            work.id,
            "ok",
            status=reply.status,
            attempts=attempts.count,
            request_id=reply.request_id,
            note="; ".join(notes) or None,
        )
        return result, False


def _failure(work: Work, exc: APIError | TransportError, attempts: Attempts) -> ItemResult:
    api = exc if isinstance(exc, APIError) else None
    return ItemResult(
        work.id,
        "failed",
        status=api.status if api is not None else None,
        attempts=attempts.count,
        error=str(exc),
        request_id=api.request_id if api is not None else None,
    )
