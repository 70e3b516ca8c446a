"""The sandbox's runs: filtering, offset pagination and the four mutations.

Everything here is synchronous and does no I/O, so one handler's work is atomic on the
event loop and the rules can be tested without a server.

Listing must stay fast with 100,000 runs while a bulk job archives thousands per second.
A list query is therefore answered from a *view* (see :mod:`~bulkruns.sandbox.views`):
the sorted positions of the runs that match it, kept exact by every change, so a page is
a slice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bulkruns.sandbox.rules import (
    ARCHIVED,
    LIVE_STATUSES,
    ListRequest,
    StoreError,
    iso,
    validate_update,
)
from bulkruns.sandbox.seed import launched_run, seed_runs, task_statuses
from bulkruns.sandbox.views import Views

__all__ = ["ASSIGNEE_BUCKETS", "RunStore"]

ASSIGNEE_BUCKETS = ("users", "groups")
"""The assignee lists of a run that an update replaces as a whole."""

_PICK_TRIES = 64  # random probes for a run to change before giving up


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
            task_statuses(run, self._prior.get(i, run["status"])) for i, run in enumerate(runs)
        ]
        self._owners = frozenset(int(run["owner_id"]) for run in runs) or frozenset({1001})
        self._counts: Counter[str] = Counter(run["status"] for run in runs)
        self._views = Views(self._runs, self._prior, self._task_status)
        self._next_increment = max((run["increment_id"] for run in runs), default=1000) + 1
        last = datetime.fromisoformat(runs[-1]["created_at"]).timestamp() if runs else 0.0
        self._last_created_ms = round(last * 1000)
        self.changes: Counter[str] = Counter()
        """How many changes were applied to each run, by run ID."""
        self.stripped: Counter[str] = Counter()
        """By run ID, how many updates detached assignees the update did not send."""

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

    def read(self, run_id: str) -> dict[str, Any]:
        """The live run object for ``GET …/runs/{id}`` (do not modify it).

        Raises:
            StoreError: 404 for an unknown run, and for an archived one: soft-deleted
                runs are found only by activate and permanent delete.
        """
        _, run = self._find(run_id)
        if run["status"] == ARCHIVED:
            raise StoreError(404, "Run not found.")
        return run

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
        view = self._views.for_query(query)
        positions = view.page(
            (request.page - 1) * request.per_page,
            request.per_page,
            descending=query.sort.startswith("-"),
        )
        runs = self._runs
        return [runs[i] for i in positions], len(view.items)  # type: ignore[misc]

    # --- changing ---

    def _find(self, run_id: str) -> tuple[int, dict[str, Any]]:
        """The position and the object of a run not permanently deleted; 404 otherwise."""
        i = self._index.get(run_id)
        if i is None:
            raise StoreError(404, "Run not found.")
        run = self._runs[i]
        assert run is not None
        return i, run

    def _changed(self, i: int, run_id: str) -> None:
        self.changes[run_id] += 1
        self._refresh(i)

    def _refresh(self, i: int) -> None:
        self._views.refresh(i)

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
        i, run = self._find(run_id)
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
        i, run = self._find(run_id)
        if run["status"] != ARCHIVED:
            return run, False
        self._restatus(run, self._prior.pop(i, "active"))
        run["archived_at"] = None
        run["last_updated"] = iso(self._clock())
        self._changed(i, run_id)
        return run, True

    def update(
        self, run_id: str, body: Any, *, strip_unsent_assignees: bool = False
    ) -> dict[str, Any]:
        """Apply an update body to a live run and return the run.

        Args:
            run_id: the run.
            body: the parsed JSON body.
            strip_unsent_assignees: read an absent ``users`` or ``groups`` as an empty
                list, as Tallyfy's server does (see ``SandboxConfig``).

        Raises:
            StoreError: 404 for an unknown or archived run; 422 for an invalid body.
        """
        i, run = self._find(run_id)
        fields = validate_update(body, self._owners)
        if run["status"] == ARCHIVED:
            # Soft-deleted runs are not found by the update route.
            raise StoreError(404, "Run not found.")
        if strip_unsent_assignees:
            unsent = [bucket for bucket in ASSIGNEE_BUCKETS if bucket not in fields]
            if any(run[bucket] for bucket in unsent):
                self.stripped[run_id] += 1
            fields.update((bucket, []) for bucket in unsent)
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
        i, run = self._find(run_id)
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

    # --- other people's work: not counted in ``changes`` ---

    def _probe(
        self, rng: random.Random, wanted: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        runs = self._runs
        for _ in range(_PICK_TRIES if runs else 0):
            run = runs[int(rng.random() * len(runs))]
            if run is not None and wanted(run):
                return run
        return None

    def pick(self, rng: random.Random, status: str | None = None) -> dict[str, Any] | None:
        """A random live run (with ``status``, if given), or None if none was found soon.

        The run is the store's own object: do not modify it.
        """
        return self._probe(
            rng, lambda run: run["status"] != ARCHIVED and status in (None, run["status"])
        )

    def launch(self, rng: random.Random) -> dict[str, Any]:
        """Add a run launched now, the newest of all, from the template of a random run."""
        # With no run left to launch like, a template of the seed's own.
        pattern = self._probe(rng, lambda run: True) or seed_runs(1, rng.getrandbits(32))[0][0]
        self._last_created_ms = max(int(self._clock() * 1000), self._last_created_ms + 1)
        run = launched_run(
            pattern,
            rng,
            increment_id=self._next_increment,
            # Half a millisecond on, so that iso() cannot round down to the one before.
            created_at=iso((self._last_created_ms + 0.5) / 1000),
            taken=self._index,
        )
        self._next_increment += 1
        i = len(self._runs)
        self._runs.append(run)
        self._index[run["id"]] = i
        self._task_status.append(task_statuses(run, "active"))
        self._counts["active"] += 1
        self._refresh(i)
        return run

    def rename(self, run_id: str, name: str) -> None:
        """Give a live run another name, as a person editing it would."""
        i, run = self._find(run_id)
        run["name"] = name
        run["last_updated"] = iso(self._clock())
        self._refresh(i)

    def complete(self, run_id: str) -> None:
        """Complete a live run's last tasks: its status becomes ``complete``."""
        i, run = self._find(run_id)
        total = run["progress"]["total"]
        run["progress"] = {"complete": total, "total": total, "percent": 100}
        self._restatus(run, "complete")
        self._task_status[i] = task_statuses(run, "complete")
        run["last_updated"] = iso(self._clock())
        self._refresh(i)
