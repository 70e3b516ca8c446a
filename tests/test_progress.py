"""The progress reporters, the summary's wording and the CLI's pure helpers, with fake
clocks and in-memory consoles."""

from __future__ import annotations

import io
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from bulkruns import ItemResult, JobOptions, Progress, Summary
from bulkruns.cli.inputs import (
    Connection,
    Display,
    IdSource,
    check_new_log,
    default_journal,
    job_options,
    parse_set,
)
from bulkruns.cli.output import (
    MAX_FAILURE_LINES,
    LiveDisplay,
    PlainLines,
    Reporter,
    Throughput,
    format_duration,
    waiting,
)
from bulkruns.cli.report import preview_resume
from bulkruns.cli.summary import exit_code, summary_lines
from bulkruns.errors import ConfigError, JournalError
from bulkruns.journal import read_journal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def stamp(self) -> str:
        """The wall-clock time of ``now``, as lines show it (1000 s after an hour began)."""
        return f"2026-11-23T04:{int(self.now) // 60 % 60:02d}:{int(self.now) % 60:02d}Z"


def progress(done: int = 0, **kw: Any) -> Progress:
    values: dict[str, Any] = {
        "ok": done,
        "failed": 0,
        "skipped": 0,
        "planned": 0,
        "total": 1000,
        "listing": False,
        "sweeps": 1,
        "requests": done,
        "retries": 0,
        "throttled": 0,
        "rate": 10.0,
        "elapsed": 0.0,
    }
    values.update(kw)
    return Progress(**values)


def summary(**kw: Any) -> Summary:
    values: dict[str, Any] = {
        "operation": "archive",
        "journal": Path("j.jsonl"),
        "ok": 10,
        "failed": 0,
        "skipped": 0,
        "planned": 0,
        "requests": 12,
        "retries": 2,
        "throttled": 1,
        "elapsed": 2.0,
        "sweeps": 2,
        "verified": True,
        "aborted": None,
        "message": None,
        "dry_run": False,
    }
    values.update(kw)
    return Summary(**values)


def test_plain_lines_at_most_one_every_interval() -> None:
    clock = FakeClock()
    out = io.StringIO()
    reporter = PlainLines("archive", err=out, clock=clock, stamp=clock.stamp)
    reporter.start()
    # 3,000 items a second for 35 seconds: one line at 10, 20 and 30 s
    for step in range(35 * 3000):
        clock.now = 1000.0 + step / 3000
        reporter(progress(done=step, total=200_000, throttled=4, retries=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    # each line starts with the time it was written, for cron mail and log files
    assert [line[:21] for line in lines] == [
        "2026-11-23T04:16:50Z ",
        "2026-11-23T04:17:00Z ",
        "2026-11-23T04:17:10Z ",
    ]
    first = lines[0][21:]
    assert first.startswith("archive: 30,000/200,000 (15%)")
    assert "3000.0 items/s" in first
    assert "ETA 57s" in first  # 170,000 left at 3,000 a second
    assert "pace 10.0 req/s" in first
    assert "retries 2 429s 4" in first


def test_plain_lines_say_what_is_unknown() -> None:
    clock = FakeClock()
    out = io.StringIO()
    reporter = PlainLines("update", err=out, clock=clock, interval=1.0, stamp=clock.stamp)
    reporter.start()
    clock.now += 1.5
    reporter(progress(done=3, total=None, listing=True, rate=0.0))
    assert out.getvalue() == (
        "2026-11-23T04:16:41Z update: 3/? | ok 3 failed 0 skipped 0 | 0.0 items/s | ETA ? | "
        "unpaced | "
        "requests 3 retries 0 429s 0 | in flight 0 | listing (pass 1)\n"
    )


def test_the_server_count_bounds_an_unknown_total_and_gives_an_eta() -> None:
    clock = FakeClock()
    out = io.StringIO()
    reporter = PlainLines("archive", err=out, clock=clock, interval=1.0, stamp=clock.stamp)
    reporter.start()
    reporter(progress(done=0, total=None, bound=1138))
    clock.now += 10
    reporter(progress(done=100, total=None, bound=1138))
    line = out.getvalue().splitlines()[-1]
    assert "archive: 100/≤1,138 (9%)" in line
    assert "ETA 1m44s" in line  # (1,138 - 100) at 10 items/s


def test_a_resumed_job_counts_what_earlier_sessions_did() -> None:
    clock = FakeClock()
    out = io.StringIO()
    reporter = PlainLines("archive", err=out, clock=clock, interval=1.0, stamp=clock.stamp)
    reporter.start()
    clock.now += 1.5
    reporter(progress(done=95, total=838, earlier=163))
    assert "archive: 258/1,001 (26%)" in out.getvalue()


def test_a_long_pause_is_said_at_once_with_its_reason_and_end() -> None:
    clock = FakeClock()
    out = io.StringIO()
    wall = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC
    reporter = PlainLines(
        "archive", err=out, clock=clock, interval=10.0, stamp=clock.stamp, wall=lambda: wall
    )
    reporter.start()
    waited = progress(done=10, paused_until=wall + 3600, pause_reason="the hourly limit")
    reporter(waited)  # no interval has passed, but no line would come for an hour
    reporter(waited)  # said once
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "the hourly limit: waiting until 01:53 UTC" in lines[0]
    assert "0.0 items/s" not in lines[0]
    short = progress(done=10, paused_until=wall + 12, pause_reason="Tallyfy asked to wait 12 s")
    clock.now += 11
    reporter(short)
    assert "Tallyfy asked to wait 12 s: 12s left" in out.getvalue().splitlines()[-1]


def test_slow_answers_are_said_instead_of_no_pace() -> None:
    assert waiting(progress(in_flight=3), 0.0, 0.0) == "waiting for 3 answers"
    assert waiting(progress(in_flight=3), 12.5, 0.0) is None  # items are finishing
    assert waiting(progress(in_flight=0), 0.0, 0.0) is None


def test_failed_items_are_shown_then_counted() -> None:
    out = io.StringIO()
    reporter = Reporter("delete", err=out, stamp=FakeClock().stamp)  # quiet, as cron runs it
    for n in range(MAX_FAILURE_LINES + 5):
        item = ItemResult(f"{n:032x}", "failed", status=422, error="HTTP 422: not archived")
        reporter(progress(failed=n + 1, item=item))
    reporter(progress(item=ItemResult("f" * 32, "ok", status=200)))
    lines = out.getvalue().splitlines()
    assert len(lines) == MAX_FAILURE_LINES + 1
    assert lines[0] == f"2026-11-23T04:16:40Z failed {0:032x}: HTTP 422: not archived"
    assert lines[-1] == (
        "2026-11-23T04:16:40Z more items failed; every failure is recorded in the journal"
    )


def test_the_live_display_draws_only_when_rich_refreshes() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    display = LiveDisplay("archive", console=console, clock=FakeClock())
    calls = 0
    render = display.render

    def counting() -> Any:
        nonlocal calls
        calls += 1
        return render()

    display.render = counting  # type: ignore[method-assign]
    for n in range(50_000):  # the hook alone never draws
        display(progress(done=n))
    assert calls == 0
    assert display.latest is not None
    assert display.latest.done == 49_999


def test_the_live_display_shows_the_figures() -> None:
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    display = LiveDisplay("archive", console=console, clock=clock)
    display(progress(done=100, total=400, requests=130, retries=5, throttled=3, rate=7.5))
    console.print(display.render())
    clock.now += 10
    display(progress(done=300, failed=2, total=400, requests=330, throttled=3, rate=7.5))
    console.print(display.render())
    text = console.export_text().splitlines()[-3:]
    assert "archive" in text[0]
    assert "302/400 76%" in text[0]
    assert text[1].startswith("20.2 items/s  ETA 4.9s  elapsed 10s  failed 2")
    assert text[2] == "pace 7.5 req/s  in flight 0  requests 330  retries 0  429s 3"


def test_the_live_display_shows_an_unknown_total_and_listing() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    display = LiveDisplay("activate", console=console, clock=FakeClock())
    console.print(display.render())
    display(progress(done=0, total=None, listing=True, sweeps=2, rate=0.0))
    console.print(display.render())
    text = console.export_text()
    assert "activate: starting" in text
    assert "0/?" in text
    assert "unpaced" in text
    assert "listing, pass 2" in text


def test_throughput_follows_the_recent_pace() -> None:
    meter = Throughput(window=10.0)
    assert meter.rate() == 0.0
    for second in range(31):
        done = 100 * second if second <= 20 else 2000 + 10 * (second - 20)
        meter.add(float(second), done)
    # the last ten seconds ran at 10 items/s, whatever came before
    assert meter.rate() == pytest.approx(10.0, rel=0.2)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "0.2s"), (9.96, "10.0s"), (42, "42s"), (185, "3m05s"), (7440, "2h04m"), (-1, "?")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_summary_of_a_clean_job() -> None:
    lines = summary_lines(
        summary(), exit_code=0, undo="bulkruns undo /x/j.jsonl", stamp="2026-11-23T04:45:26Z"
    )
    assert lines == [
        "2026-11-23T04:45:26Z archive done",
        "  ok 10  failed 0  skipped 0",
        "  elapsed 2.0s  5.0 items/s  requests 12  retries 2  429s 1",
        "  passes over the query 2: nothing matching is left",
        "  journal: j.jsonl",
        "  undo: bulkruns undo /x/j.jsonl",
    ]


def test_summary_of_failed_aborted_interrupted_and_dry_runs() -> None:
    failed = summary_lines(summary(failed=3), exit_code=1, resume="bulkruns resume j")
    assert failed[0] == "archive finished with failures"
    assert "  resume: bulkruns resume j" in failed
    aborted = summary_lines(
        summary(aborted="auth", message="token refused", verified=False), exit_code=3
    )
    assert aborted[0] == "archive aborted (auth): token refused"
    assert not any("passes" in line for line in aborted)
    stopped = summary_lines(summary(aborted="interrupted"), exit_code=130)
    assert stopped[0] == "archive interrupted"
    journal = summary_lines(
        summary(aborted="journal", message="cannot write the result log j.jsonl: File too large"),
        exit_code=3,
    )
    assert journal[0] == (
        "archive aborted (journal): cannot write the result log j.jsonl: File too large"
    )
    dry = summary_lines(
        summary(operation="delete", ok=0, planned=1234, dry_run=True),
        exit_code=0,
        resume="bulkruns resume j",
    )
    assert dry[0] == "dry run: 1,234 runs would be deleted"
    assert "  apply the plan: bulkruns resume j" in dry
    assert "  passes over the query 2: the whole selection was listed" in dry
    # a dry run only lists: no items per second
    assert dry[1] == "  elapsed 2.0s  requests 12  retries 2  429s 1"


def test_an_interrupted_dry_run_gives_one_piece_of_advice() -> None:
    stopped = summary(
        ok=0,
        planned=40,
        dry_run=True,
        verified=False,
        aborted="interrupted",
        message="stopped on request; resume the job to finish it",
    )
    lines = summary_lines(stopped, exit_code=130, plan_cut_short=True)
    assert lines[0] == (
        "dry run interrupted; the plan is incomplete (40 runs would be archived so far): "
        "run the dry run again for a plan that can be applied"
    )
    assert not any("resume" in line for line in lines)
    failed = replace(stopped, aborted="listing", message="listing page 3 failed: HTTP 500: boom")
    failed_lines = summary_lines(failed, exit_code=3, plan_cut_short=True)
    assert failed_lines[0].startswith(
        "dry run aborted (listing): listing page 3 failed: HTTP 500: boom; the plan is incomplete"
    )


def test_an_update_never_says_nothing_matching_is_left() -> None:
    # the runs an update changed still match its query
    lines = summary_lines(summary(operation="update"), exit_code=0)
    assert "  passes over the query 2: no matching run was missed" in lines
    assert not any("nothing matching is left" in line for line in lines)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({}, 0),
        ({"failed": 1}, 1),
        ({"message": "the query still found new runs", "verified": False}, 1),
        ({"aborted": "auth"}, 3),
        ({"aborted": "failure-budget"}, 3),
        ({"aborted": "listing"}, 3),
        ({"aborted": "journal"}, 3),
        ({"aborted": "interrupted"}, 130),
    ],
)
def test_exit_codes(changes: dict[str, Any], code: int) -> None:
    assert exit_code(summary(**changes)) == code


def test_set_values_are_json_else_text() -> None:
    fields = parse_set(
        ("starred=true", "name=Q3 review", 'users=["a","b"]', 'prerun={"f":"v"}', "summary=")
    )
    assert fields == {
        "starred": True,
        "name": "Q3 review",
        "users": ["a", "b"],
        "prerun": {"f": "v"},
        "summary": "",
    }
    assert parse_set(('name="123"',)) == {"name": "123"}
    with pytest.raises(ConfigError, match=r"quote text .* --set 'name=\"123\"'"):
        parse_set(("name=123",))
    with pytest.raises(ConfigError, match="given twice"):
        parse_set(("starred=true", "starred=false"))


def test_default_journal_names_and_never_reuses(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 31, 18, 5, 9, tzinfo=UTC)
    first = default_journal("archive", now=moment, directory=tmp_path)
    assert first == tmp_path / "bulkruns-archive-20260131T180509Z.jsonl"
    first.touch()
    assert default_journal("archive", now=moment, directory=tmp_path).name == (
        "bulkruns-archive-20260131T180509Z-2.jsonl"
    )
    assert default_journal("undo", now=moment).parent == Path(".")


def test_id_sources_count_distinct_ids_and_read_stdin_once(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(5)]
    path = tmp_path / "ids.txt"
    path.write_text("# header\n" + "\n".join(ids + ids[:2]) + "\n\n")
    source = IdSource.read(str(path))
    assert source.count == 5
    assert list(source) == ids + ids[:2]  # the engine dedupes as it pins
    piped = IdSource.read("-", io.StringIO("\n".join(ids)))
    assert piped.count == 5
    assert list(piped) == list(piped) == ids


def test_the_token_stays_out_of_the_connection_repr() -> None:
    conn = Connection(org="o", token="tok-SECRET", base_url="https://x", flags=("--org", "o"))
    assert "tok-SECRET" not in repr(conn)
    assert conn.command("resume", "/tmp/a b.jsonl") == "bulkruns --org o resume '/tmp/a b.jsonl'"


def test_job_options_flags_over_recorded_settings_over_defaults() -> None:
    recorded = {"rate": 2.0, "concurrency": 3, "max_failures": None}
    options = job_options({"rate": 5.0}, defaults=recorded, journal=Path("j.jsonl"))
    assert options.rate == 5.0
    assert options.concurrency == 3
    assert options.max_failures is None
    assert options.max_attempts == 8
    assert options.journal == Path("j.jsonl")
    with pytest.raises(ConfigError, match="archived must be one of") as caught:
        job_options({}, defaults={"archived": ["x"], "per_page": 10}, journal=None)
    assert caught.value.setting == "archived"


def test_a_job_that_could_not_prove_its_selection_complete_says_so() -> None:
    message = "the query still found new runs after 10 passes; resume the job to carry on"
    unproven = summary(message=message, verified=False, sweeps=10)
    lines = summary_lines(unproven, exit_code=exit_code(unproven))
    assert exit_code(unproven) == 1
    assert lines[0] == (
        f"archive finished, but the selection could not be proven complete: {message}"
    )
    assert "  passes over the query 10: not verified" in lines
    both = summary(failed=2, message=message, verified=False)
    assert summary_lines(both, exit_code=1)[0] == (
        "archive finished with failures, and the selection could not be proven complete: " + message
    )


def test_id_files_with_a_byte_order_mark_and_crlf_line_ends(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(3)]
    for name, data in (
        ("bom.txt", "\ufeff" + "\n".join(ids) + "\n"),
        ("crlf.txt", "\r\n".join(ids) + "\r\n"),
        ("both.txt", "\ufeff# exported\r\n" + "\r\n".join(ids)),
    ):
        path = tmp_path / name
        path.write_bytes(data.encode("utf-8"))
        source = IdSource.read(str(path))
        assert source.count == 3, name
        assert list(source) == ids, name


def test_an_id_file_that_is_a_pipe_is_read_once_and_kept(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(5)]
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as pipe:
            pipe.write("\n".join(ids) + "\n")

    writer = threading.Thread(target=write)
    writer.start()
    source = IdSource.read(str(fifo))
    writer.join(10)
    # a second reading of the pipe would find it empty (or block): the IDs are kept
    assert source.count == 5
    assert list(source) == list(source) == ids


def test_an_id_file_that_changes_before_the_second_reading_is_refused(tmp_path: Path) -> None:
    ids = [f"{n:032x}" for n in range(5)]
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    source = IdSource.read(str(path))
    path.write_text("\n".join(ids[:3]) + "\n")
    with pytest.raises(ConfigError, match=r"ids.txt changed while bulkruns was reading it"):
        list(source)
    # a file touched since it was counted is a change too
    source = IdSource.read(str(path))
    os.utime(path, ns=(0, 0))
    with pytest.raises(ConfigError, match="changed while"):
        list(source)
    # read as counted: accepted
    assert list(IdSource.read(str(path))) == ids[:3]


def test_recorded_settings_are_type_checked_and_name_the_field(tmp_path: Path) -> None:
    log = tmp_path / "j.jsonl"
    good = {"concurrency": 4, "rate": 2.5, "max_failures": None, "archived": "only", "new": 1}
    assert JobOptions.recorded({"params": good}, where=log) == {
        "concurrency": 4,
        "rate": 2.5,
        "max_failures": None,
        "archived": "only",
    }
    assert JobOptions.recorded({}, where=log) == {}
    with pytest.raises(JournalError, match=r"j.jsonl: .*settings \(params\) are not an object"):
        JobOptions.recorded({"params": [1, 2]}, where=log)
    for name, value in (
        ("concurrency", "4"),
        ("concurrency", 0),
        ("rate", float("inf")),
        ("rate", True),
        ("max_attempts", 2.5),
        ("max_failures", -1),
        ("limit", 0),
        ("archived", ["status"]),
        ("per_page", 500),
    ):
        with pytest.raises(JournalError, match=rf"j.jsonl: the recorded setting params.{name} "):
            JobOptions.recorded({"params": {name: value}}, where=log)


def test_a_new_log_is_checked_by_creating_it(tmp_path: Path) -> None:
    fresh = tmp_path / "new.jsonl"
    check_new_log(fresh)
    assert not fresh.exists()  # made and removed again
    fresh.write_text("")
    with pytest.raises(ConfigError, match=r"new\.jsonl already exists: resume it"):
        check_new_log(fresh)
    with pytest.raises(ConfigError, match=r"the folder .*nowhere does not exist"):
        check_new_log(tmp_path / "nowhere" / "j.jsonl")
    with pytest.raises(ConfigError, match="is a folder"):
        check_new_log(tmp_path)
    # a folder that exists but takes no file (a process's /proc entry)
    with pytest.raises(ConfigError, match=r"cannot create the result log /proc/self/j\.jsonl"):
        check_new_log(Path("/proc/self/j.jsonl"))


def test_resume_preview_counts_from_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"{n:032x}" for n in range(6)]
    log = tmp_path / "j.jsonl"
    records: list[dict[str, Any]] = [
        {
            "type": "job",
            "version": 1,
            "job_id": "0" * 32,
            "operation": "archive",
            "fields": {},
            "params": {},
            "filter": {"status": "complete"},
            "org": "o",
            "base_url": "https://x",
            "created_at": "2026-01-01T00:00:00Z",
            "dry_run": False,
        },
        {"type": "item", "id": ids[0], "outcome": "ok"},
        {"type": "item", "id": ids[1], "outcome": "skipped"},
        {"type": "item", "id": ids[2], "outcome": "failed", "status": 500},
        {"type": "claim", "id": ids[3]},
        {"type": "claim", "id": ids[4]},
    ]
    log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    before = log.read_bytes()
    state = read_journal(log)

    assert preview_resume(log, state, Display()) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"resume of {log} would archive 3 runs recorded as still to do: "
        "failed 1, unfinished 2, not started 0",
        "  then the rest of the selection: it lists the job's query again and takes the runs "
        "that match it now (only that listing can count them)",
        "  already done, left alone: 2",
        "  a preview: nothing was sent, and the log is unchanged",
    ]
    assert log.read_bytes() == before
