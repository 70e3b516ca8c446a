"""One pass over a query's pages, for a job's sweeps and for ``bulkruns list`` alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from bulkruns.api import Page

__all__ = ["Fetch", "OnPage", "list_pages"]

Fetch = Callable[[Sequence[tuple[str, str]], int], Awaitable[Page]]
"""Fetches page number N of a query (its parameters without paging), paced and retried."""

OnPage = Callable[[Page], Awaitable[bool]]
"""Takes one page's runs; False stops the pass (a limit was reached)."""


async def list_pages(
    fetch: Fetch,
    params: Sequence[tuple[str, str]],
    on_page: OnPage,
    *,
    concurrency: int = 1,
    last_first: bool = True,
) -> bool:
    """Fetch each page of a query once, handing each to ``on_page`` as it arrives.

    Page 1 comes first, so work can start at once; its ``total`` says how many pages there
    are. With ``last_first``, the others are then fetched from the last one down,
    ``concurrency`` at a time: a change only shifts the runs after it, so the pages still
    to be fetched keep their content while a job changes the runs of those it has. Without
    it, they come in order, one at a time, as a reader expects them.

    Returns:
        False when ``on_page`` stopped the pass, True when every page was handed over.
    """
    first = await fetch(params, 1)
    if not await on_page(first):
        return False
    count = first.page_count
    numbers = iter(range(count, 1, -1) if last_first else range(2, count + 1))
    stopped = False

    async def fetcher() -> None:
        nonlocal stopped
        for number in numbers:
            if stopped:
                return  # not cancelled: a sibling may be handing over a run it has counted
            if not await on_page(await fetch(params, number)):
                stopped = True
                return

    workers = min(concurrency if last_first else 1, max(0, count - 1))
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(fetcher)
    return not stopped
