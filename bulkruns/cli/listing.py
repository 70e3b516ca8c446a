"""The command line's reads of a query outside a job: ``bulkruns list``, and the count a
permanent delete shows before it asks. Both list as a job does
(:func:`~bulkruns.select.list_pages`), retried as a job's requests are."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from typing import Literal

import orjson

from bulkruns.api import Client, Page
from bulkruns.cli.inputs import Connection
from bulkruns.cli.summary import EXIT_ABORTED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ExitError
from bulkruns.errors import APIError, AuthError, TransportError, WaitTooLong
from bulkruns.model import ArchivedStyle, RunFilter, id_key, is_run_id
from bulkruns.pace import Pacer, RetryPolicy, send_paced
from bulkruns.select import Fetch, check_filters, list_pages

__all__ = ["ListForm", "list_runs", "sample_runs"]

ListForm = Literal["json", "ids", "count"]
"""What ``bulkruns list`` prints: each run as a JSON line, each run's ID, or their number."""

_PASSES = 3  # passes over a listing that moves before the command says it may be incomplete


def _fetcher(client: Client, pacer: Pacer, per_page: int) -> Fetch:
    """Fetches pages, retried as the engine would; errors end the command (exit 3)."""

    async def fetch(params: Sequence[tuple[str, str]], number: int) -> Page:
        try:
            return await send_paced(
                functools.partial(client.list_runs, params, page=number, per_page=per_page),
                pacer,
                RetryPolicy(),
                lane="read",
            )
        except AuthError as exc:
            raise ExitError(
                f"Tallyfy refused the access token ({exc}); "
                "check TALLYFY_ACCESS_TOKEN or --token-file",
                EXIT_ABORTED,
            ) from None
        except WaitTooLong as exc:
            raise ExitError(
                f"Tallyfy asks to wait {exc.wait:,.0f} s ({exc.reason}) before page {number}; "
                "nothing was changed: try again later",
                EXIT_ABORTED,
            ) from None
        except APIError as exc:
            raise ExitError(
                f"listing page {number} failed: {exc}; nothing was changed", EXIT_ABORTED
            ) from None
        except TransportError as exc:  # its message names the page already
            raise ExitError(f"{exc}; nothing was changed", EXIT_ABORTED) from None

    return fetch


async def sample_runs(
    conn: Connection, params: Sequence[tuple[str, str]], *, size: int
) -> tuple[int, list[str]]:
    """How many runs a query selects now, and the names of the first few, from one page."""
    async with conn.client(concurrency=1) as client:
        page = await _fetcher(client, Pacer(0), size)(params, 1)
    names = [run["name"] for run in page.runs if isinstance(run.get("name"), str)]
    return page.total, names


def list_runs(
    conn: Connection,
    selection: RunFilter,
    *,
    form: ListForm,
    archived: ArchivedStyle,
    rate: float,
    per_page: int,
    limit: int | None,
) -> int:
    """Print the runs a filter selects on standard output, in ``form``; the exit code.

    A count needs one request of one run (and one more for each filter a run cannot show,
    to check that Tallyfy did not ignore it) when the server applies the whole filter; when
    bulkruns filters dates itself, it lists every page and counts what passes.

    Raises:
        FilterIgnored: Tallyfy seems to ignore a filter (nothing is printed).
    """
    style = archived if selection.status == "archived" else None
    params = selection.params(archived=style)
    client = conn.client(concurrency=1)
    try:
        if form == "count" and not selection.filters_locally:
            total = asyncio.run(_count(client, selection, params, style))
            print(total if limit is None else min(total, limit), flush=True)
            return EXIT_OK
        return asyncio.run(_list(client, selection, params, form, rate, per_page, limit, style))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `bulkruns list | head`: the reader has all it wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


async def _count(
    client: Client,
    selection: RunFilter,
    params: Sequence[tuple[str, str]],
    style: ArchivedStyle | None,
) -> int:
    async with client:
        fetch = _fetcher(client, Pacer(0), 1)
        first = await fetch(params, 1)
        await check_filters(selection, first, fetch, archived=style)
    return first.total


async def _list(
    client: Client,
    selection: RunFilter,
    params: Sequence[tuple[str, str]],
    form: ListForm,
    rate: float,
    per_page: int,
    limit: int | None,
    style: ArchivedStyle | None,
) -> int:
    out = sys.stdout.buffer
    printed: set[int] = set()
    archived = selection.status == "archived"
    checked = False

    async def write(page: Page) -> bool:
        nonlocal checked
        if not checked:  # before a line is printed: an ID file fed from it is a selection
            await check_filters(selection, page, fetch, archived=style)
            checked = True
        for run in page.runs:
            run_id = run.get("id")
            if not isinstance(run_id, str) or not is_run_id(run_id):
                continue
            key = id_key(run_id)
            if key in printed or not selection.accepts(run):
                continue
            if selection.contradiction(run, archived=archived) is not None:
                continue  # the server ignored part of the filter: not a match
            printed.add(key)
            if form == "json":
                out.write(orjson.dumps(run) + b"\n")
            elif form == "ids":
                out.write(f"{run_id}\n".encode())
            if limit is not None and len(printed) >= limit:
                break
        out.flush()
        return limit is None or len(printed) < limit

    async with client:
        fetch = _fetcher(client, Pacer(rate), per_page)
        for _ in range(_PASSES):
            seen = await list_pages(fetch, params, write, last_first=False)
            if seen.stopped or seen.held_still:
                break
            # the listing moved while it was read: list again, printing what was missed
        else:
            print(
                f"bulkruns: the listing kept moving while it was read: {len(printed):,} runs "
                f"in {_PASSES} passes, of the {seen.total:,} Tallyfy counted last; some may be "
                "missing",
                file=sys.stderr,
            )
            return EXIT_FAILED
    if form == "count":
        out.write(f"{len(printed)}\n".encode())
        out.flush()
    return EXIT_OK
