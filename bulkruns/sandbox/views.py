"""The sandbox's list views: the sorted positions of the runs that match one query.

A view is built once by a scan and then kept exact by every change (a bisect per view
per change), so a page is a slice. The few most recent views are kept.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from bulkruns.sandbox.rules import ARCHIVED, RunQuery

__all__ = ["View", "Views"]

_CACHE = 16  # each view costs a bisect per change: keep few

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


class Views:
    """The few most recent views of one store's runs, kept exact as the runs change.

    Args:
        runs: the store's runs by position (None once permanently deleted), shared.
        prior: the store's statuses before archiving, by position, shared.
        task_status: the statuses of each run's tasks, by position, shared.
    """

    def __init__(
        self,
        runs: list[dict[str, Any] | None],
        prior: dict[int, str],
        task_status: list[frozenset[str]],
    ) -> None:
        self._runs = runs
        self._prior = prior
        self._task_status = task_status
        self._views: OrderedDict[tuple[Any, ...], View] = OrderedDict()

    def refresh(self, i: int) -> None:
        """Put run ``i`` in or out of every view after it changed (or appeared)."""
        alive = self._runs[i] is not None
        for view in self._views.values():
            view.refresh(i, alive)

    def for_query(self, query: RunQuery) -> View:
        """The view answering ``query``: a cached one, or one built by a scan."""
        key = query.view_key
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
            return view
        sort_field = query.sort.lstrip("-")
        sort_value: Callable[[int], str] | None = None
        if sort_field == "name":
            sort_value = self._name_key
        elif sort_field == "last_updated":
            sort_value = self._updated_key
        alive = (i for i, run in enumerate(self._runs) if run is not None)
        view = View(self._matcher(query), sort_value, alive)
        self._views[key] = view
        if len(self._views) > _CACHE:
            self._views.popitem(last=False)
        return view

    def _name_key(self, i: int) -> str:
        return self._runs[i]["name"].casefold()  # type: ignore[index,no-any-return]

    def _updated_key(self, i: int) -> str:
        return self._runs[i]["last_updated"]  # type: ignore[index,no-any-return]

    def _matcher(self, query: RunQuery) -> Callable[[int], bool]:
        """A predicate over positions of live runs for ``query``'s filter."""
        runs = self._runs
        checks: list[Callable[[dict[str, Any], int], bool]] = []
        if query.archived:
            checks.append(lambda run, i: run["status"] == ARCHIVED)
            if query.status is not None:
                status, prior = query.status, self._prior
                checks.append(lambda run, i: prior.get(i) == status)
        elif query.status == ARCHIVED:  # a status filter over live runs
            checks.append(lambda run, i: False)
        elif query.status is not None:
            status = query.status
            checks.append(lambda run, i: run["status"] == status)
        else:
            checks.append(lambda run, i: run["status"] != ARCHIVED)
        if query.q is not None:
            needle = query.q
            checks.append(lambda run, i: needle in run["name"].casefold())
        if query.owners is not None:
            owners = query.owners
            checks.append(lambda run, i: str(run["owner_id"]) in owners)
        if query.checklist_id is not None:
            checklist = query.checklist_id
            checks.append(lambda run, i: run["checklist_id"] == checklist)
        if query.folder is not None:
            folder = query.folder
            checks.append(lambda run, i: run["folder_id"] == folder)
        if query.tag is not None:
            tag = query.tag
            checks.append(lambda run, i: tag in run["tags"])
        if query.starred is not None:
            starred = query.starred
            checks.append(lambda run, i: run["starred"] is starred)
        if query.type is not None:
            kind = query.type
            checks.append(lambda run, i: run["type"] == kind)
        if query.groups is not None:
            groups = query.groups
            checks.append(lambda run, i: any(g in groups for g in run["groups"]))
        if query.task_status is not None:
            task_status, derived = query.task_status, self._task_status
            checks.append(lambda run, i: task_status in derived[i])

        def match(i: int) -> bool:
            run = runs[i]
            return run is not None and all(check(run, i) for check in checks)

        return match
