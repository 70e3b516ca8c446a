from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkruns.errors import ConfigError, JournalError
from bulkruns.journal import (
    JOURNAL_VERSION,
    JournalWriter,
    iter_records,
    ok_items,
    read_journal,
)
from bulkruns.journal import reader as journal_reader
from bulkruns.journal import writer as journal_writer
from bulkruns.model import Work, id_key

HEADER: dict[str, Any] = {
    "type": "job",
    "version": JOURNAL_VERSION,
    "job_id": "5f0c3c1e2d8b4a7f9e6d5c4b3a291807",
    "operation": "update",
    "params": {"concurrency": 8, "rate": 9.9},
    "filter": {"status": "active"},
    "org": "org-1",
    "base_url": "http://127.0.0.1:1/api",
    "created_at": "2026-01-01T00:00:00Z",
    "dry_run": False,
    "undo_of": None,
}


def rid(n: int) -> str:
    return f"{n:032x}"


def line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def write_log(path: Path, *records: dict[str, Any], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(line(r) for r in (HEADER, *records)) + tail)
    return path


def claim(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "claim", "id": rid(n), **extra}


def item(n: int, outcome: str, **extra: Any) -> dict[str, Any]:
    return {"type": "item", "id": rid(n), "outcome": outcome, **extra}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "job.jsonl"


# -- ids -------------------------------------------------------------------------------------


def test_id_key_keeps_the_whole_id() -> None:
    for run_id in (rid(0), rid(1), "f" * 32, "0123456789abcdef0123456789abcdef"):
        assert f"{id_key(run_id):032x}" == run_id
    assert id_key("00000000000000000000000000000010") == 16


# -- writing and reading back ----------------------------------------------------------------


def test_round_trip_of_every_record_type(log: Path) -> None:
    records: list[dict[str, Any]] = [
        HEADER,
        item(1, "planned", fields={"name": "x"}, before={"name": "a"}),
        item(2, "planned", fields={"name": "y"}, before={"name": "b"}),
        item(3, "planned"),
        {"type": "planned", "count": 3},
        claim(1, before={"name": "a"}),
        item(1, "ok", status=200, attempts=1, request_id="r1", before={"name": "a"}),
        claim(2),
        item(2, "failed", status=422, attempts=1, error="HTTP 422: no", request_id="r2"),
        claim(3),
        item(3, "skipped", note="already archived"),
        {"type": "summary", "ok": 1, "failed": 1, "skipped": 1, "elapsed": 0.5},
    ]
    with JournalWriter(log) as writer:
        writer.write(records[0])
        writer.write_many(records[1:5])
        for record in records[5:]:
            writer.write(record)
    assert writer.closed

    assert list(iter_records(log)) == records
    state = read_journal(log)
    assert state.header == HEADER
    assert state.done == {id_key(rid(1)), id_key(rid(3))}
    assert state.pending == {
        id_key(rid(2)): Work(
            id=rid(2),
            before={"name": "b"},
            fields={"name": "y"},
            unknown=False,
            error="HTTP 422: no",
            attempts=1,
        )
    }
    assert state.pinned
    assert state.plan_complete
    assert state.counts == {"ok": 1, "failed": 1, "skipped": 1, "planned": 0, "unfinished": 0}
    assert state.sessions == 1
    assert not state.torn
    assert state.lines == len(records)


def test_write_many_of_nothing_writes_nothing(log: Path) -> None:
    with JournalWriter(log) as writer:
        writer.write(HEADER)
        writer.write_many([])
    assert log.read_bytes() == line(HEADER)


def test_records_are_flushed_as_written(log: Path) -> None:
    with JournalWriter(log, fsync_interval=3600) as writer:
        writer.write(HEADER)
        writer.write_many([claim(1), item(1, "ok")])
        # Another reader (a crash, a `tail -f`) sees every line before any fsync or close.
        assert list(iter_records(log)) == [HEADER, claim(1), item(1, "ok")]


def test_writer_appends_to_an_existing_log(log: Path) -> None:
    write_log(log, claim(1))
    with JournalWriter(log) as writer:
        writer.write(item(1, "ok"))
    assert list(iter_records(log)) == [HEADER, claim(1), item(1, "ok")]


def test_writer_refuses_a_closed_file(log: Path) -> None:
    writer = JournalWriter(log)
    writer.close()
    writer.close()  # twice is harmless
    with pytest.raises(ValueError, match="closed"):
        writer.write(HEADER)


def test_writer_cannot_open_gives_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot write the result log"):
        JournalWriter(tmp_path / "no-such-dir" / "job.jsonl")
    with pytest.raises(JournalError, match="cannot write the result log"):
        JournalWriter(tmp_path)


# -- torn lines ------------------------------------------------------------------------------

TORN = b'{"type":"item","id":"' + rid(9).encode() + b'","outc'


def test_torn_last_line_is_tolerated(log: Path) -> None:
    write_log(log, claim(1), item(1, "ok"), claim(9), tail=TORN)
    state = read_journal(log)
    assert state.torn
    assert state.lines == 4
    assert state.done == {id_key(rid(1))}
    assert list(state.pending) == [id_key(rid(9))]
    assert state.pending[id_key(rid(9))].unknown
    assert [r["type"] for r in iter_records(log)] == ["job", "claim", "item", "claim"]


@pytest.mark.parametrize(
    "tail",
    [TORN, b"\x00" * 4096, b"garbage\n", b'{"type":"item"\n', b"[1, 2]\n", b"  "],
    ids=["torn", "zero-filled", "garbage-line", "cut-line", "not-an-object", "blank-fragment"],
)
def test_reopen_for_append_repairs_an_unreadable_last_line(log: Path, tail: bytes) -> None:
    write_log(log, claim(1), item(1, "ok"), tail=tail)
    assert read_journal(log).torn == bool(tail.strip())
    with JournalWriter(log) as writer:
        writer.write(item(2, "skipped"))
    assert log.read_bytes() == b"".join(
        map(line, [HEADER, claim(1), item(1, "ok"), item(2, "skipped")])
    )
    state = read_journal(log)
    assert not state.torn
    assert state.done == {id_key(rid(1)), id_key(rid(2))}


def test_whole_last_record_without_its_newline_is_kept(log: Path) -> None:
    write_log(log, claim(1), tail=line(item(1, "ok")).rstrip(b"\n"))
    state = read_journal(log)
    assert not state.torn
    assert state.done == {id_key(rid(1))}
    with JournalWriter(log) as writer:
        writer.write(item(2, "ok"))
    assert read_journal(log).done == {id_key(rid(1)), id_key(rid(2))}


def test_reopen_leaves_a_sound_log_alone(log: Path) -> None:
    write_log(log, claim(1), item(1, "ok"), tail=b"\n")  # a blank last line is harmless
    before = log.read_bytes()
    JournalWriter(log).close()
    assert log.read_bytes() == before


def test_repair_finds_the_line_start_beyond_one_block(log: Path) -> None:
    write_log(log, claim(1), tail=b"x" * (200 << 10))
    JournalWriter(log).close()
    assert log.read_bytes() == line(HEADER) + line(claim(1))


def test_blank_lines_are_skipped(log: Path) -> None:
    log.write_bytes(line(HEADER) + b"\n  \n" + line(item(1, "ok")))
    assert read_journal(log).done == {id_key(rid(1))}


def test_corrupt_line_in_the_middle_names_the_line(log: Path) -> None:
    log.write_bytes(line(HEADER) + line(claim(1)) + b'{"type":"item","id":\n' + line(item(1, "ok")))
    with pytest.raises(JournalError, match=r"line 3 is corrupt") as caught:
        read_journal(log)
    assert "\n" not in str(caught.value)


def test_two_unreadable_lines_at_the_end_are_corruption(log: Path) -> None:
    write_log(log, claim(1), tail=b"garbage\n" + TORN)
    with pytest.raises(JournalError, match=r"line 3 is corrupt"):
        read_journal(log)


def test_corrupt_line_found_across_chunks(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_reader, "_CHUNK", 16)  # lines split across many reads
    records = [claim(n) for n in range(1, 20)]
    log.write_bytes(
        b"".join(map(line, [HEADER, *records[:10]])) + b"oops\n" + b"".join(map(line, records[10:]))
    )
    with pytest.raises(JournalError, match=r"line 12 is corrupt"):
        read_journal(log)


def test_reads_in_small_chunks_agree(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(log, *(claim(n) for n in range(1, 30)), *(item(n, "ok") for n in range(1, 30)))
    expected = list(iter_records(log))
    monkeypatch.setattr(journal_reader, "_CHUNK", 7)
    assert list(iter_records(log)) == expected


# -- refusals --------------------------------------------------------------------------------

Reader = Callable[[Path], object]
READERS: list[Reader] = [read_journal, lambda p: list(iter_records(p)), lambda p: list(ok_items(p))]


@pytest.mark.parametrize("reader", READERS, ids=["read_journal", "iter_records", "ok_items"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b'{"type":"jo', "only line is torn"),
        (line(item(1, "ok")), "first line is not a job record"),
        (line({**HEADER, "version": 2}), "unknown journal version 2"),
        (line({k: v for k, v in HEADER.items() if k != "version"}), "unknown journal version None"),
        (line(HEADER) + line({"type": "claim"}), "line 2: claim record without an id"),
        (line(HEADER) + line({"type": "item", "outcome": "ok"}), "line 2: item record without"),
        (line(HEADER) + line(claim(1)) + line(item(1, "ok", id="A" * 32)), "line 3: id 'AAAA"),
        (line(HEADER) + line({"type": "claim", "id": "a" * 31}), "line 2: id 'aaaa"),
        (line(HEADER) + line({"type": "claim", "id": "a" * 33}), "not 32 lowercase hex"),
        (line(HEADER) + line({"type": "claim", "id": "0x" + "a" * 30}), "not 32 lowercase hex"),
        (line(HEADER) + line({"type": "claim", "id": "g" * 32}), "not 32 lowercase hex"),
        (line(HEADER) + line({"type": "claim", "id": "ab " * 10 + "ab"}), "not 32 lowercase"),
        (line(HEADER) + line({"type": "claim", "id": 12345}), "line 2: id 12345 is not"),
        (line(HEADER) + line(HEADER), "line 2 is a second job record"),
        (line(HEADER) + b"[]\n" + line(claim(1)), "line 2 is corrupt"),
    ],
)
def test_unusable_logs_are_refused_with_one_clear_line(
    log: Path, reader: Reader, content: bytes | None, message: str
) -> None:
    if content is not None:
        log.write_bytes(content)
    with pytest.raises(JournalError, match=message) as caught:
        reader(log)
    text = str(caught.value)
    assert "\n" not in text
    assert str(log) in text
    assert isinstance(caught.value, ConfigError)  # the CLI's exit 2, nothing sent


def test_a_directory_is_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is not a file"):
        read_journal(tmp_path)


def test_an_unknown_outcome_is_refused(log: Path) -> None:
    write_log(log, item(1, "maybe"))
    with pytest.raises(JournalError, match="unknown outcome 'maybe'"):
        read_journal(log)


def test_unknown_record_types_are_ignored(log: Path) -> None:
    write_log(log, {"type": "note", "text": "hello"}, item(1, "ok"))
    state = read_journal(log)
    assert state.done == {id_key(rid(1))}
    assert state.lines == 3


# -- resume state ----------------------------------------------------------------------------


def test_last_record_wins_through_a_whole_life(log: Path) -> None:
    life = [
        item(1, "planned", fields={"starred": True}, before={"starred": False}),
        {"type": "planned", "count": 1},
        claim(1, before={"starred": False}),
        item(1, "failed", attempts=3, error="HTTP 503: down", unknown=True),
        claim(1),
        item(1, "ok", before={"starred": False}),
    ]
    expected_pending: list[Work | None] = [
        Work(rid(1), {"starred": False}, {"starred": True}, False, None, 0),
        None,  # the marker changes no item
        Work(rid(1), {"starred": False}, {"starred": True}, True, None, 0),
        Work(rid(1), {"starred": False}, {"starred": True}, True, "HTTP 503: down", 3),
        Work(rid(1), {"starred": False}, {"starred": True}, True, "HTTP 503: down", 3),
        None,
    ]
    previous: Work | None = None
    for n in range(1, len(life) + 1):
        write_log(log, *life[:n])
        state = read_journal(log)
        pending = expected_pending[n - 1]
        if n == len(life):
            assert state.done == {id_key(rid(1))}
            assert state.pending == {}
            assert state.counts["ok"] == 1
        else:
            assert state.done == set()
            assert state.pending == {id_key(rid(1)): pending or previous}
        previous = pending or previous
        assert state.pinned
        assert state.plan_complete == (n >= 2)


def test_claim_without_an_outcome_is_pending_and_unknown(log: Path) -> None:
    write_log(log, claim(1, before={"status": "active"}), claim(2), item(2, "ok"))
    state = read_journal(log)
    assert state.pending == {
        id_key(rid(1)): Work(rid(1), {"status": "active"}, None, True, None, 0)
    }
    assert state.counts == {"ok": 1, "failed": 0, "skipped": 0, "planned": 0, "unfinished": 1}
    assert not state.pinned


def test_a_failure_with_a_known_outcome_is_not_unknown(log: Path) -> None:
    write_log(log, claim(1), item(1, "failed", error="HTTP 422: name too long", attempts=1))
    (pending,) = read_journal(log).pending.values()
    assert not pending.unknown
    assert pending.error == "HTTP 422: name too long"


def test_counts_follow_the_last_outcome(log: Path) -> None:
    write_log(
        log,
        item(1, "planned"),
        item(2, "planned"),
        item(3, "planned"),
        item(4, "planned"),
        {"type": "planned", "count": 4},
        claim(1),
        item(1, "skipped"),
        claim(1),  # a later session took it up again (last record wins)
        item(1, "ok"),
        claim(2),
        item(2, "ok"),
        claim(2),
        item(2, "skipped"),
        claim(3),
        item(3, "failed", error="HTTP 404: gone"),
        claim(5),
        item(5, "skipped"),
        claim(5),  # taken up again, then cut off
        {"type": "summary"},
        {"type": "summary"},
    )
    state = read_journal(log)
    assert state.counts == {"ok": 1, "failed": 1, "skipped": 1, "planned": 1, "unfinished": 1}
    assert state.done == {id_key(rid(1)), id_key(rid(2))}
    # Pending keeps the order in which the items first appeared.
    assert list(state.pending) == [id_key(rid(3)), id_key(rid(4)), id_key(rid(5))]
    assert state.sessions == 2


def test_a_pinned_log_without_its_marker_is_an_incomplete_plan(log: Path) -> None:
    write_log(log, item(1, "planned"), item(2, "planned"))
    state = read_journal(log)
    assert state.pinned
    assert not state.plan_complete
    assert state.counts["planned"] == 2


# -- ok_items --------------------------------------------------------------------------------


def test_ok_items_yield_each_ok_item_once_in_log_order(log: Path) -> None:
    write_log(
        log,
        claim(3, before={"status": "active"}),
        claim(1, before={"status": "complete"}),
        item(1, "ok"),  # the before-state comes from the claim
        item(3, "ok", before={"status": "problem"}),  # the item's own before-state wins
        claim(2),
        item(2, "failed", error="HTTP 500"),
        claim(4),
        item(4, "skipped"),
        claim(5, before={"status": "delayed"}),
        item(5, "ok"),
        claim(5, before={"status": "archived"}),  # a repeated run: undo to the first state
        item(5, "ok"),
        claim(6),
        item(6, "ok"),
        claim(6),
        item(6, "failed", error="HTTP 503"),  # the last outcome is not ok
    )
    assert list(ok_items(log)) == [
        (rid(1), {"status": "complete"}),
        (rid(3), {"status": "problem"}),
        (rid(5), {"status": "delayed"}),
    ]


def test_ok_items_of_a_log_without_befores(log: Path) -> None:
    write_log(log, claim(1), item(1, "ok"), item(2, "ok"))
    assert list(ok_items(log)) == [(rid(1), None), (rid(2), None)]


# -- fsync cadence ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fsync_at_most_once_per_interval_and_at_close(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.touch()  # an existing (empty) file: no directory fsync to count
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_writer.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    clock = FakeClock()
    writer = JournalWriter(log, fsync_interval=1.0, clock=clock)
    for step in (0.0, 0.5, 0.99):
        clock.now = 100.0 + step
        writer.write(claim(1))
    assert synced == []
    clock.now = 101.0
    writer.write(item(1, "ok"))
    assert len(synced) == 1
    clock.now = 101.9
    writer.write_many([claim(2), item(2, "ok")])
    writer.sync_if_due()
    assert len(synced) == 1
    clock.now = 102.0
    writer.sync_if_due()  # without a write, as the engine's ticker calls it
    assert len(synced) == 2
    writer.sync_if_due()
    assert len(synced) == 2
    writer.close()
    assert len(synced) == 3
    assert len(set(synced)) == 1  # all on the log itself


def test_zero_interval_fsyncs_every_write(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log.touch()
    synced: list[int] = []
    monkeypatch.setattr(journal_writer.os, "fsync", synced.append)
    with JournalWriter(log, fsync_interval=0.0, clock=FakeClock()) as writer:
        writer.write(HEADER)
        writer.write_many([claim(1), item(1, "ok")])
        assert len(synced) == 2
    assert len(synced) == 3


def test_a_new_log_fsyncs_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(journal_writer.os, "fsync", synced.append)
    writer = JournalWriter(tmp_path / "new.jsonl", clock=FakeClock())
    assert len(synced) == 1
    writer.close()


# -- crash anywhere: nothing lost ------------------------------------------------------------


@st.composite
def journals(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A log as the engine writes it: interleaved item lives, with summaries between."""
    count = draw(st.integers(min_value=1, max_value=6))
    pinned = draw(st.booleans())
    lives: list[list[dict[str, Any]]] = []
    for n in range(1, count + 1):
        life: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(min_value=0, max_value=2))):  # failed or cut sessions
            life.append(claim(n, before={"v": n}))
            if draw(st.booleans()):
                life.append(item(n, "failed", error="HTTP 503", unknown=draw(st.booleans())))
        end = draw(st.sampled_from(["ok", "skipped", "failed", "claim", None]))
        if end is not None:
            life.append(claim(n))
            if end != "claim":
                life.append(item(n, end, attempts=1))
        lives.append(life)
    records: list[dict[str, Any]] = []
    if pinned:
        records += [item(n, "planned", fields={"f": n}) for n in range(1, count + 1)]
        records.append({"type": "planned", "count": count})
    queues = [iter(life) for life in lives]
    order = draw(st.permutations([i for i, life in enumerate(lives) for _ in life]))
    for i in order:
        records.append(next(queues[i]))
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            records.append({"type": "summary", "ok": 0})
    return records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=journals(), data=st.data())
def test_a_log_cut_at_any_byte_loses_no_item(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    lines = [line(HEADER), *map(line, records)]
    full = b"".join(lines)
    cut = data.draw(st.integers(min_value=len(lines[0]), max_value=len(full)), label="cut")
    with tempfile.TemporaryDirectory() as tmp:
        full_path = Path(tmp) / "full.jsonl"
        cut_path = Path(tmp) / "cut.jsonl"
        full_path.write_bytes(full)
        cut_path.write_bytes(full[:cut])
        whole = read_journal(full_path)
        state = read_journal(cut_path)

        assert state.done <= whole.done
        assert not state.done & state.pending.keys()
        offset = 0
        for raw, record in zip(lines, [HEADER, *records], strict=True):
            offset += len(raw)
            if offset - 1 > cut:  # this line's content did not survive whole
                break
            if "id" in record:
                key = id_key(record["id"])
                assert key in state.done or key in state.pending
        assert state.torn == (cut not in _line_ends(lines))

        # Appending after the crash repairs the tail and keeps the same state.
        with JournalWriter(cut_path) as writer:
            writer.write({"type": "summary", "ok": 0})
        resumed = read_journal(cut_path)
        assert not resumed.torn
        assert resumed.done == state.done
        assert resumed.pending == state.pending
        assert resumed.sessions == state.sessions + 1


def _line_ends(lines: list[bytes]) -> Iterator[int]:
    """Cut points that leave no unreadable line: after a newline, or just before it."""
    offset = 0
    for raw in lines:
        offset += len(raw)
        yield offset - 1
        yield offset


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_a_journal_error_and_stops_further_writes() -> None:
    writer = JournalWriter("/dev/full")
    with pytest.raises(JournalError, match="No space left on device"):
        writer.write({"type": "claim", "id": "a" * 32})
    with pytest.raises(JournalError, match="No space left on device"):
        writer.write({"type": "summary"})
    writer.close()  # a failed writer closes quietly
    assert writer.closed


def test_a_new_log_is_created_exclusively(log: Path) -> None:
    log.write_bytes(orjson.dumps(HEADER) + b"\n")
    before = log.read_bytes()
    with pytest.raises(JournalError, match="already exists: resume it"):
        JournalWriter(log, new=True)
    assert log.read_bytes() == before  # the other job's log is left as it was
    fresh = log.with_name("fresh.jsonl")
    with JournalWriter(fresh, new=True) as writer:
        writer.write(HEADER)
    assert read_journal(fresh).header == HEADER
