"""What a job is, before it runs: :class:`JobSpec`, built and checked without an event loop
or a request, whether the job is new, resumed from its log, or the undo of one.

Every rule about what a log allows is checked here, once, for the library and the command
line alike: a log of another organisation or server, a plan cut short, malformed items, an
undo writing to the log it undoes, an undo of a permanent delete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkruns.api import server_key
from bulkruns.errors import ConfigError, JournalError
from bulkruns.job.options import JobOptions
from bulkruns.journal import JournalState, read_journal
from bulkruns.model import Operation, RunFilter, Work
from bulkruns.select import undo_work

__all__ = ["JobSpec", "check_owner"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """Everything a job needs but the client.

    Attributes:
        operation: what to do to each run.
        options: how to run; ``options.journal`` is the log written.
        query: runs to list, for a job that selects by filter.
        pinned: runs given up front, written to the log as its plan before any request
            (a new job over IDs, an undo).
        resumed: the log this job continues, as read, for a resumed job.
        undo_of: the log an undo reverses.
        origin: the log the job was built from (the one it continues, or undoes), and its
            job record: it must be the same organisation's, on the same server.
    """

    operation: Operation
    options: JobOptions
    query: RunFilter | None = None
    pinned: Iterable[Work] | None = None
    resumed: JournalState | None = None
    undo_of: Path | None = None
    origin: tuple[Path, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        own_fields = self.undo_of is not None or (self.resumed is not None and self.resumed.pinned)
        operation = self.operation
        if operation.name == "update" and not operation.fields and not own_fields:
            raise ConfigError("update needs at least one field to set, such as --set starred=true")
        if self.query is not None and operation.selects_archived:
            self.query.params(archived=self.options.archived)  # raises on a conflicting status
        elif self.query is not None and self.query.status == "archived":
            what = "live runs, then deletes them" if operation.archive_first else "live runs"
            raise ConfigError(
                f"{operation.name} selects {what}, so --status archived would select none "
                "(Tallyfy answers 404 for an archived run); activate and delete select them",
                setting="status",
            )

    @classmethod
    def new(
        cls,
        operation: Operation,
        selection: RunFilter | Iterable[str],
        options: JobOptions | None = None,
    ) -> JobSpec:
        """A new job over a filter, or over run IDs (checked as the plan is written)."""
        options = options or JobOptions()
        if isinstance(selection, RunFilter):
            if selection.is_empty and not selection.all_runs:
                raise ConfigError(
                    "no filter given: that would select every run of the organisation; "
                    "pass --all if that is what is meant",
                    setting="all_runs",
                )
            return cls(operation=operation, options=options, query=selection)
        pinned = (Work(run_id) for run_id in selection)
        return cls(operation=operation, options=options, pinned=pinned)

    @classmethod
    def resume(
        cls,
        journal: str | os.PathLike[str],
        options: JobOptions | None = None,
        *,
        state: JournalState | None = None,
    ) -> JobSpec:
        """The job a result log describes, continued in the same log.

        Done items are skipped, failed and unfinished ones retried, and the rest of the
        selection processed; a dry run's log is a plan, applied exactly. The job's recorded
        limit holds across sessions unless ``options`` sets another. ``state`` is the log as
        :func:`~bulkruns.journal.read_journal` read it, when the caller has it already.

        Raises:
            ConfigError: ``options`` ask for a dry run, which would write a plan into the
                job's own log.
            JournalError: the log is unreadable, holds a plan that was cut short, or holds
                malformed items.
        """
        if options is not None and options.dry_run:
            raise ConfigError(
                "a resumed job is never a dry run: its plan would be written into the job's "
                "own log; the command line's resume --dry-run says what it would do"
            )
        path = Path(journal)
        state = state if state is not None else read_journal(path)
        header = state.header
        if state.pinned and not state.plan_complete:
            raise JournalError(
                f"{path}: the job's plan was cut short before any change was made; "
                "start the job again instead"
            )
        operation = Operation.from_record(header)
        for item in state.pending.values():
            for name in ("before", "fields"):
                if not isinstance(getattr(item, name), dict | None):
                    raise JournalError(f"{path}: run {item.id} has a malformed {name} record")
        query = None
        if not state.pinned:
            if header.get("filter") is None:
                raise JournalError(f"{path}: the log has neither a filter nor planned items")
            query = RunFilter.from_record(header["filter"])
        base = options or JobOptions()
        recorded = header.get("params")
        limit = recorded.get("limit") if isinstance(recorded, dict) else None
        if base.limit is not None or not isinstance(limit, int) or isinstance(limit, bool):
            limit = base.limit
        options = base.replace(journal=path, limit=limit)
        return cls(
            operation=operation,
            options=options,
            query=query,
            resumed=state,
            origin=(path, header),
        )

    @classmethod
    def undo(
        cls,
        journal: str | os.PathLike[str],
        options: JobOptions | None = None,
        *,
        state: JournalState | None = None,
    ) -> JobSpec:
        """The job that reverses a finished one, from its result log, with a log of its own
        (``options.journal``). ``state`` is the log as read, when the caller has it already.

        Raises:
            JournalError: the log is unreadable, or runs may have been changed without a
                recorded outcome (resume the job first).
            ConfigError: the job was a permanent delete, which nothing undoes, or the undo
                would write to the log it undoes.
        """
        source = Path(journal)
        state = state if state is not None else read_journal(source)
        original = Operation.from_record(state.header)
        inverse = original.inverse()
        options = options or JobOptions()
        own = options.journal_path
        if own is not None and own.resolve() == source.resolve():
            raise ConfigError("the undo needs a log of its own, not the log it undoes")
        unfinished = sum(1 for p in state.pending.values() if p.unknown)
        if unfinished:
            raise JournalError(
                f"{source}: {unfinished} runs may have been changed without a recorded "
                "outcome; resume the job first, then undo it"
            )
        return cls(
            operation=inverse,
            options=options,
            pinned=undo_work(source, original),
            undo_of=source.resolve(),
            origin=(source, state.header),
        )

    def check_owner(self, org: str, base_url: str) -> None:
        """Refuse a job built from a log written for another organisation or server (a
        server's base URL may be spelt another way: ``https://api.tallyfy.com`` is
        ``https://go.tallyfy.com/api``).

        Raises:
            JournalError: the log's org or base URL differs from the ones given.
        """
        if self.origin is not None:
            path, header = self.origin
            check_owner(header, org, base_url, path)


def check_owner(header: dict[str, Any], org: str, base_url: str, path: Path) -> None:
    """Refuse a result log written for another organisation or server.

    Raises:
        JournalError: the log's org or base URL differs from the ones given.
    """
    if header.get("org") != org:
        raise JournalError(
            f"{path} records a job of organisation {header.get('org')!r}, "
            f"not {org!r}: use the same --org, or the right log"
        )
    recorded = header.get("base_url")
    try:
        same = isinstance(recorded, str) and server_key(recorded) == server_key(base_url)
    except ConfigError:
        same = False
    if not same:
        raise JournalError(
            f"{path} records a job against {header.get('base_url')!r}, "
            f"not {base_url!r}: pass the same --base-url"
        )
