"""The sandbox's runs: seeding, filtering, offset pagination and the four mutations.

Everything here is synchronous and does no I/O, so one handler's work is atomic on the
event loop and the rules can be tested without a server.

Listing must stay fast with 100,000 runs while a bulk job archives thousands per second.
A list query is therefore answered from a *view*: the sorted positions of the runs that
match it, built once by a scan and then kept exact by every mutation (a bisect per view
per change), so a page is a slice. The few most recent views are kept.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LIVE_STATUSES",
    "MAX_PER_PAGE",
    "SORTS",
    "ListRequest",
    "RunQuery",
    "RunStore",
    "StoreError",
    "iso",
    "parse_list_params",
    "seed_runs",
]

LIVE_STATUSES = ("active", "complete", "problem", "delayed")
ARCHIVED = "archived"
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_NAME = 550
# Sort fields; a leading "-" means descending. The default is newest first.
SORTS = ("created_at", "name", "last_updated")
DEFAULT_SORT = "-created_at"
_VIEW_CACHE = 16  # each view costs a bisect per change: keep few
_TWO_YEARS = 2 * 365 * 86400.0


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


# --- seeding -----------------------------------------------------------------------------

_TEMPLATES = (
    ("Customer Onboarding", "procedure"),
    ("Employee Onboarding", "procedure"),
    ("Vendor Review", "procedure"),
    ("Quarterly Close", "procedure"),
    ("Incident Report", "form"),
    ("Expense Claim", "form"),
    ("Contract Renewal", "document"),
    ("Release Checklist", "procedure"),
)
_CUSTOMERS = (
    "ACME Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises",
    "Wonka", "Soylent", "Tyrell", "Cyberdyne", "Aperture", "Black Mesa", "Vandelay", "Pied Piper",
    "Dunder Mifflin", "Oceanic", "Massive Dynamic", "Gringotts", "Monarch", "C++ Guild",
    "Rock & Roll Ltd", "Ünïcode GmbH", "O'Brien & Sons",
)  # fmt: skip
_SUMMARIES = ("", "", "Kicked off from the sales pipeline.", "Escalated by support.", "Yearly.")
# Weights of the statuses a run is seeded with; archived runs also get a status from
# before their archiving, drawn from the live statuses.
_STATUS_WEIGHTS = (("active", 40), ("complete", 38), ("problem", 6), ("delayed", 6))
_ARCHIVED_SHARE = 0.10
_STARRED_SHARE = 0.20


def _hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _subsets(items: list[Any], most: int) -> list[list[Any]]:
    """Every subset of ``items`` with at most ``most`` members, as lists."""
    return [list(c) for k in range(most + 1) for c in itertools.combinations(items, k)]


def seed_runs(
    count: int, seed: int, *, now: float | None = None
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Generate ``count`` runs deterministically from ``seed``.

    Dates are spread over the two years before ``now`` (the current time by default), in
    creation order: run ``i`` was created before run ``i + 1``.

    Returns:
        the runs, and for each archived run (by position) its status before archiving.
    """
    rng = random.Random(seed)
    rand = rng.random  # one C call per decision: seeding 100,000 runs takes about a second
    now = time.time() if now is None else now
    templates = [(_hex_id(rng), title, kind) for title, kind in _TEMPLATES]
    owners = [1001 + n for n in range(6)]
    folders = [_hex_id(rng) for _ in range(5)]
    # Lists and progress objects are shared between runs to keep 100,000 runs small; an
    # update replaces a run's list, it never changes one in place.
    user_sets = _subsets(owners, 2)
    group_sets = _subsets([_hex_id(rng) for _ in range(4)], 1)
    tag_sets = _subsets([_hex_id(rng) for _ in range(6)], 2)
    progress_pool: dict[tuple[int, int], dict[str, int]] = {}
    weight_sum = sum(w for _, w in _STATUS_WEIGHTS)
    thresholds = list(itertools.accumulate(w / weight_sum for _, w in _STATUS_WEIGHTS))
    statuses = [s for s, _ in _STATUS_WEIGHTS]
    start = now - _TWO_YEARS
    span = _TWO_YEARS - 3600.0
    created = sorted(start + rand() * span for _ in range(count))
    no_fields: list[str] = []
    no_prerun: dict[str, Any] = {}
    seen: set[str] = set()
    runs: list[dict[str, Any]] = []
    prior: dict[int, str] = {}
    last_ms = 0
    for i in range(count):
        run_id = _hex_id(rng)
        while run_id in seen:  # 128 random bits: never in practice, but ids must be unique
            run_id = _hex_id(rng)
        seen.add(run_id)
        template_id, title, kind = templates[int(rand() * len(templates))]
        status = statuses[bisect.bisect(thresholds, rand() * thresholds[-1])]
        total = 3 + int(rand() * 18)
        done = total if status == "complete" else int(rand() * total)
        progress = progress_pool.get((done, total))
        if progress is None:
            progress = {"complete": done, "total": total, "percent": round(100 * done / total)}
            progress_pool[done, total] = progress
        owner = owners[int(rand() * len(owners))]
        # Whole, strictly increasing milliseconds: the created_at order is the index order.
        created_ms = max(int(created[i] * 1000), last_ms + 1)
        last_ms = created_ms
        created_at = created_ms / 1000
        updated_at = created_at + rand() * (now - created_at)
        archived_at = None
        if rand() < _ARCHIVED_SHARE:
            prior[i] = status
            status = ARCHIVED
            updated_at = archived_at = updated_at + rand() * (now - updated_at)
        runs.append(
            {
                "id": run_id,
                "increment_id": 1001 + i,
                "checklist_id": template_id,
                "checklist_title": title,
                "name": f"{title} - {_CUSTOMERS[int(rand() * len(_CUSTOMERS))]}",
                "summary": _SUMMARIES[int(rand() * len(_SUMMARIES))],
                "status": status,
                "progress": progress,
                "owner_id": owner,
                "started_by": owner if rand() < 0.8 else owners[0],
                "created_at": iso(created_at),
                "last_updated": iso(updated_at),
                "archived_at": None if archived_at is None else iso(archived_at),
                "starred": rand() < _STARRED_SHARE,
                "is_public": rand() < 0.05,
                "publicly_hidden_fields": no_fields,
                "users": user_sets[int(rand() * len(user_sets))],
                "groups": group_sets[int(rand() * len(group_sets))],
                "prerun": no_prerun,
                "tags": tag_sets[int(rand() * len(tag_sets))],
                "folder_id": folders[int(rand() * len(folders))] if rand() < 0.6 else None,
                "type": kind,
            }
        )
    return runs, prior


@functools.cache
def _derived_task_statuses(done: int, total: int, status: str) -> frozenset[str]:
    found = set()
    if done > 0:
        found.add("completed")
    if done < total:
        found.add("in-progress")
        if status == "delayed":
            found.add("overdue")
        if status == "problem":
            found.add("problem")
    return frozenset(found)


def _task_statuses(run: Mapping[str, Any], status: str) -> frozenset[str]:
    # The sandbox has no tasks: the statuses of a run's tasks are derived from its
    # progress and status, enough for the task_status filter to select something.
    progress = run["progress"]
    return _derived_task_statuses(progress["complete"], progress["total"], status)


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunQuery:
    """The server-side filter and order of a list request (everything but the page).

    ``archived`` selects archived runs instead of live ones; ``status`` then means the
    status a run had before it was archived.
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


def parse_list_params(params: Mapping[str, str]) -> ListRequest:
    """Read a list request's query parameters (already ``%XX``-decoded).

    Unknown parameters (``with``, …) are ignored, as Tallyfy does.

    Raises:
        StoreError: 422 with field errors for a value the server would refuse.
    """
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
        archived, status = True, None
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


# --- the store ---------------------------------------------------------------------------

_Key = Any  # an int position, or a (sort value, position) pair


class _View:
    """The positions of the runs matching one query, in one sort order, kept up to date."""

    __slots__ = ("items", "key_of", "match", "sort_value")

    def __init__(
        self,
        match: Callable[[int], bool],
        sort_value: Callable[[int], str] | None,
        positions: Iterator[int],
    ) -> None:
        self.match = match
        self.sort_value = sort_value
        self.key_of: dict[int, _Key] = {}
        if sort_value is None:
            # Positions are in creation order already: no sort, no per-item keys.
            self.items: list[_Key] = [i for i in positions if match(i)]
        else:
            for i in positions:
                if match(i):
                    self.key_of[i] = (sort_value(i), i)
            self.items = sorted(self.key_of.values())

    def refresh(self, i: int, alive: bool) -> None:
        """Put run ``i`` in or out of the view after it changed."""
        items = self.items
        want = alive and self.match(i)
        if self.sort_value is None:
            pos = bisect.bisect_left(items, i)
            present = pos < len(items) and items[pos] == i
            if present and not want:
                del items[pos]
            elif want and not present:
                items.insert(pos, i)
            return
        old = self.key_of.pop(i, None)
        if old is not None:
            del items[bisect.bisect_left(items, old)]
        if want:
            key = (self.sort_value(i), i)
            self.key_of[i] = key
            bisect.insort(items, key)

    def page(self, offset: int, size: int, *, descending: bool) -> list[int]:
        """The positions on the page starting ``offset`` items from the start."""
        items = self.items
        if descending:
            hi = len(items) - offset
            chunk = items[max(0, hi - size) : hi][::-1] if hi > 0 else []
        else:
            chunk = items[offset : offset + size]
        if self.sort_value is None:
            return chunk
        return [key[1] for key in chunk]


class RunStore:
    """The runs of one sandbox organisation and the operations on them.

    Args:
        runs: the runs, in creation order (their ``created_at`` must increase).
        prior: for archived runs (by position), the status before archiving.
        clock: wall-clock seconds, for ``last_updated`` and ``archived_at``.
    """

    def __init__(
        self,
        runs: list[dict[str, Any]],
        prior: Mapping[int, str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runs: list[dict[str, Any] | None] = list(runs)
        self._index = {run["id"]: i for i, run in enumerate(runs)}
        self._prior = dict(prior or {})
        self._clock = clock
        self._task_status = [
            _task_statuses(run, self._prior.get(i, run["status"])) for i, run in enumerate(runs)
        ]
        self._owners = frozenset(int(run["owner_id"]) for run in runs) or frozenset({1001})
        self._counts: Counter[str] = Counter(run["status"] for run in runs)
        self._views: OrderedDict[tuple[Any, ...], _View] = OrderedDict()
        self.changes: Counter[str] = Counter()
        """How many changes were applied to each run, by run ID."""

    @classmethod
    def seeded(cls, count: int, seed: int, *, now: float | None = None) -> RunStore:
        """A store of ``count`` runs generated from ``seed`` (see :func:`seed_runs`)."""
        runs, prior = seed_runs(count, seed, now=now)
        return cls(runs, prior)

    # --- reading ---

    def __len__(self) -> int:
        """The number of runs not permanently deleted, archived ones included."""
        return len(self._index)

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The live run object (do not modify it), or None if there is no such run."""
        i = self._index.get(run_id)
        return None if i is None else self._runs[i]

    def ids(self) -> list[str]:
        """The IDs of every run not permanently deleted, in creation order."""
        return [run["id"] for run in self._runs if run is not None]

    def prior_status(self, run_id: str) -> str | None:
        """For an archived run, the status it had before archiving."""
        i = self._index.get(run_id)
        return None if i is None else self._prior.get(i)

    def counts(self) -> dict[str, int]:
        """Runs by status (archived included), and how many were permanently deleted."""
        counts = {status: self._counts[status] for status in (*LIVE_STATUSES, ARCHIVED)}
        counts["deleted"] = len(self._runs) - len(self._index)
        return counts

    def page(self, request: ListRequest) -> tuple[list[dict[str, Any]], int]:
        """One page of the runs matching ``request.query``, and how many match in all.

        Pages are offsets into the live result set, as Tallyfy's are: a change between
        two page requests shifts the later pages.
        """
        query = request.query
        view = self._view(query)
        positions = view.page(
            (request.page - 1) * request.per_page,
            request.per_page,
            descending=query.sort.startswith("-"),
        )
        runs = self._runs
        return [runs[i] for i in positions], len(view.items)  # type: ignore[misc]

    def _view(self, query: RunQuery) -> _View:
        key = query.view_key
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
            return view
        sort_field = query.sort.lstrip("-")
        sort_value: Callable[[int], str] | None = None
        if sort_field == "name":
            sort_value = self._name_key
        elif sort_field == "last_updated":
            sort_value = self._updated_key
        alive = (i for i, run in enumerate(self._runs) if run is not None)
        view = _View(self._matcher(query), sort_value, alive)
        self._views[key] = view
        if len(self._views) > _VIEW_CACHE:
            self._views.popitem(last=False)
        return view

    def _name_key(self, i: int) -> str:
        return self._runs[i]["name"].casefold()  # type: ignore[index,no-any-return]

    def _updated_key(self, i: int) -> str:
        return self._runs[i]["last_updated"]  # type: ignore[index,no-any-return]

    def _matcher(self, query: RunQuery) -> Callable[[int], bool]:
        """A predicate over positions of live runs for ``query``'s filter."""
        runs = self._runs
        checks: list[Callable[[dict[str, Any], int], bool]] = []
        if query.archived:
            checks.append(lambda run, i: run["status"] == ARCHIVED)
            if query.status is not None:
                status, prior = query.status, self._prior
                checks.append(lambda run, i: prior.get(i) == status)
        elif query.status is not None:
            status = query.status
            checks.append(lambda run, i: run["status"] == status)
        else:
            checks.append(lambda run, i: run["status"] != ARCHIVED)
        if query.q is not None:
            needle = query.q
            checks.append(lambda run, i: needle in run["name"].casefold())
        if query.owners is not None:
            owners = query.owners
            checks.append(lambda run, i: str(run["owner_id"]) in owners)
        if query.checklist_id is not None:
            checklist = query.checklist_id
            checks.append(lambda run, i: run["checklist_id"] == checklist)
        if query.folder is not None:
            folder = query.folder
            checks.append(lambda run, i: run["folder_id"] == folder)
        if query.tag is not None:
            tag = query.tag
            checks.append(lambda run, i: tag in run["tags"])
        if query.starred is not None:
            starred = query.starred
            checks.append(lambda run, i: run["starred"] is starred)
        if query.type is not None:
            kind = query.type
            checks.append(lambda run, i: run["type"] == kind)
        if query.groups is not None:
            groups = query.groups
            checks.append(lambda run, i: any(g in groups for g in run["groups"]))
        if query.task_status is not None:
            task_status, derived = query.task_status, self._task_status
            checks.append(lambda run, i: task_status in derived[i])

        def match(i: int) -> bool:
            run = runs[i]
            return run is not None and all(check(run, i) for check in checks)

        return match

    # --- changing ---

    def _find(self, run_id: str) -> int:
        i = self._index.get(run_id)
        if i is None:
            raise StoreError(404, "Run not found.")
        return i

    def _changed(self, i: int, run_id: str) -> None:
        self.changes[run_id] += 1
        alive = self._runs[i] is not None
        for view in self._views.values():
            view.refresh(i, alive)

    def _restatus(self, run: dict[str, Any], status: str) -> None:
        self._counts[run["status"]] -= 1
        self._counts[status] += 1
        run["status"] = status

    def archive(self, run_id: str) -> dict[str, Any]:
        """Archive (soft-delete) a run and return it.

        Raises:
            StoreError: 404 for an unknown run, and for one already archived: Tallyfy's
                archive endpoint does not find soft-deleted runs.
        """
        i = self._find(run_id)
        run = self._runs[i]
        assert run is not None
        if run["status"] == ARCHIVED:
            raise StoreError(404, "Run not found.")
        now = iso(self._clock())
        self._prior[i] = run["status"]
        self._restatus(run, ARCHIVED)
        run["archived_at"] = now
        run["last_updated"] = now
        self._changed(i, run_id)
        return run

    def activate(self, run_id: str) -> tuple[dict[str, Any], bool]:
        """Restore an archived run to its status before archiving.

        Returns:
            the run, and whether anything changed (activating a live run is a no-op).

        Raises:
            StoreError: 404 for an unknown run.
        """
        i = self._find(run_id)
        run = self._runs[i]
        assert run is not None
        if run["status"] != ARCHIVED:
            return run, False
        self._restatus(run, self._prior.pop(i, "active"))
        run["archived_at"] = None
        run["last_updated"] = iso(self._clock())
        self._changed(i, run_id)
        return run, True

    def update(self, run_id: str, body: Any) -> dict[str, Any]:
        """Apply an update body to a live run and return the run.

        Raises:
            StoreError: 404 for an unknown or archived run; 422 for an invalid body.
        """
        i = self._find(run_id)
        run = self._runs[i]
        assert run is not None
        fields = validate_update(body, self._owners)
        if run["status"] == ARCHIVED:
            # Soft-deleted runs are not found by the update route.
            raise StoreError(404, "Run not found.")
        if "prerun" in fields:
            fields["prerun"] = {**run["prerun"], **fields["prerun"]}
        run.update(fields)
        run["last_updated"] = iso(self._clock())
        self._changed(i, run_id)
        return run

    def delete(self, run_id: str, *, unarchived_status: int = 422) -> None:
        """Permanently delete an archived run.

        Raises:
            StoreError: 404 for an unknown run; ``unarchived_status`` (422 or 404) for a
                run that is not archived.
        """
        i = self._find(run_id)
        run = self._runs[i]
        assert run is not None
        if run["status"] != ARCHIVED:
            if unarchived_status == 404:
                raise StoreError(404, "Run not found.")
            raise StoreError(
                unarchived_status, "The run must be archived before it can be deleted."
            )
        self._counts[ARCHIVED] -= 1
        self._runs[i] = None
        del self._index[run_id]
        self._prior.pop(i, None)
        self._changed(i, run_id)
