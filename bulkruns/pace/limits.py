"""What holds each lane of a job's requests, and what each answer teaches: the pacer's rules,
with no clock and no waiting (the pacer brings both).

A lane's pace is the lowest of:

* the configured rate, less ``headroom``, for both lanes together (:meth:`Limits.set_rate`);
* the **ceiling** the server's 429s revealed (:mod:`bulkruns.pace.ceiling`): a change's 429
  sets the job's, a GET's the listing's alone;
* for changes, the **budget** the changes' ``X-RateLimit-*`` headers leave
  (:mod:`bulkruns.pace.budget`). A GET's numbers are not read (when one budget counts all,
  its ``Remaining`` is mostly the changes' doing), but every request spends the window, a
  GET's too: a window that is full holds both lanes until the job's own requests leave it.

A 429 also pauses its scope until its ``Retry-After``: a change's every lane, a GET's the
listing. When both lanes are due, listing goes first, so that the workers never run short of
runs (listing is held back by its bounded queue anyway).
"""

from __future__ import annotations

import math

from bulkruns import settings
from bulkruns.api import RateLimitInfo
from bulkruns.pace.budget import Budget
from bulkruns.pace.scope import LANES, Lane, Pause, Scope

__all__ = ["Limits"]

# seconds a change due together with listing's waiting request is put back, so that listing
# goes first (the pacer wakes it sooner, at listing's grant)
_AFTER_LISTING = 0.1
_FLOOR = 0.01  # no ceiling is learnt below this share of the configured rate


class Limits:
    """The limits of one job's requests, on the clock of the times given to each call. Its
    :meth:`accepted` and :meth:`refused` record what the pacer's ``succeeded`` and
    ``throttled`` are told, named as a scope's are.

    Args:
        rate: requests per second for the whole job; 0 means unpaced (pauses still hold).
        headroom: aim this share under ``rate``, so that network jitter cannot push the
            server's window over it.

    Raises:
        ConfigError: a setting is out of range.
    """

    def __init__(self, rate: float, headroom: float) -> None:
        self._rate = _checked(rate)
        settings.number("headroom", headroom, low=0, high=1, below=True, meaning="a share kept")
        self._headroom = headroom
        self._total = Scope()
        self._budget = Budget()  # the server's window, as the changes' numbers tell it
        self._lanes = {lane: Scope() for lane in LANES}

    def set_rate(self, rate: float) -> None:
        """Change the configured rate (requests per second, 0 for unpaced).

        Raises:
            ConfigError: ``rate`` is negative or not a finite number.
        """
        self._rate = _checked(rate)

    @property
    def rate(self) -> float:
        """The configured rate, in requests per second (0 = unpaced)."""
        return self._rate

    @property
    def ceiling(self) -> float | None:
        """The rate the server seemed to allow the job, from its 429s or its headers."""
        found = (self._total.ceiling.value, self._budget.allowed)
        return min((value for value in found if value is not None), default=None)

    def aimed(self, now: float) -> float:
        """The pace aimed at, before headroom: the configured rate, or less where the
        server's limit holds the changes back (0 when unpaced)."""
        found = (self._total.ceiling.pace(now), self._budget.pace(now, self._total.grants))
        return min(self._rate, *found)

    def pause(self, now: float) -> Pause | None:
        """The pause in force at ``now`` (the longer if both lanes have one), or None."""
        pauses = (s.pause for s in (self._total, self._lanes["read"]) if s.pause)
        return max((p for p in pauses if p.until > now), key=lambda p: p.until, default=None)

    def paused(self, lane: Lane) -> float:
        """When the pauses that hold ``lane`` end."""
        pauses = (s.pause.until for s in (self._total, self._lanes[lane]) if s.pause)
        return max(pauses, default=0.0)

    def due(self, lane: Lane, now: float, *, listing_waits: bool) -> tuple[float, bool]:
        """When the next request of ``lane`` may go, and whether room in the server's window
        (the budget's) is what it waits for, rather than the pace. ``listing_waits``: a
        request of listing's is waiting too (when both are due, it goes first)."""
        if not self._rate:  # only a pause holds an unpaced request
            return self.paused(lane), False
        paced = max(self._total.due(self._pace(self._total, now)), self._lane_due(lane, now))
        room = self._budget.due(self._total.grants, now)
        at = max(paced, room)
        if lane == "write" and listing_waits and self._lane_due("read", now) <= max(at, now):
            at = max(at, now) + _AFTER_LISTING  # listing is due as soon: it goes first, then this
        return at, room >= at

    def count(self, lane: Lane, now: float) -> None:
        """An unpaced request of ``lane`` leaves at ``now``: no slot, but it is counted all the
        same (its answer is matched to it; a rate set later measures by it)."""
        self._lanes[lane].grants.add(now)
        self._total.grants.add(now)

    def grant(self, lane: Lane, now: float, *, late: float, held: bool) -> None:
        """A request of ``lane`` that waited for its slot leaves at ``now``, ``late`` seconds
        after it was due (its timer fired late); ``held`` when it waited for room in the
        server's window."""
        # the lane's pace first: the budget counts the job's grants, not yet this one
        for scope in (self._lanes[lane], self._total):
            scope.grant(now, self._pace(scope, now), late=late, held=held)

    def accepted(
        self, lane: Lane, info: RateLimitInfo | None, *, sent: float, now: float, answered: bool
    ) -> bool:
        """An answer other than a 429, with ``info`` its numbers, came at ``now`` to a request
        of ``lane`` granted at ``sent`` (``answered`` False: none came, a transport error).
        Returns whether its numbers were read, which is worth waking the waiting requests
        for."""
        self._judge(lane).accepted(sent, now, learn=bool(self._rate) and answered)
        self._budget.answered(sent=sent, now=now, counted=True)
        if info is None or lane != "write":
            return False
        self._budget.update(info, sent=sent, now=now, grants=self._total.grants)
        return True

    def refused(
        self,
        lane: Lane,
        retry_after: float | None,
        info: RateLimitInfo | None,
        *,
        sent: float,
        now: float,
        reason: str | None,
    ) -> Pause:
        """A 429, with ``info`` its numbers, came at ``now`` to a request of ``lane`` granted at
        ``sent``: pause its scope (:meth:`~bulkruns.pace.scope.Scope.refused`) and learn from
        it. Returns the pause in force."""
        judge = self._judge(lane)
        self._budget.answered(sent=sent, now=now, counted=False)
        if lane == "write":
            self._budget.update(info, sent=sent, now=now, grants=self._total.grants, refused=True)
        lanes = LANES if judge is self._total else ("read",)
        floor = _FLOOR * self._rate if self._rate else None  # an unpaced job learns nothing
        pause = judge.refused(sent, now, retry_after, reason, lanes=lanes, floor=floor)
        if judge is self._total:
            self._budget.pause(pause.until)
        return pause

    def _judge(self, lane: Lane) -> Scope:
        """The scope a lane's 429s pause and teach: a GET's the listing's, a change's all."""
        return self._lanes["read"] if lane == "read" else self._total

    def _pace(self, scope: Scope, now: float) -> float:
        if not self._rate:
            return math.inf  # unpaced since the request began waiting: a slot with no interval
        pace = self._rate * (1.0 - self._headroom) if scope is self._total else math.inf
        if scope is self._lanes["write"]:
            pace = min(pace, self._budget.pace(now, self._total.grants))
        return min(pace, scope.ceiling.pace(now))

    def _lane_due(self, lane: Lane, now: float) -> float:
        scope = self._lanes[lane]
        return scope.due(self._pace(scope, now))


def _checked(rate: float) -> float:
    settings.number("rate", rate, low=0, meaning="requests per second, 0 for unpaced")
    return float(rate)
