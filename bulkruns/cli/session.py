"""One job run for the command line: the lock, a permanent delete's confirmation, the
signals, the display, and the summary with its exit code.

``bulkruns.cli.commands`` turns the command line into a :class:`~bulkruns.JobSpec`
and calls :func:`run_job`, which turns the library's outcomes into what a person or a cron
job sees (see :mod:`bulkruns.cli.summary` for the exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from types import FrameType

import anyio

from bulkruns.api import Client
from bulkruns.cli.inputs import Connection, Display, IdSource, check_new_log
from bulkruns.cli.listing import sample_runs
from bulkruns.cli.lock import JobLock
from bulkruns.cli.output import Reporter, make_reporter
from bulkruns.cli.rethrottle import RateWatch
from bulkruns.cli.summary import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    ExitError,
    empty_summary,
    finish,
    print_sample,
)
from bulkruns.job import Job, JobSpec, Summary
from bulkruns.journal import read_journal
from bulkruns.journal.schema import utcnow
from bulkruns.model import RunFilter

__all__ = ["Confirm", "interrupt_on_sigterm", "job_lock", "run_job"]


@dataclass(frozen=True, slots=True)
class Confirm:
    """What a permanent delete removes, to be counted and confirmed before any change.

    Attributes:
        selection: a filter, an ID file, or the size of a plan.
        yes: ``--yes`` was given.
        names: the names of a plan's first runs, to show (a filter's are listed).
    """

    selection: RunFilter | IdSource | int
    yes: bool
    names: tuple[str, ...] = ()


_SAMPLE = 5  # run names a delete's question shows


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """Make SIGTERM interrupt the command as Ctrl-C does (a ``KeyboardInterrupt``), so that
    one before the job's own handlers are in place (during start-up, a delete's count, the
    prompt) still ends it with exit 130 and one line, not the default 143.

    Only the main thread can set a signal handler; elsewhere (a command run from a thread)
    this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _say(display: Display, line: str) -> None:
    """An informational line on standard error, unless quiet."""
    if not display.quiet:
        _tell(line)


def _tell(line: str) -> None:
    """A line on standard error, even when quiet, after the time (as progress lines are)."""
    print(utcnow(), line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def job_lock(conn: Connection, command: str) -> Iterator[None]:
    """Hold the organisation's job lock: a command that continues or undoes a job reads
    its log only once no other job of the organisation can be writing it.

    Raises:
        ConfigError: another job holds it (exit 2), or the base URL is unusable.
    """
    client = conn.client()
    with JobLock(client.org, client.base_url, command=command):
        yield


def run_job(
    conn: Connection,
    spec: JobSpec,
    *,
    display: Display,
    new_log: bool,
    confirm_delete: Confirm | None = None,
    locked: bool = False,
) -> int:
    """Run one job and return the exit code: lock, confirm, run, summarise.

    Everything that can be checked without the server is checked before the first request,
    a delete's count included: the spec (already built), the base URL, a new log's path,
    the lock, and the log the job comes from.

    Args:
        conn: where to send it.
        spec: the job.
        display: quiet and JSON output.
        new_log: the job starts its log (a new job or an undo), rather than resuming one.
        confirm_delete: for a permanent delete, the runs are counted and the count
            confirmed before anything changes; it caps the job.
        locked: the caller holds the job lock already (:func:`job_lock`).

    Raises:
        ExitError: a refused confirmation (exit 2), a failed count (exit 3), an interruption
            before the job started (exit 130).
        ConfigError: bad input (exit 2).
    """
    journal = spec.options.journal_path
    assert journal is not None  # the command line always keeps a log
    if new_log:
        check_new_log(journal)
    client = conn.client(concurrency=spec.options.concurrency)  # validates the base URL
    lock = JobLock(client.org, client.base_url, command=spec.operation.name)
    with contextlib.nullcontext() if locked else lock:
        if confirm_delete is not None and not spec.options.dry_run:
            count = _confirm_delete(conn, spec, confirm_delete)
            if count == 0:
                _say(display, "delete: no runs match the selection; nothing to do")
                return finish(conn, empty_summary(spec.operation.name), display, journal=None)
            # never delete more runs than the count the user agreed to: a job's limit counts
            # the runs of all its sessions, so a resumed plan's adds those done before
            done = len(spec.resumed.done) if spec.resumed is not None else 0
            spec = replace(spec, options=spec.options.replace(limit=done + count))
        reporter = make_reporter(spec.operation.name, display)
        job = Job.from_spec(client, spec, on_progress=reporter)  # a log of another org: exit 2
        resume = conn.command("resume", os.path.abspath(journal))
        if not spec.options.dry_run:
            notes = (f"if stopped, continue with: {resume}", f"continue with: {resume}")
        elif spec.query is None:  # a plan of given runs, written whole before any request
            notes = (f"apply the plan with: {resume}",) * 2
        else:  # a plan cut short is not resumed, but made again
            notes = (
                f"once the plan is whole, apply it with: {resume}",
                "the plan is incomplete: run the dry run again",
            )
        try:
            watch = RateWatch(lock.path, functools.partial(_rethrottle, job, reporter))
            summary = asyncio.run(_run(client, job, reporter, display, notes=notes, watch=watch))
        except KeyboardInterrupt:
            raise ExitError(
                "interrupted before the job started; nothing was changed", EXIT_INTERRUPTED
            ) from None
        if summary.aborted == "filter-ignored":  # found by listing, before any change
            raise ExitError(summary.message or "Tallyfy seems to ignore the filter", EXIT_USAGE)
        cut_short = False
        if summary.dry_run and summary.journal is not None:
            cut_short = summary.aborted is not None and not read_journal(journal).plan_complete
            if not display.json:
                print_sample(summary.journal, display)
        return finish(conn, summary, display, journal=summary.journal, plan_cut_short=cut_short)


async def _run(
    client: Client,
    job: Job,
    reporter: Reporter,
    display: Display,
    *,
    notes: tuple[str, str],
    watch: RateWatch,
) -> Summary:
    """Run the job with its signal handlers, and ``watch`` for ``bulkruns rethrottle``.
    ``notes`` say how to carry on: at the start, and when a second Ctrl-C ends the job at
    once."""
    loop = asyncio.get_running_loop()
    async with client:
        stopping = False

        def on_signal() -> None:
            nonlocal stopping
            if stopping:
                # A second Ctrl-C: leave now. Every journal line is already flushed, so
                # resume loses nothing.
                reporter.stop()
                sys.stderr.write(f"\ninterrupted again: exiting now; {notes[1]}\n")
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)
            stopping = True
            reporter.print(
                "stopping: no new items; letting the requests in flight finish "
                "(press Ctrl-C again to quit at once)"
            )
            job.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        # Named at the start, so that even a kill -9 leaves the way to resume on screen.
        if not display.quiet:
            reporter.print(f"{job.operation.name}: journal {job.options.journal} ({notes[0]})")
        reporter.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch.run)
                summary = await job.run()
                tg.cancel_scope.cancel()
            return summary
        finally:
            reporter.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            interrupt_on_sigterm()  # removing the handler restored the default (exit 143)


def _rethrottle(job: Job, reporter: Reporter, rate: float) -> None:
    job.set_rate(rate)
    pace = f"{rate:g} requests/s" if rate else "unpaced"
    reporter.print(f"{job.operation.name}: pace changed to {pace} (bulkruns rethrottle)")


def _confirm_delete(conn: Connection, spec: JobSpec, confirm: Confirm) -> int:
    """Count what a delete would remove and have it confirmed; the count confirmed.

    The question names the organisation and a few of the runs. The count and the question
    (or the refusal) are shown even with ``--quiet``: a permanent change is never made
    unseen.

    Raises:
        ExitError: no ``--yes`` and no terminal to type the count on, or a wrong count
            typed (exit 2); the count could not be made (exit 3); interrupted (exit 130).
    """
    selection, options = confirm.selection, spec.options
    names = list(confirm.names)
    if isinstance(selection, int):  # a plan's planned items
        count, approx = selection, False
    elif isinstance(selection, IdSource):
        count, approx = selection.count, False
    else:
        archived = options.archived if spec.operation.selects_archived else None
        try:
            params = selection.params(archived=archived)
            count, names = asyncio.run(sample_runs(conn, params, size=_SAMPLE))
        except KeyboardInterrupt:
            raise ExitError("interrupted; nothing was changed", EXIT_INTERRUPTED) from None
        approx = selection.filters_locally
    # the job's limit counts the runs of all its sessions: this one may take what is left
    done = len(spec.resumed.done) if spec.resumed is not None else 0
    left = None if options.limit is None else max(0, options.limit - done)
    if left is not None and left < count:
        count, approx = left, False
    if count == 0:
        return 0
    what = f"{'up to ' if approx else ''}{count:,} run{'s' if count != 1 else ''}"
    whose = f"of organisation {conn.org!r}"
    if confirm.yes:
        _tell(f"delete: permanently deleting {what} {whose}")
        return count
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ExitError(
            f"delete would permanently remove {what} {whose}: add --yes to confirm "
            "(or run it on a terminal and type the count); nothing was changed"
        )
    # a question to a person at a terminal: no time before its lines
    sample = "; ".join(repr(name) for name in names[:_SAMPLE])
    more = " …" if count > len(names[:_SAMPLE]) else ""
    question = f"Permanently delete {what} {whose}? This cannot be undone.\n"
    if sample:
        question += f"  among them: {sample}{more}\n"
    try:  # a Ctrl-C that comes as the question is written is one at the prompt too
        sys.stderr.write(f"{question}Type {count} to confirm: ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) at the prompt
        sys.stderr.write("\n")  # the error then stands on a line of its own
        raise ExitError(
            "interrupted at the prompt; nothing was changed", EXIT_INTERRUPTED
        ) from None
    if not answer:  # end of input
        sys.stderr.write("\n")
        raise ExitError("delete not confirmed; nothing was changed")
    if answer.strip().replace(",", "") != str(count):
        raise ExitError(f"the count typed was not {count}; nothing was changed")
    return count
