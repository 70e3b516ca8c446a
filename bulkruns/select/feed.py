"""Where selection meets the workers: the :class:`Outlet` it hands runs to (a bounded
stream, the job's limit, a count of the runs not finished yet), and the :class:`Coverage`
it reports (how many runs, how many passes, whether the selection was proven complete)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from bulkruns.model import Work

__all__ = ["Coverage", "Outlet", "feed"]


@dataclass(slots=True)
class Coverage:
    """How far a job's selection has got.

    Attributes:
        total: the best estimate of this session's runs, or None while unknown.
        listing: the query is being listed.
        sweeps: passes made over the query (0 for a job over pinned runs).
        verified: every run of the selection was handed over: a final pass found nothing
            new (or, for pinned runs, the plan was handed over whole).
        message: why the selection could not be proven complete, if it could not.
        mismatched: runs the server listed that show they do not match the filter (it
            ignored part of it): left alone.
        bound: while ``total`` is unknown (bulkruns filters dates itself), the most it can
            be: what the server counts for the query.
    """

    total: int | None = None
    listing: bool = False
    sweeps: int = 0
    verified: bool = False
    message: str | None = None
    mismatched: int = 0
    bound: int | None = None


class Outlet:
    """The send side of the job's queue, with the count a sweep needs to know that no change
    is in flight.

    Args:
        send: the bounded stream the workers drain.
        limit: the most runs this session may hand over; None for no limit.
    """

    def __init__(self, send: MemoryObjectSendStream[Work], *, limit: int | None) -> None:
        self._send = send
        self.limit = limit
        self.emitted = 0
        """Runs handed over so far."""
        self.in_flight = 0
        """Runs handed over and not finished: queued, or being changed."""
        self._idle: anyio.Event | None = None

    def __enter__(self) -> Outlet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """No more runs: the workers end once the queue is empty."""
        self._send.close()

    @property
    def full(self) -> bool:
        """Whether the limit has been reached: no more runs are taken."""
        return self.limit is not None and self.emitted >= self.limit

    async def emit(self, work: Work) -> bool:
        """Hand one run over, waiting for room in the queue; False once the limit is reached."""
        if self.full:
            return False
        self.emitted += 1
        self.in_flight += 1
        try:
            await self._send.send(work)
        except BaseException:
            # never queued: a stopped job leaves it to be found again on resume
            self.emitted -= 1
            self.in_flight -= 1
            raise
        return True

    def finished(self) -> None:
        """One run handed over is done with, whatever its outcome."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Wait until every run handed over is done with."""
        while self.in_flight:
            self._idle = anyio.Event()
            await self._idle.wait()


async def feed(
    outlet: Outlet,
    coverage: Coverage,
    *,
    retry: Iterable[Work],
    plan: Iterable[Work] | None,
    sweep: Callable[[], Awaitable[None]] | None,
    on_progress: Callable[[], None],
) -> None:
    """Hand a job's whole selection to its workers, then close the queue.

    First the runs to ``retry`` (a resumed job's failed and unfinished ones), then the
    pinned ``plan``, or else every run that ``sweep`` (a :class:`~bulkruns.select.Sweeper`'s
    ``run``) finds. A feed that ends, rather than being cancelled, knows the session's total.
    """
    with outlet:
        try:
            if await _hand_over(outlet, retry):
                if plan is not None:
                    coverage.verified = await _hand_over(outlet, plan)
                elif sweep is not None:
                    await sweep()
            coverage.total = outlet.emitted
        finally:
            coverage.listing = False
            on_progress()


async def _hand_over(outlet: Outlet, runs: Iterable[Work]) -> bool:
    """Emit each run; False once the limit stops it."""
    for work in runs:
        if not await outlet.emit(work):
            return False
    return True
