"""The engine against the sandbox, over real loopback HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from engine_support import FAST, complete, ids_with, items, records, run, serve

from bulkruns.api import Client, Reply
from bulkruns.errors import ConfigError, JournalError
from bulkruns.job import Job, JobOptions, Progress, check_owner
from bulkruns.journal import read_journal
from bulkruns.model import Operation, RunFilter

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("per_page", [100, 7])
async def test_archive_by_filter_takes_every_match_once_despite_drift(
    tmp_path: Path, per_page: int
) -> None:
    async with serve(runs=400) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        assert len(targets) > 50
        journal = tmp_path / "job.jsonl"
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            journal,
            per_page=per_page,
        )
        assert summary.ok == len(targets)
        assert summary.failed == 0
        assert summary.verified
        assert summary.aborted is None
        assert ids_with(sandbox, complete) == set()
        changed = sandbox.state.change_counts
        assert set(changed) == targets
        assert max(changed.values()) == 1  # fault-free: no run changed twice
        ok = items(journal, "ok")
        assert {r["id"] for r in ok} == targets
        assert all(r["before"]["status"] == "complete" for r in ok)
        last = records(journal)[-1]
        assert last["type"] == "summary"
        assert last["ok"] == len(targets)


async def test_activate_and_delete_select_archived_runs(tmp_path: Path) -> None:
    async with serve(runs=300) as (sandbox, client):
        archived = ids_with(sandbox, lambda r: r["archived_at"] is not None)
        assert archived
        summary = await run(
            client,
            Operation(name="activate"),
            RunFilter(all_runs=True),
            tmp_path / "a.jsonl",
            per_page=9,
        )
        assert summary.ok == len(archived)
        assert ids_with(sandbox, lambda r: r["archived_at"] is not None) == set()
        # put them back, then delete them for good
        await run(client, Operation(name="archive"), sorted(archived), tmp_path / "b.jsonl")
        summary = await run(
            client,
            Operation(name="delete"),
            RunFilter(all_runs=True),
            tmp_path / "c.jsonl",
            per_page=9,
        )
        assert summary.ok == len(archived)
        assert all(sandbox.state.run(i) is None for i in archived)
        assert len(sandbox.state.store) == 300 - len(archived)


async def test_delete_archive_first_removes_live_runs(tmp_path: Path) -> None:
    async with serve(runs=200) as (sandbox, client):
        problem = ids_with(sandbox, lambda r: r["status"] == "problem" and not r["archived_at"])
        assert problem
        summary = await run(
            client,
            Operation(name="delete", archive_first=True),
            RunFilter(status="problem"),
            tmp_path / "d.jsonl",
        )
        assert summary.ok == len(problem)
        assert all(sandbox.state.run(i) is None for i in problem)


async def test_update_records_before_state_skips_done_runs_and_undoes(tmp_path: Path) -> None:
    async with serve(runs=200) as (sandbox, client):
        selection = RunFilter(status="active")
        targets = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        already = {i for i in targets if sandbox.state.run(i)["starred"]}  # type: ignore[index]
        names = {i: sandbox.state.run(i)["name"] for i in targets}  # type: ignore[index]
        journal = tmp_path / "u.jsonl"
        fields = {"starred": True, "name": "Reviewed"}
        summary = await run(client, Operation(name="update", fields=fields), selection, journal)
        assert summary.ok + summary.skipped == len(targets)
        assert all(sandbox.state.run(i)["name"] == "Reviewed" for i in targets)  # type: ignore[index]
        befores = {r["id"]: r["before"] for r in items(journal, "ok")}
        assert {i: b["name"] for i, b in befores.items()} == {i: names[i] for i in befores}
        assert {i for i, b in befores.items() if b["starred"]} <= already

        undo = Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "undo.jsonl"))
        undone = await undo.run()
        assert undone.ok == summary.ok
        for run_id, before in befores.items():
            now = sandbox.state.run(run_id)
            assert now is not None
            assert (now["name"], now["starred"]) == (before["name"], before["starred"])


async def test_undo_of_archive_restores_prior_status(tmp_path: Path) -> None:
    async with serve(runs=150) as (sandbox, client):
        before = {i: sandbox.state.run(i) for i in ids_with(sandbox, complete)}
        journal = tmp_path / "job.jsonl"
        await run(client, Operation(name="archive"), RunFilter(status="complete"), journal)
        undo = Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "undo.jsonl"))
        summary = await undo.run()
        assert summary.ok == len(before)
        assert ids_with(sandbox, complete) == set(before)
        header = records(tmp_path / "undo.jsonl")[0]
        assert header["operation"] == "activate"
        assert header["undo_of"] == str(journal.resolve())


async def test_undo_of_delete_is_refused(tmp_path: Path) -> None:
    async with serve(runs=20) as (_sandbox, client):
        journal = tmp_path / "d.jsonl"
        await run(client, Operation(name="delete"), RunFilter(all_runs=True), journal)
        with pytest.raises(ConfigError, match="cannot be undone"):
            Job.undo(client, journal, JobOptions(journal=tmp_path / "u.jsonl"))


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_after": 0.3},
        {"fail_before": 0.3},
        {"reset_rate": 0.2},
        {"stall_rate": 0.05, "stall_seconds": 5.0},
    ],
    ids=["5xx-after-apply", "5xx-before", "resets", "stalls"],
)
async def test_faults_still_bring_every_run_to_its_state(
    tmp_path: Path, faults: dict[str, float]
) -> None:
    async with serve(runs=150, seed=7, **faults) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        journal = tmp_path / "f.jsonl"
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            journal,
            max_attempts=12,
        )
        assert ids_with(sandbox, complete) == set()
        assert summary.failed == 0
        assert summary.ok == len(targets)
        assert summary.retries > 0
        assert {r["id"] for r in items(journal, "ok")} == targets


async def test_429_bursts_pause_the_pool_and_every_run_arrives(tmp_path: Path) -> None:
    config = {"runs": 300, "rate_limit": 40, "window": 1.0, "burst_penalty": 0.5}
    async with serve(**config) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            tmp_path / "t.jsonl",
            rate=0.0,
            concurrency=16,
            max_attempts=30,
        )
        assert summary.throttled > 0
        assert summary.failed == 0
        assert ids_with(sandbox, complete) == set()
        assert summary.ok == len(targets)


async def test_ids_job_dedupes_and_pins_its_plan(tmp_path: Path) -> None:
    async with serve(runs=50) as (sandbox, client):
        live = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))[:10]
        journal = tmp_path / "ids.jsonl"
        summary = await run(client, Operation(name="archive"), [*live, *live[:3]], journal)
        assert summary.ok == 10
        planned = items(journal, "planned")
        assert [r["id"] for r in planned] == live
        kinds = [r["type"] for r in records(journal)]
        assert kinds.index("planned") < kinds.index("claim")


async def test_a_bad_id_fails_before_any_request(tmp_path: Path) -> None:
    async with serve(runs=5) as (sandbox, client):
        journal = tmp_path / "bad.jsonl"
        with pytest.raises(ConfigError, match="'nope' is not a run ID"):
            await run(client, Operation(name="archive"), ["a" * 32, "nope"], journal)
        assert sandbox.state.total == 0
        assert not journal.exists()


async def test_dry_run_writes_a_plan_that_resume_applies_exactly(tmp_path: Path) -> None:
    async with serve(runs=200) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        plan = tmp_path / "plan.jsonl"
        summary = await run(
            client, Operation(name="archive"), RunFilter(status="complete"), plan, dry_run=True
        )
        assert summary.planned == len(targets)
        assert sandbox.state.change_counts == {}
        resumed = await Job.resume(client, plan, JobOptions(**FAST)).run()
        assert resumed.ok == len(targets)
        assert set(sandbox.state.change_counts) == targets


async def test_a_limit_holds_across_sessions_and_resume_finishes_the_rest(tmp_path: Path) -> None:
    async with serve(runs=300) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        journal = tmp_path / "r.jsonl"
        first = await run(
            client, Operation(name="archive"), RunFilter(status="complete"), journal, limit=25
        )
        assert first.ok == 25
        assert not first.verified
        assert first.message is None  # a limit is no failure to prove completeness
        again = await Job.resume(client, journal, JobOptions(**FAST)).run()
        assert again.ok == 0  # the recorded limit is the job's, not the session's
        assert sandbox.state.count("list") == 1
        more = await Job.resume(client, journal, JobOptions(**FAST, limit=60)).run()
        assert more.ok == 35
        rest = await Job.resume(client, journal, JobOptions(**FAST, limit=10_000)).run()
        assert rest.ok == len(targets) - 60
        assert rest.verified
        assert max(sandbox.state.change_counts.values()) == 1
        state = read_journal(journal)
        assert state.sessions == 4
        assert len(state.done) == len(targets)
        assert not state.pending


@pytest.mark.parametrize("limit", [149, 150, 151])
async def test_a_limit_is_exact_however_the_pages_fall(tmp_path: Path, limit: int) -> None:
    async with serve(runs=800) as (sandbox, client):
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(all_runs=True),
            tmp_path / "l.jsonl",
            per_page=10,
            limit=limit,
        )
        assert summary.ok == limit
        assert len(sandbox.state.change_counts) == limit
        assert len(items(tmp_path / "l.jsonl", "ok")) == limit


async def test_resume_refuses_another_orgs_log(tmp_path: Path) -> None:
    async with serve(runs=10) as (sandbox, client):
        journal = tmp_path / "j.jsonl"
        await run(client, Operation(name="archive"), RunFilter(all_runs=True), journal)
        other = Client(org="someone-else", token=sandbox.token, base_url=sandbox.base_url)
        with pytest.raises(JournalError, match="organisation 'sandbox-org'"):
            Job.resume(other, journal)


def test_a_log_belongs_to_a_server_however_its_url_is_spelt(tmp_path: Path) -> None:
    header = {"org": "acme", "base_url": "https://api.tallyfy.com"}
    check_owner(header, "acme", "https://go.tallyfy.com/api", tmp_path)
    check_owner(header, "acme", "https://GO.tallyfy.com/", tmp_path)
    with pytest.raises(JournalError, match="pass the same --base-url"):
        check_owner(header, "acme", "https://tallyfy.example.com/api", tmp_path)
    with pytest.raises(JournalError, match="pass the same --base-url"):
        check_owner({"org": "acme", "base_url": 5}, "acme", "https://go.tallyfy.com/api", tmp_path)


async def test_a_wrong_token_aborts_at_once(tmp_path: Path) -> None:
    async with serve(runs=30) as (sandbox, _client):
        client = Client(org=sandbox.org, token="sbx-refused-7f3a", base_url=sandbox.base_url)
        async with client:
            summary = await run(
                client, Operation(name="archive"), RunFilter(all_runs=True), tmp_path / "x"
            )
        assert summary.aborted == "auth"
        assert sandbox.state.count(status=401) == 1
        assert "sbx-refused-7f3a" not in str(summary.message)
        assert summary.journal is None  # nothing was done: the new log is removed
        assert not (tmp_path / "x").exists()


async def test_the_failure_budget_aborts_a_failing_job(tmp_path: Path) -> None:
    async with serve(runs=100) as (sandbox, client):
        live = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))[:40]
        journal = tmp_path / "b.jsonl"
        summary = await run(
            client, Operation(name="delete"), live, journal, max_failures=3, concurrency=1
        )
        assert summary.aborted == "failure-budget"
        assert summary.failed == 4
        assert sandbox.state.count("delete") == 4
        failed = items(journal, "failed")
        assert failed[0]["status"] == 422
        assert "archive" in failed[0]["error"]


async def test_progress_events_are_frozen_snapshots(tmp_path: Path) -> None:
    events: list[Progress] = []
    async with serve(runs=60) as (_sandbox, client):
        job = Job(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            JobOptions(**FAST, journal=tmp_path / "p.jsonl"),
            on_progress=events.append,
        )
        summary = await job.run()
    done = [e for e in events if e.item is not None]
    assert len(done) == summary.ok
    assert [e.done for e in done] == list(range(1, summary.ok + 1))
    assert events[-1].total == summary.ok
    with pytest.raises(AttributeError):
        events[0].ok = 5  # type: ignore[misc]


async def test_a_new_job_never_overwrites_a_log(tmp_path: Path) -> None:
    journal = tmp_path / "exists.jsonl"
    journal.write_text("keep me\n")
    async with serve(runs=5) as (sandbox, client):
        with pytest.raises(ConfigError, match="already exists"):
            await run(client, Operation(name="archive"), RunFilter(all_runs=True), journal)
        assert sandbox.state.total == 0
    assert journal.read_text() == "keep me\n"


async def test_a_page_that_cannot_be_listed_aborts_cleanly(tmp_path: Path) -> None:
    # every request stalls past the client's read timeout, and one attempt is allowed (a 429
    # would not do: throttles are retried until the server lets the request through)
    async with serve(runs=300, stall_rate=1.0, stall_seconds=5.0) as (sandbox, client):
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(all_runs=True),
            tmp_path / "l.jsonl",
            per_page=10,
            max_attempts=1,
            concurrency=1,
        )
        assert summary.aborted == "listing"
        assert summary.message is not None
        assert summary.message.startswith("list page 1: no answer within 2 s")
        assert sandbox.state.faults["stall"] == 1
        assert summary.ok == 0


async def test_undo_restores_an_id_list_update_and_undoes_an_undo(tmp_path: Path) -> None:
    async with serve(runs=120) as (sandbox, client):
        live = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))
        by_id, by_filter = live[:3], RunFilter(status="active")
        summaries = {i: sandbox.state.run(i)["summary"] for i in by_id}  # type: ignore[index]
        renamed = tmp_path / "ids.jsonl"
        await run(client, Operation(name="update", fields={"summary": "IDS"}), by_id, renamed)
        undone = await Job.undo(client, renamed, JobOptions(**FAST, journal=tmp_path / "u0")).run()
        # runs given by ID are read before they are changed: their before-state is recorded
        assert (undone.ok, undone.skipped) == (3, 0)
        assert {i: sandbox.state.run(i)["summary"] for i in by_id} == summaries  # type: ignore[index]

        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        names = {i: sandbox.state.run(i)["name"] for i in actives}  # type: ignore[index]
        job = tmp_path / "job.jsonl"
        await run(client, Operation(name="update", fields={"name": "Renamed"}), by_filter, job)
        undo = tmp_path / "undo.jsonl"
        await Job.undo(client, job, JobOptions(**FAST, journal=undo)).run()
        assert {i: sandbox.state.run(i)["name"] for i in actives} == names  # type: ignore[index]
        redo = await Job.undo(client, undo, JobOptions(**FAST, journal=tmp_path / "r")).run()
        assert redo.ok == len(actives)
        assert all(sandbox.state.run(i)["name"] == "Renamed" for i in actives)  # type: ignore[index]


async def test_undo_skips_runs_with_no_recorded_before_state(tmp_path: Path) -> None:
    async with serve(runs=20) as (sandbox, client):
        ids = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))[:3]
        log = tmp_path / "old.jsonl"
        header = {
            "type": "job",
            "version": 1,
            "job_id": "0" * 32,
            "operation": "update",
            "fields": {"summary": "X"},
            "params": {},
            "filter": None,
            "org": sandbox.org,
            "base_url": client.base_url,
            "created_at": "2026-01-01T00:00:00Z",
            "dry_run": False,
        }
        lines = [header] + [{"type": "item", "id": i, "outcome": "ok"} for i in ids]
        log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
        undone = await Job.undo(client, log, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert (undone.ok, undone.skipped) == (0, 3)
        assert sandbox.state.count("update") == 0


async def test_a_dry_run_plan_leaves_out_runs_already_as_requested(tmp_path: Path) -> None:
    async with serve(runs=150) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        starred = {i for i in actives if sandbox.state.run(i)["starred"]}  # type: ignore[index]
        assert starred
        plan = tmp_path / "plan.jsonl"
        op = Operation(name="update", fields={"starred": True})
        summary = await run(client, op, RunFilter(status="active"), plan, dry_run=True)
        assert (summary.planned, summary.skipped) == (len(actives - starred), len(starred))
        applied = await Job.resume(client, plan, JobOptions(**FAST)).run()
        assert applied.ok == len(actives - starred)
        assert sandbox.state.count("update") == len(actives - starred)


async def test_undo_waits_for_runs_whose_outcome_was_lost(tmp_path: Path) -> None:
    async with serve(runs=40) as (sandbox, client):
        journal = tmp_path / "j.jsonl"
        await run(client, Operation(name="archive"), RunFilter(status="complete"), journal)
        victim = sorted(ids_with(sandbox, lambda r: r["status"] == "active"))[0]
        with journal.open("ab") as log:  # a crash between a claim and its outcome
            log.write(orjson.dumps({"type": "claim", "id": victim}) + b"\n")
        with pytest.raises(JournalError, match="resume the job first"):
            Job.undo(client, journal, JobOptions(journal=tmp_path / "u.jsonl"))


async def test_resume_refuses_a_log_with_malformed_items(tmp_path: Path) -> None:
    async with serve(runs=10) as (_sandbox, client):
        journal = tmp_path / "j.jsonl"
        await run(client, Operation(name="archive"), ["a" * 32], journal, dry_run=True)
        text = journal.read_text().replace(
            '"outcome":"planned"', '"outcome":"planned","fields":"zzz"'
        )
        journal.write_text(text)
        with pytest.raises(JournalError, match="malformed fields"):
            Job.resume(client, journal)


async def test_rates_must_be_finite() -> None:
    with pytest.raises(ConfigError, match="rate must be"):
        JobOptions(rate=float("inf"))


async def test_the_pool_reaches_its_concurrency_and_never_exceeds_it(tmp_path: Path) -> None:
    async with serve(runs=300, latency=0.02) as (_sandbox, client):
        in_flight = peak = 0
        archive = client.archive

        async def spy(run_id: str) -> Reply:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await archive(run_id)
            finally:
                in_flight -= 1

        client.archive = spy  # type: ignore[method-assign]
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            tmp_path / "c",
            concurrency=5,
        )
        assert summary.ok > 50
        assert peak == 5


async def test_listing_and_changes_share_one_even_pace(tmp_path: Path) -> None:
    rate = 200.0
    async with serve(runs=150) as (_sandbox, client):
        loop = asyncio.get_running_loop()
        sent: list[float] = []
        for name in ("list_runs", "archive"):
            call = getattr(client, name)

            async def spy(*args: Any, _call: Any = call, **kwargs: Any) -> Any:
                sent.append(loop.time())
                return await _call(*args, **kwargs)

            setattr(client, name, spy)
        await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            tmp_path / "p",
            per_page=10,
            rate=rate,
        )
    assert len(sent) > 50
    # a leaky bucket of a few hundredths of a second: never more than the rate allows in any
    # window, and no burst at the start
    for window in (0.05, 0.2, 0.5):
        most = max(sum(1 for t in sent[i:] if t < start + window) for i, start in enumerate(sent))
        assert most <= rate * window + max(2, 0.05 * rate), (window, most)


async def test_stop_lets_in_flight_items_finish_and_resume_completes(tmp_path: Path) -> None:
    async with serve(runs=300, latency=0.02) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        journal = tmp_path / "s.jsonl"
        job: Job | None = None

        def halfway(progress: Progress) -> None:
            if progress.done == 20 and job is not None:
                job.stop()

        options = JobOptions(**{**FAST, "concurrency": 4}, journal=journal)
        job = Job(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            options,
            on_progress=halfway,
        )
        stopped = await job.run()
        assert stopped.aborted == "interrupted"
        assert 20 <= stopped.ok < len(targets)
        state = read_journal(journal)
        assert not state.pending  # the requests in flight finished and were recorded
        assert len(state.done) == stopped.ok
        finished = await Job.resume(client, journal, JobOptions(**FAST)).run()
        assert finished.verified
        assert stopped.ok + finished.ok == len(targets)
        assert max(sandbox.state.change_counts.values()) == 1
