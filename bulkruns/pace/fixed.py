"""A fixed window's length and phase, announced by ``X-RateLimit-Reset`` or fitted to its resets.

A fixed window shows itself by coming back whole between two answers. Each reset that gives
back half the window or more lies between them: after the earlier one's request was counted
(about when its answer came; the way back varies by up to the latencies' spread) and by the
later one's answer, which for a held lane may come long after. A rolling window can come
back whole too, after a quiet spell, but not steadily: so three resets placed by one length
at least (a whole number of seconds, if just one fits, as servers count them) give it, and
each later one in step refines it. An answer whose ``X-RateLimit-Reset`` let its request
through announces it instead (a 429's says when its refusal ends: a penalty may outlast the
window), once it is within the length known: the one that two answers in a row announcing the
same reset give, or that the resets placed. One odd answer's (another limit's) must not slow
the job for good, and a reset due now tells no length.
"""

from __future__ import annotations

import itertools
import math

__all__ = ["FixedWindow"]

_PHASES = 4  # the latest resets kept, with the first in step: their spans give length and phase
_SAME = 1.5  # seconds between two answers' resets that may be one


class FixedWindow:
    """A fixed window's resets, and the length and phase they give.

    Attributes:
        window: its length in seconds, announced or learnt; None until either.
    """

    __slots__ = ("_announced", "_phase", "_resets", "window")

    def __init__(self) -> None:
        self.window: float | None = None
        # resets seen in step, (windows since the first, after, by when): the first, and the
        # latest
        self._resets: list[tuple[int, float, float]] = []
        self._phase = 0.0  # the first reset, as the latest ones place it
        # when the latest answer let through said the window resets, and how far off it was
        self._announced = (-math.inf, 0.0)

    @property
    def learnt(self) -> bool:
        """Its resets placed it: its next one can be foretold (:meth:`following`)."""
        return bool(self._resets) and self.window is not None

    def announced(self, reset: float, now: float) -> bool:
        """An answer let through at ``now`` says its window resets in ``reset`` seconds: once
        believed (see the module's docstring), the window is no shorter.

        Returns:
            whether it is believed.
        """
        if reset <= 0.0:
            return False  # due now: it tells no length
        at, (before, earlier) = now + reset, self._announced
        self._announced = (at, reset)
        # two answers in a row announce the same reset, give or take a second (whole seconds,
        # and the way back) but not half of either: the window is no shorter than both
        if abs(at - before) <= min(_SAME, reset / 2, earlier / 2):
            self.window = max(self.window or 0.0, reset, earlier)
        return self.window is not None and reset <= self.window

    def seen(self, after: float, when: float) -> None:
        """The window came back whole after ``after`` (less the way back's variation) and by
        ``when``."""
        resets, window = self._resets, self.window
        if window is not None:
            k = round((when - self._phase) / window)
            if after - 0.1 * window <= self._phase + k * window <= when + 0.1 * window:
                resets.append((k, after, when))
                del resets[1:-_PHASES]
                if self._fit():
                    return
            self.window = None  # out of step: learn it again
            resets.clear()
        resets.append((resets[-1][0] + 1 if resets else 0, after, when))
        while len(resets) >= 3:
            placed = self._fit()
            if placed or (placed is False and len(resets) <= _PHASES):
                break
            first = resets[1][0]  # out of step, or long unplaced: the oldest goes
            resets[:] = [(k - first, lo, hi) for k, lo, hi in resets[1:]]

    def following(self, answered: float, spread: float) -> float:
        """The learnt window's first reset after the request answered at ``answered`` was
        counted, the answers' latencies varying by ``spread``.

        That request was counted in the window whose reset was seen last, unless its answer
        came more than a window after it (windows passed with no answer to show them): an
        answer that came just after a reset, and showed no window come back whole, was
        counted before it. A reset is seen by the answer of the first request counted after
        it, which came when that request was counted, or later; so the next is no later than
        the soonest of the recent ones seen, a whole number of windows on.
        """
        window = self.window
        assert window is not None
        latest = self._resets[-1][2]
        counted = latest if answered - latest <= window + spread else answered
        return self._phase + (math.floor((counted - self._phase) / window) + 1) * window

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
