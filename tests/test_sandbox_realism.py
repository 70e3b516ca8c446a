"""The sandbox where Tallyfy's server differs from its docs, as Tallyfy's own clients record."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import yarl
from click.testing import CliRunner

from bulkruns.api import Client
from bulkruns.cli import main, serve
from bulkruns.errors import NotFound
from bulkruns.sandbox import Sandbox, SandboxConfig
from bulkruns.sandbox.rules import ListRequest, StoreError, parse_list_params
from bulkruns.sandbox.store import RunStore

pytestmark = pytest.mark.anyio

MakeSandbox = Callable[..., Sandbox]
MakeClient = Callable[..., Client]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def raw_list(sandbox: Sandbox, query: str) -> dict[str, Any]:
    """The body of one list answer, for the fields a :class:`Page` does not keep."""
    url = f"{sandbox.base_url}/organizations/{sandbox.org}/runs?{query}"
    headers = {"Authorization": f"Bearer {sandbox.token}", "X-Tallyfy-Client": "APIClient"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(yarl.URL(url, encoded=True), headers=headers) as response,
    ):
        assert response.status == 200
        return orjson.loads(await response.read())  # type: ignore[no-any-return]


def listing_of(store: RunStore, params: dict[str, str] | None = None) -> list[str]:
    """Every ID a query selects right now, in its order, read from the store."""
    request = parse_list_params(params or {})
    runs, _ = store.page(ListRequest(request.query, 1, 1_000_000))
    return [run["id"] for run in runs]


def listing(sandbox: Sandbox, params: dict[str, str] | None = None) -> list[str]:
    return listing_of(sandbox.state.store, params)


def run_of(store: RunStore, run_id: str) -> dict[str, Any]:
    """The live run object, which must exist."""
    run = store.get(run_id)
    assert run is not None
    return run


def first_id(sandbox: Sandbox, status: str, *, assigned: bool = False) -> str:
    """A run with ``status`` (and, if asked, at least one user and one group)."""
    store = sandbox.state.store
    for run_id in store.ids():
        run = store.get(run_id)
        assert run is not None
        if run["status"] == status and (not assigned or (run["users"] and run["groups"])):
            return run_id
    raise AssertionError(f"no seeded run is {status}")


# --- GET one run ----------------------------------------------------------------------------


def test_store_reads_live_runs_only() -> None:
    store = RunStore.seeded(60, 2)
    live = next(i for i in store.ids() if run_of(store, i)["status"] != "archived")
    archived = next(i for i in store.ids() if run_of(store, i)["status"] == "archived")
    assert store.read(live) is store.get(live)
    for missing in (archived, "0" * 32):
        with pytest.raises(StoreError) as caught:
            store.read(missing)
        assert caught.value.status == 404


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_get_run_answers_the_run_with_its_assignees(
    sandbox: Sandbox, make_client: MakeClient, prefix: str
) -> None:
    run_id = first_id(sandbox, "active", assigned=True)
    async with make_client(sandbox, base_url=sandbox.root_url + prefix) as client:
        reply = await client.get_run(run_id)
    assert reply.status == 200
    assert reply.request_id
    assert reply.data == sandbox.state.run(run_id)
    assert reply.data is not None
    assert reply.data["users"]
    assert reply.data["groups"]
    assert isinstance(reply.data["progress"], dict)  # as a list shows it
    assert sandbox.state.count("get", 200) == 1
    assert sandbox.state.changes(run_id) == 0


async def test_get_run_always_has_users_and_groups(sandbox: Sandbox, client: Client) -> None:
    run_id = first_id(sandbox, "complete")
    await client.update(run_id, {"users": [], "groups": []})
    reply = await client.get_run(run_id)
    assert reply.data is not None
    assert reply.data["users"] == []
    assert reply.data["groups"] == []


async def test_get_run_is_404_for_unknown_and_archived_runs(
    sandbox: Sandbox, client: Client
) -> None:
    archived = first_id(sandbox, "archived")
    for missing in ("0" * 32, archived):
        with pytest.raises(NotFound):
            await client.get_run(missing)
    await client.activate(archived)
    reply = await client.get_run(archived)
    assert reply.data is not None
    assert reply.data["archived_at"] is None
    stats: dict[str, Any] = sandbox.state.stats()
    assert stats["requests"]["get"] == {"404": 2, "200": 1}


# --- an update strips the assignees it is not sent -------------------------------------------


def assigned_run(store: RunStore) -> str:
    return next(
        run_id
        for run_id in store.ids()
        if (run := store.get(run_id)) is not None
        and run["status"] == "active"
        and run["users"]
        and run["groups"]
    )


def test_an_update_without_assignees_strips_both_buckets() -> None:
    store = RunStore.seeded(80, 3)
    run_id = assigned_run(store)
    prerun = run_of(store, run_id)["prerun"]
    run = store.update(run_id, {"name": "Renamed"}, strip_unsent_assignees=True)
    assert run["name"] == "Renamed"
    assert run["users"] == []
    assert run["groups"] == []
    assert run["prerun"] is prerun  # an absent prerun is left alone
    assert store.stripped == {run_id: 1}
    store.update(run_id, {"starred": True}, strip_unsent_assignees=True)
    assert store.stripped == {run_id: 1}  # nothing left to lose


def test_each_bucket_is_read_alone_and_a_sent_list_replaces() -> None:
    store = RunStore.seeded(80, 3)
    run_id = assigned_run(store)
    groups = list(run_of(store, run_id)["groups"])
    run = store.update(run_id, {"users": [1005]}, strip_unsent_assignees=True)
    assert run["users"] == [1005]
    assert run["groups"] == []
    assert store.stripped[run_id] == 1
    run = store.update(
        run_id, {"users": [1002, 1003], "groups": groups}, strip_unsent_assignees=True
    )
    assert run["users"] == [1002, 1003]
    assert run["groups"] == groups
    assert store.stripped[run_id] == 1  # both sent: nothing stripped


def test_without_the_switch_an_update_keeps_unsent_assignees() -> None:
    store = RunStore.seeded(80, 3)
    run_id = assigned_run(store)
    before = dict(run_of(store, run_id))
    run = store.update(run_id, {"name": "Renamed"})
    assert run["users"] == before["users"]
    assert run["groups"] == before["groups"]
    assert not store.stripped


@pytest.mark.parametrize("strip", [True, False])
async def test_update_over_http_strips_only_when_switched_on(
    make_sandbox: MakeSandbox, make_client: MakeClient, strip: bool
) -> None:
    async with make_sandbox(strip_unsent_assignees=strip) as sandbox:
        run_id = first_id(sandbox, "active", assigned=True)
        before = sandbox.state.run(run_id)
        assert before is not None
        async with make_client(sandbox) as client:
            reply = await client.update(run_id, {"name": "Renamed"})
            again = await client.get_run(run_id)
        assert reply.status == 200
        assert reply.data is not None
        assert again.data is not None
        for data in (reply.data, again.data):
            assert data["name"] == "Renamed"
            assert data["users"] == ([] if strip else before["users"])
            assert data["groups"] == ([] if strip else before["groups"])
        stripped = sandbox.state.stats()["assignees_stripped"]
        assert stripped == ({"updates": 1, "runs": 1} if strip else {"updates": 0, "runs": 0})


async def test_resending_the_current_assignees_keeps_them(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(strip_unsent_assignees=True) as sandbox:
        run_id = first_id(sandbox, "active", assigned=True)
        async with make_client(sandbox) as client:
            current = (await client.get_run(run_id)).data
            assert current is not None
            body = {"starred": True, "users": current["users"], "groups": current["groups"]}
            reply = await client.update(run_id, body)
        assert reply.data is not None
        assert (reply.data["users"], reply.data["groups"]) == (current["users"], current["groups"])
        assert sandbox.state.stats()["assignees_stripped"]["runs"] == 0


# --- pages smaller than asked ------------------------------------------------------------------


def test_page_size_is_checked() -> None:
    for bad in ({"page_size": 0}, {"page_size": 101}, {"per_page_reported": "both"}):
        with pytest.raises(ValueError, match=r"page_size|per_page_reported"):
            SandboxConfig(**bad)  # type: ignore[arg-type]


async def test_a_smaller_served_page_keeps_offsets_of_the_size_served(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with (
        make_sandbox(page_size=50, total_pages_quirk=False) as sandbox,
        make_client(sandbox) as client,
    ):
        everything = listing(sandbox)
        second = await client.list_runs([], page=2, per_page=100)
        assert [run["id"] for run in second.runs] == everything[50:100]
        pagination = (await raw_list(sandbox, "page=2&per_page=100"))["meta"]["pagination"]
        assert pagination["count"] == 50
        assert pagination["per_page"] == 50
        assert pagination["current_page"] == 2
        assert pagination["total"] == len(everything)
        assert pagination["total_pages"] == math.ceil(len(everything) / 50)
        small = await raw_list(sandbox, "page=3&per_page=20")  # smaller than page_size
        assert [run["id"] for run in small["data"]] == everything[40:60]


async def test_served_pages_partition_the_result_set(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(page_size=7) as sandbox, make_client(sandbox) as client:
        seen: list[str] = []
        page = 1
        while runs := (await client.list_runs([("status", "active")], page=page)).runs:
            assert len(runs) <= 7
            seen += [run["id"] for run in runs]
            page += 1
        assert seen == listing(sandbox, {"status": "active"})
        assert page - 1 == math.ceil(len(seen) / 7)


async def test_per_page_can_echo_what_was_asked(make_sandbox: MakeSandbox) -> None:
    async with make_sandbox(
        page_size=50, per_page_reported="asked", total_pages_quirk=False
    ) as sandbox:
        body = await raw_list(sandbox, "per_page=100")
        pagination = body["meta"]["pagination"]
        assert pagination["per_page"] == 100
        assert pagination["count"] == len(body["data"]) == 50
        assert pagination["total_pages"] == math.ceil(pagination["total"] / 50)
        last = pagination["total_pages"]
        assert pagination["links"]["next"].endswith("page=2")
        tail = (await raw_list(sandbox, f"per_page=100&page={last}"))["meta"]["pagination"]
        assert tail["links"]["next"] is None


# --- status=archived, and filters the server ignores --------------------------------------------


@pytest.mark.parametrize(
    ("reading", "archived", "status"),
    [("lists-archived", True, None), ("ignored", False, None), ("matches-none", False, "archived")],
)
def test_status_archived_readings(reading: str, archived: bool, status: str | None) -> None:
    query = parse_list_params({"status": "archived"}, status_archived=reading).query
    assert (query.archived, query.status) == (archived, status)
    store = RunStore.seeded(60, 4)
    runs, total = store.page(parse_list_params({"status": "archived"}, status_archived=reading))
    if reading == "matches-none":
        assert (runs, total) == ([], 0)
    else:
        assert runs
        assert all((run["status"] == "archived") is archived for run in runs)


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        ("lists-archived", {"archived": "only"}),
        ("ignored", {}),
        ("matches-none", None),
    ],
)
async def test_status_archived_over_http(
    make_sandbox: MakeSandbox,
    make_client: MakeClient,
    reading: str,
    expected: dict[str, str] | None,
) -> None:
    async with make_sandbox(status_archived=reading) as sandbox, make_client(sandbox) as client:
        page = await client.list_runs([("status", "archived")])
        want = [] if expected is None else listing(sandbox, expected)[:100]
        assert [run["id"] for run in page.runs] == want
        assert page.total == (0 if expected is None else len(listing(sandbox, expected)))
        # archived=only lists archived runs whatever the reading
        only = await client.list_runs([("archived", "only")])
        assert only.runs
        assert all(run["status"] == "archived" for run in only.runs)


def test_ignored_filters_are_checked() -> None:
    for bad in (("state",), ["status"], ("page",)):
        with pytest.raises(ValueError, match="ignored_filters"):
            SandboxConfig(ignored_filters=bad)  # type: ignore[arg-type]


def test_an_ignored_filter_is_read_as_unknown() -> None:
    query = parse_list_params({"status": "gone", "type": "form"}, ignored=("status",)).query
    assert query.status is None  # not even refused
    assert query.type == "form"


async def test_an_ignored_status_filter_lists_runs_of_every_status(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with (
        make_sandbox(ignored_filters=("status",)) as sandbox,
        make_client(sandbox) as client,
    ):
        page = await client.list_runs([("status", "complete")])
        assert [run["id"] for run in page.runs] == listing(sandbox)[:100]
        assert {run["status"] for run in page.runs} >= {"active", "complete"}
        assert page.total == len(listing(sandbox))


@pytest.mark.parametrize(
    ("ignored", "params"),
    [
        (("archived",), [("archived", "only")]),
        (("starred", "type"), [("starred", "true"), ("type", "form")]),
        (("sort",), [("sort", "name")]),
    ],
)
async def test_ignored_filters_leave_the_default_list(
    make_sandbox: MakeSandbox,
    make_client: MakeClient,
    ignored: tuple[str, ...],
    params: list[tuple[str, str]],
) -> None:
    async with make_sandbox(ignored_filters=ignored) as sandbox, make_client(sandbox) as client:
        page = await client.list_runs(params)
        assert [run["id"] for run in page.runs] == listing(sandbox)[:100]
    async with make_sandbox() as sandbox, make_client(sandbox) as client:
        heeded = await client.list_runs(params)
        assert [run["id"] for run in heeded.runs] != listing(sandbox)[:100]


async def test_a_list_can_leave_out_fields_that_reading_the_run_shows(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    omitting = make_sandbox(list_omits=("is_public", "prerun"))
    async with omitting as sandbox, make_client(sandbox) as client:
        page = await client.list_runs([])
        read = await client.get_run(page.runs[0]["id"])
    assert all("is_public" not in run and "prerun" not in run for run in page.runs)
    assert all("users" in run for run in page.runs)
    assert read.data is not None
    assert {"is_public", "prerun"} <= set(read.data)
    with pytest.raises(ValueError, match="must not leave out a run's id"):
        SandboxConfig(list_omits=("id",))


# --- other people at work while a job lists ------------------------------------------------------


def test_a_launched_run_is_the_newest_and_like_a_seeded_one() -> None:
    store = RunStore.seeded(50, 6)
    seeded = run_of(store, store.ids()[0])
    newest = listing_of(store)[0]
    active = store.counts()["active"]
    run = store.launch(random.Random(1))
    assert HEX32.match(run["id"])
    assert set(run) == set(seeded)
    assert run["status"] == "active"
    assert run["created_at"] > run_of(store, newest)["created_at"]
    assert run["increment_id"] == 1001 + 50
    assert run["checklist_id"] in {run_of(store, i)["checklist_id"] for i in store.ids()}
    assert listing_of(store)[:2] == [run["id"], newest]
    assert store.counts()["active"] == active + 1
    assert not store.changes


def test_launches_into_an_empty_store_stay_in_creation_order() -> None:
    store = RunStore([], clock=lambda: 1_750_000_000.0)
    rng = random.Random(2)
    runs = [store.launch(rng) for _ in range(3)]
    assert [run["created_at"] for run in runs] == sorted({run["created_at"] for run in runs})
    assert listing_of(store) == [run["id"] for run in reversed(runs)]


def test_renamed_and_completed_runs_move_between_views() -> None:
    store = RunStore.seeded(120, 6)
    by_name = {"sort": "name"}
    before = listing_of(store, by_name)
    run_id = before[0]
    store.rename(run_id, "Zz last of all")
    assert listing_of(store, by_name)[-1] == run_id
    active = listing_of(store, {"status": "active"})
    store.complete(active[0])
    run = run_of(store, active[0])
    assert run["status"] == "complete"
    assert run["progress"]["complete"] == run["progress"]["total"]
    assert active[0] not in listing_of(store, {"status": "active"})
    assert active[0] in listing_of(store, {"status": "complete"})
    assert not store.changes


def test_other_peoples_work_is_checked() -> None:
    for name in ("launches_per_list", "renames_per_list", "completions_per_list"):
        with pytest.raises(ValueError, match=name):
            SandboxConfig(**{name: -1})


async def test_launches_during_a_listing_push_runs_to_later_pages(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(launches_per_list=3) as sandbox, make_client(sandbox) as client:
        before = listing(sandbox)
        seen: list[str] = []
        pages = 0
        while True:
            page = await client.list_runs([], page=pages + 1, per_page=50)
            pages += 1
            seen += [run["id"] for run in page.runs]
            if len(page.runs) < 50:
                break
        # Each launch pushes the runs behind it one place on: every later page repeats
        # three runs of the page before it, and the new runs, on page 1, are never seen.
        assert set(seen) == set(before)
        assert len(seen) - len(set(seen)) == 3 * (pages - 1)
        assert seen[50:53] == before[47:50]
        assert len(sandbox.state.store) == sandbox.config.runs + 3 * pages
        assert sandbox.state.stats()["others"] == {
            "launched": 3 * pages,
            "renamed": 0,
            "completed": 0,
        }
        assert page.total == len(before) + 3 * (pages - 1)


async def test_completions_during_a_listing_leave_the_active_list(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(completions_per_list=2) as sandbox, make_client(sandbox) as client:
        active = listing(sandbox, {"status": "active"})
        first = await client.list_runs([("status", "active")], per_page=10)
        assert [run["id"] for run in first.runs] == active[:10]  # served as it was
        assert len(listing(sandbox, {"status": "active"})) == len(active) - 2
        completed = set(active) - set(listing(sandbox, {"status": "active"}))
        assert completed <= set(listing(sandbox, {"status": "complete"}))
        assert sandbox.state.stats()["others"]["completed"] == 2
        assert sandbox.state.stats()["changes"]["applied"] == 0


async def test_renames_during_a_listing_are_served_after_the_page(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with (
        make_sandbox(runs=40, renames_per_list=40) as sandbox,
        make_client(sandbox) as client,
    ):
        store = sandbox.state.store
        names = {run_id: run_of(store, run_id)["name"] for run_id in listing(sandbox)}
        page = await client.list_runs([("sort", "name")])
        assert {run["id"]: run["name"] for run in page.runs} == names  # the page as it was
        assert any(run_of(store, i)["name"] != name for i, name in names.items())
        assert listing(sandbox, {"sort": "name"}) != [run["id"] for run in page.runs]
        assert sandbox.state.stats()["others"]["renamed"] == 40


async def test_other_peoples_work_replays_for_a_seed(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async def after_three_lists(seed: int) -> list[dict[str, Any]]:
        work = {"launches_per_list": 2, "renames_per_list": 2, "completions_per_list": 2}
        async with make_sandbox(seed=seed, **work) as sandbox, make_client(sandbox) as client:
            for _ in range(3):
                await client.list_runs([])
            store = sandbox.state.store  # times are the clock's, the rest the seed's
            return [
                {
                    k: v
                    for k, v in run.items()
                    if k not in ("created_at", "last_updated", "archived_at")
                }
                for run in (store.get(i) for i in store.ids())
                if run is not None
            ]

    first = await after_three_lists(5)
    assert first == await after_three_lists(5)
    assert first != await after_three_lists(6)


# --- the command ----------------------------------------------------------------------------------

QUIRK_FIELDS = (
    "strip_unsent_assignees",
    "page_size",
    "per_page_reported",
    "status_archived",
    "ignored_filters",
    "list_omits",
    "launches_per_list",
    "renames_per_list",
    "completions_per_list",
)


def served_config(monkeypatch: pytest.MonkeyPatch, *flags: str) -> SandboxConfig:
    """The settings ``bulkruns sandbox FLAGS`` would serve with (nothing is served)."""
    configs: list[SandboxConfig] = []

    async def capture(config: SandboxConfig, host: str, port: int) -> None:
        configs.append(config)

    monkeypatch.setattr(serve, "_serve", capture)
    result = CliRunner().invoke(main, ["sandbox", "--port", "0", *flags])
    assert result.exit_code == 0, result.output
    return configs[0]


def test_sandbox_command_sets_tallyfy_quirks(monkeypatch: pytest.MonkeyPatch) -> None:
    config = served_config(
        monkeypatch,
        "--strip-unsent-assignees",
        "--page-size=50",
        "--per-page-reported=asked",
        "--status-archived=matches-none",
        "--ignore-filter=status",
        "--ignore-filter=type",
        "--list-omits=is_public",
        "--launches-per-list=3",
        "--renames-per-list=2",
        "--completions-per-list=1",
    )
    assert {name: getattr(config, name) for name in QUIRK_FIELDS} == {
        "strip_unsent_assignees": True,
        "page_size": 50,
        "per_page_reported": "asked",
        "status_archived": "matches-none",
        "ignored_filters": ("status", "type"),
        "list_omits": ("is_public",),
        "launches_per_list": 3,
        "renames_per_list": 2,
        "completions_per_list": 1,
    }


def test_sandbox_command_defaults_are_the_configs_as_tallyfy_behaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, default = served_config(monkeypatch), SandboxConfig()
    assert [getattr(config, name) for name in QUIRK_FIELDS] == [
        getattr(default, name) for name in QUIRK_FIELDS
    ]
    # on where Tallyfy's own clients record it: assignees stripped, status=archived ignored
    assert (config.strip_unsent_assignees, config.status_archived) == (True, "ignored")


@pytest.mark.parametrize(
    ("flag", "named"),
    [("--ignore-filter=state", "--ignore-filter must be"), ("--page-size=0", "--page-size")],
)
def test_sandbox_command_refuses_bad_quirks_with_one_line(flag: str, named: str) -> None:
    result = CliRunner().invoke(main, ["sandbox", "--port", "0", flag])
    assert result.exit_code == 2
    assert named in result.output
    assert "Traceback" not in result.output
