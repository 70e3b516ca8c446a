from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bulkruns.errors import ConfigError
from bulkruns.model import (
    Operation,
    RunFilter,
    is_run_id,
    parse_duration,
    parse_when,
    read_ids,
    validate_fields,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_parse_when_reads_ages_and_iso() -> None:
    assert parse_when("90d", now=NOW) == NOW - timedelta(days=90)
    assert parse_when("12h", now=NOW) == NOW - timedelta(hours=12)
    assert parse_when("2w", now=NOW) == NOW - timedelta(weeks=2)
    assert parse_when("30min", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_when("45s", now=NOW) == NOW - timedelta(seconds=45)
    # months and years are calendar ones, clamped to a shorter month's last day
    assert parse_when("6mo", now=NOW) == datetime(2025, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_when("1y", now=NOW) == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    may_31 = datetime(2026, 5, 31, tzinfo=UTC)
    assert parse_when("3mo", now=may_31) == datetime(2026, 2, 28, tzinfo=UTC)
    assert parse_when("2 D", now=NOW) == NOW - timedelta(days=2)
    assert parse_when("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_when("2025-01-31T18:00:00Z") == datetime(2025, 1, 31, 18, tzinfo=UTC)
    assert parse_when("2025-01-31T18:00:00+02:00").utcoffset() == timedelta(hours=2)


def test_a_bare_m_is_refused_as_ambiguous() -> None:
    # written for six months, read as six minutes, it would select nearly everything
    with pytest.raises(ConfigError, match="could be minutes or months; write 6min or 6mo"):
        parse_when("6m")
    with pytest.raises(ConfigError, match="counted whole"):
        parse_when("1.5mo")


def test_durations_for_waits() -> None:
    assert parse_duration("90s") == 90.0
    assert parse_duration("30min") == 1800.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("2") == 2.0
    for text in ("6m", "1mo", "soon", ""):
        with pytest.raises(ConfigError, match=r"minutes or months|not a duration"):
            parse_duration(text)


@pytest.mark.parametrize("text", ["yesterday", "90", "d90", "2025-13-01", "12x", "1 fortnight"])
def test_parse_when_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="not a date or an age"):
        parse_when(text)


@pytest.mark.parametrize("text", ["999999999d", "10000000000d", "99999999999999999999w"])
def test_parse_when_refuses_ages_beyond_the_calendar(text: str) -> None:
    with pytest.raises(ConfigError, match="before the year 1"):
        parse_when(text)


def test_params_encode_every_server_filter() -> None:
    f = RunFilter(
        q="ACME Corp",
        status="complete",
        owners=("u1", "u2"),
        checklist_id="t1",
        folder="f1",
        tag="g1",
        starred=False,
        type="procedure",
        groups=("gr",),
        task_status="completed",
        sort="-created_at",
    )
    assert dict(f.params()) == {
        "q": "ACME Corp",
        "status": "complete",
        "checklist_id": "t1",
        "folder": "f1",
        "tag": "g1",
        "type": "procedure",
        "task_status": "completed",
        "sort": "-created_at",
        "owners": "u1,u2",
        "groups": "gr",
        "starred": "false",
    }


def test_archived_selection_in_both_styles() -> None:
    assert RunFilter().params(archived="status") == [("status", "archived")]
    assert RunFilter().params(archived="only") == [("archived", "only")]
    assert RunFilter(status="archived", tag="t").params(archived="only") == [
        ("archived", "only"),
        ("tag", "t"),
    ]
    # an archived run shows no status of before, so such a filter could not be checked
    for style in ("status", "only"):
        with pytest.raises(ConfigError, match="--status complete cannot be combined"):
            RunFilter(status="complete").params(archived=style)  # type: ignore[arg-type]


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown status 'complet'"):
        RunFilter(status="complet")


def test_client_side_dates() -> None:
    f = RunFilter(created_before=datetime(2025, 1, 1), updated_before=datetime(2025, 6, 1))
    assert f.filters_locally
    old = {"created_at": "2024-03-01T00:00:00Z", "last_updated": "2025-02-01T00:00:00.000Z"}
    assert f.accepts(old)
    assert not f.accepts({**old, "created_at": "2025-03-01T00:00:00Z"})
    assert not f.accepts({**old, "last_updated": "2025-07-01T00:00:00Z"})
    assert not f.accepts({"created_at": None, "last_updated": "2025-02-01T00:00:00Z"})
    assert not f.accepts({"created_at": "garbage", "last_updated": "2025-02-01T00:00:00Z"})
    assert RunFilter().accepts({})


def test_filter_record_round_trip() -> None:
    f = RunFilter(q="x", owners=("a",), starred=True, created_before=parse_when("2025-01-01"))
    assert RunFilter.from_record(f.to_record()) == f
    with pytest.raises(ConfigError, match="unknown filter fields"):
        RunFilter.from_record({"colour": "red"})
    with pytest.raises(ConfigError, match="not an object"):
        RunFilter.from_record([["q", "x"]])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "named"),
    [
        ({"q": 5}, "q must be text"),
        ({"sort": ["name"]}, "sort must be text"),
        ({"starred": "false"}, "starred must be true or false"),
        ({"all_runs": None}, "all_runs must be true or false"),
        ({"owners": "u1"}, "owners must be a sequence"),
        ({"created_before": 20250101}, "unreadable"),
    ],
)
def test_a_filter_of_the_wrong_types_in_a_log_is_refused(
    record: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        RunFilter.from_record(record)


def test_a_filter_of_the_wrong_types_is_refused_in_the_library() -> None:
    with pytest.raises(ConfigError, match="starred must be true or false"):
        RunFilter(starred="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="created_before must be a moment"):
        RunFilter(created_before="2025-01-01")  # type: ignore[arg-type]


def test_read_ids_validates_each_line() -> None:
    good = "a" * 32
    assert list(read_ids([good + "\n", "\n", "# note\n", f"  {good}  "], source="ids")) == [
        good,
        good,
    ]
    with pytest.raises(ConfigError, match=r"ids.txt line 2: 'ABC' is not a run ID"):
        list(read_ids([good, "ABC"], source="ids.txt"))
    assert is_run_id("0123456789abcdef0123456789abcdef")
    assert not is_run_id("0123456789ABCDEF0123456789ABCDEF")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "red"}, "'colour' cannot be updated"),
        ({"name": "x" * 551}, "at most 550"),
        ({"name": ""}, "non-empty"),
        ({"starred": "yes"}, "true or false"),
        ({"users": "u1"}, "JSON list"),
        ({"prerun": []}, "JSON object"),
        ({"summary": 3}, "must be a string"),
        ({"owner_id": True}, "must be a user ID"),
        ({"groups": ["g1", None]}, "JSON list"),
    ],
)
def test_update_fields_are_validated_locally(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_fields(fields)


def test_update_fields_accept_what_tallyfy_accepts() -> None:
    fields = {"owner_id": 1001, "users": [1001, "u2"], "summary": None, "prerun": {"f": 1}}
    assert validate_fields(fields) == fields


def test_operations_know_their_steps_selection_and_inverse() -> None:
    archive = Operation(name="archive")
    assert [step.name for step in archive.steps] == ["archive"]
    assert not archive.selects_archived
    assert archive.inverse() == Operation(name="activate")
    assert Operation(name="activate").inverse() == archive
    assert Operation(name="activate").selects_archived
    delete = Operation(name="delete")
    assert delete.selects_archived
    first, then = Operation(name="delete", archive_first=True).steps
    assert (first.name, then.name) == ("archive", "delete")
    with pytest.raises(ConfigError, match="cannot be undone"):
        delete.inverse()


def test_each_step_knows_what_a_404_means() -> None:
    (archive,) = Operation(name="archive").steps
    (activate,) = Operation(name="activate").steps
    (delete,) = Operation(name="delete").steps
    before_delete, _ = Operation(name="delete", archive_first=True).steps
    # a 404 is a failure, unless an earlier attempt's answer was lost and the change
    # makes the run disappear
    assert archive.when_missing(unknown=False) is None
    assert archive.when_missing(unknown=True) == "already archived by an earlier attempt"
    assert delete.when_missing(unknown=True) == "already deleted by an earlier attempt"
    assert activate.when_missing(unknown=True) is None
    # the archive before a permanent delete is not needed for a run already archived
    assert before_delete.when_missing(unknown=False) == "was already archived"
    assert Operation(name="update", fields={"starred": True}).steps[0].idempotent
    with pytest.raises(ConfigError, match="delete only"):
        Operation(name="archive", archive_first=True)
    with pytest.raises(ConfigError, match="takes no fields"):
        Operation(name="archive", fields={"name": "x"})


def test_update_records_and_skips_by_its_fields() -> None:
    update = Operation(name="update", fields={"starred": True})
    run = {"id": "a" * 32, "starred": False, "name": "n", "status": "active"}
    assert update.before(run) == {"starred": False}
    assert not update.already_done(run)
    assert update.already_done({**run, "starred": True})
    assert Operation(name="archive").before(run) == {"status": "active"}
    assert Operation.from_record(update.to_record()) == update
    with pytest.raises(ConfigError, match="no known operation"):
        Operation.from_record({"operation": "explode"})
