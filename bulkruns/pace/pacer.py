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

A lane's pace is the lowest of:

* the configured rate, less ``headroom``, for both lanes together (:meth:`Pacer.set_rate`);
* the **ceiling** the server's 429s revealed (:mod:`bulkruns.pace.ceiling`): a change's 429
  sets the job's, a GET's the listing's alone;
* for changes, the **budget** the changes' ``X-RateLimit-*`` headers leave
  (:mod:`bulkruns.pace.budget`). A GET's numbers are not read (when one budget counts all,
  its ``Remaining`` is mostly the changes' doing), but every request spends the window, a
  GET's too: a window that is full holds both lanes until the job's own requests leave it.

A 429 also pauses its scope until its ``Retry-After``: a change's every lane, a GET's the
listing. When both lanes are due, listing goes first, so that the workers never run short of
runs (listing is held back by its bounded queue anyway). Only the head of each lane's queue
watches the clock; the others wait their turn, in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

from bulkruns import settings
from bulkruns.api import RateLimitInfo
from bulkruns.pace.budget import Budget
from bulkruns.pace.scope import Lane, Pause, Scope

__all__ = ["Lane", "Pacer", "Pause"]

_BOTH: tuple[Lane, ...] = ("read", "write")
_TICK = 0.1  # seconds: a waiting head reads the pace again at least this often
_FLOOR = 0.01  # no ceiling is learnt below this share of the configured rate


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
        self._rate = _checked(rate)
        settings.number("headroom", headroom, low=0, high=1, below=True, meaning="a share kept")
        self._headroom = headroom
        self._clock = clock or time.monotonic
        self._total = Scope()
        self._budget = Budget()  # the server's window, as the changes' numbers tell it
        self._lanes = {lane: Scope() for lane in _BOTH}
        self._turns = {lane: anyio.Lock() for lane in _BOTH}
        self._heads: set[Lane] = set()  # the lanes whose head is watching the clock
        self._changed = anyio.Event()

    @property
    def rate(self) -> float:
        """The configured rate, in requests per second (0 = unpaced)."""
        return self._rate

    @property
    def current_rate(self) -> float:
        """The pace aimed at now, in requests per second: the configured rate, or less where
        the server's limit holds the changes back (before headroom; 0 when unpaced)."""
        now = self._clock()
        limits = (self._total.ceiling.pace(now), self._budget.pace(now, self._total.grants))
        return min(self._rate, *limits)

    @property
    def ceiling(self) -> float | None:
        """The rate the server seemed to allow the job, from its 429s or its headers."""
        found = (self._total.ceiling.value, self._budget.allowed)
        return min((value for value in found if value is not None), default=None)

    @property
    def pause(self) -> Pause | None:
        """The pause in force now (the longer if both lanes have one), or None."""
        now = self._clock()
        pauses = (s.pause for s in (self._total, self._lanes["read"]) if s.pause)
        return max((p for p in pauses if p.until > now), key=lambda p: p.until, default=None)

    def set_rate(self, rate: float) -> None:
        """Change the configured rate at once. Waiting requests follow the new pace, and a
        raise is no burst: the next slot is one new interval after the latest one.

        Raises:
            ConfigError: ``rate`` is negative or not a finite number.
        """
        self._rate = _checked(rate)
        self._notify()

    async def acquire(self, lane: Lane) -> float:
        """Wait for this request's slot in ``lane``, and out any pause. Cancellation-safe.

        Returns:
            the pacer's clock at the grant: pass it to :meth:`succeeded` or :meth:`throttled`.
        """
        while not self._rate:  # unpaced: only a pause holds the request (this path is hot)
            if (delay := self._paused(lane) - (now := self._clock())) <= 0.0:
                # kept all the same: its answer is matched to it; a rate set later measures by it
                self._lanes[lane].grants.add(now)
                self._total.grants.add(now)
                return now
            with anyio.move_on_after(delay):  # a rate set meanwhile paces it
                await self._changed.wait()
        async with self._turns[lane]:
            self._heads.add(lane)
            try:
                late = 0.0  # how much later than it was due the head woke to this grant
                held = False  # whether it waited for room in the server's window
                while True:
                    due, room = self._due(lane, now := self._clock())
                    if due <= now:
                        break
                    held = room
                    with anyio.move_on_after(min(due - now, _TICK)):  # paces change with time
                        await self._changed.wait()
                    late = max(self._clock() - due, 0.0)
                # the lane's pace first: the budget counts the job's grants, not yet this one
                for scope in (self._lanes[lane], self._total):
                    scope.grant(now, self._pace(scope, now), late=late, held=held)
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
        self._judge(lane).accepted(sent, now, learn=bool(self._rate) and answered)
        self._budget.answered(sent=sent, now=now, counted=True)
        if info is not None and lane == "write":
            self._budget.update(info, sent=sent, now=now, grants=self._total.grants)
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
        sent, judge = now if sent is None else sent, self._judge(lane)
        self._budget.answered(sent=sent, now=now, counted=False)
        if lane == "write":
            self._budget.update(info, sent=sent, now=now, grants=self._total.grants, refused=True)
        lanes = _BOTH if judge is self._total else ("read",)
        floor = _FLOOR * self._rate if self._rate else None  # an unpaced job learns nothing
        pause = judge.refused(sent, now, retry_after, reason, lanes=lanes, floor=floor)
        if judge is self._total:
            self._budget.pause(pause.until)
        self._notify()
        return pause

    def _paused(self, lane: Lane) -> float:
        """When the pauses that hold ``lane`` end."""
        pauses = (s.pause.until for s in (self._total, self._lanes[lane]) if s.pause)
        return max(pauses, default=0.0)

    def _judge(self, lane: Lane) -> Scope:
        """The scope a lane's 429s pause and teach: a GET's the listing's, a change's all."""
        return self._lanes["read"] if lane == "read" else self._total

    def _pace(self, scope: Scope, now: float) -> float:
        if not self._rate:
            return math.inf  # unpaced since the request began waiting
        pace = self._rate * (1.0 - self._headroom) if scope is self._total else math.inf
        if scope is self._lanes["write"]:
            pace = min(pace, self._budget.pace(now, self._total.grants))
        return min(pace, scope.ceiling.pace(now))

    def _due(self, lane: Lane, now: float) -> tuple[float, bool]:
        """When the head of ``lane`` may go, and whether room in the server's window (the
        budget's) is what it waits for, rather than the pace."""
        if not self._rate:  # unpaced since the request began waiting: only a pause holds it
            return self._paused(lane), False
        paced = max(self._total.due(self._pace(self._total, now)), self._lane_due(lane, now))
        room = self._budget.due(self._total.grants, now)
        at = max(paced, room)
        if (
            lane == "write"
            and "read" in self._heads
            and self._lane_due("read", now) <= max(at, now)
        ):
            at = max(at, now) + _TICK  # listing is due as soon: it goes first, then this
        return at, room >= at

    def _lane_due(self, lane: Lane, now: float) -> float:
        scope = self._lanes[lane]
        return scope.due(self._pace(scope, now))

    def _notify(self) -> None:
        """Wake the lanes' heads: a grant, an answer's numbers, a pause or a new rate."""
        self._changed.set()
        self._changed = anyio.Event()


def _checked(rate: float) -> float:
    settings.number("rate", rate, low=0, meaning="requests per second, 0 for unpaced")
    return float(rate)
