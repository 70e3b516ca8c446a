"""A rolling window's length, as the job's own requests measure it, and another client's share.

A rolling window gives back each request one window's length after it was counted. When the
carrier's window (that of the latest-sent request answered) held ``n`` (``Limit`` less
``Remaining``), it held at most the job's latest ``n``, so the one before them had left, and
the window is no longer than the time since that one was counted. Answers read a moment
apart may be read out of the order the server counted them in, so those read just before
the carrier's are not taken to be in its window. The least such time, let loose slowly so
that a longer window, or another client's growing use, is followed, bounds the length.

Servers count their windows in whole seconds: a bound within 50 ms of one is that length.
Another client's requests in the window make the bound read longer: when the latest
carriers' windows all held requests besides the job's own counted within the whole number
of seconds under it (or up to a tenth over it, as the bound can read short when the answers'
way back quickens), they are that client's, the window is that length, and room is kept for
the most of theirs any of those carriers held. Otherwise the bound is the length, which
counts another client's requests in as if the job's own stayed longer; even so, the job's
requests in an answer's window are taken to be those within the whole number of seconds (and
no more than it held), the ones beyond having left. A window that is not a whole number of
seconds is taken for the whole number under it, and the job's own requests beyond it for
another client's: right while the job's pace holds.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

__all__ = ["RollingWindow"]

_SPARE = 32  # arrivals kept beyond a window's worth, for those read out of order
# A share a second: the bound, read as the least its answers allowed, is let loose by this much.
_RELAX = 0.05
# The latest carriers whose windows must all have held another client's requests for the
# bound to be read as a whole number of seconds and their share (at least the fewest).
_OTHERS = 16
_OTHERS_FEWEST = 2
_ORDER = 0.002  # seconds: answers read closer together may be out of the server's order
_WHOLE = 0.05  # seconds the bound may read off a whole number and be it
_SHORT = 0.1  # of the bound: how much short of a whole number it may read


class RollingWindow:
    """When the job's requests were counted, and the rolling window's length they measure.

    Attributes:
        length: the window's length in seconds; None until measured.
        kept: the room kept for another client's use beyond what the carrier's window held
            of it.
    """

    __slots__ = (
        "_arrivals",
        "_bound",
        "_measured",
        "_others",
        "_others_in",
        "_whole",
        "kept",
        "length",
    )

    def __init__(self) -> None:
        self.length: float | None = None
        self.kept = 0
        # the job's requests the server counted (both lanes'), by when their answers came
        self._arrivals: list[float] = []
        self._bound: float | None = None  # the length, at most; None until measured
        self._measured = -math.inf  # when it was
        # the latest carriers' count of another client's requests in a window of a whole
        # number of seconds: what each held, less the job's own counted within it
        self._others: deque[int] = deque(maxlen=_OTHERS)
        self._others_in: float | None = None  # the whole number of seconds they are counted in
        self._whole = -math.inf  # when the window last came back whole between two answers

    def counted(self, now: float, limit: int) -> None:
        """Note that one of the job's requests was counted, its answer read at ``now``."""
        arrivals = self._arrivals
        bisect.insort(arrivals, now)
        if len(arrivals) > 2 * (limit + _SPARE):
            del arrivals[: len(arrivals) - limit - _SPARE]

    def counted_after(self, when: float) -> int:
        """The job's requests whose answers were read after ``when``."""
        arrivals = self._arrivals
        return len(arrivals) - bisect.bisect_right(arrivals, when)

    def came_back(self, now: float) -> None:
        """The window came back whole by ``now``: the requests counted before tell no length."""
        self._whole = now

    def measure(self, held: int, now: float) -> None:
        """Read the carrier's window, which held ``held`` when it was counted, at ``now``."""
        self._bound_by(held, now)
        whole = self._seconds()
        if whole != self._others_in:
            self._others.clear()  # counts within another length tell nothing of this one
            self._others_in = whole
        others = self._others
        if whole is not None:
            # what the carrier's window held, less the job's own counted within that whole
            # number of seconds: another client's, if the window is that long
            others.append(held - self.counted_after(now - whole))
        bound = self._bound
        if bound is None:
            return
        self.length, self.kept = bound, 0
        if whole is not None:
            if len(others) >= _OTHERS_FEWEST and min(others) >= 1:
                self.length, self.kept = whole, max(others) - others[-1]
            elif abs(bound - whole) <= _WHOLE:
                self.length = whole

    def leaves(self, need: int, carrier: float, held: int, late: int = 0) -> float | None:
        """When the ``need``-th of the job's requests in the carrier's window (its answer read
        at ``carrier``, the window holding ``held``, and ``late`` of the answers read with it
        counted after it) leaves it; None when the window held fewer than ``need`` of them."""
        arrivals, length = self._arrivals, self.length
        assert length is not None
        upto = bisect.bisect_right(arrivals, carrier) - late
        # the job's requests in it: those counted within the shortest length it can be, and no
        # more than it held (a length read long takes in requests that have left, whose room
        # another client may have taken: foreseen to leave again, they would be a 429)
        shortest = min(length, self._seconds() or length)
        leaving = max(bisect.bisect_right(arrivals, carrier - shortest), upto - held) + need - 1
        return arrivals[leaving] + length if leaving < upto else None

    def _bound_by(self, held: int, now: float) -> None:
        # Had all ``held`` been the job's, the one before them had left the window by the
        # carrier's count; another client's requests in it only make that time longer. The
        # job's requests read just before the carrier may have been counted after it: not in it.
        arrivals = self._arrivals
        held += max(len(arrivals) - bisect.bisect_left(arrivals, now - _ORDER) - 1, 0)
        if not 0 < held < len(arrivals) or not self._whole < arrivals[-held - 1] < now:
            return  # none of the job's requests has left the window since it came back whole
        bound = now - arrivals[-held - 1]
        if self._bound is not None:
            bound = min(bound, self._bound * (1.0 + _RELAX * (now - self._measured)))
        self._bound, self._measured = bound, now

    def _seconds(self) -> float | None:
        """The whole number of seconds the bound reads, or reads above (another client's
        requests make it read long); None under a second. The bound can read short, by as
        much as the answers' way back quickened since the request it is measured from, and a
        second too few would take a second's worth of the job's own requests for another
        client's: so a bound up to a tenth short is read as the whole number above it."""
        bound = self._bound
        if bound is None:
            return None
        tolerance = max(_WHOLE, _SHORT * bound)
        return float(math.floor(bound + tolerance)) if bound + tolerance >= 1.0 else None
