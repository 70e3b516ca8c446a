"""The sandbox's seeded runs: realistic, deterministic from a seed, cheap to hold by the
hundred thousand."""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import time
from collections.abc import Container, Mapping
from typing import Any

from bulkruns.sandbox.rules import ARCHIVED, iso

__all__ = ["launched_run", "renamed", "seed_runs", "task_statuses"]

_TWO_YEARS = 2 * 365 * 86400.0


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


def launched_run(
    pattern: Mapping[str, Any],
    rng: random.Random,
    *,
    increment_id: int,
    created_at: str,
    taken: Container[str],
) -> dict[str, Any]:
    """A run someone launched just now from the template of ``pattern``, a seeded run.

    It has the fields of a seeded run: the template, folder, tags, owner and assignees of
    ``pattern``, an ID not in ``taken``, a name and summary of its own, no task done yet.
    """
    run_id = _hex_id(rng)
    while run_id in taken:
        run_id = _hex_id(rng)
    total = 3 + int(rng.random() * 18)
    return {
        "id": run_id,
        "increment_id": increment_id,
        "checklist_id": pattern["checklist_id"],
        "checklist_title": pattern["checklist_title"],
        "name": f"{pattern['checklist_title']} - {rng.choice(_CUSTOMERS)}",
        "summary": rng.choice(_SUMMARIES),
        "status": "active",
        "progress": {"complete": 0, "total": total, "percent": 0},
        "owner_id": pattern["owner_id"],
        "started_by": pattern["owner_id"],
        "created_at": created_at,
        "last_updated": created_at,
        "archived_at": None,
        "starred": rng.random() < _STARRED_SHARE,
        "is_public": rng.random() < 0.05,
        "publicly_hidden_fields": [],
        "users": pattern["users"],
        "groups": pattern["groups"],
        "prerun": {},
        "tags": pattern["tags"],
        "folder_id": pattern["folder_id"],
        "type": pattern["type"],
    }


def renamed(name: str, rng: random.Random) -> str:
    """Another name a person might give a run called ``name``."""
    while True:
        title, _ = rng.choice(_TEMPLATES)
        new = f"{title} - {rng.choice(_CUSTOMERS)}"
        if new != name:
            return new


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


def task_statuses(run: Mapping[str, Any], status: str) -> frozenset[str]:
    # The sandbox has no tasks: the statuses of a run's tasks are derived from its
    # progress and status, enough for the task_status filter to select something.
    progress = run["progress"]
    return _derived_task_statuses(progress["complete"], progress["total"], status)
