"""Synthetic result logs, line for line what a long archive job writes.

A filter job writes a claim just before each item's request and the item's outcome after
it, so a log of ``lines`` lines holds ``lines // 2`` items: mostly ok, with some failures
and retried claims sprinkled in, as a long job that met faults would have.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

_CHUNK = 10_000  # items written per write


def write_journal(
    path: Path,
    *,
    lines: int,
    org: str,
    base_url: str,
    status: str = "complete",
    failures: float = 0.002,
    seed: int = 7,
) -> int:
    """Write a filter job's log of ``lines`` lines; the number of items in it.

    ``failures`` is the share of items whose outcome is a failure (resumed first).
    """
    rng = random.Random(seed)
    header = {
        "type": "job",
        "version": 1,
        "job_id": f"{rng.getrandbits(128):032x}",
        "operation": "archive",
        "params": {
            "concurrency": 16,
            "rate": 10.0,
            "max_attempts": 8,
            "max_failures": 100,
            "archived": "status",
            "per_page": 100,
        },
        "filter": {"status": status},
        "org": org,
        "base_url": base_url,
        "created_at": "2026-01-01T00:00:00Z",
        "dry_run": False,
    }
    before = {"status": status, "archived_at": None}
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    items = (lines - 2) // 2  # the header and a summary line around the pairs
    written = 0
    with path.open("wb") as out:
        out.write(dumps(header, option=newline))
        while written < items:
            batch = []
            for n in range(written, min(items, written + _CHUNK)):
                run_id = f"{rng.getrandbits(128):032x}"
                batch.append(
                    dumps({"type": "claim", "id": run_id, "before": before}, option=newline)
                )
                roll = rng.random()
                if roll < failures:  # a failure, which a resume retries first
                    item = {
                        "type": "item",
                        "id": run_id,
                        "outcome": "failed",
                        "status": 503,
                        "attempts": 8,
                        "error": "Service Unavailable.",
                        "request_id": f"5f3a9c1e-{n:08d}",
                        "before": before,
                    }
                else:
                    item = {
                        "type": "item",
                        "id": run_id,
                        "outcome": "ok",
                        "status": 200,
                        "attempts": 1 if roll > 0.01 else 2,  # a few were retried
                        "request_id": f"5f3a9c1e-{n:08d}",
                        "before": before,
                    }
                batch.append(dumps(item, option=newline))
            out.write(b"".join(batch))
            written += len(batch) // 2
        summary = {
            "type": "summary",
            "operation": "archive",
            "ok": items,
            "failed": 0,
            "skipped": 0,
            "planned": 0,
            "requests": items,
            "retries": 0,
            "throttled": 0,
            "elapsed": items / 10,
            "items_per_second": 10.0,
            "sweeps": 1,
            "verified": False,
            "aborted": "interrupted",
            "dry_run": False,
            "ended_at": "2026-01-02T00:00:00Z",
        }
        out.write(dumps(summary, option=newline))
    return items
