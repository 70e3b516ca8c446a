"""What a job selects by query: a run filter, sent to Tallyfy as list parameters, plus the
dates bulkruns checks on each listed run itself. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from bulkruns.errors import ConfigError
from bulkruns.model.when import parse_timestamp

__all__ = ["ARCHIVED_STYLES", "STATUSES", "ArchivedStyle", "RunFilter"]

STATUSES = ("active", "complete", "problem", "delayed", "archived")

# The filters a listed run cannot show: text search, folder, tag, groups, its tasks' status.
_UNSHOWN = ("q", "folder", "tag", "groups", "task_status")
_ABSENT = object()
# The filters given as text: sent as they are.
_TEXTS = ("q", "checklist_id", "folder", "tag", "type", "task_status", "sort")

ARCHIVED_STYLES = ("status", "only")
ArchivedStyle = Literal["status", "only"]
"""How archived runs are listed: ``status=archived`` (Tallyfy's docs) or ``archived=only``
(Tallyfy's own clients)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    """A query over an organisation's runs.

    Every attribute but the two dates is a Tallyfy list filter, sent to the server. The dates
    are applied by bulkruns to each listed run, since Tallyfy cannot filter on them: a run whose
    ``created_at`` (or ``last_updated``) is missing or unreadable does not match.

    Attributes:
        q: text searched in run names.
        status: one of ``STATUSES``.
        owners: user IDs; a run owned by any of them matches.
        checklist_id: the template the runs were launched from.
        folder: a folder ID.
        tag: a tag ID.
        starred: only starred runs (True) or only unstarred ones (False).
        type: ``procedure`` or ``form``, for example.
        groups: group IDs involved in the runs' tasks.
        task_status: a status of the runs' tasks, such as ``in-progress``.
        sort: a sort field, such as ``created_at`` or ``-created_at``.
        created_before: only runs created before this moment.
        updated_before: only runs last updated before this moment.
        all_runs: every run of the organisation may be selected: needed for a job with no
            filter at all, and for one whose filter the server may be ignoring.

    Tallyfy ignores the list parameters it does not know, so a listed run is checked
    against what of the filter it shows (:meth:`contradiction`); for the filters a run
    cannot show (:attr:`unverifiable`), a job compares the filtered total with the whole
    organisation's.
    """

    q: str | None = None
    status: str | None = None
    owners: tuple[str, ...] = ()
    checklist_id: str | None = None
    folder: str | None = None
    tag: str | None = None
    starred: bool | None = None
    type: str | None = None
    groups: tuple[str, ...] = ()
    task_status: str | None = None
    sort: str | None = None
    created_before: datetime | None = None
    updated_before: datetime | None = None
    all_runs: bool = False

    def __post_init__(self) -> None:
        for name in (*_TEXTS, "status"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be text, not {value!r}")
        for name, value in (("starred", self.starred), ("all_runs", self.all_runs)):
            if not isinstance(value, bool) and (name == "all_runs" or value is not None):
                raise ConfigError(f"{name} must be true or false, not {value!r}")
        for name in ("created_before", "updated_before"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise ConfigError(f"{name} must be a moment, not {value!r}")
        if self.status is not None and self.status not in STATUSES:
            raise ConfigError(
                f"unknown status {self.status!r}: choose one of {', '.join(STATUSES)}"
            )
        for name in ("owners", "groups"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{name} must be a sequence of non-empty IDs")
            object.__setattr__(self, name, tuple(value))
        for name in ("created_before", "updated_before"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                object.__setattr__(self, name, moment.replace(tzinfo=UTC))

    def params(self, *, archived: ArchivedStyle | None = None) -> list[tuple[str, str]]:
        """The server's query parameters, without paging.

        Args:
            archived: select archived runs, in this style, instead of the default live ones.
        """
        out: list[tuple[str, str]] = []
        status = self.status
        if archived is not None:
            if status not in (None, "archived"):
                raise ConfigError(
                    "archived runs are selected whatever their status was before they were "
                    f"archived, so --status {status} cannot be combined with selecting them",
                    setting="status",
                )
            if archived == "status":
                status = "archived"
            else:
                status = None
                out.append(("archived", "only"))
        scalars = (
            ("q", self.q),
            ("status", status),
            ("checklist_id", self.checklist_id),
            ("folder", self.folder),
            ("tag", self.tag),
            ("type", self.type),
            ("task_status", self.task_status),
            ("sort", self.sort),
        )
        out.extend((k, v) for k, v in scalars if v is not None)
        if self.owners:
            out.append(("owners", ",".join(self.owners)))
        if self.groups:
            out.append(("groups", ",".join(self.groups)))
        if self.starred is not None:
            out.append(("starred", "true" if self.starred else "false"))
        return out

    @property
    def filters_locally(self) -> bool:
        """Whether some runs the server returns may still be left out by bulkruns."""
        return self.created_before is not None or self.updated_before is not None

    @property
    def is_empty(self) -> bool:
        """Whether the filter selects every run: no criterion at all."""
        return self == RunFilter(sort=self.sort, all_runs=self.all_runs)

    @property
    def unverifiable(self) -> tuple[str, ...]:
        """The filters set that a listed run cannot show, so cannot be checked on it."""
        return tuple(name for name in _UNSHOWN if getattr(self, name) not in (None, ()))

    def contradiction(self, run: Mapping[str, Any], *, archived: bool) -> str | None:
        """The filter a listed run shows it does not match, or None.

        Only what the run shows is checked: a field it does not carry is taken on trust.

        Args:
            run: the run as listed.
            archived: archived runs were selected (rather than live ones).
        """
        archived_at = run.get("archived_at", _ABSENT)
        status = run.get("status", _ABSENT)
        shows_state = archived_at is not _ABSENT or status is not _ABSENT
        looks_archived = status == "archived" or archived_at not in (None, _ABSENT)
        if shows_state and archived != looks_archived:
            return "archived" if archived else "live"
        wanted_status = None if archived else self.status
        if wanted_status is not None and status is not _ABSENT and status != wanted_status:
            return "status"
        for name in ("checklist_id", "type"):
            wanted = getattr(self, name)
            if wanted is not None and name in run and run[name] != wanted:
                return name
        starred = run.get("starred")
        if self.starred is not None and isinstance(starred, bool) and starred is not self.starred:
            return "starred"
        if self.owners and "owner_id" in run and str(run["owner_id"]) not in self.owners:
            return "owners"
        return None

    def accepts(self, run: Mapping[str, Any]) -> bool:
        """Whether a run the server listed also passes the client-side date filters."""
        for limit, key in (
            (self.created_before, "created_at"),
            (self.updated_before, "last_updated"),
        ):
            if limit is None:
                continue
            moment = parse_timestamp(run.get(key))
            if moment is None or moment >= limit:
                return False
        return True

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready description, for the journal's header; ``from_record`` reverses it."""
        record = {k: v for k, v in asdict(self).items() if v is not None and v != ()}
        if not self.all_runs:
            del record["all_runs"]
        for key in ("created_before", "updated_before"):
            if key in record:
                record[key] = record[key].isoformat()
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunFilter:
        """The filter a journal header describes.

        Raises:
            ConfigError: the record does not describe a filter.
        """
        if not isinstance(record, Mapping):
            raise ConfigError("the log's filter is not an object")
        names = {f.name for f in fields(cls)}
        unknown = set(record) - names
        if unknown:
            raise ConfigError(f"unknown filter fields in the log: {', '.join(sorted(unknown))}")
        values = dict(record)
        try:
            for key in ("owners", "groups"):
                if isinstance(values.get(key), list):
                    values[key] = tuple(values[key])
            for key in ("created_before", "updated_before"):
                if key in values:
                    values[key] = datetime.fromisoformat(values[key])
            return cls(**values)
        except (TypeError, ValueError, ConfigError) as exc:
            raise ConfigError(f"the log's filter is unreadable: {exc}") from None
