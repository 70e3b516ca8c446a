"""The four operations: what each selects, what it records, what it calls, and its inverse.

No I/O here: a job makes the calls an operation's steps name, with the client it is given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bulkruns.errors import ConfigError

if TYPE_CHECKING:
    from bulkruns.api import Client, Reply

__all__ = [
    "ASSIGNEES",
    "UPDATABLE_FIELDS",
    "Operation",
    "OperationName",
    "Step",
    "holds",
    "validate_fields",
]

OperationName = Literal["archive", "activate", "update", "delete"]
StepName = Literal["archive", "activate", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Step:
    """One API call an operation makes for each run, and what a 404 to it means.

    Attributes:
        name: the call, as the client's method of that name makes it.
        done_if_missing: for a change that makes the run disappear from its endpoint
            (archive, delete), the past tense that a 404 proves, once an earlier attempt's
            answer was lost: that attempt made the change.
        missing_is_fine: a note for a 404 that means the step is not needed at all (the
            archive before a permanent delete, of a run already archived).
        idempotent: sending it twice does what sending it once does.
        settles_by_reading: after a session that may have applied the step ended without
            its answer, reading the run (``GET``) tells whether it was: ``"gone"`` (the run
            no longer reads: archived), ``"present"`` (it reads again: restored),
            ``"fields"`` (it holds the fields set); None when reading cannot tell (a
            permanent delete's run reads 404 before and after).
    """

    name: StepName
    done_if_missing: str | None = None
    missing_is_fine: str | None = None
    idempotent: bool = False
    settles_by_reading: Literal["gone", "present", "fields"] | None = None

    def call(self, client: Client, run_id: str, fields: Mapping[str, Any]) -> Awaitable[Reply]:
        """Make this step's request for one run (``fields`` are an update's)."""
        if self.name == "update":
            return client.update(run_id, fields)
        method: Any = getattr(client, self.name)
        return method(run_id)  # type: ignore[no-any-return]

    def when_missing(self, *, unknown: bool) -> str | None:
        """The note for a 404 that is not a failure, or None when the 404 is one.

        Args:
            unknown: an earlier attempt at this step may have been applied.
        """
        if self.missing_is_fine is not None:
            return self.missing_is_fine
        if unknown and self.done_if_missing is not None:
            return f"already {self.done_if_missing} by an earlier attempt"
        return None

    def settled(self, run: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> str | None:
        """Whether an earlier attempt, whose answer was lost, made this step's change, as
        the run read now shows (None: it reads 404).

        Returns:
            a note saying so, or None when the step is still to be made.
        """
        how = self.settles_by_reading
        if how == "gone" and run is None:
            return f"already {self.done_if_missing} by an earlier attempt"
        if how == "present" and run is not None:
            return "already restored by an earlier attempt"
        if how == "fields" and run is not None and holds(run, fields):
            return "already set by an earlier attempt"
        return None


def holds(run: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether a run already holds every field's value."""
    return all(k in run and run[k] == v for k, v in fields.items())


_STEPS: dict[str, tuple[Step, ...]] = {
    "archive": (Step("archive", done_if_missing="archived", settles_by_reading="gone"),),
    "activate": (Step("activate", settles_by_reading="present"),),
    "update": (Step("update", idempotent=True, settles_by_reading="fields"),),
    "delete": (Step("delete", done_if_missing="deleted"),),
    "archive-first": (
        Step("archive", missing_is_fine="was already archived"),
        Step("delete", done_if_missing="deleted"),
    ),
}

ASSIGNEES = ("users", "groups")
"""The lists an update replaces whole, and Tallyfy empties when an update leaves them out."""

UPDATABLE_FIELDS = (
    "name",
    "summary",
    "owner_id",
    "starred",
    "is_public",
    "publicly_hidden_fields",
    "users",
    "groups",
    "prerun",
)

_MAX_NAME = 550


def _is_id(value: Any) -> bool:
    # Tallyfy's IDs are strings, but user IDs come back as numbers: accept both
    return isinstance(value, str | int) and not isinstance(value, bool) and value != ""


def _check_field(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``name``, or None."""
    if name == "name":
        if not isinstance(value, str) or not value.strip():
            return "name must be a non-empty string"
        if len(value) > _MAX_NAME:
            return f"name is {len(value)} characters long; Tallyfy allows at most {_MAX_NAME}"
    elif name == "summary":
        if value is not None and not isinstance(value, str):
            return "summary must be a string (or null to clear it)"
    elif name == "owner_id":
        if not _is_id(value):
            return "owner_id must be a user ID"
    elif name in ("starred", "is_public"):
        if not isinstance(value, bool):
            return f"{name} must be true or false"
    elif name in ("publicly_hidden_fields", "users", "groups"):
        if not isinstance(value, list) or not all(_is_id(v) for v in value):
            return (
                f'{name} must be a JSON list of IDs, such as ["id1","id2"] (it replaces the list)'
            )
    elif name == "prerun" and not isinstance(value, dict):
        return 'prerun must be a JSON object of kick-off field values, such as {"field_id":"value"}'
    return None


def validate_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check an update's fields before any request is sent.

    Returns:
        a plain copy of the fields.

    Raises:
        ConfigError: an unknown field, or a value of the wrong kind.
    """
    for name, value in fields.items():
        if name not in UPDATABLE_FIELDS:
            raise ConfigError(
                f"{name!r} cannot be updated: choose from {', '.join(UPDATABLE_FIELDS)}"
            )
        problem = _check_field(name, value)
        if problem:
            raise ConfigError(problem)
    return dict(fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One change applied to every selected run.

    Attributes:
        name: archive, activate (restore an archived run), update, or delete (permanent).
        fields: for update, the fields to set on every run; empty when each run carries its
            own (an undo puts back each run's before-state).
        archive_first: for delete, archive each run before deleting it, so live runs can be
            selected; without it, delete selects archived runs.
    """

    name: OperationName
    fields: Mapping[str, Any] = field(default_factory=dict)
    archive_first: bool = False

    def __post_init__(self) -> None:
        if self.name not in ("archive", "activate", "update", "delete"):
            raise ConfigError(f"unknown operation {self.name!r}")
        if self.name == "update":
            object.__setattr__(self, "fields", validate_fields(self.fields))
        elif self.fields:
            raise ConfigError(f"{self.name} takes no fields to set")
        if self.archive_first and self.name != "delete":
            raise ConfigError("archive-first goes with delete only")

    @property
    def selects_archived(self) -> bool:
        """Whether the runs to select are archived ones (hidden from default lists)."""
        return self.name == "activate" or (self.name == "delete" and not self.archive_first)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The calls made for each run, in order: one, or two for delete with archive-first."""
        return _STEPS["archive-first" if self.archive_first else self.name]

    def recorded_fields(self, fields: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The run fields kept as an item's before-state: those the operation changes.

        An update records the run's assignees too, whatever it sets: they are what Tallyfy
        strips when an update leaves them out, and what its undo must be able to give back.

        Args:
            fields: the fields an update sets on this run, when they are its own (an undo).
        """
        if self.name == "update":
            own = tuple(self.fields if fields is None else fields)
            return own + tuple(k for k in ASSIGNEES if k not in own)
        if self.name == "delete":
            return ("name", "status", "archived_at")
        return ("status", "archived_at")

    def before(
        self, run: Mapping[str, Any], fields: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A run's before-state: the recorded fields it has."""
        return {k: run[k] for k in self.recorded_fields(fields) if k in run}

    def already_done(self, run: Mapping[str, Any]) -> bool:
        """Whether a listed run needs no request: an update whose fields already hold."""
        return self.name == "update" and holds(run, self.fields)

    @staticmethod
    def update_body(fields: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any] | None:
        """What an update sends: its fields, and the run's current assignees for the lists
        it does not set, so that Tallyfy, which empties a list an update leaves out, keeps
        them. None when the run does not show them (they must be read first).
        """
        keep = [k for k in ASSIGNEES if k not in fields]
        if any(not isinstance(run.get(k), list) for k in keep):
            return None
        return {**fields, **{k: run[k] for k in keep}}

    def inverse(self) -> Operation:
        """The operation that undoes this one; an update's sets each run's own before-state.

        Raises:
            ConfigError: a permanent delete, which nothing undoes.
        """
        if self.name == "archive":
            return Operation(name="activate")
        if self.name == "activate":
            return Operation(name="archive")
        if self.name == "update":
            return Operation(name="update")
        raise ConfigError("a permanent delete cannot be undone: the runs no longer exist")

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready description, for the journal's header."""
        record: dict[str, Any] = {"operation": self.name}
        if self.fields:
            record["fields"] = dict(self.fields)
        if self.archive_first:
            record["archive_first"] = True
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Operation:
        """The operation a journal header describes.

        Raises:
            ConfigError: the header names no usable operation.
        """
        name = record.get("operation")
        if name not in ("archive", "activate", "update", "delete"):
            raise ConfigError(f"the log names no known operation (found {name!r})")
        fields = record.get("fields") or {}
        if not isinstance(fields, dict):
            raise ConfigError("the log's update fields are not an object")
        return cls(name=name, fields=fields, archive_first=bool(record.get("archive_first")))
