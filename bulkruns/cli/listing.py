"""The command line's reads of a query outside a job: ``bulkruns list``, and the count a
permanent delete shows before it asks. Both list as a job does
(:func:`~bulkruns.select.list_pages`), retried as a job's requests are."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

import orjson

from bulkruns.api import Client, Page
from bulkruns.cli.inputs import Connection
from bulkruns.cli.summary import EXIT_ABORTED, EXIT_INTERRUPTED, EXIT_OK, ExitError
from bulkruns.errors import APIError, AuthError, TransportError
from bulkruns.model import ArchivedStyle, RunFilter
from bulkruns.pace import Pacer, RetryPolicy, send_paced
from bulkruns.select import Fetch, list_pages

__all__ = ["count_runs", "list_runs"]


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
        except (APIError, TransportError) as exc:
            raise ExitError(
                f"listing page {number} failed: {exc}; nothing was changed", EXIT_ABORTED
            ) from None

    return fetch


async def count_runs(conn: Connection, params: Sequence[tuple[str, str]]) -> int:
    """How many runs a query selects now, from one page of one run."""
    async with conn.client(concurrency=1) as client:
        page = await _fetcher(client, Pacer(0), 1)(params, 1)
    return page.total


def list_runs(
    conn: Connection,
    selection: RunFilter,
    *,
    archived: ArchivedStyle,
    rate: float,
    per_page: int,
    limit: int | None,
) -> int:
    """Print the runs a filter selects as JSON lines on standard output; the exit code."""
    if selection.status == "archived" and archived == "only":
        params = replace(selection, status=None).params(archived="only")
    else:
        params = selection.params()
    client = conn.client(concurrency=1)
    try:
        return asyncio.run(_list(client, selection, params, rate, per_page, limit))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `bulkruns list | head`: the reader has all it wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


async def _list(
    client: Client,
    selection: RunFilter,
    params: Sequence[tuple[str, str]],
    rate: float,
    per_page: int,
    limit: int | None,
) -> int:
    out = sys.stdout.buffer
    written = 0

    async def write(page: Page) -> bool:
        nonlocal written
        for run in page.runs:
            if not selection.accepts(run):
                continue
            out.write(orjson.dumps(run) + b"\n")
            written += 1
            if limit is not None and written >= limit:
                out.flush()
                return False
        out.flush()
        return True

    async with client:
        await list_pages(_fetcher(client, Pacer(rate), per_page), params, write, last_first=False)
    return EXIT_OK
