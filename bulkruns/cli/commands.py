"""The ``bulkruns`` commands: click's declarations, handed to the session as a job spec.

Commands parse their options into the library's settings (:mod:`bulkruns.cli.flags`) and
build a :class:`~bulkruns.JobSpec`; :func:`~bulkruns.cli.session.run_job` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bulkruns.cli import flags
from bulkruns.cli.helptext import epilog
from bulkruns.cli.inputs import job_options, parse_set
from bulkruns.cli.listing import list_runs
from bulkruns.cli.lock import lock_path
from bulkruns.cli.report import preview_resume, report
from bulkruns.cli.rethrottle import request_rate
from bulkruns.cli.root import connection, destination, guarded, main, options_after_command
from bulkruns.cli.session import Confirm, job_lock, run_job
from bulkruns.errors import ConfigError, JournalError
from bulkruns.job import JobOptions, JobSpec
from bulkruns.journal import JournalState, iter_records, read_journal
from bulkruns.model import (
    ARCHIVED_STYLES,
    UPDATABLE_FIELDS,
    ArchivedStyle,
    Operation,
    OperationName,
)

__all__ = ["main"]


def _new_job(
    kw: dict[str, Any],
    name: OperationName,
    *,
    fields: dict[str, Any] | None = None,
    archive_first: bool = False,
    yes: bool = False,
) -> int:
    conn = connection(timeout=kw["timeout"])
    operation = Operation(name=name, fields=fields or {}, archive_first=archive_first)
    selection = flags.selection(kw)
    journal = flags.journal_path(kw, name)
    options = job_options(flags.given_options(kw), journal=journal)
    try:
        spec = JobSpec.new(operation, selection, options)
    except ConfigError as exc:  # a --status that contradicts selecting archived runs
        raise _archived_status(exc, kw["status"], operation) from None
    return run_job(
        conn,
        spec,
        display=flags.display(kw),
        new_log=True,
        confirm_delete=Confirm(selection, yes) if name == "delete" else None,
    )


def _archived_status(error: ConfigError, status: str | None, operation: Operation) -> ConfigError:
    """A ``--status`` that selecting archived runs cannot combine with, said with the flag
    that resolves it for a delete (``--archive-first``, to delete live runs)."""
    wrong = operation.selects_archived and status not in (None, "archived")
    if not wrong or operation.name != "delete":
        return error  # as the library says it
    return ConfigError(f"{error}; to delete live runs, add --archive-first", setting=error.setting)


def _read_log(path_text: str) -> tuple[Path, JournalState]:
    """A result log, read whole."""
    path = Path(path_text)
    if not path.is_file():
        raise JournalError(f"{path}: no such result log")
    try:
        return path, read_journal(path)
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from None


def _timeout(kw: dict[str, Any], header: dict[str, Any]) -> float | None:
    """``--timeout`` (the client checks it), else the one the log's job ran with."""
    if kw["timeout"] is not None:
        return float(kw["timeout"])
    params = header.get("params")
    recorded = params.get("timeout") if isinstance(params, dict) else None
    if recorded is None:
        return None
    if isinstance(recorded, bool) or not isinstance(recorded, int | float) or not recorded > 0:
        raise JournalError(
            f"the log's recorded timeout {recorded!r} is not a number of seconds above 0; "
            "give --timeout SECONDS"
        )
    return float(recorded)


def _log_header(path_text: str) -> dict[str, Any]:
    """A result log's job record (its first line), read alone: where the job was sent."""
    path = Path(path_text)
    if not path.is_file():
        raise JournalError(f"{path}: no such result log")
    try:
        return next(iter_records(path))
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from None


def _command(
    name: str, *, connects: bool = True, locates: bool = False
) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand of ``bulkruns``: its help ends with examples, the environment it reads
    and its exit codes; one that connects takes the global options after it too, and one
    that only locates the organisation's job takes ``--org`` and ``--base-url``."""

    def wrap(function: Callable[..., Any]) -> click.Command:
        command = main.command(name, epilog=epilog(name))(function)
        if connects:  # listed after the command's own options
            command.params += options_after_command()
        elif locates:
            command.params += options_after_command(only=("--org", "--base-url"))
        return command

    return wrap


@_command("archive")
@flags.filter_options()
@flags.job_flags()
@guarded
def archive_command(**kw: Any) -> int:
    """Archive the selected runs (undo re-activates them)."""
    return _new_job(kw, "archive")


@_command("activate")
@flags.filter_options()
@flags.job_flags()
@guarded
def activate_command(**kw: Any) -> int:
    """Restore archived runs: selects archived runs matching the filter."""
    return _new_job(kw, "activate")


@_command("update")
@flags.filter_options()
@flags.job_flags()
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="FIELD=VALUE",
    help="A field to set, VALUE read as JSON, else as text; fields: "
    + ", ".join(UPDATABLE_FIELDS)
    + ".",
)
@guarded
def update_command(assignments: tuple[str, ...], **kw: Any) -> int:
    """Set fields on the selected runs: --set starred=true --set 'name=Q3 review'."""
    if not assignments:
        raise ConfigError("update needs at least one --set FIELD=VALUE, such as --set starred=true")
    return _new_job(kw, "update", fields=parse_set(assignments))


@_command("delete")
@flags.filter_options()
@flags.job_flags()
@click.option(
    "--archive-first",
    is_flag=True,
    help="Archive each run, then delete it (selects live runs); else archived runs only.",
)
@click.option("--yes", is_flag=True, help="Confirm the permanent delete without a prompt.")
@guarded
def delete_command(archive_first: bool, yes: bool, **kw: Any) -> int:
    """Permanently delete the selected runs (archived runs, unless --archive-first).

    Shows the count first, and needs --yes, or the count typed back on a terminal.
    """
    return _new_job(kw, "delete", archive_first=archive_first, yes=yes)


@_command("resume")
@click.argument("log", metavar="LOG", shell_complete=flags.complete_logs)
@flags.job_flags(log=False, dry_run=False)
@click.option(
    "--dry-run",
    "preview",
    is_flag=True,
    help="Only say what resuming would do, from the log: sends nothing, writes nothing.",
)
@click.option("--yes", is_flag=True, help="Confirm applying a permanent delete plan.")
@guarded
def resume_command(log: str, preview: bool, yes: bool, **kw: Any) -> int:
    """Continue the job a result log describes; a dry run's log is applied as its plan.

    Done items are skipped, failed and unfinished ones retried; it appends to the same log
    (so there is no --log). The job's recorded settings, its --timeout among them, are the
    defaults of the options.

    With --dry-run, it only counts from the log what it would retry or apply, and says
    whether the job's query would be listed again (runs that match it now are taken too;
    only that listing can count them): no request is sent and the log is left as it is.
    """
    header = _log_header(log)
    conn = connection(timeout=_timeout(kw, header), log=header)
    if preview:
        path, state = _read_log(log)
        spec = _resumed(path, state, kw)
        client = conn.client()  # checks the connection's settings, as the job would
        spec.check_owner(client.org, client.base_url)  # as the job would, before a request
        return preview_resume(path, state, flags.display(kw))
    # the log is read with the lock held: no other session of the job is writing it then
    with job_lock(conn, "resume"):
        path, state = _read_log(log)
        spec = _resumed(path, state, kw)
        confirm = None
        if spec.operation.name == "delete" and state.header.get("dry_run"):
            # Applying a delete plan is the delete itself: it is confirmed like one.
            names = (w.before.get("name") for w in state.pending.values() if w.before)
            shown = tuple(name for name in names if isinstance(name, str))[:5]
            confirm = Confirm(len(state.pending), yes, shown)
        display = flags.display(kw)
        return run_job(
            conn, spec, display=display, new_log=False, confirm_delete=confirm, locked=True
        )


def _resumed(path: Path, state: JournalState, kw: dict[str, Any]) -> JobSpec:
    recorded = JobOptions.recorded(state.header, where=path)
    options = job_options(flags.given_options(kw), defaults=recorded, journal=path)
    return JobSpec.resume(path, options, state=state)


@_command("undo")
@click.argument("source", metavar="LOG", shell_complete=flags.complete_logs)
@flags.job_flags()
@guarded
def undo_command(source: str, **kw: Any) -> int:
    """Reverse a job from its result log: archive and activate undo each other, an update
    is undone by setting the recorded before-state. A permanent delete cannot be undone.
    The undo keeps a log of its own (default ./bulkruns-undo-<UTC time>.jsonl).
    """
    header = _log_header(source)
    conn = connection(timeout=_timeout(kw, header), log=header)
    journal = flags.journal_path(kw, "undo")
    # the log is read with the lock held: the job it records is not running then
    with job_lock(conn, "undo"):
        path, state = _read_log(source)
        # the original job's pace and budget, not its limit: the undo reverses every change
        recorded = JobOptions.recorded(state.header, where=path)
        recorded.pop("limit", None)
        options = job_options(flags.given_options(kw), defaults=recorded, journal=journal)
        spec = JobSpec.undo(path, options, state=state)
        return run_job(conn, spec, display=flags.display(kw), new_log=True, locked=True)


@_command("list")
@flags.filter_options(ids_file=False)
@click.option("--ids", is_flag=True, help="Print only the run IDs, one a line.")
@click.option("--count", is_flag=True, help="Print only the number of matching runs.")
@click.option("--limit", type=int, help="Print at most N runs.")
@click.option(
    "--rate", type=float, default=10.0, show_default=True, help="Requests per second; 0 = unpaced."
)
@click.option("--per-page", type=int, default=100, show_default=True, help="Page size.")
@click.option(
    "--archived-style",
    type=click.Choice(ARCHIVED_STYLES),
    default="only",
    show_default=True,
    help="With --status archived: list with archived=only or status=archived.",
)
@flags.timeout_option()
@click.option("--ids-file", hidden=True)  # only to say why it is not taken
@guarded
def list_command(
    ids: bool,
    count: bool,
    limit: int | None,
    rate: float,
    per_page: int,
    archived_style: ArchivedStyle,
    timeout: float | None,
    ids_file: str | None,
    **kw: Any,
) -> int:
    """Print the runs a filter selects: as JSON lines on standard output (the default), their
    IDs (--ids, to feed --ids-file), or how many there are (--count)."""
    if ids_file is not None:
        raise ConfigError(
            "list prints what a query selects, so it takes no --ids-file; "
            "the job commands (archive, activate, update, delete) do"
        )
    if ids and count:
        raise ConfigError("--ids and --count print different things: give one of them")
    # the settings a listing shares with a job, checked as a job's are
    options = JobOptions(rate=rate, per_page=per_page, limit=limit, archived=archived_style)
    conn = connection(timeout=timeout)
    return list_runs(
        conn,
        flags.run_filter(kw),
        form="ids" if ids else "count" if count else "json",
        archived=options.archived,
        rate=options.rate,
        per_page=options.per_page,
        limit=options.limit,
    )


@_command("rethrottle", connects=False, locates=True)
@click.option(
    "--rate",
    type=float,
    required=True,
    help="Requests per second, listing included; 0 = unpaced.",
)
@guarded
def rethrottle_command(rate: float) -> int:
    """Change the pace of the organisation's running job, within a second: its display and
    its log show the change. It needs no token: it finds the job by its lock."""
    JobOptions(rate=rate)  # the rate is checked as a job's is
    org, base_url = destination()
    lock = lock_path(org, base_url)
    return request_rate(lock, rate, describe=f"organisation {org!r} at {base_url}")


@_command("report", connects=False)
@click.argument("log", metavar="LOG", shell_complete=flags.complete_logs)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--failed-ids", is_flag=True, help="Print only the failed run IDs, one a line (for --ids-file)."
)
@guarded
def report_command(log: str, as_json: bool, failed_ids: bool) -> int:
    """Say what a result log holds: the job, its outcomes over all its sessions, failures
    by error, each session's time and pace, and what resume would do next.

    It reads only the log: nothing is sent, and no token is needed.
    """
    if as_json and failed_ids:
        raise ConfigError("--json and --failed-ids print different things: give one of them")
    path, state = _read_log(log)
    return report(path, state, form="json" if as_json else "ids" if failed_ids else "text")
