"""``bulkruns report LOG``: what a result log says, read from real jobs' logs through real
subprocesses, and from logs written by hand for the cases a job rarely leaves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_support import TOKEN, ThreadedSandbox, run

from bulkruns.cli.report import read_report, report_lines
from bulkruns.journal import read_journal


@pytest.fixture
def box() -> Iterator[ThreadedSandbox]:
    sandbox = ThreadedSandbox(runs=120).start()
    yield sandbox
    sandbox.stop()


def no_connection(tmp_path: Path) -> dict[str, str]:
    """An environment with no organisation, token or server: report needs none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYFY_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def test_report_of_a_job_with_failures_and_its_failed_ids(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    live = box.ids(lambda r: r["archived_at"] is None)[:3]
    archived = box.ids(lambda r: r["archived_at"] is not None)[:2]
    (tmp_path / "ids.txt").write_text("\n".join(live + archived) + "\n")
    job = run(
        ["delete", "--ids-file", "ids.txt", "--yes", "--rate", "0", "--log", "j.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert job.code == 1, job.err
    sent = box.stats()["total"]
    env = no_connection(tmp_path)

    text = run(["report", "j.jsonl"], env=env, cwd=tmp_path)
    as_json = run(["report", "j.jsonl", "--json"], env=env, cwd=tmp_path)
    failed_ids = run(["report", "j.jsonl", "--failed-ids"], env=env, cwd=tmp_path)

    assert text.code == as_json.code == failed_ids.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].startswith("delete, started 20")
    assert lines[0].endswith(f"organisation {box.org} at {box.base_url}")
    assert lines[1] == "  selection: the runs listed in the log (an ID file or a plan)"
    assert lines[2].startswith("  settings: concurrency 16, rate 0.0, max_attempts 8")
    assert lines[3] == (
        "outcomes over 1 session: ok 2  failed 3  skipped 0  unfinished 0  not started 0"
    )
    assert lines[4] == "failures by error:"
    assert lines[5].startswith("       3  HTTP 422: ")
    assert "[request" not in lines[5]  # what differs from run to run is left out
    assert lines[6].startswith("session 1: ended 20")
    assert " 5 items " in lines[6]
    assert "items/s" in lines[6]
    assert "selection: the runs were given, so there was no query to verify" in lines
    assert lines[-4:] == [
        "next: resume of j.jsonl would delete 3 runs recorded as still to do: "
        "failed 3, unfinished 0, not started 0",
        "  and nothing else: every run of the job is in the log (no query to list again)",
        "  already done, left alone: 2",
        f"  bulkruns resume {tmp_path / 'j.jsonl'}",
    ]

    report = as_json.json
    assert (report["ok"], report["failed"], report["skipped"]) == (2, 3, 0)
    (group,) = report["failures"]
    assert group["count"] == 3
    assert group["sample"]["id"] in live
    assert group["sample"]["status"] == 422
    assert report["job"]["operation"] == "delete"
    assert report["job"]["org"] == box.org
    assert report["verified"] is None
    assert [s["items"] for s in report["sessions"]] == [5]
    assert report["next"]["to_do"] == 3
    assert report["next"]["query_listed_again"] is False

    assert failed_ids.out.splitlines() == live  # one a line, to feed --ids-file
    assert box.stats()["total"] == sent  # nothing was sent
    assert TOKEN not in text.out + as_json.out

    # the failed IDs feed a job: archive them, and the delete's resume then succeeds
    (tmp_path / "failed.txt").write_text(failed_ids.out)
    archive = run(
        ["archive", "--ids-file", "failed.txt", "--rate", "0", "--json"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert archive.code == 0, archive.err
    assert archive.json["ok"] == 3


def test_report_over_sessions_says_the_selection_was_verified(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    targets = box.ids(lambda r: r["status"] == "complete" and r["archived_at"] is None)
    first = run(
        ["archive", "--status", "complete", "--limit", "4", "--rate", "0", "--log", "j.jsonl"],
        env=env,
        cwd=tmp_path,
    )
    unverified = run(["report", "j.jsonl", "--json"], env=no_connection(tmp_path), cwd=tmp_path)
    rest = run(["resume", "j.jsonl", "--limit", "100000", "--rate", "0"], env=env, cwd=tmp_path)
    report = run(["report", "j.jsonl"], env=no_connection(tmp_path), cwd=tmp_path)
    as_json = run(["report", "j.jsonl", "--json"], env=no_connection(tmp_path), cwd=tmp_path)

    assert first.code == rest.code == 0, first.err + rest.err
    assert unverified.json["verified"] is False
    assert unverified.json["next"]["query_listed_again"] is True
    lines = report.out.splitlines()
    assert "  selection: filter status=complete" in lines
    assert f"outcomes over 2 sessions: ok {len(targets)}  failed 0" in report.out
    assert [line[:10] for line in lines if line.startswith("session ")] == [
        "session 1:",
        "session 2:",
    ]
    assert (
        "selection: verified: the last pass over the query found no matching run "
        "the job had not handled"
    ) in lines
    assert "then the rest of the selection: it lists the job's query again" in report.out
    sessions = as_json.json["sessions"]
    assert [s["items"] for s in sessions] == [4, len(targets) - 4]
    assert as_json.json["verified"] is True
    assert as_json.json["ok"] == len(targets)


def test_report_of_a_dry_run_shows_no_speed(box: ThreadedSandbox, tmp_path: Path) -> None:
    plan = run(
        ["archive", "--status", "complete", "--dry-run", "--rate", "0", "--log", "plan.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert plan.code == 0, plan.err

    report = run(["report", "plan.jsonl"], env=no_connection(tmp_path), cwd=tmp_path)
    as_json = run(["report", "plan.jsonl", "--json"], env=no_connection(tmp_path), cwd=tmp_path)

    assert report.code == 0, report.err
    assert report.out.startswith("dry run of archive, started ")
    assert "items/s" not in report.out
    assert "selection: verified: the whole selection was listed" in report.out.splitlines()
    assert as_json.json["sessions"][0]["items_per_second"] is None
    planned = as_json.json["planned"]
    assert planned == len(box.ids(lambda r: r["status"] == "complete" and r["archived_at"] is None))
    assert f"would archive {planned} runs recorded as still to do" in report.out


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def test_failures_are_grouped_by_error_and_counted_by_their_last_record(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(1, 8)]
    log = tmp_path / "j.jsonl"
    _write(
        log,
        [
            {
                "type": "job",
                "version": 1,
                "job_id": "0" * 32,
                "operation": "update",
                "fields": {"starred": True},
                "params": {"rate": 5.0, "max_failures": None},
                "filter": {"status": "active"},
                "org": "o",
                "base_url": "https://go.tallyfy.com/api",
                "created_at": "2026-01-01T00:00:00Z",
                "dry_run": False,
            },
            {
                "type": "item",
                "id": ids[0],
                "outcome": "failed",
                "status": 500,
                "error": "HTTP 500: boom [request r-1]",
            },
            {
                "type": "item",
                "id": ids[1],
                "outcome": "failed",
                "status": 500,
                "error": "HTTP 500: boom [request r-2]",
            },
            {
                "type": "item",
                "id": ids[2],
                "outcome": "failed",
                "status": 403,
                "error": f"HTTP 403: run {ids[2]} is not yours",
            },
            {
                "type": "item",
                "id": ids[3],
                "outcome": "failed",
                "status": 403,
                "error": f"HTTP 403: run {ids[3]} is not yours",
            },
            {
                "type": "item",
                "id": ids[4],
                "outcome": "failed",
                "status": 403,
                "error": f"HTTP 403: run {ids[4]} is not yours",
            },
            {
                "type": "summary",
                "ok": 0,
                "failed": 5,
                "skipped": 0,
                "planned": 0,
                "requests": 5,
                "retries": 0,
                "throttled": 0,
                "elapsed": 2.0,
                "verified": True,
                "ended_at": "2026-01-01T00:00:02Z",
            },
            # a second session: one failure done, one retried when the log ends
            {"type": "claim", "id": ids[0]},
            {"type": "item", "id": ids[0], "outcome": "ok", "status": 200},
            {"type": "claim", "id": ids[2]},
            {"type": "item", "id": ids[5], "outcome": "skipped"},
        ],
    )

    report = read_report(log, read_journal(log))

    assert (report["ok"], report["failed"], report["skipped"], report["unfinished"]) == (1, 3, 1, 1)
    assert [(g["error"], g["count"]) for g in report["failures"]] == [
        ("HTTP 403: run … is not yours", 2),
        ("HTTP 500: boom", 1),
    ]
    assert report["failures"][0]["sample"]["id"] == ids[3]
    assert report["failed_ids"] == [ids[1], ids[3], ids[4]]
    assert report["session_without_summary"] is True
    assert report["verified"] is True
    assert report["job"]["fields"] == {"starred": True}
    assert report["next"]["to_do"] == 4

    lines = report_lines(report)
    assert lines[0] == (
        'update setting {"starred":true}, started 2026-01-01T00:00:00Z, '
        "organisation o at https://go.tallyfy.com/api"
    )
    assert lines[1:3] == [
        "  selection: filter status=active",
        "  settings: rate 5.0, max_failures none",
    ]
    assert "       2  HTTP 403: run … is not yours  (e.g. " + ids[3] + ")" in lines
    assert (
        "session 1: ended 2026-01-01T00:00:02Z  2.0s  5 items  2.5 items/s  requests 5"
        in "\n".join(lines)
    )
    assert "session 2: ended without a summary (killed, or still running)" in lines


def test_a_damaged_summary_line_reads_as_zeros(tmp_path: Path) -> None:
    log = tmp_path / "j.jsonl"
    header = {"type": "job", "version": 1, "operation": "archive", "filter": {}}
    _write(log, [header, {"type": "summary", "ok": True, "requests": None, "elapsed": "soon"}])

    report = read_report(log, read_journal(log))

    (session,) = report["sessions"]
    assert (session["items"], session["requests"], session["elapsed"]) == (0, 0, 0.0)
    lines = report_lines(report)
    assert "  selection: every run (no filter)" in lines
    assert "  settings: the defaults" in lines
    assert "selection: not verified: no session ended with a clean pass over the query" in lines
