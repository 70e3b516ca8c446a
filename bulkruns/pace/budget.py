"""Pacing by the server's own numbers: ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.

An answer's ``Remaining`` is what its window had left when its request arrived. The numbers
of the latest-sent request answered (the *carrier*) are the newest; the requests granted
after it were not counted in them. Every request the job sends spends the window, a GET's
too, so the budget counts the job's grants and notes every answer (:meth:`Budget.answered`),
though it reads the changes' numbers alone.

A **rolling window** gives back each request one window's length after it was counted. The
length is measured by the job's own requests: when the carrier's window held ``n`` (``Limit``
less ``Remaining``), it held at most the job's latest ``n``, so the one before them had left,
and the window is no longer than the time since that one was counted (answers read a
moment apart may be read out of the order the server counted them in, so those read just
before the carrier's are not taken to be in its window). Servers count their windows in
whole seconds: a bound within 50 ms of one is that length. Another client's requests in the
window make the bound read longer: when the latest carriers' windows all held requests
besides the job's own counted within the whole number of seconds under it (or up to a tenth
over it, as the bound can read short when the answers' way back quickens), they are that
client's, the window is that length, and room is kept for the most of theirs any of those
carriers held. Otherwise the bound is the length, which counts another client's requests in
as if the job's own stayed longer (a window that is not a whole number of seconds is taken
for the whole number under it, and the job's own requests beyond it for another client's:
right while the job's pace holds). Once measured, the window is predicted, not
averaged: it holds what the carrier's held, plus the job's requests counted since and those
in flight, less the job's requests that have left it since. When that leaves no room, the
lanes wait until the request that makes room has left by the time one sent then, at the
quickest latency of a few hundred answers (less a tenth of their spread), is counted
(:meth:`Budget.due`). So a job told too much meets the echo of its own first seconds a
window later foreseen (nothing leaves the window where it sent nothing), and the pace never
exceeds ``Limit`` over the length. Room that only another client's requests can make, by
leaving, no answer foretells: with none of the job's requests in flight, the lanes send one
after a moment, to see.

Until then (none of the job's requests has left the window yet), its net refill rate is
estimated from one carrier to the next (what is left now, plus what was sent between, less
what was left before, so that another client's use comes off it), and the lane is paced so
that it never spends the last of what is left faster than it comes back::

    pace = refill + (left - reserve) / horizon

The horizon is the time to the reset that ``X-RateLimit-Reset`` announces (the window's
requests are spread evenly up to it), a quarter of a second otherwise (the reserve is neared
quickly, and from there the refill rate is kept).

A **fixed window** shows itself by coming back whole between two requests (the requests
counted before that tell no rolling length: they left all at once; a window used lightly
before its reset gives back less than half of it, but holds no more than the job's requests
since the carrier). Each reset that gives back half the window or more lies between the
answers of those two, and a held lane's may be seen long after it. Once three resets are
placed by one length (a whole number of seconds if just one fits, as servers count them), or
one is announced by an answer that let its request through (a 429's says when its refusal
ends: a penalty may outlast the window), the pace never exceeds the announced rate, ``Limit``
over that length, and a learned window is paced evenly at it, less what another client was
seen to spend of it (so that the job does not crowd it out); when what is left of it comes
down to the reserve (jitter crowds a window's edges), the lanes wait for its next reset. A
lane held with nothing in flight sends one request after a moment, to see whether the window
is back; one held by requests whose answers brought no numbers (lost, or an edge's) probes
the same way once the numbers it has are stale.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque

from bulkruns.api import RateLimitInfo
from bulkruns.pace.history import Grants

__all__ = ["Budget"]

_RESERVE = 1  # a request left in a window, against counts that come late
_HORIZON = 0.25  # seconds to near the reserve in when no reset is announced
_REFILL_SPAN = 1.0  # seconds the refill rate is averaged over (exponentially)
_PROBE = 0.25  # a held lane with nothing in flight sends one request after this many seconds
# Numbers this old are stale: the requests sent since may have no answer with numbers to
# come (a timeout, a 502 from the edge), so a held lane probes, one request every _PROBE.
_STALE = 2.0
# The pace stays this share under the announced rate: a learned window can read a little
# short, its resets being seen by answers that come a little after them, by varying amounts
# (a window spent before its reset holds the lanes, so the margin need not cover that too).
_MARGIN = 0.015
_PHASES = 4  # the latest resets kept, with the first in step: their spans give length and phase
_LATENCIES = 32  # answers whose latencies give their spread
_QUICKEST = 8  # spans of _LATENCIES answers whose quickest a full rolling window is sent into by
_QUICKER = 0.1  # of that spread: how much quicker than the quickest of them a request may be
_KEPT = 4096  # the grant times of the answers noted are trimmed to _STALE past this many
# A share a second: a rolling window's length, read as the least its answers allowed, is let
# loose by this much, so that a longer window, or another client's growing use, is followed.
_RELAX = 0.05
_SPREAD = 0.1  # of a window: the most of the spread a learned fixed window allows for
# The latest carriers whose windows must all have held another client's requests for a
# rolling window's bound to be read as a whole number of seconds and their share (at least
# the fewest); room is kept for the most of theirs any of them held.
_OTHERS = 16
_OTHERS_FEWEST = 2
_ORDER = 0.002  # seconds: answers read closer together may be out of the server's order
_WHOLE = 0.05  # seconds a rolling window's bound may read off a whole number and be it
_SHORT = 0.1  # of a rolling window's bound: how much short of a whole number it may read


class Budget:
    """What one lane's answers say is left of the server's window, and the pace it allows."""

    __slots__ = (
        "_answered",
        "_arrivals",
        "_latencies",
        "_left",
        "_length",
        "_measured",
        "_noted",
        "_others",
        "_others_in",
        "_phase",
        "_quickest",
        "_quiet",
        "_refill",
        "_replied",
        "_reset_at",
        "_resets",
        "_sent",
        "_whole",
        "limit",
        "window",
    )

    def __init__(self) -> None:
        self.limit: int | None = None  # X-RateLimit-Limit; None until an answer gave numbers
        self.window: float | None = None  # a fixed window's length, announced or learned
        self._left = 0  # Remaining, as the carrier said
        self._sent = -math.inf  # when the carrier was granted
        self._answered = -math.inf  # when its answer came
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)  # of the latest answers
        # the quickest of each _LATENCIES answers before: the quickest of a few hundred is
        # the one a request sent into a full rolling window must be counted after
        self._quickest: deque[float] = deque(maxlen=_QUICKEST)
        self._noted = 0  # latencies noted
        self._refill = 0.0  # requests a second the window gives back, net of others' use
        # fixed-window resets seen in step, (windows since the first, after, by when): the
        # first, and the latest
        self._resets: list[tuple[int, float, float]] = []
        self._phase = 0.0  # a learned fixed window's first reset, as its latest ones place it
        self._quiet = -math.inf  # when the latest pause ended
        self._reset_at: float | None = None  # the next reset, as X-RateLimit-Reset announced
        # the job's requests the server counted (both lanes'), by when their answers came
        self._arrivals: list[float] = []
        self._replied: list[float] = []  # when the requests answered lately were granted
        self._length: float | None = None  # a rolling window's, at most; None until measured
        self._measured = -math.inf  # when it was
        # the latest carriers' count of another client's requests in a rolling window of a
        # whole number of seconds: what each held, less the job's own counted within it
        self._others: deque[int] = deque(maxlen=_OTHERS)
        self._others_in: float | None = None  # the whole number of seconds they are counted in
        self._whole = -math.inf  # when the window last came back whole between two answers

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
        if sent < self._sent:
            return  # older numbers than the carrier's
        limit = info.limit if info.limit is not None else self.limit
        if sent > self._sent > -math.inf and not self._sent < self._quiet <= sent:
            between = grants.count(self._sent, sent)
            given = info.remaining - self._left + between
            if limit and given <= -limit / 2:
                return  # counted just before a reset that a carrier already showed
            back = bool(limit and given >= limit / 2)  # half the window given back at once
            # or a lightly used window's reset: it holds the job's requests since, and the reserve
            if back or bool(limit and given > 0 and limit - info.remaining <= between + _RESERVE):
                self._whole = now  # the requests counted before it tell no rolling length
                if info.reset is None and back:
                    self._reset_seen(self._answered, now)
            else:
                decay = math.exp(-(sent - self._sent) / _REFILL_SPAN)
                self._refill = self._refill * decay + given / _REFILL_SPAN
        if limit and not refused and self.window is None:
            self._measure(limit - info.remaining, now)
            self._count_others(limit - info.remaining, now)
        self.limit, self._left, self._sent, self._answered = limit, info.remaining, sent, now
        if info.reset is not None:
            self._reset_at = now + info.reset
            if not refused:  # a fixed window's next reset is at most its length away
                self.window = max(self.window or 0.0, info.reset)

    def answered(self, *, sent: float, now: float, counted: bool) -> None:
        """Note any answer to the job's requests, a GET's too, once answers bring numbers.

        Args:
            sent: when its request was granted.
            now: when the answer came: about when the server counted it.
            counted: it was let through (not a 429), so the server's window counts it.
        """
        if self.limit is None:
            return
        replied, arrivals = self._replied, self._arrivals
        bisect.insort(replied, sent)
        if len(replied) > _KEPT:
            del replied[: bisect.bisect_left(replied, now - _STALE)]
        if counted:
            bisect.insort(arrivals, now)
            if len(arrivals) > 2 * (self.limit + _LATENCIES):
                del arrivals[: len(arrivals) - self.limit - _LATENCIES]

    def _measure(self, held: int, now: float) -> None:
        # A rolling window held ``held`` requests when the carrier was counted. Had all been
        # the job's, the latest ``held`` counted (the carrier among them) and the one before
        # had left it, so the window is no longer than the time since that one came; another
        # client's requests in it only make that longer. So the least such time, let loose
        # slowly, bounds the window's length, the others' share of it counted in. The job's
        # requests read just before the carrier may have been counted after it: not in it.
        arrivals = self._arrivals
        held += self._unordered(now)
        if not 0 < held < len(arrivals) or not self._whole < arrivals[-held - 1] < now:
            return  # none of the job's requests has left the window since it came back whole
        bound = now - arrivals[-held - 1]
        if self._length is not None:
            bound = min(bound, self._length * (1.0 + _RELAX * (now - self._measured)))
        self._length, self._measured = bound, now

    def _seconds(self) -> float | None:
        """The whole number of seconds a rolling window's measured bound reads, or reads
        above (another client's requests make it read long); None under a second. The bound
        can read short, by as much as the answers' way back quickened since the request it is
        measured from, and a second too few would take a second's worth of the job's own
        requests for another client's: so a bound up to a tenth short is read as the whole
        number above it."""
        length = self._length
        if length is None:
            return None
        tolerance = max(_WHOLE, _SHORT * length)
        return float(math.floor(length + tolerance)) if length + tolerance >= 1.0 else None

    def _count_others(self, held: int, now: float) -> None:
        # what the carrier's window held, less the job's own requests counted within that
        # whole number of seconds: another client's, if the window is that long
        whole = self._seconds()
        if whole != self._others_in:
            self._others.clear()  # counts within another length tell nothing of this one
            self._others_in = whole
        if whole is not None:
            arrivals = self._arrivals
            self._others.append(held - (len(arrivals) - bisect.bisect_right(arrivals, now - whole)))

    def _unordered(self, now: float) -> int:
        """The job's requests answered just before the carrier (at ``now``), which the server
        may have counted after it: answers a moment apart can be read out of its order."""
        arrivals = self._arrivals
        return max(len(arrivals) - bisect.bisect_left(arrivals, now - _ORDER) - 1, 0)

    def _rolling(self) -> tuple[float, int] | None:
        """A measured rolling window's length, and the room kept for another client's use
        beyond what the carrier's window held of it; None until measured.

        Servers count their windows in whole seconds: a bound within 50 ms of one is that
        length. When the latest carriers all held another client's requests in the whole
        number of seconds :meth:`_seconds` gives, the bound read long by their share: the
        window is that length, and room is kept for the most of theirs any of those carriers
        held. Otherwise the bound is the length, the others' share counted in as if the
        job's requests stayed in it longer.
        """
        length, whole, others = self._length, self._seconds(), self._others
        if length is None:
            return None
        if whole is not None:
            if whole == self._others_in and len(others) >= _OTHERS_FEWEST and min(others) >= 1:
                return whole, max(others) - others[-1]
            if abs(length - whole) <= _WHOLE:
                return whole, 0
        return length, 0

    def _rolling_due(self, grants: Grants, now: float) -> float:
        """When a measured rolling window has room for one more request; -inf if it has now.

        The carrier's window held ``Limit - Remaining``; since then the job's requests
        counted after it, and those in flight, were added, and the job's requests counted up
        to a window before left it. A request leaves one window's length after it was
        counted: the one that makes room must have left by the time a new request, sent at
        the quickest latency, is counted.
        """
        rolling, limit = self._rolling(), self.limit
        if rolling is None or limit is None or self.window is not None:
            return -math.inf
        length, kept = rolling
        need = (limit - self._left) + kept + self._uncounted(grants, now) + 1 - limit
        if need <= 0:
            return -math.inf
        arrivals, carrier = self._arrivals, self._answered
        leaving = bisect.bisect_right(arrivals, carrier - length) + need - 1
        if leaving < len(arrivals) and arrivals[leaving] <= carrier:
            quickest = min(self._latencies)
            quickest = min(quickest, min(self._quickest, default=quickest))
            return arrivals[leaving] + length - quickest + _QUICKER * self._spread()
        # room comes with answers still to come, or as another client's requests leave, which
        # no answer foretells: with none in flight, the lanes send one after a moment, to see
        return math.inf if self._in_flight(grants, now) else self._answered + _PROBE

    def _spread(self) -> float:
        """How much slower than the quickest of the latest answers the slowest was."""
        return max(self._latencies) - min(self._latencies)

    def _uncounted(self, grants: Grants, now: float) -> int:
        """The job's requests the carrier's ``Remaining`` did not count: those counted after
        it, and those in flight."""
        arrivals = self._arrivals
        counted = len(arrivals) - bisect.bisect_right(arrivals, self._answered)
        return counted + self._in_flight(grants, now)

    def _in_flight(self, grants: Grants, now: float) -> int:
        """The job's requests granted lately and not yet answered."""
        replied, cutoff = self._replied, now - _STALE  # an older one unanswered is lost
        return grants.count(cutoff) - (len(replied) - bisect.bisect_left(replied, cutoff))

    def _reset_seen(self, after: float, when: float) -> None:
        # A fixed window came back whole, after the previous carrier was counted (about when
        # its answer came, ``after``: the way back varies by up to the latencies' spread) and
        # by ``when``. Resets that a steady length can place, three at least, give it (a
        # rolling window can come back whole too, after a quiet spell, but not steadily); each
        # later one in step refines it.
        resets, window = self._resets, self.window
        slack = self._spread()
        if window is not None:
            k = round((when - self._phase) / window)
            if after - slack - 0.1 * window <= self._phase + k * window <= when + 0.1 * window:
                resets.append((k, after - slack, when))
                del resets[1:-_PHASES]
                if self._fit():
                    return
            self.window = None  # out of step: learn it again
            resets.clear()
        resets.append((resets[-1][0] + 1 if resets else 0, after - slack, when))
        while len(resets) >= 3:
            placed = self._fit()
            if placed or (placed is False and len(resets) <= _PHASES):
                break
            first = resets[1][0]  # out of step, or long unplaced: the oldest goes
            resets[:] = [(k - first, lo, hi) for k, lo, hi in resets[1:]]

    def _fit(self) -> bool | None:
        # Each reset lies between the two answers that showed it; the lengths that place
        # every one of them in its own span form a range. A whole number of seconds in it is
        # the length, if there is just one (servers count their windows in seconds), or its
        # middle if it is narrow; otherwise (False) more resets are needed, and if none fits
        # (None) they are out of step. The phase is the reset seen soonest after its time.
        resets, low, high = self._resets, 0.0, math.inf
        for (k1, lo1, hi1), (k2, lo2, hi2) in itertools.combinations(resets, 2):
            if k1 == k2:
                return None  # two in one window
            low, high = max(low, (lo2 - hi1) / (k2 - k1)), min(high, (hi2 - lo1) / (k2 - k1))
        if low > high:
            return None
        if high - low >= 2.0:
            return False
        whole = [float(n) for n in range(max(1, math.ceil(low)), math.floor(high) + 1)]
        if len(whole) == 1:
            length = whole[0]
        elif not whole and high - low <= 0.05 * high:
            length = (low + high) / 2
        else:
            return False
        self.window = length
        self._phase = min(hi - k * length for k, _, hi in resets)
        return True

    def due(self, grants: Grants, now: float) -> float:
        """When the lanes may send again into a window that is full; -inf when there is room.

        A measured rolling window is full when its prediction leaves no room (see the module's
        docstring). A learned fixed window is full when the carrier's ``Remaining``, less the
        job's requests counted after it and those in flight, and less what another client
        spends, at the rate the carriers showed, until a request sent now is counted, leaves
        no more than the reserve: the lanes wait for its next reset. A reset is seen by the
        answer of the first request counted after it, which came when that request was
        counted, or later; so the next is no later than the soonest of the recent ones seen,
        a whole number of windows on, and a request sent then less the quickest latency is
        counted after it.
        """
        if not self._resets or self.window is None:
            return self._rolling_due(grants, now)
        window = self.window
        # an answer slower than the rest by a tenth of the window (a stalled request) is not
        # jitter a window's edge can be kept from
        spread = min(self._spread(), _SPREAD * window)
        # another client's use, at the rate the carriers saw it, until a request sent now counts
        others = max(-self._refill, 0.0) * (now + max(self._latencies) - self._answered)
        if self._left - self._uncounted(grants, now) - others > _RESERVE:
            return -math.inf
        # The carrier was counted in the window whose reset was seen last, unless it came more
        # than a window after it (windows passed with no answer to show them): an answer that
        # came just after a reset, and showed no window come back whole, was counted before it.
        latest = self._resets[-1][2]
        counted = latest if self._answered - latest <= window + spread else self._answered
        following = self._phase + (math.floor((counted - self._phase) / window) + 1) * window
        return following - min(self._latencies) + _QUICKER * spread

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
        rolling = self._rolling()
        if rolling is not None and self.window is None:
            return self.limit / rolling[0]  # a measured rolling window: due() holds the rest
        uncounted = grants.count(self._sent) - 1
        refill = max(self._refill, 0.0)
        left = self._left + refill * (now - self._sent) - uncounted
        horizon = reset - now if reset is not None else _HORIZON
        pace = refill + (left - _RESERVE) / horizon
        if pace <= 0.0 and uncounted <= 0 and now - self._answered >= _PROBE:
            return math.inf  # held with nothing in flight: one request, to see what came back
        if pace <= 0.0 and now - self._answered >= _STALE:
            return min(1.0 / _PROBE, even)
        return min(max(pace, 0.0), even)
