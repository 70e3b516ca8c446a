"""Running one job for the command line: settings, lock, confirmation, signals, display,
summary and exit code.

``bulkruns.cli`` parses the command line into the objects here and calls :func:`run_job`
or :func:`list_runs`; this module turns the library's outcomes into what a person or a
cron job sees, and into the exit code:

    0    every item done
    1    finished, some items failed (or the selection could not be proven complete)
    2    usage, configuration or input error: nothing was sent (nothing changed)
    3    aborted (the token was refused, the failure budget ran out, listing failed, the
         result log could not be written); the job is resumable
    130  interrupted (Ctrl-C, SIGTERM); the job is resumable
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import shlex
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click
import orjson
from rich.console import Console

from bulkruns.client import DEFAULT_BASE_URL, Client, Page
from bulkruns.engine import Job, JobOptions, Progress, ProgressHook, Summary, send_paced
from bulkruns.errors import (
    APIError,
    AuthError,
    ConfigError,
    JournalError,
    TransportError,
)
from bulkruns.filters import ArchivedStyle, RunFilter, read_ids
from bulkruns.journal import JournalState, iter_records
from bulkruns.lock import JobLock
from bulkruns.ops import Operation, validate_fields
from bulkruns.pacing import Pacer
from bulkruns.progress import LiveDisplay, PlainLines, Reporter, summary_lines
from bulkruns.retry import RetryPolicy

__all__ = [
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Connection",
    "Display",
    "ExitError",
    "IdSource",
    "check_new_log",
    "default_journal",
    "exit_code",
    "interrupt_on_sigterm",
    "job_options",
    "list_runs",
    "parse_set",
    "preview_resume",
    "recorded_settings",
    "run_job",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ABORTED = 3
EXIT_INTERRUPTED = 130

PROG = "bulkruns"
SAMPLE_SIZE = 10


class ExitError(Exception):
    """End the command with one line on standard error and an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """Where jobs go and who sends them.

    Attributes:
        org: the organisation ID.
        token: the access token; never shown (left out of repr).
        base_url: the API root as given (the client normalises it); None for Tallyfy's.
        flags: the global options as typed, repeated in the resume and undo commands shown.
    """

    org: str
    token: str = field(repr=False)
    base_url: str | None = None
    flags: tuple[str, ...] = ()

    def client(self, *, concurrency: int = 16) -> Client:
        """A new client (not yet open).

        Raises:
            ConfigError: a malformed base URL, or plain http:// to a host not on loopback.
        """
        return Client(
            org=self.org,
            token=self.token,
            base_url=self.base_url or DEFAULT_BASE_URL,
            concurrency=concurrency,
        )

    def command(self, *words: str) -> str:
        """A bulkruns command line, with the global options this one was given."""
        return shlex.join([PROG, *self.flags, *words])


@dataclass(frozen=True, slots=True, kw_only=True)
class Display:
    """What the user sees. ``quiet``: errors only; ``json``: the summary as JSON on stdout."""

    quiet: bool = False
    json: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IdSource:
    """Run IDs from a file (or ``-``, standard input), validated and counted up front.

    A regular file is read twice, once to validate and count it before anything is sent and
    once as the job pins its plan (still before any request), so memory stays flat however
    long it is; the file must not change in between. Standard input, a pipe or a process
    substitution (``<(…)``) can only be read once, so their IDs are kept.
    Files are read as UTF-8; a byte-order mark and CRLF line ends are accepted.

    Attributes:
        path: the path given (``-`` for standard input).
        count: the number of distinct IDs.
        stamp: a regular file's size, modification time and inode when it was counted, to
            notice a file that changed before it was read again.
        kept: the IDs themselves, when the source cannot be read twice.
    """

    path: str
    count: int
    stamp: tuple[int, int, int] | None = None
    kept: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """The source as messages call it."""
        return "standard input" if self.path == "-" else self.path

    @classmethod
    def read(cls, path: str, stdin: IO[str] | None = None) -> IdSource:
        """Validate the IDs and count the distinct ones.

        Args:
            path: a file, or ``-`` for standard input.
            stdin: what ``-`` reads instead of the process's standard input (for tests).

        Raises:
            ConfigError: the file cannot be read, holds a line that is not a run ID, or
                holds no ID at all.
        """
        source = cls(path=path, count=0)
        stamp = None if path == "-" else source._stamp()
        with source._open(stdin) as lines:
            if stamp is not None:
                count = _distinct(source._ids(lines))
                source = cls(path=path, count=count, stamp=stamp)
                source._check_unchanged()
            else:
                kept = tuple(source._ids(lines))
                count = _distinct(kept)
                source = cls(path=path, count=count, kept=kept)
        if not count:
            raise ConfigError(f"{source.name} holds no run IDs")
        return source

    def __iter__(self) -> Iterator[str]:
        """The IDs in file order, duplicates included (the engine dedupes them).

        Raises:
            ConfigError: a file that no longer holds the IDs counted before.
        """
        if self.kept is not None:
            yield from self.kept
            return
        # No set of IDs here: the engine keeps one as it pins the plan, and one is enough.
        self._check_unchanged()
        with self._open(None) as lines:
            yield from self._ids(lines)
        self._check_unchanged()

    def _stamp(self) -> tuple[int, int, int] | None:
        """A regular file's size, modification time and inode; None for anything else."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.path}: {exc.strerror or exc}"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            return None
        return info.st_size, info.st_mtime_ns, info.st_ino

    def _check_unchanged(self) -> None:
        if self._stamp() != self.stamp:
            raise ConfigError(
                f"{self.path} changed while bulkruns was reading it; nothing was changed: "
                "run the command again once the file is final"
            )

    @contextlib.contextmanager
    def _open(self, stdin: IO[str] | None) -> Iterator[IO[str]]:
        if self.path == "-" and stdin is not None:
            yield stdin
            return
        try:
            if self.path == "-":  # the same descriptor, decoded as a file is
                stream = open(sys.stdin.fileno(), encoding="utf-8-sig", closefd=False)  # noqa: SIM115
            else:
                stream = open(self.path, encoding="utf-8-sig")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.name}: {exc.strerror or exc}"
            ) from None
        with stream:
            yield stream

    def _ids(self, lines: IO[str]) -> Iterator[str]:
        try:
            yield from read_ids(lines, source=self.name)
        except UnicodeDecodeError:
            raise ConfigError(f"{self.name} is not a UTF-8 text file of run IDs") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.name}: {exc.strerror or exc}"
            ) from None


def _distinct(ids: Iterable[str]) -> int:
    """The number of distinct IDs."""
    return len({int(run_id, 16) for run_id in ids})


def parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` options as update fields, checked.

    Each VALUE is read as JSON, else as a string: ``starred=true`` is a boolean,
    ``name=Q3 review`` a string, ``users=["a","b"]`` a list.

    Raises:
        ConfigError: an item without ``=``, a field set twice, an unknown field, or a
            value of the wrong kind.
    """
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                f"--set {item!r}: write FIELD=VALUE, such as --set starred=true "
                "or --set 'name=Q3 review'"
            )
        if name in fields:
            raise ConfigError(f"--set {name} is given twice")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        try:
            validate_fields({name: value})
        except ConfigError as exc:
            if isinstance(value, str | list | dict):
                raise
            # `--set name=123` read 123 as a number; say how to keep it text
            raise ConfigError(
                f"{exc} (--set values are read as JSON: quote text that looks like a "
                f"number, true/false or null, such as --set '{name}=\"{raw}\"')"
            ) from None
        fields[name] = value
    return fields


def job_options(
    flags: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    journal: Path | None,
) -> JobOptions:
    """Options from the flags given, over ``defaults`` (a resumed job's recorded settings,
    from :func:`recorded_settings`), over the library's defaults.

    Raises:
        ConfigError: a value out of range, or recorded settings that make no sense.
    """
    known = set(JobOptions.__dataclass_fields__)
    values = {k: v for k, v in (defaults or {}).items() if k in known}
    values.update(flags)
    values["journal"] = journal
    try:
        return JobOptions(**values)
    except TypeError as exc:  # a journal header with values of the wrong type
        raise ConfigError(f"the log's recorded settings are unusable: {exc}") from None


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return value >= low and (high is None or value <= high)


def _rate(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and value >= 0


# The settings a log records (JobOptions.to_record), and what each may hold.
_RECORDED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "concurrency": (lambda v: _whole(v, 1), "a whole number of at least 1"),
    "rate": (_rate, "a number of requests per second of 0 or more"),
    "max_attempts": (lambda v: _whole(v, 1), "a whole number of at least 1"),
    "max_failures": (lambda v: v is None or _whole(v, 0), "a whole number of 0 or more, or null"),
    "limit": (lambda v: v is None or _whole(v, 1), "a whole number of at least 1, or null"),
    "archived": (lambda v: v in ("status", "only"), '"status" or "only"'),
    "per_page": (lambda v: _whole(v, 1, 100), "a whole number from 1 to 100"),
}


def recorded_settings(header: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The job settings a result log's header records (``params``), checked, to be the
    defaults of a resumed or undone job.

    Settings this version does not know are left out (a newer version's log).

    Raises:
        JournalError: ``params`` is not an object, or holds a value of the wrong kind,
            naming the log and the field.
    """
    params = header.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise JournalError(
            f"{path}: the job's recorded settings (params) are not an object; the log is damaged"
        )
    settings: dict[str, Any] = {}
    for name, value in params.items():
        if name not in _RECORDED:
            continue
        accepts, kind = _RECORDED[name]
        if not accepts(value):
            shown = orjson.dumps(value).decode()
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise JournalError(
                f"{path}: the recorded setting params.{name} is {shown}, not {kind}; "
                "the log is damaged"
            )
        settings[name] = value
    return settings


def check_new_log(path: Path) -> None:
    """Check that a new job can create its result log, before anything is sent: the folder
    exists and takes a new file, and the file does not exist yet.

    The file is created, then removed again: only creating it shows that it can be made
    (permissions, a read-only or special filesystem such as /proc).

    Raises:
        ConfigError: the log exists, or cannot be created there.
    """
    if path.is_dir():
        raise ConfigError(f"--log {path} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path} already exists: resume it, or choose another --log")
    if not path.parent.is_dir():
        raise ConfigError(f"--log {path}: the folder {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists: resume it, or choose another --log") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the result log {path}: {exc.strerror or exc}") from None
    os.close(fd)
    path.unlink()


def default_journal(
    kind: str, *, now: datetime | None = None, directory: Path | None = None
) -> Path:
    """``./bulkruns-<kind>-<UTC timestamp>.jsonl``, with a suffix if that name is taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = directory if directory is not None else Path(".")
    path = folder / f"bulkruns-{kind}-{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"bulkruns-{kind}-{stamp}-{n}.jsonl"
    return path


def exit_code(summary: Summary) -> int:
    """The exit code a job's summary calls for: 130 for an interruption, 3 for any other
    abort (``auth``, ``failure-budget``, ``listing``, ``journal``…)."""
    if summary.aborted == "interrupted":
        return EXIT_INTERRUPTED
    if summary.aborted is not None:
        return EXIT_ABORTED
    if summary.failed or summary.message:
        return EXIT_FAILED
    return EXIT_OK


# -- running a job -------------------------------------------------------------------------

JobFactory = Callable[[Client, JobOptions, ProgressHook], Job]


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


def make_reporter(operation: str, display: Display) -> Reporter:
    """The live display on a terminal, plain lines otherwise, failures only when quiet."""
    if display.quiet:
        return Reporter(operation, err=sys.stderr)
    console = Console(file=sys.stderr)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveDisplay(operation, console=console)
    return PlainLines(operation, err=sys.stderr)


def _say(display: Display, line: str) -> None:
    """An informational line on standard error, unless quiet."""
    if not display.quiet:
        _tell(line)


def _tell(line: str) -> None:
    """A line on standard error, even when quiet."""
    print(line, file=sys.stderr, flush=True)


def run_job(
    conn: Connection,
    factory: JobFactory,
    *,
    operation: Operation,
    options: JobOptions,
    display: Display,
    journal: Path,
    new_log: bool,
    confirm_delete: tuple[RunFilter | IdSource | int, bool] | None = None,
) -> int:
    """Run one job and return the exit code: lock, confirm, run, summarise.

    Everything that can be checked without the server is checked before the first request,
    a delete's count included: the options (already built), the base URL, a new log's path,
    the lock, and the job itself (built once, unrun, before a delete's count).

    Args:
        conn: where to send it.
        factory: builds the job, given the open client, the options and the progress hook.
        operation: the operation the job applies (to word the output).
        options: the job's options; a delete's are capped at the count confirmed.
        display: quiet and JSON output.
        journal: the result log the job writes.
        new_log: the job starts the log (a new job or an undo), rather than resuming it.
        confirm_delete: for a permanent delete, the selection (a filter, an ID file, or the
            size of a plan) and whether ``--yes`` was given: the runs are counted and the
            count confirmed before anything changes.

    Raises:
        ExitError: a refused confirmation (exit 2), a failed count (exit 3), an interruption
            before the job started (exit 130).
        ConfigError: bad input (exit 2).
    """
    if new_log:
        check_new_log(journal)
    client = conn.client(concurrency=options.concurrency)  # validates the base URL
    lock = JobLock(client.org, client.base_url, command=operation.name)
    with lock:
        if confirm_delete is not None and not options.dry_run:
            count = _confirm_delete(conn, factory, operation, options, confirm_delete)
            if count == 0:
                _say(display, "delete: no runs match the selection; nothing to do")
                return _finish(conn, _empty_summary(operation.name), display, journal=None)
            # never delete more runs than the count the user agreed to
            options = _with_limit(options, count)
        reporter = make_reporter(operation.name, display)
        resume = conn.command("resume", os.path.abspath(journal))
        try:
            summary = asyncio.run(
                _run(client, factory, options, reporter, display, journal=journal, resume=resume)
            )
        except KeyboardInterrupt:
            raise ExitError(
                "interrupted before the job started; nothing was changed", EXIT_INTERRUPTED
            ) from None
        if summary.dry_run and summary.journal is not None and not display.json:
            _print_sample(summary.journal, display)
        return _finish(conn, summary, display, journal=summary.journal)


def _with_limit(options: JobOptions, count: int) -> JobOptions:
    limit = count if options.limit is None else min(options.limit, count)
    return replace(options, limit=limit)


async def _run(
    client: Client,
    factory: JobFactory,
    options: JobOptions,
    reporter: Reporter,
    display: Display,
    *,
    journal: Path,
    resume: str,
) -> Summary:
    loop = asyncio.get_running_loop()
    async with client:
        job = factory(client, options, reporter)
        stopping = False

        def on_signal() -> None:
            nonlocal stopping
            if stopping:
                # A second Ctrl-C: leave now. Every journal line is already flushed, so
                # resume loses nothing.
                reporter.stop()
                sys.stderr.write(f"\ninterrupted again: exiting now; continue with: {resume}\n")
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
        _say(
            display,
            f"{job.operation.name}: journal {journal} (if stopped, continue with: {resume})",
        )
        reporter.start()
        try:
            return await job.run()
        finally:
            reporter.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            interrupt_on_sigterm()  # removing the handler restored the default (exit 143)


def _finish(conn: Connection, summary: Summary, display: Display, *, journal: Path | None) -> int:
    code = exit_code(summary)
    resume = undo = None
    if journal is not None:
        log = os.path.abspath(journal)
        if code != EXIT_OK or summary.dry_run:
            resume = conn.command("resume", log)
        if not summary.dry_run and summary.ok and summary.operation != "delete":
            undo = conn.command("undo", log)
    if display.json:
        record = summary.to_dict()
        record.update(exit_code=code, resume_command=resume, undo_command=undo)
        sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        sys.stdout.flush()
        return code
    lines = summary_lines(summary, exit_code=code, resume=resume, undo=undo)
    if display.quiet:
        if code != EXIT_OK:
            sys.stderr.write("\n".join(lines) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    return code


def _empty_summary(operation: str) -> Summary:
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


def _print_sample(journal: Path, display: Display) -> None:
    """The first few runs of a dry run's plan."""
    sample: list[str] = []
    for record in iter_records(journal):
        if record.get("type") == "item" and record.get("outcome") == "planned":
            before = record.get("before")
            extra = f"  {orjson.dumps(before).decode()}" if before else ""
            sample.append(f"  {record['id']}{extra}")
            if len(sample) >= SAMPLE_SIZE:
                break
        elif record.get("type") == "planned":
            break
    if sample and not display.quiet:
        print("sample of the plan:", *sample, sep="\n")


# -- resume --dry-run ----------------------------------------------------------------------


def preview_resume(path: Path, state: JournalState, display: Display) -> int:
    """What resuming a log would do, from the log alone: nothing is sent, nothing written.

    Items done are skipped; failed, unfinished and planned ones are retried or applied; a
    job that selected runs with a query lists it again, which only the server can count.

    Raises:
        JournalError: a plan cut short, which resume refuses too.
    """
    header = state.header
    counts = state.counts
    if state.pinned and not state.plan_complete:
        raise JournalError(
            f"{path}: the job's plan was cut short before any change was made; "
            "start the job again instead"
        )
    query = not state.pinned and header.get("filter") is not None
    preview = {
        "log": str(path),
        "operation": header.get("operation"),
        "done": len(state.done),
        "to_do": len(state.pending),
        "failed": counts.get("failed", 0),
        "unfinished": counts.get("unfinished", 0),
        "planned": counts.get("planned", 0),
        "query_listed_again": query,
    }
    if display.json:
        sys.stdout.buffer.write(orjson.dumps(preview) + b"\n")
        sys.stdout.flush()
        return EXIT_OK
    lines = [
        f"resume would {preview['operation']} {len(state.pending):,} runs from {path}: "
        f"failed {preview['failed']:,}, unfinished {preview['unfinished']:,}, "
        f"not started {preview['planned']:,}",
        f"  already done, left alone: {len(state.done):,}",
        "  then it lists the job's query again, for runs that match it now (uncounted here)"
        if query
        else "  only the runs in the log: there is no query to list again",
        "  a preview: nothing was sent, and the log is unchanged",
    ]
    print(*lines, sep="\n")
    return EXIT_OK


# -- delete's confirmation -----------------------------------------------------------------


def _confirm_delete(
    conn: Connection,
    factory: JobFactory,
    operation: Operation,
    options: JobOptions,
    confirm: tuple[RunFilter | IdSource | int, bool],
) -> int:
    """Count what a delete would remove and have it confirmed; the count confirmed.

    The count and the question (or the refusal) are shown even with ``--quiet``: a
    permanent change is never made unseen.

    Raises:
        ExitError: no ``--yes`` and no terminal to type the count on, or a wrong count
            typed (exit 2); the count could not be made (exit 3); interrupted (exit 130).
    """
    selection, yes = confirm
    if isinstance(selection, int):  # a plan's planned items
        count, approx = selection, False
    elif isinstance(selection, IdSource):
        count, approx = selection.count, False
    else:
        try:
            count = asyncio.run(_count(conn, factory, operation, selection, options))
        except KeyboardInterrupt:
            raise ExitError("interrupted; nothing was changed", EXIT_INTERRUPTED) from None
        approx = selection.filters_locally
    if options.limit is not None and options.limit < count:
        count, approx = options.limit, False
    if count == 0:
        return 0
    what = f"{'up to ' if approx else ''}{count:,} run{'s' if count != 1 else ''}"
    if yes:
        _tell(f"delete: permanently deleting {what}")
        return count
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ExitError(
            f"delete would permanently remove {what}: add --yes to confirm "
            "(or run it on a terminal and type the count); nothing was changed"
        )
    try:
        answer = click.prompt(
            f"Permanently delete {what}? This cannot be undone. Type {count} to confirm",
            default="",
            show_default=False,
            err=True,
        )
    except click.Abort:  # Ctrl-C or end of input at the prompt
        raise ExitError("delete not confirmed; nothing was changed") from None
    if answer.strip().replace(",", "") != str(count):
        raise ExitError(f"the count typed was not {count}; nothing was changed")
    return count


def _ignore_progress(progress: Progress) -> None:
    """The progress hook of a job built only to check its settings."""


async def _count(
    conn: Connection,
    factory: JobFactory,
    operation: Operation,
    selection: RunFilter,
    options: JobOptions,
) -> int:
    archived = options.archived if operation.selects_archived else None
    params = selection.params(archived=archived)
    async with conn.client(concurrency=1) as client:
        # Built and dropped unrun: whatever the job would refuse, it refuses before the count.
        factory(client, options, _ignore_progress)
        page = await _fetch(client, params, 1, 1)
    return page.total


async def _fetch(
    client: Client,
    params: list[tuple[str, str]],
    number: int,
    per_page: int,
    pacer: Pacer | None = None,
) -> Page:
    """One list page, retried as the engine would; errors end the command (exit 3)."""
    try:
        return await send_paced(
            functools.partial(client.list_runs, params, page=number, per_page=per_page),
            pacer if pacer is not None else Pacer(0),
            RetryPolicy(),
        )
    except AuthError as exc:
        raise ExitError(
            f"Tallyfy refused the access token ({exc}); check TALLYFY_ACCESS_TOKEN or --token-file",
            EXIT_ABORTED,
        ) from None
    except (APIError, TransportError) as exc:
        raise ExitError(
            f"listing page {number} failed: {exc}; nothing was changed", EXIT_ABORTED
        ) from None


# -- list ----------------------------------------------------------------------------------


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
    params = _list_params(selection, archived)
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


def _list_params(selection: RunFilter, archived: ArchivedStyle) -> list[tuple[str, str]]:
    if selection.status == "archived" and archived == "only":
        return replace(selection, status=None).params(archived="only")
    return selection.params()


async def _list(
    client: Client,
    selection: RunFilter,
    params: list[tuple[str, str]],
    rate: float,
    per_page: int,
    limit: int | None,
) -> int:
    pacer = Pacer(rate)
    out = sys.stdout.buffer
    written = 0
    async with client:
        number, pages = 1, 1
        while number <= pages:
            page = await _fetch(client, params, number, per_page, pacer)
            if number == 1:
                pages = page.page_count
            for run in page.runs:
                if not selection.accepts(run):
                    continue
                out.write(orjson.dumps(run) + b"\n")
                written += 1
                if limit is not None and written >= limit:
                    out.flush()
                    return EXIT_OK
            out.flush()
            number += 1
    return EXIT_OK
