"""One pass over a query's pages, for a job's sweeps and for ``bulkruns list`` alike, and
what it saw: whether the listing held still while it was read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from bulkruns.api import Page
from bulkruns.model import id_key, is_run_id

__all__ = ["Fetch", "OnPage", "Pass", "list_pages"]

Fetch = Callable[[Sequence[tuple[str, str]], int], Awaitable[Page]]
"""Fetches page number N of a query (its parameters without paging), paced and retried."""

OnPage = Callable[[Page], Awaitable[bool]]
"""Takes one page's runs; False stops the pass (a limit was reached)."""


@dataclass(slots=True)
class Pass:
    """What one pass over a query saw.

    Attributes:
        stopped: ``on_page`` stopped it before its last page.
        totals: every ``total`` the pages reported.
        rows: the runs the pages held, repeats included.
        distinct: the different runs among them.
    """

    stopped: bool = False
    totals: set[int] = field(default_factory=set)
    rows: int = 0
    distinct: int = 0

    @property
    def total(self) -> int:
        """The largest total a page reported (0 for none)."""
        return max(self.totals, default=0)

    @property
    def held_still(self) -> bool:
        """The listing did not move while it was read: every page reported the same total,
        no run came twice, and the runs listed account for the total. Only such a pass sees
        the whole selection; Tallyfy's pages are offsets into the live set, and a run
        launched, renamed or completed while it is read shifts them."""
        return (
            not self.stopped and len(self.totals) <= 1 and self.rows == self.distinct == self.total
        )


async def list_pages(
    fetch: Fetch,
    params: Sequence[tuple[str, str]],
    on_page: OnPage,
    *,
    concurrency: int = 1,
    last_first: bool = True,
) -> Pass:
    """Fetch each page of a query once, handing each to ``on_page`` as it arrives.

    Page 1 comes first, so work can start at once; its ``total`` and the size the server
    served it in say how many pages there are. With ``last_first``, the others are then
    fetched from the last one down, ``concurrency`` at a time: a change only shifts the runs
    after it, so the pages still to be fetched keep their content while a job changes the
    runs of those it has. Without it, they come in order, one at a time, as a reader
    expects them.
    """
    seen: set[int] = set()
    done = Pass()

    async def take(page: Page) -> bool:
        done.totals.add(page.total)
        done.rows += len(page.runs)
        for run in page.runs:
            run_id = run.get("id")
            if isinstance(run_id, str) and is_run_id(run_id):
                seen.add(id_key(run_id))
        done.distinct = len(seen)
        if not await on_page(page):
            done.stopped = True
        return not done.stopped

    first = await fetch(params, 1)
    if not await take(first):
        return done
    count = first.page_count
    numbers = iter(range(count, 1, -1) if last_first else range(2, count + 1))

    async def fetcher() -> None:
        for number in numbers:
            if done.stopped:
                return  # not cancelled: a sibling may be handing over a run it has counted
            if not await take(await fetch(params, number)):
                return

    workers = min(concurrency if last_first else 1, max(0, count - 1))
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(fetcher)
    return done
