"""The engine against the sandbox behaving as Tallyfy does, not as its docs say: over real
loopback HTTP, each test a way the real server differs and what bulkruns does about it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_support import FAST, complete, ids_with, records, run, serve

from bulkruns.errors import ConfigError
from bulkruns.job import Job, JobOptions, JobSpec
from bulkruns.journal import read_journal
from bulkruns.journal import writer as journal_writer
from bulkruns.model import Operation, RunFilter

pytestmark = pytest.mark.anyio


# -- a plan is exactly its runs --------------------------------------------------------------


async def test_a_plan_of_nothing_resumes_as_nothing(tmp_path: Path) -> None:
    async with serve(runs=120) as (sandbox, client):
        plan = tmp_path / "plan.jsonl"
        query = RunFilter(q="Quarterly Close - Nobody")
        dry = await run(client, Operation(name="archive"), query, plan, dry_run=True)
        assert dry.planned == 0
        # runs that come to match after the plan was made are not the plan's
        for run_id in sorted(ids_with(sandbox, complete))[:40]:
            sandbox.state.store.update(run_id, {"name": "Quarterly Close - Nobody"})
        listed = sandbox.state.count("list")
        applied = await Job.resume(client, plan, JobOptions(**FAST)).run()
        assert (applied.ok, applied.failed) == (0, 0)
        assert sandbox.state.count("list") == listed  # the query is not listed again
        assert sandbox.state.count("archive") == 0


async def test_a_plan_whose_every_run_was_skipped_applies_nothing(tmp_path: Path) -> None:
    async with serve(runs=80) as (sandbox, client):
        starred = RunFilter(starred=True)
        plan = tmp_path / "plan.jsonl"
        update = Operation(name="update", fields={"starred": True})
        dry = await run(client, update, starred, plan, dry_run=True)
        assert dry.planned == 0
        assert dry.skipped > 0  # every starred run is starred already
        assert read_journal(plan).pinned
        applied = await Job.resume(client, plan, JobOptions(**FAST)).run()
        assert applied.ok == 0
        assert sandbox.state.count("update") == 0


# -- dangerous input refused -----------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        Operation(name="archive"),
        Operation(name="update", fields={"starred": True}),
        Operation(name="delete", archive_first=True),
    ],
)
def test_selecting_archived_runs_for_a_change_to_live_ones_is_refused(
    operation: Operation,
) -> None:
    with pytest.raises(ConfigError, match="--status archived would select none") as caught:
        JobSpec.new(operation, RunFilter(status="archived"))
    assert caught.value.setting == "status"


# -- logs that cannot collide, written off the event loop -------------------------------------


async def test_fsyncs_happen_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        where.append(threading.current_thread() is threading.main_thread())
        real_fsync(fd)

    monkeypatch.setattr(journal_writer.os, "fsync", fsync)
    async with serve(runs=150, latency=0.01) as (_sandbox, client):
        journal = tmp_path / "j.jsonl"
        options: dict[str, Any] = {"rate": 40.0, "concurrency": 4}
        summary = await run(client, Operation(name="archive"), RunFilter(), journal, **options)
        assert summary.ok > 100  # a job of about three seconds: fsyncs every second
    in_loop = where[:-1]  # the last is the close's, once the job is over
    assert in_loop.count(False) >= 2, where
    # only the new log's folder entry is synced on the loop, before the first request
    assert in_loop.count(True) <= 1, where
    assert records(journal)[-1]["type"] == "summary"
