"""The ``bulkruns`` command line.

Commands parse their options into the library's settings and hand them to
:mod:`bulkruns.runner`, which runs the job and words the outcome. Every user mistake ends
as one line, ``bulkruns: error: …``, on standard error with exit status 2, before any
request is sent; see :mod:`bulkruns.runner` for the other exit codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from bulkruns.client import DEFAULT_BASE_URL, Client, is_loopback_host, normalise_base_url
from bulkruns.engine import Job, JobOptions, ProgressHook, check_owner
from bulkruns.errors import BulkrunsError, ConfigError, JournalError
from bulkruns.filters import STATUSES, ArchivedStyle, RunFilter, parse_when
from bulkruns.journal import JournalState, read_journal
from bulkruns.ops import UPDATABLE_FIELDS, Operation, OperationName
from bulkruns.runner import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    Connection,
    Display,
    ExitError,
    IdSource,
    default_journal,
    interrupt_on_sigterm,
    job_options,
    list_runs,
    parse_set,
    preview_resume,
    recorded_settings,
    run_job,
)

if TYPE_CHECKING:
    from bulkruns.sandbox import SandboxConfig


__all__ = ["GlobalOptions", "main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalOptions:
    """The options given before the command, as ``ctx.obj``."""

    base_url: str | None
    org: str | None
    token_file: Path | None


class _InputError(click.ClickException):
    """One clear line and exit status 2: bad usage, configuration or input."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        _print_error(self.format_message())


class _Exit(_InputError):
    """One clear line and a given exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        setattr(self, "exit_code", code)  # noqa: B010 - click declares it a class variable


class _Group(click.Group):
    """The root group: a usage mistake is one line (not the usage block) and exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        interrupt_on_sigterm()  # from here on, SIGTERM ends the command as Ctrl-C does
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `bulkruns`: the help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            _print_error(f"{exc.format_message()}{where}")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            _print_error("aborted")
            sys.exit(EXIT_INTERRUPTED)
        # Without standalone mode, click returns the status a command exited with.
        sys.exit(code if isinstance(code, int) else 0)


def _print_error(message: str) -> None:
    click.echo(f"bulkruns: error: {message}", err=True)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: refuse ``inf`` and ``nan``, which FloatRange lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url",
    envvar="TALLYFY_BASE_URL",
    metavar="URL",
    help="Tallyfy API root [env TALLYFY_BASE_URL; default https://go.tallyfy.com/api].",
)
@click.option(
    "--org", envvar="TALLYFY_ORG_ID", metavar="ORG", help="Organisation ID [env TALLYFY_ORG_ID]."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the access token (else env TALLYFY_ACCESS_TOKEN).",
)
@click.pass_context
def main(
    ctx: click.Context, base_url: str | None, org: str | None, token_file: Path | None
) -> None:
    """Archive, restore, update or delete thousands of Tallyfy runs at once."""
    ctx.obj = GlobalOptions(base_url=base_url, org=org, token_file=token_file)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, help="Port to bind (0 = any free).")
@click.option("--runs", default=1000, show_default=True, help="Runs to seed.")
@click.option("--seed", default=1, show_default=True, help="Seed of the generated runs.")
@click.option(
    "--rate",
    default=600.0,
    show_default=True,
    help="Rate limit in requests per minute, per token (0 = none).",
    callback=_finite,
)
@click.option(
    "--window",
    default=60.0,
    show_default=True,
    callback=_finite,
    help="Rolling window of the limit, seconds.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    callback=_finite,
    help="Added latency, milliseconds.",
)
@click.option(
    "--jitter",
    default=0.0,
    show_default=True,
    callback=_finite,
    help="Latency jitter (±), milliseconds.",
)
@click.option(
    "--fail-before",
    default=0.0,
    callback=_finite,
    help="Share of mutations answered 503, unapplied.",
)
@click.option(
    "--fail-after", default=0.0, callback=_finite, help="Share of mutations answered 500, applied."
)
@click.option(
    "--reset", "reset_rate", default=0.0, callback=_finite, help="Share of connections dropped."
)
@click.option(
    "--stall", "stall_rate", default=0.0, callback=_finite, help="Share of requests held."
)
@click.option(
    "--stall-seconds",
    default=30.0,
    show_default=True,
    callback=_finite,
    help="How long a stall lasts.",
)
@click.option(
    "--delete-unarchived-status",
    type=click.Choice(["422", "404"]),
    default="422",
    show_default=True,
    help="Status of a permanent delete of a run not archived.",
)
@click.option(
    "--total-pages-quirk", is_flag=True, help="Compute total_pages with page size 10, as seen."
)
@click.option(
    "--links",
    type=click.Choice(["object", "list", "null"]),
    default="object",
    show_default=True,
    help="Shape of meta.pagination.links.",
)
@click.option("--token", help="Token to accept (default: a random one).")
@click.option("--org", "sandbox_org", default="sandbox-org", show_default=True, help="Org ID.")
@click.pass_context
def sandbox(
    ctx: click.Context,
    host: str,
    port: int,
    runs: int,
    seed: int,
    rate: float,
    window: float,
    latency: float,
    jitter: float,
    fail_before: float,
    fail_after: float,
    reset_rate: float,
    stall_rate: float,
    stall_seconds: float,
    delete_unarchived_status: str,
    total_pages_quirk: bool,
    links: str,
    token: str | None,
    sandbox_org: str,
) -> None:
    """Serve a local imitation of Tallyfy's run endpoints until Ctrl-C or SIGTERM.

    It binds 127.0.0.1 unless --host says otherwise: it is a rehearsal server, with a
    printed token, not something to expose.
    """
    if rate < 0:
        raise _InputError("--rate must be 0 (no limit) or a number of requests per minute")
    # --rate is per minute whatever the window, so a shorter window keeps the same pace.
    rate_limit = 0 if rate == 0 else max(1, round(rate * window / 60.0))
    # Imported here: aiohttp's server side is the slowest import, and only this command uses it.
    from bulkruns.sandbox import SandboxConfig

    try:
        config = SandboxConfig(
            org=sandbox_org,
            runs=runs,
            seed=seed,
            rate_limit=rate_limit,
            window=window,
            latency=latency / 1000.0,
            jitter=jitter / 1000.0,
            fail_before=fail_before,
            fail_after=fail_after,
            reset_rate=reset_rate,
            stall_rate=stall_rate,
            stall_seconds=stall_seconds,
            delete_unarchived_status=int(delete_unarchived_status),
            total_pages_quirk=total_pages_quirk,
            links_style=links,
        )
        if token is not None:
            config = dataclasses.replace(config, token=token)
    except ValueError as exc:
        raise _InputError(f"sandbox: {exc}") from None
    if not is_loopback_host(host):
        click.echo(
            f"warning: serving on {host}, not a loopback address: anyone who can reach it "
            "can read the token below",
            err=True,
        )
    try:
        asyncio.run(_serve(config, host, port))
    except OSError as exc:  # the port is taken, the address is not ours…
        raise _InputError(f"sandbox: cannot listen on {host}:{port}: {exc.strerror}") from None


async def _serve(config: SandboxConfig, host: str, port: int) -> None:
    from bulkruns.sandbox import Sandbox  # aiohttp's server side: see sandbox()

    if config.runs >= 20_000:
        click.echo(f"seeding {config.runs} runs…", err=True)
    async with Sandbox(config, host=host, port=port) as server:
        limit = (
            f"{config.rate_limit} requests per {config.window:g} s"
            if config.rate_limit
            else "no rate limit"
        )
        click.echo(
            f"bulkruns sandbox: {config.runs} runs, {limit}; Ctrl-C to stop\n"
            f"  base URL      {server.base_url}\n"
            f"  organisation  {server.org}\n"
            f"  token         {server.token}\n"
            f"  stats         {server.root_url}/_sandbox/stats\n"
            f"export TALLYFY_BASE_URL={server.base_url}\n"
            f"export TALLYFY_ORG_ID={server.org}\n"
            f"export TALLYFY_ACCESS_TOKEN={server.token}"
        )
        sys.stdout.flush()  # a parent process may be waiting for these lines on a pipe
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
    click.echo("sandbox stopped", err=True)


# -- the job commands ----------------------------------------------------------------------

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_FILTER_KEYS = (
    "q",
    "status",
    "owners",
    "checklist_id",
    "folder",
    "tag",
    "starred",
    "type",
    "groups",
    "task_status",
    "sort",
    "created_before",
    "updated_before",
)
_DATE_KEYS = ("created_before", "updated_before")


class _MaxFailures(click.ParamType[Any, Any]):
    """A number of failures (0 or more), or ``"none"`` for no failure budget."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "none":
            return "none"  # kept apart from None, which means the option was not given
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is not a number of failures or 'none'", param, ctx)
        if number < 0:
            self.fail("must be 0 or more, or 'none' for no failure budget", param, ctx)
        return number


def _apply(*decorators: Decorator) -> Decorator:
    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return wrap


def _filter_options(*, ids_file: bool = True) -> Decorator:
    options: list[Decorator] = [
        click.option("--status", metavar="S", help=f"Run status: {', '.join(STATUSES)}."),
        click.option("--q", metavar="TEXT", help="Text in the run's name."),
        click.option("--owners", metavar="IDS", help="Owner user IDs, comma-separated."),
        click.option("--checklist-id", metavar="ID", help="The template the runs came from."),
        click.option("--folder", metavar="ID", help="Folder ID."),
        click.option("--tag", metavar="ID", help="Tag ID."),
        click.option(
            "--starred/--not-starred", default=None, help="Only starred, or only unstarred."
        ),
        click.option("--type", metavar="T", help="Run type (procedure, form, …)."),
        click.option("--groups", metavar="IDS", help="Group IDs, comma-separated."),
        click.option("--task-status", metavar="S", help="A status of the runs' tasks."),
        click.option("--sort", metavar="FIELD", help="Sort field, e.g. -created_at."),
        click.option(
            "--created-before",
            metavar="WHEN",
            help="Created before: an ISO date/time or an age (90d, 12h).",
        ),
        click.option(
            "--updated-before",
            metavar="WHEN",
            help="Last updated before: an ISO date/time or an age (90d, 12h).",
        ),
    ]
    if ids_file:
        options.append(
            click.option(
                "--ids-file",
                metavar="PATH|-",
                help="Run IDs, one a line, instead of a query ('-' for standard input).",
            )
        )
    return _apply(*options)


def _job_options(*, log: bool = True, dry_run: bool = True) -> Decorator:
    options: list[Decorator] = []
    if log:
        options.append(
            click.option(
                "--log",
                metavar="PATH",
                help="The result log (default ./bulkruns-<op>-<UTC time>.jsonl).",
            )
        )
    options += [
        click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight [16]."),
        click.option(
            "--rate",
            type=click.FloatRange(min=0),
            callback=_finite,
            help="Requests per second, listing included; 0 = unpaced [10, Tallyfy's 600/min].",
        ),
        click.option(
            "--max-attempts", type=click.IntRange(min=1), help="Attempts per request [8]."
        ),
        click.option(
            "--max-failures",
            type=_MaxFailures(),
            help="Abort after more failed items than this; 'none' for no limit [100].",
        ),
        click.option("--limit", type=click.IntRange(min=1), help="Process at most N runs."),
        click.option(
            "--archived-style",
            type=click.Choice(["status", "only"]),
            help="List archived runs with status=archived or archived=only [status].",
        ),
        click.option("--per-page", type=click.IntRange(1, 100), help="Runs per list page [100]."),
    ]
    if dry_run:
        options.append(
            click.option(
                "--dry-run", is_flag=True, help="List and record the plan; change nothing."
            )
        )
    options += [
        click.option("--quiet", is_flag=True, help="Errors only."),
        click.option(
            "--json", "as_json", is_flag=True, help="Print the summary as one JSON object."
        ),
    ]
    return _apply(*options)


def _connection() -> Connection:
    """Organisation, token and base URL: flags over environment over defaults."""
    root = click.get_current_context().find_root()
    g: GlobalOptions = root.obj
    org = (g.org or "").strip()
    if not org:
        raise ConfigError(
            "no organisation given: pass --org ORG or set TALLYFY_ORG_ID "
            "to your Tallyfy Organization ID"
        )
    if g.token_file is not None:
        try:
            token = g.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(f"cannot read the token file {g.token_file}: {reason}") from None
        if not token:
            raise ConfigError(f"the token file {g.token_file} is empty")
    else:
        token = os.environ.get("TALLYFY_ACCESS_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "no access token: set TALLYFY_ACCESS_TOKEN or pass --token-file PATH "
                "(never on the command line)"
            )
    if any(c.isspace() for c in token):
        raise ConfigError("the access token contains whitespace; check the token file")
    # The resume and undo commands shown later repeat the global options typed here.
    flags: list[str] = []
    for name, value in (
        ("base_url", g.base_url),
        ("org", g.org),
        ("token_file", g.token_file),
    ):
        if value is not None and root.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            # a file's absolute path, so the command works from any folder (cron's is $HOME)
            shown = os.path.abspath(value) if isinstance(value, Path) else value
            flags += [f"--{name.replace('_', '-')}", shown]
    return Connection(org=org, token=token, base_url=g.base_url, flags=tuple(flags))


def _split(value: str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(part.strip() for part in value.split(","))
    if not all(items):
        raise ConfigError(f"--{name} takes IDs separated by commas, such as --{name} id1,id2")
    return items


def _run_filter(kw: dict[str, Any]) -> RunFilter:
    when = {k: parse_when(kw[k]) if kw[k] is not None else None for k in _DATE_KEYS}
    return RunFilter(
        q=kw["q"],
        status=kw["status"],
        owners=_split(kw["owners"], "owners"),
        checklist_id=kw["checklist_id"],
        folder=kw["folder"],
        tag=kw["tag"],
        starred=kw["starred"],
        type=kw["type"],
        groups=_split(kw["groups"], "groups"),
        task_status=kw["task_status"],
        sort=kw["sort"],
        **when,
    )


def _selection(kw: dict[str, Any]) -> RunFilter | IdSource:
    selection = _run_filter(kw)
    if kw["ids_file"] is None:
        return selection
    if selection != RunFilter():
        given = [f"--{k.replace('_', '-')}" for k in _FILTER_KEYS if kw[k] is not None]
        raise ConfigError(
            f"--ids-file selects the runs itself: leave out {', '.join(given)} "
            "(or drop --ids-file to use the filter)"
        )
    return IdSource.read(kw["ids_file"])


def _flags(kw: dict[str, Any]) -> dict[str, Any]:
    """The job options given on the command line (the others come from defaults)."""
    flags = {
        name: kw[name]
        for name in ("concurrency", "rate", "max_attempts", "limit", "per_page")
        if kw.get(name) is not None
    }
    if kw.get("archived_style") is not None:
        flags["archived"] = kw["archived_style"]
    if kw.get("max_failures") is not None:
        failures = kw["max_failures"]
        flags["max_failures"] = None if failures == "none" else failures
    if kw.get("dry_run"):
        flags["dry_run"] = True
    return flags


def _journal_path(value: str | None, kind: str) -> Path:
    """The new log's path (``run_job`` checks that it can be created)."""
    return Path(value) if value else default_journal(kind)


def _read_log(path_text: str, conn: Connection) -> tuple[Path, JournalState]:
    """A result log, read whole and checked against the organisation and server, before
    the lock is taken or anything is sent."""
    path = Path(path_text)
    if not path.is_file():
        raise JournalError(f"{path}: no such result log")
    try:
        state = read_journal(path)
    except OSError as exc:
        raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from None
    base_url = normalise_base_url(conn.base_url or DEFAULT_BASE_URL)
    check_owner(state.header, conn.org, base_url, path)
    return path, state


def _display(kw: dict[str, Any]) -> Display:
    return Display(quiet=kw["quiet"], json=kw["as_json"])


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError an exception is, or holds in its (nested) exception groups."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


def _guarded(function: Callable[..., int]) -> Callable[..., None]:
    """Run a command body; map its errors to one line and an exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = function(*args, **kwargs)
        except ExitError as exc:
            raise _Exit(exc.message, exc.code) from None
        except ConfigError as exc:
            raise _InputError(str(exc)) from None
        except BulkrunsError as exc:  # an API or transport error outside a job
            raise _Exit(str(exc), EXIT_ABORTED) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside a job's own handling
            raise _Exit("interrupted", EXIT_INTERRUPTED) from None
        except Exception as exc:
            # The system refused something the library did not expect to fail (a full
            # disk, a file size limit…): one line, never a traceback.
            error = _os_error(exc)
            if error is None:
                raise
            where = f"{error.filename}: " if error.filename else ""
            raise _InputError(f"{where}{error.strerror or error}") from None
        click.get_current_context().exit(code)

    return wrapper


def _new_job(
    kw: dict[str, Any],
    name: OperationName,
    *,
    fields: dict[str, Any] | None = None,
    archive_first: bool = False,
    yes: bool = False,
) -> int:
    conn = _connection()
    operation = Operation(name=name, fields=fields or {}, archive_first=archive_first)
    selection = _selection(kw)
    journal = _journal_path(kw["log"], name)
    options = job_options(_flags(kw), journal=journal)
    if isinstance(selection, RunFilter) and operation.selects_archived:
        try:
            selection.params(archived=options.archived)
        except ConfigError as exc:  # a --status that contradicts selecting archived runs
            hint = "; to delete live runs, add --archive-first" if name == "delete" else ""
            raise ConfigError(f"{exc}{hint}") from None

    def build(client: Client, options: JobOptions, hook: ProgressHook) -> Job:
        return Job(client, operation, selection, options, on_progress=hook)

    return run_job(
        conn,
        build,
        operation=operation,
        options=options,
        display=_display(kw),
        journal=journal,
        new_log=True,
        confirm_delete=(selection, yes) if name == "delete" else None,
    )


@main.command("archive")
@_filter_options()
@_job_options()
@_guarded
def archive_command(**kw: Any) -> int:
    """Archive the selected runs (undo re-activates them)."""
    return _new_job(kw, "archive")


@main.command("activate")
@_filter_options()
@_job_options()
@_guarded
def activate_command(**kw: Any) -> int:
    """Restore archived runs: selects archived runs matching the filter."""
    return _new_job(kw, "activate")


@main.command("update")
@_filter_options()
@_job_options()
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="FIELD=VALUE",
    help="A field to set, VALUE read as JSON, else as text; fields: "
    + ", ".join(UPDATABLE_FIELDS)
    + ".",
)
@_guarded
def update_command(assignments: tuple[str, ...], **kw: Any) -> int:
    """Set fields on the selected runs: --set starred=true --set 'name=Q3 review'."""
    if not assignments:
        raise ConfigError("update needs at least one --set FIELD=VALUE, such as --set starred=true")
    return _new_job(kw, "update", fields=parse_set(assignments))


@main.command("delete")
@_filter_options()
@_job_options()
@click.option(
    "--archive-first",
    is_flag=True,
    help="Archive each run, then delete it (selects live runs); else archived runs only.",
)
@click.option("--yes", is_flag=True, help="Confirm the permanent delete without a prompt.")
@_guarded
def delete_command(archive_first: bool, yes: bool, **kw: Any) -> int:
    """Permanently delete the selected runs (archived runs, unless --archive-first).

    Shows the count first, and needs --yes, or the count typed back on a terminal.
    """
    return _new_job(kw, "delete", archive_first=archive_first, yes=yes)


@main.command("resume")
@click.argument("log", metavar="LOG")
@_job_options(log=False, dry_run=False)
@click.option(
    "--dry-run",
    "preview",
    is_flag=True,
    help="Only say what resuming would do, from the log: sends nothing, writes nothing.",
)
@click.option("--yes", is_flag=True, help="Confirm applying a permanent delete plan.")
@_guarded
def resume_command(log: str, preview: bool, yes: bool, **kw: Any) -> int:
    """Continue the job a result log describes; a dry run's log is applied as its plan.

    Done items are skipped, failed and unfinished ones retried; it appends to the same log
    (so there is no --log). The job's recorded settings are the defaults of the options.

    With --dry-run, it only counts from the log what it would retry or apply, and says
    whether the job's query would be listed again (runs that match it now are taken too;
    only that listing can count them): no request is sent and the log is left as it is.
    """
    conn = _connection()
    path, state = _read_log(log, conn)
    header = state.header
    operation = Operation.from_record(header)
    options = job_options(_flags(kw), defaults=recorded_settings(header, path), journal=path)
    if preview:
        return preview_resume(path, state, _display(kw))
    confirm: tuple[int, bool] | None = None
    if operation.name == "delete" and header.get("dry_run"):
        # Applying a delete plan is the delete itself: it is confirmed like one.
        confirm = (len(state.pending), yes)

    def build(client: Client, options: JobOptions, hook: ProgressHook) -> Job:
        return Job.resume(client, path, options, on_progress=hook, state=state)

    return run_job(
        conn,
        build,
        operation=operation,
        options=options,
        display=_display(kw),
        journal=path,
        new_log=False,
        confirm_delete=confirm,
    )


@main.command("undo")
@click.argument("source", metavar="LOG")
@_job_options()
@_guarded
def undo_command(source: str, **kw: Any) -> int:
    """Reverse a job from its result log: archive and activate undo each other, an update
    is undone by setting the recorded before-state. A permanent delete cannot be undone.
    The undo keeps a log of its own (default ./bulkruns-undo-<UTC time>.jsonl).
    """
    conn = _connection()
    path, state = _read_log(source, conn)
    header = state.header
    inverse = Operation.from_record(header).inverse()  # a delete fails here
    journal = _journal_path(kw["log"], "undo")
    # Job.undo refuses this too, but only once the job is built; by then run_job's check
    # that a new log does not exist would have said "already exists: resume it", which
    # is wrong advice here.
    if journal.resolve() == path.resolve():
        raise ConfigError("the undo needs a log of its own, not the log it undoes")
    # the original job's pace and budget, but not its limit: the undo reverses every change
    recorded = recorded_settings(header, path)
    recorded.pop("limit", None)
    options = job_options(_flags(kw), defaults=recorded, journal=journal)

    def build(client: Client, options: JobOptions, hook: ProgressHook) -> Job:
        return Job.undo(client, path, options, on_progress=hook, state=state)

    return run_job(
        conn,
        build,
        operation=inverse,
        options=options,
        display=_display(kw),
        journal=journal,
        new_log=True,
    )


@main.command("list")
@_filter_options(ids_file=False)
@click.option("--limit", type=click.IntRange(min=1), help="Print at most N runs.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    callback=_finite,
    help="Requests per second; 0 = unpaced.",
)
@click.option(
    "--per-page", type=click.IntRange(1, 100), default=100, show_default=True, help="Page size."
)
@click.option(
    "--archived-style",
    type=click.Choice(["status", "only"]),
    default="status",
    show_default=True,
    help="With --status archived: list with status=archived or archived=only.",
)
@click.option("--ids-file", hidden=True)  # only to say why it is not taken
@_guarded
def list_command(
    limit: int | None,
    rate: float,
    per_page: int,
    archived_style: ArchivedStyle,
    ids_file: str | None,
    **kw: Any,
) -> int:
    """Print the runs a filter selects, as JSON lines on standard output."""
    if ids_file is not None:
        raise ConfigError(
            "list prints what a query selects, so it takes no --ids-file; "
            "the job commands (archive, activate, update, delete) do"
        )
    conn = _connection()
    return list_runs(
        conn,
        _run_filter(kw),
        archived=archived_style,
        rate=rate,
        per_page=per_page,
        limit=limit,
    )
