"""The sandbox's list views: the sorted positions of the runs that match one query.

A view is built once by a scan and then kept exact by every change (a bisect per view
per change), so a page is a slice.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["View"]

_Key = Any  # an int position, or a (sort value, position) pair


class View:
    """The positions of the runs matching one query, in one sort order, kept up to date."""

    __slots__ = ("items", "key_of", "match", "sort_value")

    def __init__(
        self,
        match: Callable[[int], bool],
        sort_value: Callable[[int], str] | None,
        positions: Iterator[int],
    ) -> None:
        self.match = match
        self.sort_value = sort_value
        self.key_of: dict[int, _Key] = {}
        if sort_value is None:
            # Positions are in creation order already: no sort, no per-item keys.
            self.items: list[_Key] = [i for i in positions if match(i)]
        else:
            for i in positions:
                if match(i):
                    self.key_of[i] = (sort_value(i), i)
            self.items = sorted(self.key_of.values())

    def refresh(self, i: int, alive: bool) -> None:
        """Put run ``i`` in or out of the view after it changed."""
        items = self.items
        want = alive and self.match(i)
        if self.sort_value is None:
            pos = bisect.bisect_left(items, i)
            present = pos < len(items) and items[pos] == i
            if present and not want:
                del items[pos]
            elif want and not present:
                items.insert(pos, i)
            return
        old = self.key_of.pop(i, None)
        if old is not None:
            del items[bisect.bisect_left(items, old)]
        if want:
            key = (self.sort_value(i), i)
            self.key_of[i] = key
            bisect.insort(items, key)

    def page(self, offset: int, size: int, *, descending: bool) -> list[int]:
        """The positions on the page starting ``offset`` items from the start."""
        items = self.items
        if descending:
            hi = len(items) - offset
            chunk = items[max(0, hi - size) : hi][::-1] if hi > 0 else []
        else:
            chunk = items[offset : offset + size]
        if self.sort_value is None:
            return chunk
        return [key[1] for key in chunk]
