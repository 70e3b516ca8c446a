"""A sandbox's live state: its runs, its limiter and fault dice, and what it has served."""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections import Counter
from collections.abc import Mapping
from typing import Any

from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.limits import FaultDice, RateLimiter
from bulkruns.sandbox.others import OtherPeople
from bulkruns.sandbox.store import RunStore

__all__ = ["KINDS", "SandboxState"]

KINDS = ("list", "get", "archive", "activate", "update", "delete", "other")
"""The kinds of request the stats count: the six endpoints, and everything else."""


class SandboxState:
    """The live data and the accounting of one sandbox, for in-process assertions.

    ``stats()`` is the body of ``GET /_sandbox/stats``. Request counts are keyed by kind
    (see ``KINDS``) and by status as a string (``"200"``, ``"429"``, …); a dropped
    connection counts as ``"reset"``.

    Attributes:
        config: the sandbox's settings.
        store: the runs (see :class:`~bulkruns.sandbox.store.RunStore`).
        limiter: the rate limiter; its ``refused`` counts 429s by the limit that refused.
        dice: the seeded source of latency and fault decisions.
        others: the organisation's other users, at work while a job lists.
        total: requests received (stats requests excluded).
        faults: injected faults by kind (``fail_before``, ``fail_after``, ``reset``, ``stall``).
        latency_total: seconds of latency injected so far, over all requests.
    """

    def __init__(self, config: SandboxConfig, *, store: RunStore | None = None) -> None:
        self.config = config
        self.store = store if store is not None else RunStore.seeded(config.runs, config.seed)
        self.limiter = RateLimiter.from_config(config)
        self.dice = FaultDice(config)
        self.others = OtherPeople(config, self.store)
        self.requests: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        self.total = 0
        self.faults: Counter[str] = Counter()
        self.latency_total = 0.0
        self.closing = asyncio.Event()
        """Set when the sandbox shuts down: stalled requests give up at once."""
        self._request_prefix = secrets.token_hex(4)
        self._request_count = 0

    def next_request_id(self) -> str:
        """A new ``X-Request-Id`` value, unique to this sandbox."""
        self._request_count += 1
        return f"{self._request_prefix}-{self._request_count:08d}"

    def record(self, kind: str, status: int | str) -> None:
        """Count one request of ``kind`` answered with ``status``."""
        self.requests[kind][str(status)] += 1

    def count(self, kind: str | None = None, status: int | str | None = None) -> int:
        """Requests counted so far, of one kind and/or with one status (None = any)."""
        kinds = KINDS if kind is None else (kind,)
        if status is None:
            return sum(self.requests[k].total() for k in kinds)
        return sum(self.requests[k][str(status)] for k in kinds)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A copy of the run as it is now, or None if it does not (or no longer) exist."""
        run = self.store.get(run_id)
        return None if run is None else copy.deepcopy(run)

    def changes(self, run_id: str) -> int:
        """How many changes were applied to the run (archive, activate, update, delete)."""
        return self.store.changes[run_id]

    @property
    def throttled(self) -> int:
        """Requests refused with 429 by the rate limiter."""
        return self.limiter.refused.total()

    @property
    def change_counts(self) -> Mapping[str, int]:
        """Changes applied, by run ID (runs never changed are absent)."""
        return self.store.changes

    def stats(self) -> dict[str, Any]:
        """Requests by kind and status, 429s by limit, changes, runs by status, and what
        Tallyfy's quirks did: JSON-ready.

        ``throttled_by`` counts 429s under the label of the limit that refused them (with
        `` penalty`` for those refused during its penalty); ``limits`` lists the specs of the
        limits in force, and ``cotenant_requests`` the co-tenant's requests that counted.
        ``assignees_stripped`` counts the updates that detached assignees they did not
        send, and the runs that lost some; ``others`` what other people did meanwhile.
        """
        changed = self.store.changes
        return {
            "requests": {kind: dict(counts) for kind, counts in self.requests.items()},
            "total": self.total,
            "throttled": self.throttled,
            "throttled_by": dict(self.limiter.refused),
            "limits": [limit.spec() for limit in self.limiter.limits],
            "cotenant_requests": self.limiter.cotenant_requests,
            "faults": dict(self.faults),
            "latency_seconds": round(self.latency_total, 6),
            "changes": {
                "applied": changed.total(),
                "runs_changed": len(changed),
                "runs_changed_more_than_once": sum(1 for n in changed.values() if n > 1),
            },
            "runs": self.store.counts(),
            "assignees_stripped": {
                "updates": self.store.stripped.total(),
                "runs": len(self.store.stripped),
            },
            "others": dict(self.others.done),
        }
