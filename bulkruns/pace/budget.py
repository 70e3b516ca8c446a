"""Pacing by the server's own numbers: ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.

An answer's ``Remaining`` is what its window had left when its request arrived. The numbers
of the latest-sent request answered (the *carrier*) are the newest; the requests granted
after it were not counted in them. Meanwhile the window gives back what expires: little by
little in a rolling window, whose net refill rate is estimated from one carrier to the next
(what is left now, plus what was sent between, less what was left before, so that another
client's use comes off it), and all at once at the reset of a fixed window. So the budget
predicts what is left now, and paces its lane so that it never spends the last of it faster
than it comes back::

    pace = refill + (left - reserve) / horizon

The horizon is the time to the reset that ``X-RateLimit-Reset`` announces (the window's
requests are spread evenly up to it), a quarter of a second otherwise (the reserve is neared
quickly, and from there the refill rate is kept). A fixed window shows itself by coming back
whole between two requests; once two such resets, or one announced by an answer that let its
request through (a 429's says when its refusal ends: a penalty may outlast the window), give
its length, the pace never exceeds the announced rate, ``Limit`` over that length, and a
learned window is paced at it, evenly; when what is left of it comes down to the reserve
(another client may spend it too, and jitter crowds a window's edges), the lane waits for its
next reset (:meth:`Budget.due`). A lane held with nothing in flight sends one request after a
moment, to see whether the window is back; one held by requests whose answers brought no
numbers (lost, or an edge's) probes the same way once the numbers it has are stale.
"""

from __future__ import annotations

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
# (a window spent before its reset holds the lane, so the margin need not cover that too).
_MARGIN = 0.015
_PHASES = 4  # the latest resets of a learned fixed window that say when its next one is
_LATENCIES = 32  # answers whose latencies give their spread
_SPREAD = 0.1  # of a window: the most of the spread a learned fixed window allows for


class Budget:
    """What one lane's answers say is left of the server's window, and the pace it allows."""

    __slots__ = (
        "_answered",
        "_latencies",
        "_left",
        "_quiet",
        "_refill",
        "_reset_at",
        "_resets",
        "_sent",
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
        self._refill = 0.0  # requests a second the window gives back, net of others' use
        self._resets: list[float] = []  # fixed-window resets seen: the first in step, the latest
        self._quiet = -math.inf  # when the latest pause ended
        self._reset_at: float | None = None  # the next reset, as X-RateLimit-Reset announced

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
        if sent < self._sent:
            return  # older numbers than the carrier's
        limit = info.limit if info.limit is not None else self.limit
        if sent > self._sent > -math.inf and not self._sent < self._quiet <= sent:
            given = info.remaining - self._left + grants.count(self._sent, sent)
            if limit and given <= -limit / 2:
                return  # counted just before a reset that a carrier already showed
            if limit and given >= limit / 2:
                if info.reset is None:
                    self._reset_seen(now)
            else:
                decay = math.exp(-(sent - self._sent) / _REFILL_SPAN)
                self._refill = self._refill * decay + given / _REFILL_SPAN
        self.limit, self._left, self._sent, self._answered = limit, info.remaining, sent, now
        if info.reset is not None:
            self._reset_at = now + info.reset
            if not refused:  # a fixed window's next reset is at most its length away
                self.window = max(self.window or 0.0, info.reset)

    def _reset_seen(self, when: float) -> None:
        # A fixed window came back whole. Three resets a steady length apart give it (a
        # rolling window can come back whole too, after a quiet spell, but not steadily), and
        # each later one in step refines it, from the first: a reset seen a little early or
        # late matters less the more windows lie between.
        resets, window = self._resets, self.window
        if window is not None:
            span = when - resets[0]
            periods = round(span / window)
            if abs(span - periods * window) <= 0.1 * window:
                self.window = span / periods
                resets.append(when)
                del resets[1:-_PHASES]
                return
            self.window = None  # out of step: learn it again
            resets.clear()
        resets.append(when)
        if len(resets) == 3:
            first, second = resets[1] - resets[0], resets[2] - resets[1]
            if abs(first - second) <= 0.05 * max(first, second):
                self.window = (resets[2] - resets[0]) / 2
            else:
                del resets[0]

    def due(self, grants: Grants) -> float:
        """When a learned fixed window that is spent comes back; -inf unless it is spent.

        The carrier's ``Remaining`` does not count the requests sent after it, nor those sent
        up to the answers' spread of latencies before it (they may have arrived after it):
        when they leave no more than the reserve, the lane waits for the next reset. A reset
        is seen by the answer of the first request counted after it, which came when that
        request was counted, or later; so the next is no later than the earliest of the
        recent ones seen, a whole number of windows on, and a request sent then less the
        quickest latency is counted after it.
        """
        if not self._resets or self.window is None:
            return -math.inf
        window = self.window
        # an answer slower than the rest by a tenth of the window (a stalled request) is not
        # jitter a window's edge can be kept from
        spread = min(max(self._latencies) - min(self._latencies), _SPREAD * window)
        unknown = grants.count(self._sent - spread) - 1  # the carrier itself is counted
        if self._left - unknown > _RESERVE:
            return -math.inf
        latest = self._resets[-1]
        seen = min(r + round((latest - r) / window) * window for r in self._resets[-_PHASES:])
        following = seen + (math.floor((self._answered - seen) / window) + 1) * window
        return following - min(self._latencies)

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
            return even  # a fixed window, learned or past its announced reset: spread evenly
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
