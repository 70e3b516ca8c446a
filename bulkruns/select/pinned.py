"""Selection given up front: run IDs, a plan, the runs a resumed log left pending, the runs
an undo reverses.

A job over pinned runs writes them to its log as a plan before its first request, every ID
checked and each run once, then streams the plan back from the log, so memory stays flat
however long it is. Resuming such a log applies exactly the plan's runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from bulkruns.errors import ConfigError, JournalError
from bulkruns.journal import JournalWriter, ok_items
from bulkruns.journal.schema import plan_end_record, planned_record, planned_work
from bulkruns.model import Operation, Work, id_key, is_run_id

__all__ = ["pin", "read_plan", "undo_work"]

_BATCH = 1000  # plan lines written at a time


def pin(
    source: Iterable[Work],
    journal: JournalWriter | None,
    *,
    limit: int | None,
    skipped: Callable[[Work], None],
) -> tuple[Iterable[Work], int]:
    """Check and dedupe pinned runs, and write them as the log's plan before any request.

    Args:
        source: the runs, in order.
        journal: the log to write the plan to; None keeps the plan in memory.
        limit: the most runs to take.
        skipped: called for each run that needs no request (``work.skip``), in order.

    Returns:
        the plan to process (streamed back from the log when there is one), and the number
        of runs taken.

    Raises:
        ConfigError: an ID that is not a run ID; nothing has been sent.
    """
    seen: set[int] = set()
    kept: list[Work] = []
    batch: list[dict[str, object]] = []
    for work in source:
        if not isinstance(work.id, str) or not is_run_id(work.id):
            raise ConfigError(f"{work.id!r} is not a run ID (32 lowercase hexadecimal characters)")
        key = id_key(work.id)
        if key in seen:
            continue
        seen.add(key)
        if work.skip is not None:
            skipped(work)
        elif journal is None:
            kept.append(work)
        else:
            batch.append(planned_record(work))
            if len(batch) >= _BATCH:
                journal.write_many(batch)
                batch.clear()
        if limit is not None and len(seen) >= limit:
            break
    if journal is None:
        return kept, len(seen)
    batch.append(plan_end_record(len(seen)))
    journal.write_many(batch)
    journal.sync()
    return read_plan(journal.path), len(seen)


def read_plan(path: Path) -> Iterator[Work]:
    """The plan a job has just written, streamed back a line at a time.

    Line by line rather than in the large blocks of the journal reader: a plan of 100,000
    runs would otherwise be held in memory whole, which is what streaming it avoids.
    """
    with path.open("rb") as log:
        yield from planned_work(orjson.loads(line) for line in log)


def undo_work(source: Path, original: Operation) -> Iterator[Work]:
    """The runs that reverse a finished job, from its log's ok items.

    Archive and activate undo each other run by run; an update is undone by setting each
    run's recorded before-state again: the fields it set, and the assignees it kept (which
    gives back any a server stripped). A run with no before-state to restore is skipped.

    Raises:
        JournalError: a malformed before-state (as the runs are streamed).
    """
    for run_id, before in ok_items(source):
        if original.name != "update":
            yield Work(run_id)
        elif before is not None and not isinstance(before, dict):
            raise JournalError(f"{source}: run {run_id} has a malformed before-state")
        elif before:
            yield Work(run_id, fields=dict(before))
        else:
            yield Work(run_id, skip="no before-state was recorded for this run")
