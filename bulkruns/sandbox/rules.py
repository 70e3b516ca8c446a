"""What the sandbox's run endpoints accept, as Tallyfy's do: statuses, sorts, list
parameters and update bodies, and the errors for what they refuse. No I/O here."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARCHIVED",
    "DEFAULT_SORT",
    "LIST_FILTERS",
    "LIVE_STATUSES",
    "MAX_PER_PAGE",
    "SORTS",
    "STATUS_ARCHIVED_READINGS",
    "ListRequest",
    "RunQuery",
    "StoreError",
    "iso",
    "parse_list_params",
    "validate_update",
]

LIVE_STATUSES = ("active", "complete", "problem", "delayed")
ARCHIVED = "archived"
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_NAME = 550
# Sort fields; a leading "-" means descending. The default is newest first.
SORTS = ("created_at", "name", "last_updated")
DEFAULT_SORT = "-created_at"
LIST_FILTERS = (
    "q",
    "status",
    "archived",
    "owners",
    "checklist_id",
    "folder",
    "tag",
    "starred",
    "type",
    "groups",
    "task_status",
    "sort",
)
"""The list parameters that select or order runs (everything but the page)."""
STATUS_ARCHIVED_READINGS = ("lists-archived", "ignored", "matches-none")
"""How a list may read ``status=archived`` (see ``SandboxConfig.status_archived``)."""


class StoreError(Exception):
    """A request the store refuses, with the HTTP status and body fields to answer it."""

    def __init__(
        self, status: int, message: str, *, errors: Mapping[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors) if errors else None

    def body(self) -> dict[str, Any]:
        """The JSON body Tallyfy would send: validation errors, or ``{"error": true}``."""
        if self.errors is not None:
            return {"message": self.message, "errors": self.errors}
        return {"error": True, "message": self.message}


def iso(t: float) -> str:
    """``t`` (epoch seconds) as Tallyfy writes times: ISO 8601, milliseconds, ``Z``."""
    millis = int(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + (
        f".{millis % 1000:03d}Z"
    )


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunQuery:
    """The server-side filter and order of a list request (everything but the page).

    ``archived`` selects archived runs instead of live ones; ``status`` then means the
    status a run had before it was archived. Without ``archived``, a ``status`` of
    ``"archived"`` selects nothing: no live run has it.
    """

    archived: bool = False
    status: str | None = None
    q: str | None = None
    owners: frozenset[str] | None = None
    checklist_id: str | None = None
    folder: str | None = None
    tag: str | None = None
    starred: bool | None = None
    type: str | None = None
    groups: frozenset[str] | None = None
    task_status: str | None = None
    sort: str = DEFAULT_SORT

    @property
    def view_key(self) -> tuple[Any, ...]:
        """What identifies the view answering this query: the filter and the sort field."""
        return (
            self.archived,
            self.status,
            self.q,
            self.owners,
            self.checklist_id,
            self.folder,
            self.tag,
            self.starred,
            self.type,
            self.groups,
            self.task_status,
            self.sort.lstrip("-"),
        )


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A parsed list request: the query and the page wanted."""

    query: RunQuery
    page: int
    per_page: int


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def _id_set(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def parse_list_params(
    params: Mapping[str, str],
    *,
    ignored: Collection[str] = (),
    status_archived: str = "lists-archived",
) -> ListRequest:
    """Read a list request's query parameters (already ``%XX``-decoded).

    Unknown parameters (``with``, …) are ignored, as Tallyfy does.

    Args:
        params: the query parameters.
        ignored: parameters to ignore as if unknown, as a server without those filters
            would.
        status_archived: how ``status=archived`` reads: ``"lists-archived"`` (as
            ``archived=only``), ``"ignored"`` (no status filter) or ``"matches-none"``
            (a status no live run has).

    Raises:
        StoreError: 422 with field errors for a value the server would refuse.
    """
    if ignored:
        params = {name: value for name, value in params.items() if name not in ignored}
    errors: dict[str, list[str]] = {}

    def integer(name: str, default: int) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            errors[name] = [f"The {name} must be an integer."]
            return default
        if value < 1:
            errors[name] = [f"The {name} must be at least 1."]
        return value

    page = integer("page", 1)
    # Larger pages are capped rather than refused, as Tallyfy does.
    per_page = min(integer("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)

    status = params.get("status") or None
    archived = params.get("archived") == "only"
    if status == ARCHIVED:
        if status_archived == "lists-archived":
            archived, status = True, None
        elif status_archived == "ignored":
            status = None
    elif status is not None and status not in LIVE_STATUSES:
        errors["status"] = ["The selected status is invalid."]

    starred: bool | None = None
    raw_starred = params.get("starred", "").lower()
    if raw_starred in _TRUE:
        starred = True
    elif raw_starred in _FALSE:
        starred = False
    elif raw_starred:
        errors["starred"] = ["The starred field must be true or false."]

    sort = params.get("sort") or DEFAULT_SORT
    if sort.lstrip("-") not in SORTS or sort.startswith("--"):
        errors["sort"] = [f"The sort must be one of: {', '.join(SORTS)} (- for descending)."]

    if errors:
        raise StoreError(422, "The given data was invalid.", errors=errors)
    q = params.get("q") or None
    owners = params.get("owners")
    groups = params.get("groups")
    query = RunQuery(
        archived=archived,
        status=status,
        q=q.casefold() if q else None,
        owners=_id_set(owners) if owners else None,
        checklist_id=params.get("checklist_id") or None,
        folder=params.get("folder") or None,
        tag=params.get("tag") or None,
        starred=starred,
        type=params.get("type") or None,
        groups=_id_set(groups) if groups else None,
        task_status=params.get("task_status") or None,
        sort=sort,
    )
    return ListRequest(query, page, per_page)


# --- update validation -------------------------------------------------------------------


def _as_bool(value: Any) -> bool | None:
    # Laravel's "boolean" rule: true, false, 1, 0, "1", "0".
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1") and not isinstance(value, float):
        return value in (1, "1")
    return None


def validate_update(body: Any, owners: frozenset[int]) -> dict[str, Any]:
    """The fields of an update body to apply, validated as Tallyfy's rules say.

    Unknown fields are ignored.

    Raises:
        StoreError: 422 with field errors.
    """
    if not isinstance(body, dict):
        raise StoreError(
            422, "The given data was invalid.", errors={"body": ["The body must be an object."]}
        )
    errors: dict[str, list[str]] = {}
    fields: dict[str, Any] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip():
            errors["name"] = ["The name must be a non-empty string."]
        elif len(name) > MAX_NAME:
            errors["name"] = [f"The name may not be greater than {MAX_NAME} characters."]
        else:
            fields["name"] = name
    if "summary" in body:
        if body["summary"] is None or isinstance(body["summary"], str):
            fields["summary"] = body["summary"]
        else:
            errors["summary"] = ["The summary must be a string."]
    if "owner_id" in body:
        owner = body["owner_id"]
        try:
            owner_id = int(owner) if not isinstance(owner, bool | float) else None
        except (TypeError, ValueError):
            owner_id = None
        if owner_id is None or owner_id not in owners:
            errors["owner_id"] = ["The selected owner id is invalid."]
        else:
            fields["owner_id"] = owner_id
    for name in ("starred", "is_public"):
        if name in body:
            flag = _as_bool(body[name])
            if flag is None:
                errors[name] = [f"The {name} field must be true or false."]
            else:
                fields[name] = flag
    for name in ("publicly_hidden_fields", "users", "groups"):
        if name in body:
            items = body[name]
            if not isinstance(items, list) or not all(
                isinstance(x, str | int) and not isinstance(x, bool) for x in items
            ):
                errors[name] = [f"The {name} must be an array of IDs."]
            else:
                fields[name] = list(items)
    if "prerun" in body:
        if isinstance(body["prerun"], dict):
            fields["prerun"] = body["prerun"]
        else:
            errors["prerun"] = ["The prerun must be an object."]
    if errors:
        raise StoreError(422, "The given data was invalid.", errors=errors)
    return fields
