"""Selection by query: sweep it until a pass finds nothing new, handing each new match over.

Tallyfy's pages are offsets into the live result set, so a job's own changes shift them.
Each pass fetches page 1, then the others from the last one down (see
:func:`~bulkruns.select.pages.list_pages`), and dedupes the runs it meets. The query is
swept again until a pass made while no change was in flight finds nothing new, and held
still while it was read (one total throughout, no run twice, as many runs as the total):
that pass saw the live set exactly, and is the job's proof that nothing matching was left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bulkruns.api import Page
from bulkruns.model import ArchivedStyle, Operation, RunFilter, Work, id_key, is_run_id
from bulkruns.select.feed import Coverage, Outlet
from bulkruns.select.ignored import check_filters
from bulkruns.select.pages import Fetch, Pass, list_pages

__all__ = ["Sweeper"]


class SweepSettings(Protocol):
    """What of a job's options a sweep follows (``JobOptions`` has them all)."""

    @property
    def archived(self) -> ArchivedStyle: ...
    @property
    def max_sweeps(self) -> int: ...
    @property
    def page_concurrency(self) -> int: ...
    @property
    def dry_run(self) -> bool: ...


class Sweeper:
    """Lists a query pass after pass, handing every new matching run to the outlet.

    Args:
        query: the filter.
        operation: what the job does; it says whether archived runs are selected, what
            before-state to keep, and which runs already hold what it sets.
        settings: how archived runs are listed, the passes allowed, the pages fetched at
            once, and whether nothing changes (a dry run: one pass sees the whole
            selection).
        fetch: fetches one page, paced and retried (a failure aborts the job).
        outlet: where new runs go.
        coverage: updated as the passes go.
        seen: keys of the runs met already (a resumed job's included); updated.
        on_progress: called when there is news (the first page's total).
    """

    def __init__(
        self,
        query: RunFilter,
        operation: Operation,
        settings: SweepSettings,
        *,
        fetch: Fetch,
        outlet: Outlet,
        coverage: Coverage,
        seen: set[int],
        on_progress: Callable[[], None],
    ) -> None:
        self._query = query
        self._operation = operation
        self._fetch = fetch
        self._outlet = outlet
        self._style = settings.archived if operation.selects_archived else None
        self._params = query.params(archived=self._style)
        self._max_sweeps = settings.max_sweeps
        self._page_concurrency = settings.page_concurrency
        self._dry_run = settings.dry_run
        self._coverage = coverage
        self._seen = seen
        self._on_progress = on_progress
        self._new = 0
        self._last: Pass | None = None

    async def run(self) -> None:
        """Sweep until a quiet pass finds nothing new, the limit is reached, or the passes
        run out (which ``coverage.message`` then says)."""
        coverage, outlet = self._coverage, self._outlet
        if outlet.full:
            return  # the job has taken all the runs its limit allows
        coverage.listing = True
        while coverage.sweeps < self._max_sweeps:
            coverage.sweeps += 1
            quiet = outlet.in_flight == 0
            self._new = 0
            seen = await list_pages(
                self._fetch, self._params, self._take, concurrency=self._page_concurrency
            )
            if seen.stopped:
                return  # the limit was reached: the rest is left for another job
            if seen.held_still and (self._dry_run or (self._new == 0 and quiet)):
                # nothing changed while this pass listed, so it saw the live set exactly
                coverage.verified = True
                return
            self._last = seen
            await outlet.drained()
        last = self._last
        if last is not None and not last.held_still:
            why = (
                f"the listing kept moving while it was read (the last pass listed "
                f"{last.distinct:,} different runs of the {last.total:,} Tallyfy counted)"
            )
        else:
            why = "the query still found new runs"
        coverage.message = f"{why} after {coverage.sweeps} passes; resume the job to carry on"

    async def _take(self, page: Page) -> bool:
        """Hand over a page's new matching runs; False once the limit is reached.

        Raises:
            FilterIgnored: on the first page, when the server seems to ignore a filter a
                run cannot show (see :func:`~bulkruns.select.ignored.check_filters`).
        """
        coverage, outlet = self._coverage, self._outlet
        if page.current_page == 1:
            if coverage.sweeps == 1:
                await check_filters(self._query, page, self._fetch, archived=self._style)
                total = max(page.total, outlet.emitted)
                total = total if outlet.limit is None else min(total, outlet.limit)
                if self._query.filters_locally:
                    coverage.bound = total  # some of the server's runs may fail the dates
                else:
                    coverage.total = total
            self._on_progress()
        query, operation, seen = self._query, self._operation, self._seen
        archived = operation.selects_archived
        for run in page.runs:
            run_id = run.get("id")
            if not isinstance(run_id, str) or not is_run_id(run_id):
                continue
            key = id_key(run_id)
            if key in seen:
                continue
            seen.add(key)
            if query.contradiction(run, archived=archived) is not None:
                coverage.mismatched += 1  # trust, but verify: never changed
                continue
            if not query.accepts(run):
                continue
            name = run.get("name")
            work = Work(
                run_id,
                before=operation.before(run),
                listed=True,
                name=name if isinstance(name, str) else None,
            )
            if operation.already_done(run):
                work.skip = "already as requested"
            if not await outlet.emit(work):
                return False
            self._new += 1
        if coverage.total is not None and outlet.emitted > coverage.total:
            coverage.total = outlet.emitted
        return True
