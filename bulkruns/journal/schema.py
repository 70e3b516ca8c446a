"""The result log's records, written and read here, and nowhere else.

Records (``None`` values are left out)::

    {"type":"job","version":1,"job_id":…,"operation":…,"params":{…},"filter":{…}|null,
     "org":…,"base_url":…,"created_at":…,"dry_run":…,"undo_of":…}     the first line
    {"type":"item","id":…,"outcome":"planned","name":…?,"fields":{…}?,"before":{…}?}
                                                          pinned work (name: as listed)
    {"type":"planned","count":N}                                      end of the pinned work
    {"type":"claim","id":…,"before":{…}?}          as an item's first change request leaves
    {"type":"item","id":…,"outcome":"ok|failed|skipped","status":…,"attempts":…,
     "error":…,"request_id":…,"before":{…},"note":…,"unknown":true?}
    {"type":"rate","rate":R,"at":…}                 the job's pace changed while it ran
    {"type":"summary",…}                            the end of each session of the job

Resume state (:func:`fold`): for each id the last record wins. ``ok`` and ``skipped`` are
done; ``planned``, ``claim`` and ``failed`` are pending. IDs are kept as ``int(id, 16)``,
which keeps a journal of a million items to a few tens of megabytes in memory.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bulkruns.errors import JournalError
from bulkruns.model import ItemResult, Operation, RunFilter, Work

__all__ = [
    "JOURNAL_VERSION",
    "JournalState",
    "Record",
    "claim_record",
    "fold",
    "header_problem",
    "item_record",
    "job_record",
    "plan_end_record",
    "planned_record",
    "planned_work",
    "rate_record",
    "summary_record",
    "utcnow",
]

JOURNAL_VERSION = 1

OUTCOMES = frozenset({"ok", "failed", "skipped", "planned"})

Record = dict[str, Any]
"""One parsed line: a JSON object with a ``"type"``."""

# What a reader yields per record: the record, its type, and the key of its id (or None).
Parsed = tuple[Record, Any, "int | None"]


def utcnow() -> str:
    """Now, as the log writes times: ISO 8601 to the second, with ``Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _record(kind: str, **values: Any) -> Record:
    record: Record = {"type": kind}
    record.update((k, v) for k, v in values.items() if v is not None)
    return record


# -- writing -------------------------------------------------------------------------------


def job_record(
    *,
    operation: Operation,
    params: Mapping[str, Any],
    selection: RunFilter | None,
    org: str,
    base_url: str,
    dry_run: bool,
    undo_of: str | None,
) -> Record:
    """The first line: what the job is, for every later session and for undo."""
    return _record(
        "job",
        version=JOURNAL_VERSION,
        job_id=uuid.uuid4().hex,
        **operation.to_record(),
        params=dict(params),
        filter=selection.to_record() if selection is not None else None,
        org=org,
        base_url=base_url,
        created_at=utcnow(),
        dry_run=dry_run,
        undo_of=undo_of,
    )


def planned_record(work: Work) -> Record:
    """One run of a pinned plan."""
    return _record(
        "item",
        id=work.id,
        outcome="planned",
        name=work.name,
        fields=work.fields,
        before=work.before,
    )


def plan_end_record(count: int) -> Record:
    """The line that closes a pinned plan: without it, the plan was cut short."""
    return {"type": "planned", "count": count}


def claim_record(work: Work) -> Record:
    """A run about to be changed, with its before-state: known to resume and undo even if
    its answer is lost."""
    return _record("claim", id=work.id, before=work.before)


def item_record(result: ItemResult, before: Mapping[str, Any] | None, *, unknown: bool) -> Record:
    """A run's outcome (never ``planned``: a plan's items are :func:`planned_record`)."""
    return _record(
        "item",
        id=result.id,
        outcome=result.outcome,
        status=result.status,
        attempts=result.attempts or None,
        error=result.error,
        request_id=result.request_id,
        before=before,
        note=result.note,
        unknown=unknown or None,
    )


def rate_record(rate: float) -> Record:
    """The job's pace changed while it ran (``bulkruns rethrottle``)."""
    return {"type": "rate", "rate": rate, "at": utcnow()}


def summary_record(summary: Mapping[str, Any]) -> Record:
    """The last line of a session."""
    return _record("summary", **summary, ended_at=utcnow())


# -- reading -------------------------------------------------------------------------------


def header_problem(record: Record) -> str | None:
    """Why a log's first record is not a job record this version reads, or None."""
    if record.get("type") != "job":
        return 'the first line is not a job record ({"type":"job",…})'
    version = record.get("version")
    if version != JOURNAL_VERSION:
        return (
            f"unknown journal version {version!r} (this bulkruns reads version "
            f"{JOURNAL_VERSION}; use the bulkruns that wrote it)"
        )
    return None


def planned_work(records: Iterable[Record]) -> Iterator[Work]:
    """The runs of a pinned plan, in order, up to the line that closes it."""
    for record in records:
        kind = record.get("type")
        if kind == "planned":
            return
        if kind == "item" and record.get("outcome") == "planned":
            yield Work(record["id"], before=record.get("before"), fields=record.get("fields"))


@dataclass(slots=True)
class JournalState:
    """What a result log says about its job.

    Attributes:
        header: the job record (the first line).
        done: keys (:func:`~bulkruns.model.id_key`) of the items whose last outcome is ok
            or skipped.
        pending: key -> the run still to do (planned, claimed or failed last), in the
            order the items first appeared.
        pinned: the log holds a plan (a dry run, an ID-file job, an undo job): resuming it
            applies exactly the plan's runs, even when there are none.
        plan_complete: the ``{"type":"planned"}`` marker that ends the pinned items was seen.
        counts: the number of items per last outcome: ok, failed, skipped, planned, and
            unfinished (claimed without an outcome).
        sessions: the number of summary lines (finished sessions).
        torn: an unreadable last line was dropped.
        lines: the number of records read.
    """

    header: Record
    done: set[int] = field(default_factory=set)
    pending: dict[int, Work] = field(default_factory=dict)
    pinned: bool = False
    plan_complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    torn: bool = False
    lines: int = 0


# While a log is read, a pending item is a plain tuple, cheaper to build than a Work:
# (last record type: planned, claim or failed; id; before; fields; unknown; error; attempts).
_Open = tuple[str, str, Any, Any, bool, Any, int]


def fold(header: Record, records: Iterator[Parsed], *, where: str) -> tuple[JournalState, set[int]]:
    """The resume state of a log's records (after its header), and the keys of the done
    items whose last outcome is skipped.

    Raises:
        JournalError: an item with an unknown outcome.
    """
    state = JournalState(header=header)
    done = state.done
    skipped: set[int] = set()
    opened: dict[int, _Open] = {}
    for record, kind, key in records:
        if key is None:
            if kind == "summary":
                state.sessions += 1
            elif kind == "planned":
                state.plan_complete = True
            continue  # other record types carry no item state
        # The two hot paths, inline: a long log is mostly claims, each followed by an ok.
        if kind == "claim":
            before = record.get("before")
            previous = opened.get(key)
            if previous is None:
                opened[key] = ("claim", record["id"], before, None, True, None, 0)
                done.discard(key)
                if skipped:
                    skipped.discard(key)
            else:
                # A claim after a plan or a failure keeps their fields and last error.
                if before is None:
                    before = previous[2]
                _, run_id, _, fields, _, error, attempts = previous
                opened[key] = ("claim", run_id, before, fields, True, error, attempts)
            continue
        outcome = record.get("outcome")
        if outcome == "ok":
            done.add(key)
            if opened:
                opened.pop(key, None)
            if skipped:
                skipped.discard(key)
        elif outcome == "skipped":
            done.add(key)
            skipped.add(key)
            opened.pop(key, None)
        elif outcome == "failed" or outcome == "planned":
            if outcome == "planned":
                state.pinned = True
            opened[key] = _reopen(record, outcome, opened.get(key))
            done.discard(key)
            skipped.discard(key)
        else:
            raise JournalError(
                f"result log {where}: item {record['id']} has an unknown outcome "
                f"{outcome!r} (expected one of {', '.join(sorted(OUTCOMES))})"
            )
    # A plan is exactly its runs, even none: a dry run's log, or any log whose plan was
    # closed, is pinned however few planned items it holds.
    state.pinned = state.pinned or state.plan_complete or header.get("dry_run") is True
    by_kind = Counter(item[0] for item in opened.values())
    state.pending = {key: Work(*item[1:]) for key, item in opened.items()}
    state.counts = {
        "ok": len(done) - len(skipped),
        "failed": by_kind["failed"],
        "skipped": len(skipped),
        "planned": by_kind["planned"],
        "unfinished": by_kind["claim"],
    }
    return state, skipped


def _reopen(record: Record, outcome: str, previous: _Open | None) -> _Open:
    """The pending state after a planned or failed item record."""
    before = record.get("before")
    fields = record.get("fields")
    if previous is not None:
        # Failures do not repeat a plan's fields, nor always the claim's before-state.
        if before is None:
            before = previous[2]
        if fields is None:
            fields = previous[3]
    if outcome == "planned":
        return ("planned", record["id"], before, fields, False, None, 0)
    error = record.get("error")
    attempts = record.get("attempts")
    return (
        "failed",
        record["id"],
        before,
        fields,
        record.get("unknown") is True,
        None if error is None else str(error),
        attempts if type(attempts) is int else 0,
    )


def ok_befores(
    records: Iterator[Parsed], remaining: set[int]
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """``(id, before)`` for each item of ``remaining`` (keys whose last outcome is ok),
    once, in log order: ``before`` from its first ok record, or from the claim (or failure)
    before it when the ok record has none. ``remaining`` is emptied as it goes."""
    befores: dict[int, dict[str, Any]] = {}
    for record, kind, key in records:
        if key is None:
            continue
        before = record.get("before")
        if kind == "claim" or record.get("outcome") in ("planned", "failed"):
            if before is not None:
                befores[key] = before
            continue
        recorded = befores.pop(key, None)
        if key in remaining and record.get("outcome") == "ok":
            remaining.discard(key)
            yield record["id"], recorded if before is None else before
