"""``bulkruns rethrottle``: the pace of a running job changed from another process, within a
second, and shown on its display and in its log."""

from __future__ import annotations

from pathlib import Path

import orjson
from cli_support import ThreadedSandbox, journal_records, run, start, wait_for

from bulkruns.cli.lock import lock_path


def _rates(log: Path) -> list[float]:
    return [r["rate"] for r in journal_records(log) if r["type"] == "rate"]


def test_rethrottle_changes_the_running_jobs_pace_within_a_second(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=400).start()
    try:
        env = box.env(tmp_path)
        log = tmp_path / "slow.jsonl"
        job = start(
            ["archive", "--all", "--rate", "4", "--log", "slow.jsonl"], env=env, cwd=tmp_path
        )
        try:
            wait_for(lambda: log.exists() and b'"claim"' in log.read_bytes())
            result = run(["rethrottle", "--rate", "80"], env=env, cwd=tmp_path)
            assert result.code == 0, result.err  # answered within its wait of a few seconds
            assert "now paces at 80 requests/s" in result.out
            assert _rates(log) == [80.0]
            _, err = job.communicate(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        assert job.returncode == 0, err
        assert "pace changed to 80 requests/s (bulkruns rethrottle)" in err
        summary = journal_records(log)[-1]
        # at 4 requests a second, 300-odd runs would take over a minute
        assert summary["type"] == "summary"
        assert summary["elapsed"] < 30
    finally:
        box.stop()


def test_rethrottle_without_a_running_job_says_so(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=5).start()
    try:
        result = run(["rethrottle", "--rate", "5"], env=box.env(tmp_path), cwd=tmp_path)
        assert result.code == 2
        assert result.err.startswith("bulkruns: error: no bulkruns job is running for")
        refused = run(["rethrottle", "--rate", "-1"], env=box.env(tmp_path), cwd=tmp_path)
        assert refused.code == 2
        assert "--rate must be at least 0" in refused.err
        assert box.stats()["total"] == 0
    finally:
        box.stop()


def test_a_rate_request_left_by_an_earlier_job_is_not_applied(tmp_path: Path) -> None:
    box = ThreadedSandbox(runs=60).start()
    try:
        env = box.env(tmp_path)
        state = tmp_path / "state" / "bulkruns"
        state.mkdir(parents=True)
        stale = lock_path(box.org, box.base_url, state)
        stale.with_name(stale.name + ".rate").write_bytes(orjson.dumps({"id": "x", "rate": 0.5}))
        result = run(["archive", "--all", "--rate", "0", "--log", "j.jsonl"], env=env, cwd=tmp_path)
        assert result.code == 0, result.err
        assert _rates(tmp_path / "j.jsonl") == []
    finally:
        box.stop()
