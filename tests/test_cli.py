"""The ``bulkruns`` command end to end: real subprocesses against a sandbox over loopback."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    STAMP,
    TOKEN,
    Terminal,
    ThreadedSandbox,
    complete,
    journal_records,
    live,
    run,
    sandboxes,
    unstamped,
)
from click.testing import CliRunner

from bulkruns import cli
from bulkruns.api import normalise_base_url
from bulkruns.cli import commands
from bulkruns.cli.lock import JobLock

ANSI = re.compile(r"\x1b\[")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def make_box() -> Iterator[Callable[..., ThreadedSandbox]]:
    with sandboxes() as factory:
        yield factory


@pytest.fixture
def box(make_box: Callable[..., ThreadedSandbox]) -> ThreadedSandbox:
    return make_box()


def test_archive_json_summary_then_undo_restores(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path)
    targets = set(box.ids(complete))
    assert len(targets) > 30

    result = run(
        ["archive", "--status", "complete", "--rate", "0", "--json"], env=env, cwd=tmp_path
    )

    assert result.code == 0, result.err
    summary = result.json  # stdout is exactly one JSON object
    assert summary["ok"] == len(targets)
    assert summary["failed"] == 0
    assert summary["exit_code"] == 0
    assert summary["verified"] is True
    journal = Path(summary["journal"])
    assert re.fullmatch(r"bulkruns-archive-\d{8}T\d{6}Z\.jsonl", journal.name)
    assert (tmp_path / journal).is_file()
    assert summary["undo_command"] == f"bulkruns undo {tmp_path / journal}"
    assert summary["resume_command"] is None
    assert not box.ids(complete)
    # the journal was named on stderr before the job began
    assert f"journal {journal}" in result.err

    undo = run([*summary["undo_command"].split()[1:], "--rate", "0"], env=env, cwd=tmp_path)

    assert undo.code == 0, undo.err
    assert set(box.ids(complete)) == targets
    assert "activate done" in undo.out
    assert re.search(r"^  journal: bulkruns-undo-\d{8}T\d{6}Z\.jsonl$", undo.out, re.MULTILINE)
    stats = box.stats()
    assert stats["changes"]["applied"] == 2 * len(targets)


def test_plain_output_when_not_a_terminal(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path)
    count = len(box.ids(complete))

    result = run(
        ["archive", "--status", "complete", "--rate", "0", "--log", "job.jsonl"],
        env=env,
        cwd=tmp_path,
    )

    assert result.code == 0, result.err
    assert not ANSI.search(result.out + result.err)
    # the summary and each line on stderr start with the time, for cron mail
    assert STAMP.match(result.out)
    assert STAMP.match(result.err)
    lines = unstamped(result.out).splitlines()
    assert lines[0] == "archive done"
    assert f"ok {count:,}  failed 0  skipped 0" in result.out
    assert "requests " in result.out
    assert "429s 0" in result.out
    assert "items/s" in result.out
    assert "elapsed" in result.out
    assert "  journal: job.jsonl" in lines
    assert f"  undo: bulkruns undo {tmp_path / 'job.jsonl'}" in lines
    # a job this short ends before the first periodic line (at most one every 10 s)
    assert result.err.count("\n") == 1


def test_an_update_says_no_run_was_missed_not_that_none_is_left(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    # the runs an update changed still match its query
    result = run(
        ["update", "--status", "complete", "--set", "starred=true", "--rate", "0"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    assert re.search(r"^  passes over the query \d+: no matching run was missed$", result.out, re.M)
    assert "nothing matching is left" not in result.out


def test_quiet_success_prints_nothing(box: ThreadedSandbox, tmp_path: Path) -> None:
    result = run(
        ["archive", "--status", "problem", "--rate", "0", "--quiet"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 0
    assert result.out == result.err == ""
    assert box.stats()["changes"]["applied"] > 0


def test_list_prints_matching_runs_as_json_lines(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path)
    expected = set(box.ids(complete))

    result = run(
        ["list", "--status", "complete", "--per-page", "7", "--rate", "0"], env=env, cwd=tmp_path
    )

    assert result.code == 0, result.err
    import orjson

    runs = [orjson.loads(line) for line in result.out.splitlines()]
    assert {r["id"] for r in runs} == expected
    assert len(runs) == len(expected)
    limited = run(["list", "--limit", "3", "--rate", "0"], env=env, cwd=tmp_path)
    assert len(limited.out.splitlines()) == 3
    assert box.stats()["changes"]["applied"] == 0


def test_failed_items_exit_1_and_the_token_never_shows(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    # Permanently deleting runs that are not archived: Tallyfy refuses each with 422.
    targets = box.ids(live)[:5]
    (tmp_path / "ids.txt").write_text("\n".join(targets) + "\n")

    result = run(
        ["delete", "--ids-file", "ids.txt", "--yes", "--rate", "0", "--log", "j.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )

    assert result.code == 1, result.err
    assert "failed 5" in result.out
    assert result.err.count(" failed ") + result.err.count("failed ") >= 5
    assert f"resume: bulkruns resume {tmp_path / 'j.jsonl'}" in result.out
    assert "undo:" not in result.out  # a delete has no undo
    failed = [r for r in journal_records(tmp_path / "j.jsonl") if r.get("outcome") == "failed"]
    assert {r["id"] for r in failed} == set(targets)
    assert all(r["status"] == 422 for r in failed)
    everything = result.out + result.err + (tmp_path / "j.jsonl").read_text()
    assert TOKEN not in everything
    assert box.stats()["runs"]["deleted"] == 0


def test_refused_token_aborts_with_3_and_never_shows(box: ThreadedSandbox, tmp_path: Path) -> None:
    wrong = "tok-WRONG-0d1e2f3a4b5c"
    env = box.env(tmp_path, TALLYFY_ACCESS_TOKEN=wrong)

    result = run(["archive", "--status", "complete", "--log", "j.jsonl"], env=env, cwd=tmp_path)

    assert result.code == 3, result.err
    assert "aborted" in result.out
    assert "refused the access token" in result.out
    # refused at the first request, with nothing done: no log is left, and none to resume
    assert not (tmp_path / "j.jsonl").exists()
    assert "resume" not in result.out
    assert "nothing was changed: run the job again" in result.out
    everything = result.out + result.err
    assert wrong not in everything
    assert TOKEN not in everything
    assert box.stats()["changes"]["applied"] == 0


def test_failure_budget_aborts_with_3(box: ThreadedSandbox, tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("\n".join(box.ids(live)[:20]) + "\n")

    result = run(
        [
            "delete",
            "--ids-file",
            "ids.txt",
            "--yes",
            "--rate",
            "0",
            "--concurrency",
            "1",
            "--max-failures",
            "2",
            "--json",
        ],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )

    assert result.code == 3
    summary = result.json
    assert summary["aborted"] == "failure-budget"
    assert summary["failed"] == 3
    assert summary["resume_command"].startswith("bulkruns resume ")


def test_token_file_wins_over_the_environment(box: ThreadedSandbox, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = box.env(tmp_path, TALLYFY_ACCESS_TOKEN="tok-WRONG")

    result = run(
        [
            "--token-file",
            str(token_file),
            "archive",
            "--status",
            "problem",
            "--rate",
            "0",
            "--max-failures",
            "none",
            "--concurrency",
            "4",
            "--max-attempts",
            "2",
        ],
        env=env,
        cwd=tmp_path,
    )

    assert result.code == 0, result.err
    # the global options typed are repeated in the commands shown
    assert f"undo: bulkruns --token-file {token_file} undo " in result.out


def test_flags_win_over_the_environment(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path, TALLYFY_ORG_ID="another-org", TALLYFY_BASE_URL="http://127.0.0.1:9/")
    result = run(
        [
            "--org",
            box.org,
            "--base-url",
            box.base_url,
            "archive",
            "--status",
            "delayed",
            "--rate",
            "0",
            "--json",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    assert result.json["undo_command"].startswith(
        f"bulkruns --base-url {box.base_url} --org {box.org} undo "
    )


def test_dry_run_prints_count_and_sample_then_resume_applies_the_plan(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    targets = set(box.ids(complete))

    dry = run(
        ["archive", "--status", "complete", "--dry-run", "--rate", "0", "--log", "plan.jsonl"],
        env=env,
        cwd=tmp_path,
    )

    assert dry.code == 0, dry.err
    assert f"dry run: {len(targets):,} runs would be archived" in dry.out
    sample = re.findall(r"^  ([0-9a-f]{32})", dry.out, re.MULTILINE)
    assert len(sample) == 10
    assert set(sample) <= targets
    # each with its name, as a person knows the run
    for run_id in sample:
        name = box.server.state.run(run_id)["name"]  # type: ignore[index]
        assert f"  {run_id}  {name!r}" in dry.out
    assert f"apply the plan: bulkruns resume {tmp_path / 'plan.jsonl'}" in dry.out
    assert "items/s" not in dry.out  # it only listed
    assert box.stats()["changes"]["applied"] == 0

    as_json = run(
        ["archive", "--status", "complete", "--dry-run", "--rate", "0", "--json"],
        env=env,
        cwd=tmp_path,
    )
    assert as_json.json["planned"] == len(targets)
    assert as_json.json["items_per_second"] is None  # a dry run reports no speed

    applied = run(["resume", "plan.jsonl", "--json"], env=env, cwd=tmp_path)

    assert applied.code == 0, applied.err
    assert applied.json["ok"] == len(targets)
    assert not box.ids(complete)


def test_limit_caps_the_items(box: ThreadedSandbox, tmp_path: Path) -> None:
    result = run(
        ["archive", "--status", "complete", "--limit", "7", "--rate", "0", "--json"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    assert result.json["ok"] == 7
    assert box.stats()["requests"]["archive"] == {"200": 7}


def test_delete_without_yes_shows_the_count_and_changes_nothing(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    archived = len(box.ids(lambda r: r["archived_at"] is not None))
    assert archived > 0

    result = run(["delete", "--all", "--rate", "0"], env=box.env(tmp_path), cwd=tmp_path)

    assert result.code == 2
    assert result.err.strip() == (
        f"bulkruns: error: delete would permanently remove {archived:,} runs of organisation "
        f"{box.org!r}: add --yes to confirm (or run it on a terminal and type the count); "
        "nothing was changed"
    )
    stats = box.stats()
    assert stats["changes"]["applied"] == 0
    assert set(stats["requests"]["delete"]) == set()
    assert not list(tmp_path.glob("bulkruns-*.jsonl"))


def test_delete_with_yes_deletes_no_more_than_the_count(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    archived = set(box.ids(lambda r: r["archived_at"] is not None))

    result = run(
        ["delete", "--all", "--yes", "--rate", "0", "--json"], env=box.env(tmp_path), cwd=tmp_path
    )

    assert result.code == 0, result.err
    assert result.json["ok"] == len(archived)
    assert f"permanently deleting {len(archived):,} runs of organisation {box.org!r}" in result.err
    assert box.stats()["runs"]["deleted"] == len(archived)
    assert result.json["undo_command"] is None


def test_applying_a_delete_plan_is_confirmed_like_a_delete(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    archived = len(box.ids(lambda r: r["archived_at"] is not None))
    plan = run(
        ["delete", "--all", "--dry-run", "--rate", "0", "--log", "plan.jsonl"],
        env=env,
        cwd=tmp_path,
    )
    assert plan.code == 0, plan.err
    assert f"dry run: {archived:,} runs would be deleted" in plan.out

    refused = run(["resume", "plan.jsonl"], env=env, cwd=tmp_path)
    assert refused.code == 2
    assert f"delete would permanently remove {archived:,} runs of organisation" in refused.err
    assert box.stats()["runs"]["deleted"] == 0

    applied = run(["resume", "plan.jsonl", "--yes", "--json"], env=env, cwd=tmp_path)
    assert applied.code == 0, applied.err
    assert applied.json["ok"] == archived
    assert box.stats()["runs"]["deleted"] == archived


def test_a_delete_plan_resumed_in_parts_deletes_every_run_it_confirmed(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    archived = len(box.ids(lambda r: r["archived_at"] is not None))
    assert archived > 8
    plan = ["delete", "--all", "--dry-run", "--rate", "0", "--log", "plan.jsonl"]
    assert run(plan, env=env, cwd=tmp_path).code == 0
    part = run(["resume", "plan.jsonl", "--yes", "--limit", "5", "--json"], env=env, cwd=tmp_path)
    assert part.code == 0, part.err
    assert part.json["ok"] == 5
    rest = run(["resume", "plan.jsonl", "--yes", "--json"], env=env, cwd=tmp_path)
    assert rest.code == 0, rest.err
    # the count confirmed is what this session deletes, the runs done before aside
    assert f"permanently deleting {archived - 5:,} runs" in rest.err
    assert rest.json["ok"] == archived - 5
    assert box.stats()["runs"]["deleted"] == archived


def test_delete_confirmed_by_typing_the_count_on_a_terminal(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    archived = len(box.ids(lambda r: r["archived_at"] is not None))
    env = box.env(tmp_path)

    wrong = Terminal(["delete", "--all", "--rate", "0"], env=env, cwd=tmp_path)
    wrong.read_until(b"to confirm")
    wrong.type(f"{archived + 1}\n")
    assert wrong.wait() == 2
    assert f"the count typed was not {archived}; nothing was changed" in wrong.text
    assert box.stats()["runs"]["deleted"] == 0

    right = Terminal(["delete", "--all", "--rate", "0"], env=env, cwd=tmp_path)
    right.read_until(b"to confirm")
    question = f"Permanently delete {archived:,} runs of organisation {box.org!r}?"
    assert question.encode() in right.output
    # and a few of them by name, so that a person sees what is meant
    name = box.server.state.run(box.ids(lambda r: r["archived_at"] is not None)[-1])["name"]  # type: ignore[index]
    assert f"among them: {name!r}".encode() in right.output
    right.type(f"{archived}\n")
    assert right.wait() == 0, right.text
    assert box.stats()["runs"]["deleted"] == archived


def test_ctrl_c_at_the_delete_prompt_exits_130_on_a_line_of_its_own(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    asked = Terminal(["delete", "--all", "--rate", "0"], env=box.env(tmp_path), cwd=tmp_path)
    asked.read_until(b"to confirm: ")
    asked.interrupt()
    assert asked.wait() == 130
    lines = asked.text.splitlines()
    assert lines[-1] == "bulkruns: error: interrupted at the prompt; nothing was changed"
    assert lines[-2].endswith("to confirm: ")  # the error is not written after the question
    assert box.stats()["runs"]["deleted"] == 0


def test_live_display_on_a_terminal(
    make_box: Callable[..., ThreadedSandbox], tmp_path: Path
) -> None:
    box = make_box(runs=300)
    count = len(box.ids(live))

    term = Terminal(
        ["archive", "--all", "--rate", "400", "--concurrency", "4", "--log", "j.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )
    code = term.wait()

    assert code == 0, term.text
    assert "\x1b[" in term.text  # drawn with terminal control sequences
    assert "\x1b[1A" in term.text  # redrawn in place
    text = CONTROL.sub("", term.text)
    for part in ("items/s", "ETA", "failed 0", "pace 400.0 req/s", "429s", "requests"):
        assert part in text, part
    assert f"{count:,}/{count:,} 100%" in text
    assert "archive done" in text
    assert "journal: j.jsonl" in text


def test_the_live_display_bounds_a_total_it_cannot_know_and_counts_earlier_sessions(
    make_box: Callable[..., ThreadedSandbox], tmp_path: Path
) -> None:
    box = make_box(runs=400)
    env = box.env(tmp_path)
    # dates are filtered by bulkruns itself: the total is unknown, at most the server's count
    dated = ["archive", "--status", "complete", "--updated-before", "1d"]
    first = run([*dated, "--rate", "0", "--limit", "20", "--log", "j.jsonl"], env=env, cwd=tmp_path)
    assert first.code == 0, first.err
    bound = len(box.ids(complete))
    term = Terminal(["resume", "j.jsonl", "--rate", "60", "--limit", "9999"], env=env, cwd=tmp_path)
    assert term.wait() == 0, term.text
    text = CONTROL.sub("", term.text)
    # out of at most the runs the server counts, and the 20 of the first session
    shown = [int(done) for done in re.findall(rf"(\d+)/≤{bound + 20:,}", text)]
    assert shown, text[-2000:]
    assert min(shown) >= 20  # counted from what the first session did
    assert "/?" not in text
    assert "in flight" in text


def test_the_lock_stops_a_second_job(box: ThreadedSandbox, tmp_path: Path) -> None:
    held = JobLock(
        box.org, normalise_base_url(box.base_url), directory=tmp_path / "state" / "bulkruns"
    )
    with held:
        result = run(["archive", "--status", "complete"], env=box.env(tmp_path), cwd=tmp_path)
    assert result.code == 2
    assert result.err.startswith(
        f"bulkruns: error: another bulkruns job for organisation {box.org!r}"
    )
    assert f"pid {os.getpid()}" in result.err
    assert result.err.count("\n") == 1
    assert box.stats()["total"] == 0
    # once released, the next job runs
    again = run(
        ["archive", "--status", "delayed", "--rate", "0"], env=box.env(tmp_path), cwd=tmp_path
    )
    assert again.code == 0, again.err


def test_python_dash_m_and_help(tmp_path: Path) -> None:
    result = run(["--help"], env=dict(os.environ), cwd=tmp_path)
    assert result.code == 0
    for name in ("list", "archive", "activate", "update", "delete", "resume", "undo", "sandbox"):
        assert re.search(rf"^\s+{name}\s", result.out, re.MULTILINE), name
    update_help = run(["update", "--help"], env=dict(os.environ), cwd=tmp_path)
    assert "--set FIELD=VALUE" in update_help.out
    assert "--token" not in update_help.out.replace("--token-file", "")


@pytest.mark.slow
def test_the_demo_runs_and_restores_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYFY_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "bulkruns.demo", "--runs", "300", "--rate", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for shown in (
        "$ bulkruns sandbox --port 0 --runs 300 --rate 0",
        "$ bulkruns archive --status complete --dry-run --rate 0",
        "$ bulkruns archive --status complete --rate 0",
        "$ bulkruns undo bulkruns-archive-",
        "archive done",
        "every run is back as it was.",
    ):
        assert shown in out, shown
    assert "sandbox stopped" in done.stderr


def test_quiet_failures_show_only_errors_on_stderr(box: ThreadedSandbox, tmp_path: Path) -> None:
    targets = box.ids(live)[:3]

    result = run(
        ["delete", "--ids-file", "-", "--yes", "--rate", "0", "--quiet", "--log", "j.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
        stdin="\n".join(targets) + "\n",
    )

    assert result.code == 1
    assert result.out == ""
    lines = unstamped(result.err).splitlines()
    assert all(STAMP.match(line) for line in result.err.splitlines()[1:5])
    # a permanent delete shows its count even when quiet
    assert lines[0] == f"delete: permanently deleting 3 runs of organisation {box.org!r}"
    assert {line.split()[1].rstrip(":") for line in lines[1:4]} == set(targets)
    assert all(line.startswith("failed ") and "HTTP 422" in line for line in lines[1:4])
    assert lines[4] == "delete finished with failures"
    assert f"  resume: bulkruns resume {tmp_path / 'j.jsonl'}" in lines


def archived(run: dict[str, Any]) -> bool:
    return run["archived_at"] is not None


def test_an_id_file_on_a_pipe_is_read_once(box: ThreadedSandbox, tmp_path: Path) -> None:
    # `cat ids | bulkruns delete --ids-file /dev/stdin`: /dev/stdin is a pipe, which a
    # second reading would find empty
    targets = box.ids(archived)[:5]
    assert len(targets) == 5

    result = run(
        ["delete", "--ids-file", "/dev/stdin", "--yes", "--rate", "0", "--json"],
        env=box.env(tmp_path),
        cwd=tmp_path,
        stdin="\n".join(targets) + "\n",
    )

    assert result.code == 0, result.err
    assert "permanently deleting 5 runs" in result.err
    assert result.json["ok"] == 5
    assert box.stats()["runs"]["deleted"] == 5


def test_resume_dry_run_says_what_it_would_do_and_sends_nothing(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    targets = box.ids(live)[:4]
    (tmp_path / "ids.txt").write_text("\n".join(targets) + "\n")
    failed = run(
        ["delete", "--ids-file", "ids.txt", "--yes", "--rate", "0", "--log", "j.jsonl"],
        env=env,
        cwd=tmp_path,
    )
    assert failed.code == 1, failed.err
    log = (tmp_path / "j.jsonl").read_bytes()
    sent = box.stats()["total"]

    preview = run(["resume", "j.jsonl", "--dry-run"], env=env, cwd=tmp_path)
    as_json = run(["resume", "j.jsonl", "--dry-run", "--json"], env=env, cwd=tmp_path)

    assert preview.code == 0, preview.err
    assert preview.out.splitlines() == [
        "resume of j.jsonl would delete 4 runs recorded as still to do: "
        "failed 4, unfinished 0, not started 0",
        "  and nothing else: every run of the job is in the log (no query to list again)",
        "  already done, left alone: 0",
        "  a preview: nothing was sent, and the log is unchanged",
    ]
    assert as_json.code == 0, as_json.err
    assert as_json.json["to_do"] == 4
    assert as_json.json["query_listed_again"] is False
    assert box.stats()["total"] == sent
    assert (tmp_path / "j.jsonl").read_bytes() == log
    assert "--dry-run" in run(["resume", "--help"], env=env, cwd=tmp_path).out


def test_a_log_that_cannot_be_written_aborts_with_3_and_no_traceback(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    # `(ulimit -f 8; bulkruns archive …)`: writes past 8 KiB fail with EFBIG
    limited = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))\n"
        "sys.argv = ['bulkruns', *sys.argv[1:]]\n"
        "runpy.run_module('bulkruns', run_name='__main__')\n"
    )

    # not measured for coverage: its data file could not be written under the limit either
    env = {k: v for k, v in box.env(tmp_path).items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-c", limited, "archive", "--all", "--rate", "0", "--log", "j.jsonl"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stdout + done.stderr
    assert unstamped(done.stdout).startswith(
        "archive aborted (journal): cannot write the result log"
    )
    assert "File too large" in done.stdout
    assert f"resume: bulkruns resume {tmp_path / 'j.jsonl'}" in done.stdout


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Settings for running the CLI in this process, its SIGTERM handler restored after."""
    monkeypatch.setenv("TALLYFY_ORG_ID", "org")
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", "tok")
    monkeypatch.setenv("TALLYFY_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (OSError(errno.EFBIG, "File too large", "j.jsonl"), 2, "j.jsonl: File too large"),
        (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device"),
        (
            ExceptionGroup("tasks", [ValueError("x"), OSError(errno.EIO, "I/O error", "j")]),
            2,
            "j: I/O error",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_an_unexpected_system_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, code: int, line: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> int:
        raise error

    monkeypatch.setattr(commands, "run_job", fail)

    result = CliRunner().invoke(cli.main, ["archive", "--status", "complete"])

    assert result.exit_code == code
    assert result.stderr == f"bulkruns: error: {line}\n"
    assert result.stdout == ""
