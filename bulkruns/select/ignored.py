"""A filter the server ignores, found before anything is changed or printed.

Tallyfy ignores the list parameters it does not know, and a run cannot show some filters
(its text, folder, tag, groups, tasks' status), so a listed run cannot be checked against
them. Instead, the server's count for the query is compared with its count for the same
query without each such filter: the same count means the filter selects nothing, which is
how an ignored filter looks (or a filter that matches every run the rest does, which
``RunFilter(all_runs=True)``, ``--all``, says is meant).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bulkruns.api import Page
from bulkruns.errors import FilterIgnored
from bulkruns.model import ArchivedStyle, RunFilter
from bulkruns.select.pages import Fetch

__all__ = ["check_filters"]

# What each filter a run cannot show reads as when it is not set.
_UNSET: dict[str, Any] = {"q": None, "folder": None, "tag": None, "groups": (), "task_status": None}


async def check_filters(
    query: RunFilter, first: Page, fetch: Fetch, *, archived: ArchivedStyle | None
) -> None:
    """Refuse a query whose filters a run cannot show the server seems to ignore.

    Args:
        query: the filter.
        first: the query's first page, for its count.
        fetch: fetches a page of another query.
        archived: how archived runs are listed, when they are the ones selected.

    Raises:
        FilterIgnored: naming the filters whose removal changes nothing.
    """
    if query.all_runs or first.total == 0:
        return
    ignored = []
    for name in query.unverifiable:
        without = dataclasses.replace(query, **{name: _UNSET[name]}, all_runs=True)
        page = await fetch(without.params(archived=archived), 1)
        if page.total == first.total:
            ignored.append(name)
    if ignored:
        raise FilterIgnored(tuple(ignored), first.total)
