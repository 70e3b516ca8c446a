"""What a result log says, without reading its JSON by hand: ``bulkruns report LOG`` (the
job, its outcomes over all its sessions, failures by error, each session's time and pace,
whether the selection was verified) and what ``resume`` would do next, which ``resume
--dry-run`` says too.

Both read only the log (with :mod:`bulkruns.journal`): nothing is sent, and no token or
organisation is needed.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson

from bulkruns.cli.inputs import PROG, Display
from bulkruns.cli.output import format_duration
from bulkruns.cli.summary import EXIT_OK
from bulkruns.journal import JournalState, iter_records

__all__ = ["ReportForm", "outlook", "preview_resume", "read_report", "report", "report_lines"]

ReportForm = Literal["text", "json", "ids"]
"""What ``bulkruns report`` prints: words, one JSON object, or the failed run IDs."""

_REQUEST_ID = re.compile(r"\s*\[request [^\]]*\]")
_RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _kind(error: str) -> str:
    """An error without what differs from one run to the next (request IDs, run IDs), so
    that the same failure of many runs is one group."""
    return _RUN_ID.sub("…", _REQUEST_ID.sub("", error))


def outlook(state: JournalState) -> dict[str, Any]:
    """What resuming the log would do, from the log alone.

    Items done are skipped; failed, unfinished and planned ones are retried or applied; a
    job that selected runs with a query lists it again, which only the server can count.
    A plan cut short cannot be resumed.
    """
    counts = state.counts
    return {
        "done": len(state.done),
        "to_do": len(state.pending),
        "failed": counts.get("failed", 0),
        "unfinished": counts.get("unfinished", 0),
        "planned": counts.get("planned", 0),
        "query_listed_again": not state.pinned and state.header.get("filter") is not None,
        "plan_cut_short": state.pinned and not state.plan_complete,
    }


def _outlook_lines(operation: str, path: Path, next_: Mapping[str, Any]) -> list[str]:
    if next_["plan_cut_short"]:
        return [
            f"resume would refuse {path}: its plan was cut short before any change was made; "
            "start the job again instead"
        ]
    return [
        f"resume of {path} would {operation} {next_['to_do']:,} runs recorded as still to do: "
        f"failed {next_['failed']:,}, unfinished {next_['unfinished']:,}, "
        f"not started {next_['planned']:,}",
        "  then the rest of the selection: it lists the job's query again and takes the runs "
        "that match it now (only that listing can count them)"
        if next_["query_listed_again"]
        else "  and nothing else: every run of the job is in the log (no query to list again)",
        f"  already done, left alone: {next_['done']:,}",
    ]


def preview_resume(path: Path, state: JournalState, display: Display) -> int:
    """``resume --dry-run``: what resuming a log would do; nothing is sent, nothing written.

    The log has been checked as resume checks it (:meth:`~bulkruns.JobSpec.resume`).
    """
    operation = str(state.header.get("operation"))
    next_ = outlook(state)
    if display.json:
        preview = {"log": str(path), "operation": operation, **next_}
        sys.stdout.buffer.write(orjson.dumps(preview) + b"\n")
        sys.stdout.flush()
        return EXIT_OK
    lines = _outlook_lines(operation, path, next_)
    print(*lines, "  a preview: nothing was sent, and the log is unchanged", sep="\n")
    return EXIT_OK


def read_report(path: Path, state: JournalState) -> dict[str, Any]:
    """What a log says, as one JSON-ready object: ``ok``, ``failed``, ``skipped``,
    ``planned`` and ``unfinished`` (each run counted by its last record, over all the job's
    sessions), ``job``, ``failures`` (grouped by error, the most frequent first),
    ``sessions``, ``verified`` (None for a job over given runs) and ``next``.
    """
    header = state.header
    failed: dict[str, Mapping[str, Any]] = {}  # the runs whose last record is a failure
    sessions: list[dict[str, Any]] = []
    since_summary = 0  # records of a session that has not (yet) written its summary
    for record in iter_records(path):
        kind = record.get("type")
        if kind == "summary":
            sessions.append(_session(record))
            since_summary = 0
        elif kind in ("item", "claim"):
            since_summary += 1
            if record.get("outcome") == "failed":
                failed[record["id"]] = record
            else:
                failed.pop(record["id"], None)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for failure in failed.values():
        error = str(failure.get("error") or f"HTTP {failure.get('status')}")
        groups.setdefault(_kind(error), []).append(failure)
    # a query job's last session says whether it was verified; a dry run's plan is pinned
    # runs, but made from a query all the same
    pinned = header.get("filter") is None
    last = sessions[-1] if sessions else None
    return {
        "log": str(path),
        **{name: state.counts.get(name, 0) for name in ("ok", "failed", "skipped", "planned")},
        "unfinished": state.counts.get("unfinished", 0),
        "job": {
            name: header.get(name)
            for name in (
                "operation",
                "fields",
                "archive_first",
                "filter",
                "params",
                "org",
                "base_url",
                "created_at",
                "dry_run",
                "undo_of",
            )
        },
        "failures": [
            {
                "error": error,
                "count": len(records),
                "sample": {k: records[0].get(k) for k in ("id", "status", "error")},
            }
            for error, records in sorted(groups.items(), key=lambda group: -len(group[1]))
        ],
        "failed_ids": list(failed),
        "sessions": sessions,
        # a session that was killed or crashed leaves records but no summary
        "session_without_summary": since_summary > 0,
        "verified": None if pinned else bool(last and last["verified"]),
        "next": {**outlook(state), "command": shlex.join([PROG, "resume", os.path.abspath(path)])},
    }


def _number(record: Mapping[str, Any], key: str) -> float:
    """A count or a time a summary line records; 0 for one missing or damaged."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return value


def _session(record: Mapping[str, Any]) -> dict[str, Any]:
    """One session, from its summary line."""
    items = int(sum(_number(record, k) for k in ("ok", "failed", "skipped", "planned")))
    elapsed = float(_number(record, "elapsed"))
    dry_run = record.get("dry_run") is True
    return {
        "ended_at": record.get("ended_at"),
        "items": items,
        "elapsed": elapsed,
        # a dry run only lists: its speed says nothing about the job's
        "items_per_second": None if dry_run else round(items / elapsed, 2) if elapsed else 0.0,
        **{key: int(_number(record, key)) for key in ("requests", "retries", "throttled")},
        "aborted": record.get("aborted"),
        "verified": record.get("verified") is True,
        "dry_run": dry_run,
    }


def _settings(params: Any) -> str:
    if not isinstance(params, Mapping) or not params:
        return "the defaults"
    return ", ".join(f"{k} {'none' if v is None else v}" for k, v in params.items())


def _selection(job: Mapping[str, Any]) -> str:
    if job.get("undo_of"):
        return f"the runs done by {job['undo_of']} (an undo)"
    chosen = job.get("filter")
    if not isinstance(chosen, Mapping):
        return "the runs listed in the log (an ID file or a plan)"
    if not chosen:
        return "every run (no filter)"
    return "filter " + ", ".join(f"{k}={v}" for k, v in chosen.items())


def report_lines(facts: Mapping[str, Any]) -> list[str]:
    """The report, as a person reads it."""
    job = facts["job"]
    operation = str(job["operation"])
    what = operation + (" (archive first)" if job.get("archive_first") else "")
    if job.get("fields"):
        what += " setting " + orjson.dumps(job["fields"]).decode()
    sessions = facts["sessions"]
    lines = [
        f"{'dry run of ' if job.get('dry_run') else ''}{what}, "
        f"started {job.get('created_at')}, organisation {job.get('org')} at {job.get('base_url')}",
        f"  selection: {_selection(job)}",
        f"  settings: {_settings(job.get('params'))}",
        f"outcomes over {len(sessions)} session{'s' if len(sessions) != 1 else ''}: "
        f"ok {facts['ok']:,}  failed {facts['failed']:,}  skipped {facts['skipped']:,}  "
        f"unfinished {facts['unfinished']:,}  not started {facts['planned']:,}",
    ]
    if facts["failures"]:
        lines.append("failures by error:")
        for group in facts["failures"]:
            lines.append(
                f"  {group['count']:>6,}  {group['error']}  (e.g. {group['sample']['id']})"
            )
    for number, session in enumerate(sessions, 1):
        speed = (
            f"  {session['items_per_second']:,.1f} items/s"
            if session["items_per_second"] is not None
            else ""
        )
        ending = f"  {session['aborted']}" if session["aborted"] else ""
        lines.append(
            f"session {number}: ended {session['ended_at']}  {format_duration(session['elapsed'])}"
            f"  {session['items']:,} items{speed}  requests {session['requests']:,}"
            f"  retries {session['retries']:,}  429s {session['throttled']:,}{ending}"
        )
    if facts["session_without_summary"]:
        lines.append(
            f"session {len(sessions) + 1}: ended without a summary (killed, or still running)"
        )
    verified = facts["verified"]
    if verified is None:
        lines.append("selection: the runs were given, so there was no query to verify")
    elif verified and job.get("dry_run"):
        lines.append("selection: verified: the whole selection was listed")
    elif verified:
        lines.append(
            "selection: verified: the last pass over the query found no matching run "
            "the job had not handled"
        )
    else:
        lines.append("selection: not verified: no session ended with a clean pass over the query")
    next_ = facts["next"]
    first, *rest = _outlook_lines(operation, Path(facts["log"]), next_)
    lines += [f"next: {first}", *rest]
    if not next_["plan_cut_short"] and (next_["to_do"] or next_["query_listed_again"]):
        lines.append(f"  {next_['command']}")
    return lines


def report(path: Path, state: JournalState, *, form: ReportForm) -> int:
    """Print what the log says, in ``form``; the exit code."""
    facts = read_report(path, state)
    out = sys.stdout
    if form == "ids":
        out.writelines(f"{run_id}\n" for run_id in facts["failed_ids"])
    elif form == "json":
        facts.pop("failed_ids")
        out.write(orjson.dumps(facts).decode() + "\n")
    else:
        out.write("\n".join(report_lines(facts)) + "\n")
    out.flush()
    return EXIT_OK
