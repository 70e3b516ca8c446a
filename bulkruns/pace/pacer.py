"""One request budget for a whole job: an even pace, a shared pause, and AIMD.

Every request a job sends, listing and mutations alike, first awaits :meth:`Pacer.acquire`.
The pace comes from :class:`aiolimiter.AsyncLimiter`, a leaky bucket holding a small
``burst`` (a twentieth of a second's worth of requests by default), so requests leave
evenly spaced instead of in a burst at start-up. Around it:

* a **pause**: a 429 holds every acquirer until the server's ``Retry-After`` has passed;
* **multiplicative decrease**: the same 429 lowers the rate, once for the whole burst of
  429s that requests already in flight bring back;
* **additive increase**: successful requests raise the rate back toward the configured
  one, a little per second.

aiolimiter has no public way to change a limiter's rate, so a rate change builds a new
limiter, filled so that it carries on the old spacing rather than offering a fresh bucket.
Acquirers queued in the old limiter are woken and queue again in the new one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from bulkruns import settings

__all__ = ["Pacer"]

# A 429 answered with ``Retry-After: 0`` (or a tiny value) still means that the requests in
# flight will come back as 429s too: the rate is lowered at most once in this many seconds.
_SETTLE = 1.0

# Additive increase is applied from the elapsed time, so it does not need a call per
# request; building a limiter per successful request would cost more than it buys.
_MIN_INCREASE_INTERVAL = 0.25


class Pacer:
    """Spreads requests evenly at a rate, pauses them all on a 429, and adapts the rate.

    Runs on asyncio (as aiolimiter does); one pacer serves one event loop.

    Args:
        rate: requests per second; 0 means unpaced (pauses are still honoured).
        burst: the bucket holds this many seconds of the rate, at least two requests; the
            most that can leave back to back after an idle moment.
        headroom: aim ``(1 - headroom) * rate``, so that network jitter cannot push the
            server's rolling window over its limit.
        decrease: a 429 multiplies the current rate by this factor.
        recovery: each second without a 429 adds ``recovery * rate`` back, up to ``rate``.
        floor: the rate is never lowered below ``floor * rate``.
        clock: seconds, monotonic; pauses and recovery are measured on it. The default,
            :func:`time.monotonic`, is the asyncio event loop's own clock.

    Raises:
        ConfigError: a setting is out of range.
    """

    __slots__ = (
        "_burst",
        "_changed",
        "_clock",
        "_current",
        "_decrease",
        "_floor",
        "_gen",
        "_headroom",
        "_hold_until",
        "_last_change",
        "_last_grant",
        "_limiter",
        "_limiter_gen",
        "_paused_until",
        "_rate",
        "_recovery",
        "_waiting",
    )

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 0.05,
        headroom: float = 0.01,
        decrease: float = 0.5,
        recovery: float = 0.1,
        floor: float = 0.05,
        clock: Callable[[], float] | None = None,
    ) -> None:
        check = settings.number
        check("rate", rate, low=0, meaning="requests per second, 0 for unpaced")
        check("burst", burst, low=0, above=True, meaning="seconds of the rate the bucket holds")
        check("headroom", headroom, low=0, high=1, below=True, meaning="a share kept spare")
        check("decrease", decrease, low=0, above=True, high=1, meaning="the factor a 429 applies")
        check("recovery", recovery, low=0, meaning="a share of the rate regained per second")
        check("floor", floor, low=0, above=True, high=1, meaning="the lowest share of the rate")
        self._rate = float(rate)
        self._burst = burst
        self._headroom = headroom
        self._decrease = decrease
        self._recovery = recovery
        self._floor = floor
        self._clock = clock or time.monotonic
        self._current = self._rate
        self._paused_until = 0.0
        self._hold_until = -math.inf
        self._last_change = -math.inf
        # The rate generation: bumped by every change that needs a new limiter.
        self._gen = 0
        # Built lazily, in acquire(): an AsyncLimiter binds to the running event loop.
        self._limiter: AsyncLimiter | None = None
        self._limiter_gen = -1
        # Loop time of the latest grant; None at start and after a pause (no burst then).
        self._last_grant: float | None = None
        # Resolved (and dropped) on a rate change or a pause, to wake queued acquirers.
        self._changed: asyncio.Future[None] | None = None
        self._waiting = 0

    @property
    def current_rate(self) -> float:
        """The rate now aimed at, in requests per second before headroom (0 = unpaced).

        Equal to the configured rate until a 429 lowers it.
        """
        return self._current

    @property
    def paused_until(self) -> float:
        """When the current (or latest) pause ends, on the pacer's clock; 0 if never paused."""
        return self._paused_until

    async def acquire(self) -> None:
        """Wait for this request's slot, and out any pause. Cancellation-safe."""
        # The unpaced path runs once per request at thousands per second: two comparisons.
        if not self._rate and self._paused_until <= self._clock():
            return
        while True:
            if self._paused_until > self._clock():
                await self._sit_out_pause()
            if not self._rate:
                return
            limiter = self._limiter
            if limiter is None or self._limiter_gen != self._gen:
                limiter = await self._new_limiter()
            if not self._waiting and limiter.has_capacity():
                # A free slot and nobody queued before us: this does not suspend, so
                # neither the rate nor the pause can have changed under us.
                await limiter.acquire()
            elif not await self._queue(limiter):
                continue
            self._last_grant = asyncio.get_running_loop().time()
            return

    async def _queue(self, limiter: AsyncLimiter) -> bool:
        """Wait in ``limiter`` for a slot; False if the rate or the pause changed first."""
        loop = asyncio.get_running_loop()
        changed = self._changed
        if changed is None:
            changed = self._changed = loop.create_future()
        gen = self._gen
        # The slot is awaited in a helper task so that a rate change can take the acquirer
        # out of the old limiter's queue at once, instead of after the old pace's delay.
        slot = loop.create_task(limiter.acquire())
        self._waiting += 1
        try:
            await asyncio.wait((slot, changed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting -= 1
            if not slot.done():
                slot.cancel()
        if not slot.done() or slot.cancelled():
            return False
        slot.result()
        # A slot granted by a limiter that has just been replaced, or while a pause was set,
        # could break the new pace: give it up and queue again.
        return gen == self._gen and self._paused_until <= self._clock()

    async def _sit_out_pause(self) -> None:
        # Loop: a later 429 may have pushed the end of the pause further out.
        delay = self._paused_until - self._clock()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self._paused_until - self._clock()

    async def _new_limiter(self) -> AsyncLimiter:
        effective = self._current * (1.0 - self._headroom)
        # at least two: with a one-request bucket every late timer wake-up is lost for good,
        # which costs about 1 % of the pace at Tallyfy's 10 requests a second
        capacity = max(2.0, self._burst * effective)
        limiter = AsyncLimiter(capacity, capacity / effective)
        self._limiter = limiter
        self._limiter_gen = self._gen
        # aiolimiter's bucket starts empty, which would let `capacity` requests out at
        # once. Fill it so that the next slot comes one interval after the latest grant
        # (at once at start-up or after a pause): the pace carries on across a change.
        if self._last_grant is None:
            fill = capacity - 1.0
        else:
            elapsed = asyncio.get_running_loop().time() - self._last_grant
            fill = min(capacity, max(0.0, capacity - elapsed * effective))
        if fill > 0.0:
            await limiter.acquire(fill)  # an empty bucket has room: this does not suspend
        return limiter

    def _wake_queued(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def throttled(self, retry_after: float | None) -> None:
        """Record a 429: pause every acquirer and lower the rate.

        Every acquirer waits until ``retry_after`` seconds from now (a later 429 can only
        lengthen the pause). The rate is multiplied by ``decrease`` (not below
        ``floor * rate``) only for the first 429 of a pause, or of a second if the pause is
        shorter: the 429s that requests already in flight bring back count once.

        Args:
            retry_after: seconds from the response's ``Retry-After``; None means 1 second.
        """
        now = self._clock()
        delay = 1.0 if retry_after is None else max(0.0, retry_after)
        until = now + delay
        if now >= self._hold_until:
            self._hold_until = now + max(delay, _SETTLE)
            if self._rate:
                self._current = max(self._current * self._decrease, self._floor * self._rate)
        else:
            self._hold_until = max(self._hold_until, until)
        self._paused_until = max(self._paused_until, until)
        # Recovery counts the seconds of requests without a 429, so from the pause's end.
        self._last_change = self._paused_until
        # A fresh limiter after the pause, so that the queue does not leave in a burst.
        self._last_grant = None
        self._gen += 1
        self._wake_queued()

    def succeeded(self) -> None:
        """Record a request that was not throttled: let the rate climb back.

        The rate grows by ``recovery * rate`` per second since the last change, up to the
        configured rate. Cheap when the rate is already there.
        """
        if self._current >= self._rate:
            return
        now = self._clock()
        elapsed = now - self._last_change
        if elapsed < _MIN_INCREASE_INTERVAL:
            return
        self._current = min(self._rate, self._current + self._recovery * self._rate * elapsed)
        self._last_change = now
        self._gen += 1
        self._wake_queued()
