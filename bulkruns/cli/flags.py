"""The options the job commands share, and what they come to: a filter or an ID file, the
job's settings as given, and how the outcome is shown. Values are parsed here and checked
where the settings are made (:class:`~bulkruns.JobOptions`, :class:`~bulkruns.RunFilter`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bulkruns.cli.inputs import Display, IdSource, default_journal
from bulkruns.errors import ConfigError
from bulkruns.model import ARCHIVED_STYLES, STATUSES, RunFilter, parse_when

__all__ = [
    "display",
    "filter_options",
    "given_options",
    "job_flags",
    "journal_path",
    "run_filter",
    "selection",
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


def _apply(*decorators: Decorator) -> Decorator:
    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return wrap


def filter_options(*, ids_file: bool = True) -> Decorator:
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
                help="Run IDs, one a line, instead of a query ('-' for standard input).",
            )
        )
    return _apply(*options)


def job_flags(*, log: bool = True, dry_run: bool = True) -> Decorator:
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
        click.option("--limit", type=int, help="Process at most N runs."),
        click.option(
            "--archived-style",
            type=click.Choice(ARCHIVED_STYLES),
            help="How archived runs are listed: archived=only, as Tallyfy's clients do, "
            "or status=archived [only].",
        ),
        click.option("--per-page", type=int, help="Runs per list page [100]."),
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


def journal_path(value: str | None, kind: str) -> Path:
    """The new log's path (the session checks that it can be created)."""
    return Path(value) if value else default_journal(kind)


def display(kw: dict[str, Any]) -> Display:
    return Display(quiet=kw["quiet"], json=kw["as_json"])
