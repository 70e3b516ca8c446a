"""Ctrl-C and SIGTERM with real signals: a clean stop, exit 130, and a job that resumes."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    STAMP,
    ThreadedSandbox,
    item_lines,
    journal_records,
    live,
    run,
    start,
    unstamped,
    wait_for,
)


class _Lines:
    """Collects a pipe's text on a thread, so the test can wait for a line."""

    def __init__(self, pipe: Any) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: Any) -> None:
        for line in pipe:
            self.text += line

    def join(self) -> str:
        self._thread.join(10)
        return self.text


@pytest.fixture
def box() -> Iterator[ThreadedSandbox]:
    sandbox = ThreadedSandbox(runs=250).start()
    yield sandbox
    sandbox.stop()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_with_130_and_resume_finishes(
    box: ThreadedSandbox, tmp_path: Path, signum: int
) -> None:
    env = box.env(tmp_path)
    targets = set(box.ids(live))
    journal = tmp_path / "job.jsonl"
    job = start(["archive", "--all", "--rate", "40", "--log", "job.jsonl"], env=env, cwd=tmp_path)
    wait_for(lambda: item_lines(journal) >= 5)

    job.send_signal(signum)
    out, err = job.communicate(timeout=30)

    assert job.returncode == 130, err
    assert "stopping: no new items" in err
    assert STAMP.match(out)
    assert unstamped(out).startswith("archive interrupted: stopped on request")
    assert f"  resume: bulkruns resume {journal}" in out.splitlines()
    last = journal_records(journal)[-1]
    assert last["type"] == "summary"
    assert last["aborted"] == "interrupted"
    done = last["ok"]
    assert 5 <= done < len(targets)

    # what resuming would do: the runs recorded as pending, then the query listed again
    preview = run(["resume", "job.jsonl", "--dry-run"], env=env, cwd=tmp_path)
    assert preview.code == 0, preview.err
    first, then, left = preview.out.splitlines()[:3]
    assert re.fullmatch(
        r"resume of job\.jsonl would archive \d+ runs recorded as still to do: .*", first
    )
    assert then.startswith("  then the rest of the selection: it lists the job's query again")
    assert left == f"  already done, left alone: {done}"

    resumed = run(["resume", "job.jsonl", "--rate", "0", "--json"], env=env, cwd=tmp_path)

    assert resumed.code == 0, resumed.err
    assert resumed.json["ok"] == len(targets) - done
    assert not box.ids(live)
    changes = box.stats()["changes"]
    assert changes["runs_changed"] == len(targets)
    assert changes["runs_changed_more_than_once"] == 0


@pytest.mark.slow
def test_an_interrupted_dry_run_says_to_run_it_again_and_nothing_else(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    plan = tmp_path / "plan.jsonl"
    # 5 runs a page at 20 pages a second: the listing is still going when the signal comes
    job = start(
        ["archive", "--all", "--dry-run", "--per-page", "5", "--rate", "20", "--log", "plan.jsonl"],
        env=env,
        cwd=tmp_path,
    )
    wait_for(lambda: item_lines(plan) >= 10)

    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=30)

    assert job.returncode == 130, err
    # the summary's first line, after the sample of what was listed
    head = next(unstamped(line) for line in out.splitlines() if STAMP.match(line))
    assert re.fullmatch(
        r"dry run interrupted; the plan is incomplete \(\d+ runs would be archived so far\): "
        r"run the dry run again for a plan that can be applied",
        head,
    )
    assert "resume" not in out  # one piece of advice: resume refuses a plan cut short
    refused = run(["resume", "plan.jsonl"], env=env, cwd=tmp_path)
    assert refused.code == 2
    assert "start the job again" in refused.err
    report = run(["report", "plan.jsonl"], env=env, cwd=tmp_path)
    assert report.code == 0, report.err
    assert "next: resume would refuse plan.jsonl: its plan was cut short" in report.out
    assert "bulkruns resume" not in report.out
    assert box.stats()["changes"]["applied"] == 0


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    # Every request is held for a minute: after the first Ctrl-C, the job would wait out
    # its grace period, then write its summary. The second one must not wait for that.
    stalled = ThreadedSandbox(runs=20, stall_rate=1.0, stall_seconds=60).start()
    try:
        ids = stalled.ids(live)[:5]
        (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
        journal = tmp_path / "job.jsonl"
        job = start(
            ["archive", "--ids-file", "ids.txt", "--log", "job.jsonl", "--rate", "0"],
            env=stalled.env(tmp_path),
            cwd=tmp_path,
        )
        err = _Lines(job.stderr)
        wait_for(lambda: journal.exists() and b'"type":"claim"' in journal.read_bytes())

        job.send_signal(signal.SIGINT)
        wait_for(lambda: "press Ctrl-C again" in err.text)
        job.send_signal(signal.SIGINT)
        try:
            code = job.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.kill()
            raise
        text = err.join()
        assert job.stdout is not None
        assert job.stderr is not None
        job.stdout.close()
        job.stderr.close()

        assert code == 130
        assert f"interrupted again: exiting now; continue with: bulkruns resume {journal}" in text
        kinds = [record["type"] for record in journal_records(journal)]
        assert "summary" not in kinds  # it did not wait to write one
        assert kinds.count("claim") >= 1
    finally:
        stalled.stop()


def test_sigterm_during_a_deletes_count_exits_130_in_one_line(tmp_path: Path) -> None:
    # Every request is held: the count request is in flight when the signal comes, before
    # the job (and its own signal handling) has started.
    stalled = ThreadedSandbox(runs=20, stall_rate=1.0, stall_seconds=60).start()
    try:
        job = start(
            ["delete", "--all", "--yes", "--rate", "0"], env=stalled.env(tmp_path), cwd=tmp_path
        )
        wait_for(lambda: stalled.stats()["total"] >= 1)

        job.send_signal(signal.SIGTERM)
        out, err = job.communicate(timeout=30)

        assert job.returncode == 130, err
        assert out == ""
        assert err == "bulkruns: error: interrupted; nothing was changed\n"
        assert stalled.stats()["total"] == 1  # the count, and nothing after it
        assert not list(tmp_path.glob("bulkruns-*.jsonl"))
    finally:
        stalled.stop()
