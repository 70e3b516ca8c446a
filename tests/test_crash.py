"""Crashes: a real ``kill -9`` mid-job, and a journal torn at any byte, then resume."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkruns.api import Client
from bulkruns.job import Job, JobOptions
from bulkruns.journal import read_journal
from bulkruns.model import Operation, RunFilter
from bulkruns.sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.anyio

JOB_SCRIPT = """
import os, sys, anyio
from bulkruns.api import Client
from bulkruns.job import Job, JobOptions
from bulkruns.model import RunFilter
from bulkruns.model import Operation

async def main():
    async with Client(org=os.environ["ORG"], token=os.environ["TOKEN"],
                      base_url=os.environ["BASE"]) as client:
        options = JobOptions(rate=0, concurrency=4, journal=sys.argv[1])
        await Job(client, Operation(name="archive"), RunFilter(status="complete"), options).run()

anyio.run(main)
"""


def _targets(sandbox: Sandbox) -> set[str]:
    found = set()
    for run_id in sandbox.state.store.ids():
        run = sandbox.state.run(run_id)
        if run is not None and run["status"] == "complete" and run["archived_at"] is None:
            found.add(run_id)
    return found


def _ids_in(data: bytes) -> set[str]:
    found = set()
    for line in data.split(b"\n"):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if "id" in record:
            found.add(record["id"])
    return found


def _ok_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if record.get("type") == "item" and record.get("outcome") == "ok":
            out.append(record["id"])
    return out


@pytest.mark.slow
async def test_kill_9_mid_job_then_resume_loses_nothing(tmp_path: Path) -> None:
    config = SandboxConfig(runs=400, rate_limit=0, latency=0.01)
    async with Sandbox(config) as sandbox:
        targets = _targets(sandbox)
        journal = tmp_path / "job.jsonl"
        env = {
            **os.environ,
            "ORG": sandbox.org,
            "TOKEN": sandbox.token,
            "BASE": sandbox.base_url,
        }
        process = await anyio.open_process(
            [sys.executable, "-c", JOB_SCRIPT, str(journal)], env=env
        )
        async with process:
            with anyio.fail_after(30):
                # the journal is a file another process writes: polling is the only way
                while len(_ok_lines(journal) if journal.exists() else []) < 40:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        killed_at = set(_ok_lines(journal))
        assert killed_at < targets  # it really stopped midway

        async with Client(org=sandbox.org, token=sandbox.token, base_url=sandbox.base_url) as c:
            summary = await Job.resume(c, journal, JobOptions(rate=0, concurrency=4)).run()
        assert summary.verified
        assert _targets(sandbox) == set()
        ok = _ok_lines(journal)
        assert set(ok) == targets
        assert len(ok) == len(set(ok))  # each run recorded done once
        assert max(sandbox.state.change_counts.values()) == 1
        state = read_journal(journal)
        assert not state.pending
        assert len(state.done) == len(targets)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cut=st.floats(min_value=0.0, max_value=1.0))
def test_a_journal_cut_at_any_byte_resumes_without_losing_an_item(
    tmp_path_factory: pytest.TempPathFactory, cut: float
) -> None:
    async def scenario() -> None:
        tmp = tmp_path_factory.mktemp("cut")
        async with Sandbox(SandboxConfig(runs=80, rate_limit=0)) as sandbox:
            targets = _targets(sandbox)
            journal = tmp / "job.jsonl"
            options = JobOptions(rate=0, concurrency=4, journal=journal, limit=len(targets) // 2)
            async with Client(
                org=sandbox.org, token=sandbox.token, base_url=sandbox.base_url
            ) as client:
                await Job(
                    client, Operation(name="archive"), RunFilter(status="complete"), options
                ).run()
                data = journal.read_bytes()
                header_end = data.index(b"\n") + 1
                at = header_end + int(cut * (len(data) - header_end))
                journal.write_bytes(data[:at])
                # the first session stopped at its limit; this one lifts it
                more = JobOptions(rate=0, limit=len(targets))
                summary = await Job.resume(client, journal, more).run()
            assert summary.aborted is None
            assert _targets(sandbox) == set()
            state = read_journal(journal)
            assert not state.pending
            done = {f"{key:032x}" for key in state.done}
            kept, torn_away = _ids_in(data[:at]), _ids_in(data[at:])
            # every item the surviving log knew of is now done; a run the log no longer
            # knows of can only be one whose lines were all cut away
            assert kept & targets <= done
            assert targets - done <= torn_away
            assert max(sandbox.state.change_counts.values()) == 1

    anyio.run(scenario)
