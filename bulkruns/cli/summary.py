"""The end of a command: the exit code a job's summary calls for, and the words that end it
(the summary, the sample of a dry run's plan, the preview of a resume).

Exit codes:

    0    every item done
    1    finished, some items failed (or the selection could not be proven complete)
    2    usage, configuration or input error: nothing was sent (nothing changed)
    3    aborted (the token was refused, the failure budget ran out, listing failed, the
         result log could not be written); the job is resumable
    130  interrupted (Ctrl-C, SIGTERM); the job is resumable
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson

from bulkruns.cli.inputs import Connection, Display
from bulkruns.cli.output import format_duration
from bulkruns.job import Summary
from bulkruns.journal import iter_records
from bulkruns.journal.schema import utcnow

__all__ = [
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ExitError",
    "empty_summary",
    "exit_code",
    "finish",
    "print_sample",
    "summary_lines",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_INTERRUPTED = 130

SAMPLE_SIZE = 10


class ExitError(Exception):
    """End the command with one line on standard error and an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


def exit_code(summary: Summary) -> int:
    """The exit code a job's summary calls for: 130 for an interruption, 2 for a filter the
    server ignores (nothing was changed), 3 for any other abort (``auth``,
    ``failure-budget``, ``listing``, ``journal``…)."""
    if summary.aborted == "interrupted":
        return EXIT_INTERRUPTED
    if summary.aborted == "filter-ignored":
        return EXIT_USAGE
    if summary.aborted is not None:
        return EXIT_ABORTED
    if summary.failed or summary.message:
        return EXIT_FAILED
    return EXIT_OK


def finish(
    conn: Connection,
    summary: Summary,
    display: Display,
    *,
    journal: Path | None,
    plan_cut_short: bool = False,
) -> int:
    """Print how a job ended (its summary, or one JSON object), and the commands that resume
    or undo it; return the exit code.

    ``plan_cut_short``: a dry run stopped before its plan was whole, which resume refuses.
    """
    code = exit_code(summary)
    resume = undo = None
    if journal is not None:
        log = os.path.abspath(journal)
        if (code != EXIT_OK or summary.dry_run) and not plan_cut_short:
            resume = conn.command("resume", log)
        if not summary.dry_run and summary.ok and summary.operation != "delete":
            undo = conn.command("undo", log)
    if display.json:
        record = summary.to_dict()
        record.update(exit_code=code, resume_command=resume, undo_command=undo)
        if summary.dry_run:  # it only listed: no speed of the job's to report
            record["items_per_second"] = None
        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        sys.stdout.flush()
        return code
    lines = summary_lines(
        summary,
        exit_code=code,
        resume=resume,
        undo=undo,
        plan_cut_short=plan_cut_short,
        stamp=utcnow(),
    )
    if display.quiet:
        if code != EXIT_OK:
            sys.stderr.write("\n".join(lines) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    return code


def empty_summary(operation: str) -> Summary:
    """The summary of a job that had nothing to do, found with one request."""
    return Summary(
        operation=operation,
        journal=None,
        ok=0,
        failed=0,
        skipped=0,
        planned=0,
        requests=1,
        retries=0,
        throttled=0,
        elapsed=0.0,
        sweeps=1,
        verified=True,
        aborted=None,
        message=None,
        dry_run=False,
    )


def print_sample(journal: Path, display: Display) -> None:
    """The first few runs of a dry run's plan: their IDs, names and state."""
    sample: list[str] = []
    for record in iter_records(journal):
        if record.get("type") == "item" and record.get("outcome") == "planned":
            before = record.get("before")
            name = record.get("name")
            extra = f"  {name!r}" if isinstance(name, str) else ""
            extra += f"  {orjson.dumps(before).decode()}" if before else ""
            sample.append(f"  {record['id']}{extra}")
            if len(sample) >= SAMPLE_SIZE:
                break
        elif record.get("type") == "planned":
            break
    if sample and not display.quiet:
        print("sample of the plan:", *sample, sep="\n")


_DONE = {"archive": "archived", "activate": "activated", "update": "updated"}


def _dry_run_head(s: Summary, plan_cut_short: bool) -> str:
    would = f"{s.planned:,} runs would be {_DONE.get(s.operation, 'deleted')}"
    if not plan_cut_short:
        return f"dry run: {would}" + (f": {s.message}" if s.message else "")
    why = "interrupted" if s.aborted == "interrupted" else f"aborted ({s.aborted})"
    cause = f": {s.message}" if s.message and s.aborted != "interrupted" else ""
    # One piece of advice: resume refuses a plan cut short.
    return (
        f"dry run {why}{cause}; the plan is incomplete ({would} so far): "
        "run the dry run again for a plan that can be applied"
    )


def _head(s: Summary, exit_code: int, plan_cut_short: bool) -> str:
    if s.dry_run:
        return _dry_run_head(s, plan_cut_short)
    if s.aborted == "interrupted":
        head = f"{s.operation} interrupted"
    elif s.aborted is not None:
        head = f"{s.operation} aborted ({s.aborted})"
    elif exit_code == 0:
        head = f"{s.operation} done"
    elif s.failed:
        head = f"{s.operation} finished with failures"
    else:
        head = f"{s.operation} finished"
    if s.message and s.aborted is None:
        # Every item went through, yet the last pass still found new runs (the sweep bound):
        # the job cannot say that nothing matching is left.
        head += (", and" if s.failed else ", but") + " the selection could not be proven complete"
    return head + (f": {s.message}" if s.message else "")


def _verification(s: Summary) -> str:
    if not s.verified:
        return "not verified"
    if s.dry_run:
        return "the whole selection was listed"
    if s.operation == "update":  # updated runs still match the query
        return "no matching run was missed"
    return "nothing matching is left"


def summary_lines(
    summary: Summary,
    *,
    exit_code: int,
    resume: str | None = None,
    undo: str | None = None,
    plan_cut_short: bool = False,
    stamp: str | None = None,
) -> list[str]:
    """The words that end a job: outcome, counts, speed, requests, log, next commands.

    ``stamp`` (an ISO time) starts the first line, as it does every plain progress line.
    """
    s = summary
    head = _head(s, exit_code, plan_cut_short)
    lines = [f"{stamp} {head}" if stamp else head]
    if not s.dry_run:
        lines.append(f"  ok {s.ok:,}  failed {s.failed:,}  skipped {s.skipped:,}")
    if s.limit_found is not None:
        lines.append(
            f"  Tallyfy seemed to allow about {s.limit_found:,.1f} requests/s, less than the rate "
            "asked: the job kept under it"
        )
    if s.mismatched:
        lines.append(
            f"  left alone {s.mismatched:,}: Tallyfy listed them, but they show they do not "
            "match the filter (it seems to ignore part of it)"
        )
    # a dry run only lists: its items per second say nothing of the job's
    speed = "" if s.dry_run else f"  {s.items_per_second:,.1f} items/s"
    lines.append(
        f"  elapsed {format_duration(s.elapsed)}{speed}  "
        f"requests {s.requests:,}  retries {s.retries:,}  429s {s.throttled:,}"
    )
    if s.sweeps and s.aborted is None:
        lines.append(f"  passes over the query {s.sweeps}: {_verification(s)}")
    if s.journal is not None:
        lines.append(f"  journal: {s.journal}")
    if resume:
        lines.append(f"  {'apply the plan' if s.dry_run else 'resume'}: {resume}")
    if undo:
        lines.append(f"  undo: {undo}")
    return lines
