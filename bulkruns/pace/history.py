"""When requests were granted, over the last minute: what the ceiling measures a 429 by, and
what the budget counts as sent but not yet answered."""

from __future__ import annotations

import bisect
import math

__all__ = ["Grants"]

# The longest window a 429 is measured over (Tallyfy's is a minute), and a little more.
KEEP = 61.0


class Grants:
    """The grant times of one scope, oldest first, kept for :data:`KEEP` seconds."""

    __slots__ = ("_head", "_times", "began")

    def __init__(self) -> None:
        self._times: list[float] = []
        self._head = 0  # the oldest time kept; older ones are dropped in batches
        self.began = math.inf  # the first grant ever, however long ago

    def add(self, when: float) -> None:
        """Record a grant at ``when`` (never earlier than the previous one)."""
        times = self._times
        if not times:
            self.began = when
        times.append(when)
        if when - times[self._head] > KEEP:
            self._head = bisect.bisect_left(times, when - KEEP, self._head)
            if self._head > 1024 and self._head * 2 > len(times):
                del times[: self._head]
                self._head = 0

    def latest(self, nth: int) -> float:
        """When the ``nth`` latest grant was (1 = the latest); -inf when there were fewer."""
        index = len(self._times) - nth
        return self._times[index] if nth > 0 and index >= self._head else -math.inf

    def count(self, start: float, end: float = math.inf) -> int:
        """Grants at or after ``start`` and before ``end``."""
        times, head = self._times, self._head
        return bisect.bisect_left(times, end, head) - bisect.bisect_left(times, start, head)
