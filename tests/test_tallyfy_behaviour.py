"""The engine against the sandbox behaving as Tallyfy does, not as its docs say: over real
loopback HTTP, each test a way the real server differs and what bulkruns does about it."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from cli_support import ThreadedSandbox, job_header, start
from cli_support import run as cli_run
from engine_support import FAST, complete, ids_with, records, run, serve

from bulkruns.api import Reply
from bulkruns.cli.lock import JobLock
from bulkruns.errors import ConfigError, PermissionDenied, ServerError
from bulkruns.job import Job, JobOptions, JobSpec, Summary
from bulkruns.journal import read_journal
from bulkruns.journal import writer as journal_writer
from bulkruns.model import Operation, RunFilter
from bulkruns.sandbox import Limit, Sandbox

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
        summary = await run(
            client, Operation(name="archive"), RunFilter(all_runs=True), journal, **options
        )
        assert summary.ok > 100  # a job of about three seconds: fsyncs every second
    in_loop = where[:-1]  # the last is the close's, once the job is over
    assert in_loop.count(False) >= 2, where
    # only the new log's folder entry is synced on the loop, before the first request
    assert in_loop.count(True) <= 1, where
    assert records(journal)[-1]["type"] == "summary"


# -- an update never strips assignees --------------------------------------------------------


def assignees(sandbox: Sandbox, run_ids: Iterable[str]) -> dict[str, tuple[Any, Any]]:
    found = {}
    for run_id in run_ids:
        run_ = sandbox.state.run(run_id)
        assert run_ is not None
        found[run_id] = (run_["users"], run_["groups"])
    return found


async def test_an_update_by_filter_keeps_every_assignee_and_its_undo_restores(
    tmp_path: Path,
) -> None:
    async with serve(runs=200, strip_unsent_assignees=True) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        kept = assignees(sandbox, actives)
        assert sum(1 for users, groups in kept.values() if users or groups) > 20
        journal = tmp_path / "star.jsonl"
        update = Operation(name="update", fields={"starred": True})
        summary = await run(client, update, RunFilter(status="active"), journal)
        assert summary.failed == 0
        assert assignees(sandbox, actives) == kept
        assert sandbox.state.count("get") == 0  # the listing showed them
        ok = [r for r in records(journal) if r.get("outcome") == "ok"]
        assert ok
        assert all({"starred", "users", "groups"} <= set(r["before"]) for r in ok)
        # someone strips a run's assignees afterwards; the undo gives them back as recorded
        victim = ok[0]["id"]
        sandbox.state.store.update(victim, {"users": [], "groups": []})
        undo = await Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert undo.failed == 0
        assert assignees(sandbox, actives) == kept
        assert all(not sandbox.state.run(r["id"])["starred"] for r in ok)  # type: ignore[index]


async def test_an_update_by_id_reads_each_run_first(tmp_path: Path) -> None:
    async with serve(runs=60, strip_unsent_assignees=True) as (sandbox, client):
        live = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))[:12]
        archived = sorted(ids_with(sandbox, lambda r: r["archived_at"] is not None))[:1]
        kept = assignees(sandbox, live)
        journal = tmp_path / "ids.jsonl"
        update = Operation(name="update", fields={"summary": "By ID"})
        summary = await run(client, update, live + archived, journal)
        assert (summary.ok, summary.failed) == (12, 1)
        assert assignees(sandbox, live) == kept
        assert sandbox.state.count("get") == 13
        assert sandbox.state.count("update") == 12  # none for the run that could not be read
        failed = [r for r in records(journal) if r.get("outcome") == "failed"]
        assert failed[0]["id"] == archived[0]
        assert "cannot read the run's current assignees" in failed[0]["error"]
        assert "none were removed" in failed[0]["error"]
        # the runs' before-states were read, so an ID-list update can be undone
        undo = await Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert undo.ok == 12
        assert all(sandbox.state.run(i)["summary"] != "By ID" for i in live)  # type: ignore[index]
        assert assignees(sandbox, live) == kept


async def test_an_update_of_a_field_the_listing_does_not_show_reads_it_for_the_undo(
    tmp_path: Path,
) -> None:
    async with serve(runs=80, list_omits=("is_public",)) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        was = {i: sandbox.state.run(i)["is_public"] for i in actives}  # type: ignore[index]
        journal = tmp_path / "public.jsonl"
        update = Operation(name="update", fields={"is_public": True})
        summary = await run(client, update, RunFilter(status="active"), journal)
        assert summary.ok + summary.skipped == len(actives)
        assert sandbox.state.count("get") == len(actives)  # the listing could not tell
        ok = [r for r in records(journal) if r.get("outcome") == "ok"]
        assert ok
        assert all("is_public" in r["before"] for r in ok)
        undo = await Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert undo.failed == 0
        assert {i: sandbox.state.run(i)["is_public"] for i in actives} == was  # type: ignore[index]


# -- an activate by ID records only the runs it restored --------------------------------------


async def test_an_activate_by_id_skips_live_runs_so_its_undo_archives_only_the_restored(
    tmp_path: Path,
) -> None:
    async with serve(runs=60) as (sandbox, client):
        archived = sorted(ids_with(sandbox, lambda r: r["archived_at"] is not None))[:4]
        live = sorted(ids_with(sandbox, lambda r: r["archived_at"] is None))[:3]
        assert len(archived) == 4
        journal = tmp_path / "restore.jsonl"
        summary = await run(client, Operation(name="activate"), archived + live, journal)
        assert (summary.ok, summary.skipped, summary.failed) == (4, 3, 0)
        assert sandbox.state.count("activate") == 4  # none for the runs that read as live
        notes = {r["id"]: r.get("note") for r in records(journal) if r.get("outcome")}
        assert {notes[i] for i in live} == {"already live"}
        undo = await Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert undo.ok == 4
        assert all(sandbox.state.run(i)["archived_at"] for i in archived)  # type: ignore[index]
        assert not any(sandbox.state.run(i)["archived_at"] for i in live)  # type: ignore[index]
        # the undo of an archive restores what its log shows archived, without reading
        reads = sandbox.state.count("get")
        redo = Job.undo(client, tmp_path / "u", JobOptions(**FAST, journal=tmp_path / "r"))
        assert (await redo.run()).ok == 4
        assert sandbox.state.count("get") == reads
        assert not any(sandbox.state.run(i)["archived_at"] for i in archived)  # type: ignore[index]


async def test_an_archive_first_delete_refused_says_the_run_was_archived(tmp_path: Path) -> None:
    async with serve(runs=40) as (sandbox, client):
        targets = sorted(ids_with(sandbox, complete))[:3]

        async def refused(run_id: str) -> Reply:
            raise PermissionDenied(403, "You do not have permission to delete this process")

        client.delete = refused  # type: ignore[method-assign]
        delete = Operation(name="delete", archive_first=True)
        journal = tmp_path / "d.jsonl"
        summary = await run(client, delete, targets, journal)
        assert summary.failed == 3
        assert all(sandbox.state.run(i)["archived_at"] for i in targets)  # type: ignore[index]
        errors = {r["error"] for r in records(journal) if r.get("outcome") == "failed"}
        assert errors == {
            "HTTP 403: You do not have permission to delete this process "
            "(archived first: the run is archived, not deleted)"
        }


def test_a_resumed_job_is_never_a_dry_run(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"")
    with pytest.raises(ConfigError, match="a resumed job is never a dry run"):
        JobSpec.resume(journal, JobOptions(dry_run=True))


# -- claims when the request leaves, and lost answers settled by reading --------------------


async def test_a_claim_is_written_only_for_a_request_that_left(tmp_path: Path) -> None:
    async with serve(runs=80) as (sandbox, client):
        journal = tmp_path / "slow.jsonl"
        # the requests in flight get their grace to finish: every claim's request is answered
        options = JobOptions(rate=2.0, concurrency=8, journal=journal)
        job = Job(client, Operation(name="archive"), RunFilter(status="complete"), options)
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.run)
            await anyio.sleep(1.2)  # the list page and a couple of archives leave; the rest wait
            job.stop()
        claims = {r["id"] for r in records(journal) if r["type"] == "claim"}
        assert claims  # some were sent
        assert len(claims) <= sandbox.state.count("archive")


async def test_a_resumed_claim_is_settled_by_reading_the_run(tmp_path: Path) -> None:
    async with serve(runs=60) as (sandbox, client):
        journal = tmp_path / "crashed.jsonl"
        done, untouched = sorted(ids_with(sandbox, complete))[:2]
        await run(client, Operation(name="archive"), [done, untouched], journal, dry_run=True)
        with journal.open("ab") as log:  # the session died after both requests had left
            for run_id in (done, untouched):
                log.write(orjson.dumps({"type": "claim", "id": run_id}) + b"\n")
        sandbox.state.store.archive(done)  # the first one's archive had been applied
        summary = await Job.resume(client, journal, JobOptions(**FAST)).run()
        assert summary.ok == 2
        assert sandbox.state.count("get") == 2
        assert sandbox.state.count("archive") == 1  # only the run that was still live
        notes = {r["id"]: r.get("note") for r in records(journal) if r.get("outcome") == "ok"}
        assert notes == {done: "already archived by an earlier attempt", untouched: None}


async def test_each_step_of_archive_first_has_its_own_attempts(tmp_path: Path) -> None:
    async with serve(runs=40) as (sandbox, client):
        targets = sorted(ids_with(sandbox, complete))[:5]
        failed_once: set[tuple[str, str]] = set()

        def flaky(step: str, call: Callable[[str], Awaitable[Reply]]) -> Any:
            async def wrapper(run_id: str) -> Reply:
                if (step, run_id) not in failed_once:
                    failed_once.add((step, run_id))
                    raise ServerError(503, "Service Unavailable.")
                return await call(run_id)

            return wrapper

        client.archive = flaky("archive", client.archive)  # type: ignore[method-assign]
        client.delete = flaky("delete", client.delete)  # type: ignore[method-assign]
        delete = Operation(name="delete", archive_first=True)
        summary = await run(client, delete, targets, tmp_path / "d.jsonl", max_attempts=2)
        assert (summary.ok, summary.failed) == (5, 0)  # each step had its two attempts
        assert all(sandbox.state.run(i) is None for i in targets)


# -- pages as served ------------------------------------------------------------------------


@pytest.mark.parametrize("reported", ["served", "asked"])
async def test_pages_smaller_than_asked_are_all_read(tmp_path: Path, reported: str) -> None:
    async with serve(runs=400, page_size=30, per_page_reported=reported) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        unstarred = {i for i in actives if not sandbox.state.run(i)["starred"]}  # type: ignore[index]
        assert len(actives) > 100  # several pages of 30, though 100 a page are asked
        update = Operation(name="update", fields={"starred": True})
        plan = await run(client, update, RunFilter(status="active"), tmp_path / "p", dry_run=True)
        assert plan.planned == len(unstarred)
        assert plan.verified
        summary = await run(client, update, RunFilter(status="active"), tmp_path / "j")
        assert summary.ok == len(unstarred)
        assert summary.verified
        assert set(sandbox.state.change_counts) == unstarred


def test_list_prints_every_page_as_served(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=300, page_size=25).start()
    try:
        expected = set(box.ids(lambda r: r["status"] == "complete" and not r["archived_at"]))
        assert len(expected) > 50
        result = cli_run(
            ["list", "--status", "complete", "--rate", "0"], env=box.env(tmp_path), cwd=tmp_path
        )
        assert result.code == 0, result.err
        printed = [orjson.loads(line)["id"] for line in result.out.splitlines()]
        assert len(printed) == len(set(printed)) == len(expected)
        assert set(printed) == expected
    finally:
        box.stop()


# -- a proof that is a proof -----------------------------------------------------------------


OTHERS = [
    {"launches_per_list": 2},  # new runs land on page 1 and push the rest back
    {"renames_per_list": 3, "sort": "name"},  # renamed runs move under sort=name
]


async def churned_update(
    tmp_path: Path, others: dict[str, Any], **config: Any
) -> tuple[Summary, set[str]]:
    """Star every active run while other people work; the summary, and the runs that
    matched from the start and were left unstarred."""
    others = dict(others)
    sort = others.pop("sort", None)
    async with serve(runs=300, **others, **config) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        matching = {i for i in actives if not sandbox.state.run(i)["starred"]}  # type: ignore[index]
        update = Operation(name="update", fields={"starred": True})
        query = RunFilter(status="active", sort=sort)
        summary = await run(client, update, query, tmp_path / "j", per_page=10, max_sweeps=5)
        left = {i for i in matching if not sandbox.state.run(i)["starred"]}  # type: ignore[index]
        assert sandbox.state.others.done.total() > 0
    return summary, left


async def test_a_listing_that_never_holds_still_proves_nothing(tmp_path: Path) -> None:
    summary, _ = await churned_update(tmp_path, OTHERS[0])
    # runs launched at every page move the total: no pass can see the live set whole
    assert not summary.verified
    assert summary.message is not None
    assert "the listing kept moving while it was read" in summary.message


@pytest.mark.parametrize("others", OTHERS)
async def test_a_proof_is_never_claimed_with_runs_left(
    tmp_path: Path, others: dict[str, Any]
) -> None:
    summary, left = await churned_update(tmp_path, others)
    if summary.verified:
        assert left == set()
    else:
        assert summary.message is not None


@pytest.mark.parametrize("others", OTHERS)
async def test_a_plan_lists_again_until_the_listing_held_still(
    tmp_path: Path, others: dict[str, Any]
) -> None:
    others = dict(others)
    sort = others.pop("sort", None)
    async with serve(runs=300, others_for_lists=6, **others) as (sandbox, client):
        actives = ids_with(sandbox, lambda r: r["status"] == "active" and not r["archived_at"])
        plan = tmp_path / "plan.jsonl"
        query = RunFilter(status="active", sort=sort)
        dry = await run(client, Operation(name="archive"), query, plan, dry_run=True, per_page=10)
        planned = {r["id"] for r in records(plan) if r.get("outcome") == "planned"}
        # one pass while others worked missed runs; the plan is proven only once a pass
        # held still, and by then it holds every run that matched from the start
        assert sandbox.state.others.done.total() > 0
        assert actives <= planned
        assert dry.verified
        assert dry.sweeps > 1


@pytest.mark.parametrize("others", OTHERS)
async def test_once_the_listing_holds_still_every_run_is_taken_and_proven(
    tmp_path: Path, others: dict[str, Any]
) -> None:
    summary, left = await churned_update(tmp_path, others, others_for_lists=25)
    assert left == set()  # every run that matched from the start was changed
    assert summary.verified


# -- trust, but verify the listing ----------------------------------------------------------


async def test_a_status_the_server_ignores_changes_only_the_runs_that_match(
    tmp_path: Path,
) -> None:
    async with serve(runs=300, ignored_filters=("status",)) as (sandbox, client):
        complete_runs = ids_with(sandbox, complete)
        live = ids_with(sandbox, lambda r: r["archived_at"] is None)
        journal = tmp_path / "j.jsonl"
        summary = await run(
            client, Operation(name="archive"), RunFilter(status="complete"), journal
        )
        assert set(sandbox.state.change_counts) == complete_runs  # never an active one
        assert summary.ok == len(complete_runs)
        assert summary.mismatched == len(live - complete_runs)
        assert records(journal)[-1]["mismatched"] == summary.mismatched


async def test_a_filter_a_run_cannot_show_ignored_by_the_server_changes_nothing(
    tmp_path: Path,
) -> None:
    async with serve(runs=200, ignored_filters=("folder",)) as (sandbox, client):
        live = ids_with(sandbox, lambda r: r["archived_at"] is None)
        journal = tmp_path / "j.jsonl"
        folder = RunFilter(folder="f" * 32)
        summary = await run(client, Operation(name="archive"), folder, journal)
        assert summary.aborted == "filter-ignored"
        assert summary.message is not None
        assert "seems to ignore it" in summary.message
        assert "folder" in summary.message
        assert sandbox.state.change_counts == {}
        assert not journal.exists()  # nothing was done, nothing to resume
        # said on purpose, every run is meant
        meant = RunFilter(folder="f" * 32, all_runs=True)
        everything = await run(client, Operation(name="archive"), meant, tmp_path / "all.jsonl")
        assert everything.aborted is None
        assert set(sandbox.state.change_counts) == live


async def test_an_ignored_filter_is_found_beside_one_that_works(tmp_path: Path) -> None:
    async with serve(runs=200, ignored_filters=("folder",)) as (sandbox, client):
        folders = {sandbox.state.run(i)["folder_id"] for i in sandbox.state.store.ids()}  # type: ignore[index]
        folder = sorted(f for f in folders if f is not None)[0]
        # the status is applied, the folder ignored: every complete run would come back
        query = RunFilter(status="complete", folder=folder)
        summary = await run(client, Operation(name="archive"), query, tmp_path / "j")
        assert summary.aborted == "filter-ignored"
        assert summary.message is not None
        assert "folder" in summary.message
        assert sandbox.state.change_counts == {}


async def test_a_filter_that_selects_part_of_the_organisation_is_trusted(tmp_path: Path) -> None:
    async with serve(runs=200) as (sandbox, client):
        folders = {sandbox.state.run(i)["folder_id"] for i in sandbox.state.store.ids()}  # type: ignore[index]
        folder = sorted(f for f in folders if f is not None)[0]
        chosen = ids_with(sandbox, lambda r: r["folder_id"] == folder and not r["archived_at"])
        summary = await run(
            client, Operation(name="archive"), RunFilter(folder=folder), tmp_path / "j.jsonl"
        )
        assert summary.aborted is None
        assert set(sandbox.state.change_counts) == chosen


def test_a_job_with_no_filter_must_say_it_means_every_run() -> None:
    with pytest.raises(ConfigError, match="no filter given") as caught:
        JobSpec.new(Operation(name="archive"), RunFilter(sort="name"))
    assert caught.value.setting == "all_runs"
    assert JobSpec.new(Operation(name="archive"), RunFilter(all_runs=True)).query is not None


@pytest.mark.parametrize("reading", ["ignored", "matches-none"])
async def test_archived_runs_are_listed_the_way_tallyfys_clients_list_them(
    tmp_path: Path, reading: str
) -> None:
    async with serve(runs=300, status_archived=reading) as (sandbox, client):
        archived = ids_with(sandbox, lambda r: r["archived_at"] is not None)
        assert len(archived) > 10
        summary = await run(
            client, Operation(name="activate"), RunFilter(all_runs=True), tmp_path / "j"
        )
        assert summary.ok == len(archived)
        assert ids_with(sandbox, lambda r: r["archived_at"] is not None) == set()
        # the docs' status=archived, on such a server, selects no archived run: whatever it
        # lists is left alone and said
        await run(client, Operation(name="archive"), list(archived), tmp_path / "back")
        styled = await run(
            client,
            Operation(name="activate"),
            RunFilter(all_runs=True),
            tmp_path / "docs",
            archived="status",
        )
        assert styled.ok == 0
        assert sandbox.state.count("activate") == len(archived)


def test_the_command_line_refuses_a_filter_the_server_ignores(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=120, ignored_filters=("tag",), status_archived="ignored").start()
    try:
        env = box.env(tmp_path)
        result = cli_run(["archive", "--tag", "t" * 32, "--rate", "0"], env=env, cwd=tmp_path)
        assert result.code == 2
        assert result.out == ""
        lines = result.err.splitlines()
        assert lines[-1].startswith("bulkruns: error: Tallyfy counts as many runs")
        assert "tag" in lines[-1]
        assert "--all" in lines[-1]
        assert box.stats()["changes"]["applied"] == 0
        assert not list(tmp_path.glob("bulkruns-*.jsonl"))
        # nor does list print an ID file of them
        for form in ("--ids", "--count"):
            listed = cli_run(["list", "--tag", "t" * 32, form], env=env, cwd=tmp_path)
            assert listed.code == 2, listed.err
            assert listed.out == ""
            assert "seems to ignore it" in listed.err
        # activate, on a server whose status=archived lists nothing it should, by default
        # restores every archived run: it lists them with archived=only
        archived = box.ids(lambda r: r["archived_at"] is not None)
        restored = cli_run(["activate", "--all", "--rate", "0", "--json"], env=env, cwd=tmp_path)
        assert restored.code == 0, restored.err
        assert orjson.loads(restored.out)["ok"] == len(archived)
    finally:
        box.stop()


# -- logs that cannot collide ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["resume", "undo"])
def test_resume_and_undo_read_their_log_only_once_the_lock_is_held(
    tmp_path: Path, command: str
) -> None:
    box = ThreadedSandbox(runs=10).start()
    try:
        env = box.env(tmp_path)
        item = {"type": "item", "id": "0" * 32, "outcome": "ok"}
        # a log another session of the job is still writing: only its first line is whole yet
        log = tmp_path / "busy.jsonl"
        log.write_bytes(job_header(box) + b"{half a record\n" + orjson.dumps(item) + b"\n")
        with JobLock(box.org, box.base_url, directory=tmp_path / "state" / "bulkruns"):
            result = cli_run([command, str(log)], env=env, cwd=tmp_path)
        assert result.code == 2
        assert "another bulkruns job for organisation" in result.err
        assert "corrupt" not in result.err  # refused before the log was read
        assert box.stats()["total"] == 0
    finally:
        box.stop()


# -- a throttle is not a failure ------------------------------------------------------------


async def test_429s_spend_no_attempts_and_an_edge_proxys_html_429_is_one(tmp_path: Path) -> None:
    # no X-RateLimit-* headers: the pacer must meet 429s to find the limit
    edge = Limit.parse("8/1s penalty=1 html quiet")  # an edge proxy's: its 429s are HTML
    shape = (edge,)
    async with serve(runs=80, rate_limit=0, limits=shape) as (sandbox, client):
        targets = ids_with(sandbox, complete)
        # told far too fast, with a single attempt per request: every 429 is waited out
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            tmp_path / "j",
            rate=200.0,
            max_attempts=1,
        )
        assert summary.failed == 0
        assert summary.ok == len(targets)
        assert summary.throttled > 0
        refused = sandbox.state.stats()["throttled_by"]
        assert sum(refused.values()) == summary.throttled  # each an HTML page, read as a 429


async def test_a_wait_longer_than_max_wait_stops_the_job_resumably(tmp_path: Path) -> None:
    hourly = (Limit.parse("6/1h fixed hourly"),)
    async with serve(runs=60, rate_limit=0, limits=hourly) as (_, client):
        journal = tmp_path / "capped.jsonl"
        summary = await run(
            client,
            Operation(name="archive"),
            RunFilter(status="complete"),
            journal,
            max_wait=60.0,
        )
        assert summary.aborted == "throttled"
        assert summary.message is not None
        assert "hourly limit" in summary.message
        assert "--max-wait" in summary.message
        assert summary.failed == 0  # a throttle is no failure
        state = read_journal(journal)
        assert state.counts["failed"] == 0
        assert JobSpec.resume(journal).query is not None  # resumable, by its query


def test_a_long_pause_is_shown_and_max_wait_ends_it_resumably(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=60, rate_limit=0, limits=(Limit.parse("4/10min quiet"),)).start()
    try:
        env = box.env(tmp_path)
        args = ["archive", "--status", "complete", "--rate", "0", "--log", "j.jsonl"]
        # a wait of about ten minutes, more than --max-wait allows: stopped, resumable
        capped = cli_run([*args, "--max-wait", "1min"], env=env, cwd=tmp_path)
        assert capped.code == 3, capped.err
        assert "archive aborted (throttled)" in capped.out
        assert "longer than --max-wait 60 s" in capped.out
        assert f"resume: bulkruns resume {tmp_path / 'j.jsonl'}" in capped.out
        # allowed to wait, it says so at once, with the reason and when it ends
        waiting = start([*args[:-2], "--log", "w.jsonl", "--max-wait", "2h"], env=env, cwd=tmp_path)
        try:
            line = ""
            assert waiting.stderr is not None
            while "waiting until" not in line:
                line = waiting.stderr.readline()
                assert line, "the job ended without saying it waits"
            assert re.search(r"Retry-After \d+ s: waiting until \d\d:\d\d UTC", line), line
            waiting.send_signal(signal.SIGTERM)
            assert waiting.wait(30) == 130
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
            waiting.communicate()
    finally:
        box.stop()


async def test_a_lost_update_answer_keeps_the_claims_before_state_for_undo(tmp_path: Path) -> None:
    async with serve(runs=40) as (sandbox, client):
        target = sorted(ids_with(sandbox, complete))[0]
        run_ = sandbox.state.run(target)
        assert run_ is not None
        original = run_["summary"]
        journal = tmp_path / "plan.jsonl"
        update = Operation(name="update", fields={"summary": "NEW"})
        await run(client, update, [target], journal, dry_run=True)
        before = {"summary": original, "users": run_["users"], "groups": run_["groups"]}
        with journal.open("ab") as log:  # the update left; the session died without its answer
            log.write(orjson.dumps({"type": "claim", "id": target, "before": before}) + b"\n")
        sandbox.state.store.update(
            target, {"summary": "NEW", "users": run_["users"], "groups": run_["groups"]}
        )
        resumed = await Job.resume(client, journal, JobOptions(**FAST)).run()
        assert resumed.ok == 1
        assert sandbox.state.count("update") == 0  # read first: it was applied already
        undo = await Job.undo(client, journal, JobOptions(**FAST, journal=tmp_path / "u")).run()
        assert undo.ok == 1
        assert sandbox.state.run(target)["summary"] == original  # type: ignore[index]


async def test_a_resumed_archive_whose_run_cannot_be_read_keeps_its_lost_answer(
    tmp_path: Path,
) -> None:
    async with serve(runs=40) as (sandbox, client):
        target = sorted(ids_with(sandbox, complete))[0]
        journal = tmp_path / "plan.jsonl"
        await run(client, Operation(name="archive"), [target], journal, dry_run=True)
        with journal.open("ab") as log:  # the archive left; its answer was lost
            log.write(orjson.dumps({"type": "claim", "id": target}) + b"\n")
        sandbox.state.store.archive(target)  # it had been applied
        reads: list[str] = []
        get_run = client.get_run

        async def unreadable(run_id: str) -> Reply:
            reads.append(run_id)
            raise ServerError(503, "Service Unavailable.")

        client.get_run = unreadable  # type: ignore[method-assign]
        options = JobOptions(**FAST, max_attempts=1)
        resumed = await Job.resume(client, journal, options).run()
        client.get_run = get_run  # type: ignore[method-assign]
        # the read failed, so the 404 to the archive still means an earlier attempt made it
        assert reads == [target]
        assert (resumed.ok, resumed.failed) == (1, 0)
        notes = [r.get("note") for r in records(journal) if r.get("outcome") == "ok"]
        assert notes == ["already archived by an earlier attempt"]
