"""One request budget for a whole job: an even pace in two lanes, a shared pause, and the
server's limit as the pacer finds it.

Every request first awaits :meth:`Pacer.acquire` in its lane: ``"read"`` for listing (GETs,
which Tallyfy budgets more tightly), ``"write"`` for changes. Requests leave one at a time,
spaced by GCRA (the virtual scheduling form of the generic cell rate algorithm, kept by each
:class:`~bulkruns.pace.scope.Scope`), so no window of T seconds ever holds more than
``rate * T + 2`` requests, at any rate, across rate changes and after pauses.
aiolimiter's leaky bucket did this before, but its burst grows with the rate and its rate
cannot change, so every change built a new limiter, refilled by hand; a scope's few lines
of GCRA read the pace afresh at every slot instead.

What holds each lane, and what each answer teaches, are the rules of
:class:`~bulkruns.pace.limits.Limits`, kept apart from the waiting: they are given the time and
never wait. The pacer waits: only the head of each lane's queue watches the clock, woken
whenever a grant, an answer's numbers, a pause or a new rate may have moved what it waits
for; the others wait their turn, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from bulkruns.api import RateLimitInfo
from bulkruns.pace.limits import Limits
from bulkruns.pace.scope import LANES, Lane, Pause

__all__ = ["Lane", "Pacer", "Pause"]

_TICK = 0.1  # seconds: a waiting head reads the pace again at least this often


class Pacer:
    """Spreads a job's requests evenly, in two lanes, under the server's limit as it is found.

    One pacer serves one event loop.

    Args:
        rate: requests per second for the whole job; 0 means unpaced (pauses still hold).
        headroom: aim this share under ``rate``, so that network jitter cannot push the
            server's window over it.
        clock: seconds, monotonic, on the event loop's clock (the default,
            :func:`time.monotonic`, is asyncio's).

    Raises:
        ConfigError: a setting is out of range.
    """

    def __init__(
        self, rate: float, *, headroom: float = 0.01, clock: Callable[[], float] | None = None
    ) -> None:
        self._limits = Limits(rate, headroom)
        self._clock = clock or time.monotonic
        self._turns = {lane: anyio.Lock() for lane in LANES}
        self._heads: set[Lane] = set()  # the lanes whose head is watching the clock
        self._changed = anyio.Event()

    @property
    def rate(self) -> float:
        """The configured rate, in requests per second (0 = unpaced)."""
        return self._limits.rate

    @property
    def current_rate(self) -> float:
        """The pace aimed at now, in requests per second: the configured rate, or less where
        the server's limit holds the changes back (before headroom; 0 when unpaced)."""
        return self._limits.aimed(self._clock())

    @property
    def ceiling(self) -> float | None:
        """The rate the server seemed to allow the job, from its 429s or its headers."""
        return self._limits.ceiling

    @property
    def pause(self) -> Pause | None:
        """The pause in force now (the longer if both lanes have one), or None."""
        return self._limits.pause(self._clock())

    def set_rate(self, rate: float) -> None:
        """Change the configured rate at once. Waiting requests follow the new pace, and a
        raise is no burst: the next slot is one new interval after the latest one.

        Raises:
            ConfigError: ``rate`` is negative or not a finite number.
        """
        self._limits.set_rate(rate)
        self._notify()

    async def acquire(self, lane: Lane) -> float:
        """Wait for this request's slot in ``lane``, and out any pause. Cancellation-safe.

        Returns:
            the pacer's clock at the grant: pass it to :meth:`succeeded` or :meth:`throttled`.
        """
        limits = self._limits
        while not limits.rate:  # unpaced: only a pause holds the request (this path is hot)
            if (delay := limits.paused(lane) - (now := self._clock())) <= 0.0:
                limits.count(lane, now)
                return now
            with anyio.move_on_after(delay):  # a rate set meanwhile paces it
                await self._changed.wait()
        async with self._turns[lane]:
            self._heads.add(lane)
            try:
                late = 0.0  # how much later than it was due the head woke to this grant
                held = False  # whether it waited for room in the server's window
                while True:
                    due, room = limits.due(
                        lane, now := self._clock(), listing_waits="read" in self._heads
                    )
                    if due <= now:
                        break
                    held = room
                    with anyio.move_on_after(min(due - now, _TICK)):  # paces change with time
                        await self._changed.wait()
                    late = max(self._clock() - due, 0.0)
                limits.grant(lane, now, late=late, held=held)
            finally:
                self._heads.discard(lane)
                self._notify()  # the other lane's head may go now
        return now

    def succeeded(
        self,
        lane: Lane,
        info: RateLimitInfo | None = None,
        *,
        sent: float | None = None,
        answered: bool = True,
    ) -> None:
        """Record an answer that was not a 429 (an error's too), and read its numbers.

        Args:
            lane: the request's lane.
            info: the answer's ``X-RateLimit-*`` headers (a change's are paced by).
            sent: when the request was granted (what :meth:`acquire` returned); now if None.
            answered: False for a request that got no answer (a transport error): whether
                the server let it through is unknown, and its wait is no latency.
        """
        now = self._clock()
        sent = now if sent is None else sent
        if self._limits.accepted(lane, info, sent=sent, now=now, answered=answered):
            self._notify()

    def throttled(
        self,
        lane: Lane,
        retry_after: float | None,
        info: RateLimitInfo | None = None,
        *,
        sent: float | None = None,
        reason: str | None = None,
    ) -> Pause:
        """Record a 429: pause its scope, and learn the limit from it.

        A change's 429 pauses both lanes and teaches the job's ceiling; a GET's pauses and
        teaches listing only (:meth:`~bulkruns.pace.scope.Scope.refused`).

        Args:
            lane: the request's lane.
            retry_after: the seconds the server asked to wait; None waits 1 s, doubling for
                each run of 429s in a row, up to 32 s, and so does one shorter than that from
                the second run on (the 429s show it too short).
            info: the answer's ``X-RateLimit-*`` headers.
            sent: when the request was granted (what :meth:`acquire` returned); now if None.
            reason: why, for a person (``"the hourly limit"``); ``"Retry-After N s"`` if None.

        Returns:
            the pause in force.
        """
        now = self._clock()
        sent = now if sent is None else sent
        pause = self._limits.refused(lane, retry_after, info, sent=sent, now=now, reason=reason)
        self._notify()
        return pause

    def _notify(self) -> None:
        """Wake the lanes' heads: a grant, an answer's numbers, a pause or a new rate."""
        self._changed.set()
        self._changed = anyio.Event()
