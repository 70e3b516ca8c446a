"""Pacing by the server's own numbers: ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.

An answer's ``Remaining`` is what its window had left when its request arrived. The numbers
of the latest-sent request answered (the *carrier*) are the newest; the requests granted
after it were not counted in them. Every request the job sends spends the window, a GET's
too, so the budget counts the job's grants and notes every answer (:meth:`Budget.answered`),
though it reads the changes' numbers alone.

A **rolling window** gives back each request one window's length after it was counted; its
length, and another client's share of it, are measured by the job's own requests
(:mod:`bulkruns.pace.rolling`). Once measured, the window is predicted, not averaged: it
holds what the carrier's held, plus the job's requests counted since and those in flight,
less the job's requests that have left it since. When that leaves no room, the lanes wait
until the request that makes room has left by the time one sent then, at the quickest
latency of a few hundred answers (less a tenth of their spread), is counted
(:meth:`Budget.due`). So a job told too much meets the echo of its own first seconds a
window later foreseen (nothing leaves the window where it sent nothing), and the pace never
exceeds ``Limit`` over the length. Room that only another client's requests can make, by
leaving, no answer foretells: once no request sent since the carrier is still in flight
(an older one's answer brings older numbers), the lanes send one after a moment, to see.

Until then (none of the job's requests has left the window yet), its net refill rate is
estimated from one carrier to the next (what is left now, plus what was sent between, less
what was left before, so that another client's use comes off it), and the lane is paced so
that it never spends the last of what is left faster than it comes back::

    pace = refill + (left - reserve) / horizon

where ``left`` is the carrier's ``Remaining``, plus what came back since, less the job's
requests it did not count; when another client spends faster than the window gives back (the
refill is negative), its use until a request sent now is counted comes off too, and the
refill counts as none.

The horizon is the time to the reset that ``X-RateLimit-Reset`` announces, once believed
(:mod:`bulkruns.pace.fixed`; a 429's, always: the window's requests are spread evenly up to
it), a quarter of a second otherwise (the reserve is neared quickly, and from there the refill
rate is kept).

A **fixed window** shows itself by coming back whole between two requests (the requests
counted before that tell no rolling length: they left all at once; a window used lightly
before its reset gives back less than half of it, but holds no more than the job's requests
since the carrier). Once its length is announced, or learnt from its resets
(:mod:`bulkruns.pace.fixed`), the pace never exceeds the announced rate, ``Limit`` over that
length, and a learnt window is paced evenly at it, less what another client was seen to
spend of it (so that the job does not crowd it out); when what is left of it comes down to
the reserve (jitter crowds a window's edges), the lanes wait for its next reset. A lane held
with nothing sent since the carrier in flight sends one request after a moment, to see
whether the window is back; one held by requests still unanswered (lost, or stalled) probes
the same way once the numbers it has are stale.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from bulkruns.api import RateLimitInfo
from bulkruns.pace.fixed import FixedWindow
from bulkruns.pace.history import Grants
from bulkruns.pace.rolling import RollingWindow

__all__ = ["Budget"]

_RESERVE = 1  # a request left in a window, against counts that come late
_HORIZON = 0.25  # seconds to near the reserve in when no reset is announced
_REFILL_SPAN = 1.0  # seconds the refill rate is averaged over (exponentially)
_PROBE = 0.25  # seconds after which a held lane with nothing in flight sends one, to see
# Numbers this old are stale: the requests sent since, still unanswered, may never be (lost,
# or stalled until a timeout), so a held lane probes, one request every _PROBE.
_STALE = 2.0
# The pace stays this share under the announced rate: a learned window can read a little
# short, its resets being seen by answers that come a little after them, by varying amounts
# (a window spent before its reset holds the lanes, so the margin need not cover that too).
_MARGIN = 0.015
_LATENCIES = 32  # answers whose latencies give their spread
_QUICKEST = 8  # spans of _LATENCIES answers whose quickest a full rolling window is sent into by
_QUICKER = 0.1  # of that spread: how much quicker than the quickest of them a request may be
_KEPT = 4096  # the grant times of the answers noted are trimmed to _STALE past this many
_SPREAD = 0.1  # of a window: the most of the spread a learned fixed window allows for


class Budget:
    """What one lane's answers say is left of the server's window, and the pace it allows."""

    __slots__ = (
        "_answered",
        "_fixed",
        "_late",
        "_latencies",
        "_left",
        "_noted",
        "_quickest",
        "_quiet",
        "_refill",
        "_refused",
        "_replied",
        "_reset_at",
        "_rolling",
        "_sent",
        "limit",
    )

    def __init__(self) -> None:
        self.limit: int | None = None  # X-RateLimit-Limit; None until an answer gave numbers
        self._left = 0  # Remaining, as the carrier said
        self._sent = -math.inf  # when the carrier was granted
        self._answered = -math.inf  # when its answer came
        self._late = 0  # answers read with the carrier's, sent before it but counted after it
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)  # of the latest answers
        # the quickest of each _LATENCIES answers before: the quickest of a few hundred is
        # the one a request sent into a full rolling window must be counted after
        self._quickest: deque[float] = deque(maxlen=_QUICKEST)
        self._noted = 0  # latencies noted
        self._refill = 0.0  # requests a second the window gives back, net of others' use
        self._quiet = -math.inf  # when the latest pause ended
        self._refused = -math.inf  # when a 429 last came to a request sent since the carrier
        self._reset_at: float | None = None  # the next reset, as X-RateLimit-Reset announced
        self._replied: list[float] = []  # when the requests answered lately were granted
        self._rolling = RollingWindow()
        self._fixed = FixedWindow()

    @property
    def window(self) -> float | None:
        """A fixed window's length, announced or learnt; None until either."""
        return self._fixed.window

    @property
    def allowed(self) -> float | None:
        """The rate the server announces (its limit over its window), once both are known."""
        return self.limit / self.window if self.limit and self.window else None

    def update(
        self,
        info: RateLimitInfo | None,
        *,
        sent: float,
        now: float,
        grants: Grants,
        refused: bool = False,
    ) -> None:
        """Read an answer's numbers.

        Args:
            info: the answer's ``X-RateLimit-*`` headers (None without them).
            sent: when its request was granted.
            now: when the answer came.
            grants: the lane's grants.
            refused: the answer is a 429, whose ``X-RateLimit-Reset`` says when requests
                are let through again: a penalty may end then, not a window, so it tells
                no window's length.
        """
        if info is None or info.remaining is None:
            return
        self._latencies.append(now - sent)  # a slow answer's too, which a newer one overtook
        self._noted += 1
        if self._noted % _LATENCIES == 0:
            self._quickest.append(min(self._latencies))
        if sent < self._sent:  # older numbers than the carrier's
            if not refused and now <= self._answered and info.remaining < self._left:
                self._late += 1  # read with it, so not counted after it by the time it came
            return
        limit = info.limit if info.limit is not None else self.limit
        fresh = sent > self._sent > -math.inf and not self._sent < self._quiet <= sent
        between = grants.count(self._sent, sent) if fresh else 0
        given = info.remaining - self._left + between
        if fresh and limit and given <= -limit / 2 and sent <= self._answered:
            # counted just before a reset that the carrier showed: sent after it, but before
            # its answer came (one sent later was counted later: the drop is another client's)
            return
        # a 429's reset says when it ends; one that let the request through bounds a fixed
        # window once believed, and then the window's resets need not be learnt
        announced = info.reset is not None and (refused or self._fixed.announced(info.reset, now))
        if fresh:
            back = bool(limit and given >= limit / 2)  # half the window given back at once
            # or a lightly used window's reset: it holds the job's requests since, and the reserve
            if back or bool(limit and given > 0 and limit - info.remaining <= between + _RESERVE):
                self._rolling.came_back(now)
                if back and not announced:
                    self._fixed.seen(self._answered - self._spread(), now)
            else:
                decay = math.exp(-(sent - self._sent) / _REFILL_SPAN)
                self._refill = self._refill * decay + given / _REFILL_SPAN
        if limit and not refused and self.window is None:
            self._rolling.measure(limit - info.remaining, now)
        self.limit, self._left, self._sent, self._answered = limit, info.remaining, sent, now
        self._late = 0
        if info.reset is not None and announced:
            self._reset_at = now + info.reset

    def answered(self, *, sent: float, now: float, counted: bool) -> None:
        """Note any answer to the job's requests, a GET's too.

        Args:
            sent: when its request was granted.
            now: when the answer came: about when the server counted it.
            counted: it was let through (not a 429), so the server's window counts it.
        """
        replied = self._replied
        bisect.insort(replied, sent)
        if len(replied) > _KEPT:
            del replied[: bisect.bisect_left(replied, now - _STALE)]
        if counted and self.limit is not None:
            self._rolling.counted(now, self.limit)
        elif not counted and sent >= self._sent:
            self._refused = now  # a probe, whose numbers may go unread (a GET's)

    def _rolling_due(self, grants: Grants, now: float) -> float:
        """When a measured rolling window has room for one more request; -inf if it has now.

        The carrier's window held ``Limit - Remaining``, and room for another client's use
        beyond it is kept; since then the job's requests counted after it, and those in
        flight, were added, and the job's requests counted up to a window before left it. A
        request leaves one window's length after it was counted: the one that makes room
        must have left by the time a new request, sent at the quickest latency, is counted.
        """
        rolling, limit = self._rolling, self.limit
        if rolling.length is None or limit is None or self.window is not None:
            return -math.inf
        held = limit - self._left
        need = held + rolling.kept + self._uncounted(grants, now) + 1 - limit
        if need <= 0:
            return -math.inf
        leaves = rolling.leaves(need, self._answered, held, self._late)
        if leaves is not None:
            quickest = min(self._latencies)
            quickest = min(quickest, min(self._quickest, default=quickest))
            return leaves - quickest + _QUICKER * self._spread()
        # room comes with answers still to come, or as another client's requests leave, which
        # no answer foretells: the lanes send one, to see
        return self._probe(grants, now)

    def _probe(self, grants: Grants, now: float) -> float:
        """When a held lane sends one request, to see: never while one sent since the carrier
        is in flight (an older one's answer brings older numbers), else a moment after the
        latest numbers, or after the latest probe refused, if its numbers went unread."""
        if self._in_flight(grants, now, since=self._sent):
            return math.inf
        return max(self._answered, self._refused) + _PROBE

    def _spread(self) -> float:
        """How much slower than the quickest of the latest answers the slowest was."""
        return max(self._latencies) - min(self._latencies)

    def _uncounted(self, grants: Grants, now: float) -> int:
        """The job's requests the carrier's ``Remaining`` did not count: those counted after
        it (read after it, or with it and showing less left), and those in flight."""
        counted = self._rolling.counted_after(self._answered) + self._late
        return counted + self._in_flight(grants, now)

    def _others(self, now: float, longest: float = math.inf) -> float:
        """Another client's use of the window, at the rate the carriers saw it, from the
        carrier until a request sent at ``now`` is counted (over ``longest`` seconds at most)."""
        ahead = min(now + max(self._latencies) - self._answered, longest)
        return max(-self._refill, 0.0) * ahead

    def _in_flight(self, grants: Grants, now: float, since: float = -math.inf) -> int:
        """The job's requests granted lately (at ``since`` or after) and not yet answered."""
        replied = self._replied
        cutoff = max(now - _STALE, since)  # an older one unanswered is lost
        return grants.count(cutoff) - (len(replied) - bisect.bisect_left(replied, cutoff))

    def due(self, grants: Grants, now: float) -> float:
        """When the lanes may send again into a window that is full; -inf when there is room.

        A measured rolling window is full when its prediction leaves no room (see the module's
        docstring). A learnt fixed window is full when the carrier's ``Remaining``, less the
        job's requests counted after it and those in flight, and less what another client
        spends, at the rate the carriers showed, until a request sent now is counted, leaves
        no more than the reserve: the lanes wait for its next reset, and a request sent then
        less the quickest latency is counted after it.
        """
        fixed = self._fixed
        if not fixed.learnt:
            return self._rolling_due(grants, now)
        window = fixed.window
        assert window is not None
        # an answer slower than the rest by a tenth of the window (a stalled request) is not
        # jitter a window's edge can be kept from
        spread = min(self._spread(), _SPREAD * window)
        if self._left - self._uncounted(grants, now) - self._others(now) > _RESERVE:
            return -math.inf
        return fixed.following(self._answered, spread) - min(self._latencies) + _QUICKER * spread

    def pause(self, until: float) -> None:
        """A 429 pauses the lane until ``until``: what the window gives back meanwhile is the
        pause's, neither a refill rate nor a reset."""
        self._quiet = until

    def pace(self, now: float, grants: Grants) -> float:
        """The requests a second the lane may send at ``now`` (unlimited without numbers)."""
        if self.limit is None:
            return math.inf
        even = self.limit / self.window * (1.0 - _MARGIN) if self.window else math.inf
        reset = self._reset_at if self._reset_at is not None and now < self._reset_at else None
        if reset is None and self.window:
            # a fixed window, learned or past its announced reset: spread evenly, leaving
            # another client what the carriers saw it spend, so that it is not crowded out;
            # never held still by it, as only answers would tell that it stopped
            shared = even + min(self._refill, 0.0) * (1.0 - _MARGIN)
            return max(shared, min(1.0 / _PROBE, even))
        length = self._rolling.length
        if length is not None and self.window is None:
            return self.limit / length  # a measured rolling window: due() holds the rest
        uncounted = grants.count(self._sent) - 1 + self._late
        refill = max(self._refill, 0.0)
        # what is left, less the job's requests the carrier did not count and another client's
        # use until a request sent now is counted (a quarter second's at most: a lane held long
        # probes instead)
        left = self._left + refill * (now - self._sent) - uncounted - self._others(now, _HORIZON)
        horizon = reset - now if reset is not None else _HORIZON
        pace = refill + (left - _RESERVE) / horizon
        if pace > 0.0:
            return min(pace, even)
        if now >= self._probe(grants, now):
            return math.inf  # one request, to see what came back
        stale = now - self._answered >= _STALE  # held since the latest numbers came
        return min(1.0 / _PROBE, even) if stale else 0.0
