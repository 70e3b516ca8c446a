"""The options the job commands share, and what they come to: a filter or an ID file, the
job's settings as given, and how the outcome is shown. Values are parsed here and checked
where the settings are made (:class:`~bulkruns.JobOptions`, :class:`~bulkruns.RunFilter`,
the client for ``--timeout``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from bulkruns.cli.helptext import AGES
from bulkruns.cli.inputs import Display, IdSource, default_journal
from bulkruns.errors import ConfigError
from bulkruns.model import ARCHIVED_STYLES, STATUSES, RunFilter, parse_duration, parse_when

__all__ = [
    "complete_logs",
    "display",
    "filter_options",
    "given_options",
    "job_flags",
    "journal_path",
    "run_filter",
    "selection",
    "timeout_option",
]

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


class _Duration(click.ParamType[Any, Any]):
    """A wait such as ``90s``, ``30min`` or ``2h`` (a bare number is seconds), in seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


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
        return number


def _complete_status(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return [CompletionItem(status) for status in STATUSES if status.startswith(incomplete)]


def _complete_file(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return [CompletionItem(incomplete, type="file")]


def complete_logs(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of a LOG: the result logs (``*.jsonl``) and folders that start with
    what is typed."""
    head, sep, prefix = incomplete.rpartition(os.sep)
    folder = Path(head + sep if sep else ".")
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    items = []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        if entry.is_dir():
            items.append(CompletionItem(f"{head}{sep}{name}{os.sep}"))
        elif name.endswith(".jsonl"):
            items.append(CompletionItem(f"{head}{sep}{name}"))
    return items


def _apply(*decorators: Decorator) -> Decorator:
    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return wrap


def filter_options(*, ids_file: bool = True) -> Decorator:
    options: list[Decorator] = [
        click.option(
            "--status",
            metavar="S",
            shell_complete=_complete_status,
            help=f"Run status: {', '.join(STATUSES)}.",
        ),
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
            help=f"Created before: an ISO date/time, or an age: {AGES}.",
        ),
        click.option(
            "--updated-before",
            metavar="WHEN",
            help=f"Last updated before: an ISO date/time, or an age: {AGES}.",
        ),
    ]
    options.append(
        click.option(
            "--all",
            "all_runs",
            is_flag=True,
            help="Every run of the organisation is meant: needed with no filter, or with a "
            "filter Tallyfy seems to ignore.",
        )
    )
    if ids_file:
        options.append(
            click.option(
                "--ids-file",
                metavar="PATH|-",
                shell_complete=_complete_file,
                help="Run IDs, one a line, instead of a query ('-' for standard input).",
            )
        )
    return _apply(*options)


def job_flags(*, log: bool = True, dry_run: bool = True) -> Decorator:
    options: list[Decorator] = []
    if log:
        options += [
            click.option(
                "--log",
                metavar="PATH",
                shell_complete=_complete_file,
                help="The result log (default ./bulkruns-<op>-<UTC time>.jsonl).",
            ),
            click.option(
                "--log-dir",
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                help="The folder of the result log, under its default name (not with --log).",
            ),
        ]
    options += [
        click.option("--concurrency", type=int, help="Requests in flight [16]."),
        click.option(
            "--rate",
            type=float,
            help="Requests per second, listing included; 0 = unpaced [10, Tallyfy's 600/min].",
        ),
        click.option("--max-attempts", type=int, help="Attempts per request [8]."),
        click.option(
            "--max-failures",
            type=_MaxFailures(),
            help="Abort after more failed items than this; 'none' for no limit [100].",
        ),
        click.option(
            "--max-wait",
            type=_Duration(),
            help="The longest pause Tallyfy may ask for (an hourly cap), or 429s in a row may "
            "add up to, such as 30min or 2h; past it the job stops, resumable [1h].",
        ),
        click.option("--limit", type=int, help="Process at most N runs."),
        click.option(
            "--archived-style",
            type=click.Choice(ARCHIVED_STYLES),
            help="How archived runs are listed: archived=only, as Tallyfy's clients do, "
            "or status=archived [only].",
        ),
        click.option("--per-page", type=int, help="Runs per list page [100]."),
        timeout_option(),
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


def timeout_option() -> Decorator:
    """``--timeout SECONDS``: how long a request's answer is waited for."""
    return click.option(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="Seconds to wait for a request's answer; a stalled one is retried [60].",
    )


def _split(value: str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = tuple(part.strip() for part in value.split(","))
    if not all(items):
        raise ConfigError(f"--{name} takes IDs separated by commas, such as --{name} id1,id2")
    return items


def run_filter(kw: dict[str, Any]) -> RunFilter:
    created, updated = (parse_when(kw[k]) if kw[k] is not None else None for k in _DATE_KEYS)
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
        created_before=created,
        updated_before=updated,
        all_runs=bool(kw.get("all_runs")),
    )


def selection(kw: dict[str, Any]) -> RunFilter | IdSource:
    query = run_filter(kw)
    if kw["ids_file"] is None:
        return query
    if query != RunFilter():
        given = [f"--{k.replace('_', '-')}" for k in _FILTER_KEYS if kw[k] is not None]
        given += ["--all"] if query.all_runs else []
        raise ConfigError(
            f"--ids-file selects the runs itself: leave out {', '.join(given)} "
            "(or drop --ids-file to use the filter)"
        )
    return IdSource.read(kw["ids_file"])


def given_options(kw: dict[str, Any]) -> dict[str, Any]:
    """The job options given on the command line (the others come from defaults)."""
    flags = {
        name: kw[name]
        for name in ("concurrency", "rate", "max_attempts", "max_wait", "limit", "per_page")
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


def journal_path(kw: dict[str, Any], kind: str) -> Path:
    """The new log's path, from ``--log`` or ``--log-dir`` (the session checks that it can be
    created).

    Raises:
        ConfigError: both are given.
    """
    log, folder = kw["log"], kw["log_dir"]
    if log and folder is not None:
        raise ConfigError(
            "--log names the result log and --log-dir the folder of its default name: "
            "give one of them"
        )
    return Path(log) if log else default_journal(kind, directory=folder)


def display(kw: dict[str, Any]) -> Display:
    return Display(quiet=kw["quiet"], json=kw["as_json"])
