"""The sandbox against Tallyfy's documented behaviour, over real HTTP on loopback."""

from __future__ import annotations

import math
import random
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
import yarl
from anyio.streams.text import TextReceiveStream
from click.testing import CliRunner

from bulkruns.api import Client
from bulkruns.cli import main
from bulkruns.sandbox import Sandbox, SandboxConfig
from bulkruns.sandbox.rules import LIVE_STATUSES, ListRequest, StoreError, parse_list_params
from bulkruns.sandbox.seed import seed_runs
from bulkruns.sandbox.store import RunStore

pytestmark = pytest.mark.anyio

HEX32 = re.compile(r"^[0-9a-f]{32}$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Http:
    """Raw requests to a sandbox: the test controls every header and the exact query."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session
        self.headers = {
            "Authorization": f"Bearer {sandbox.token}",
            "Accept": "application/json",
            "X-Tallyfy-Client": "APIClient",
        }

    def url(self, path: str, query: str = "", *, org: str | None = None) -> yarl.URL:
        base = f"{self.sandbox.base_url}/organizations/{org or self.sandbox.org}{path}"
        return yarl.URL(f"{base}?{query}" if query else base, encoded=True)

    async def call(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        data: bytes | None = None,
        org: str | None = None,
        url: str | None = None,
    ) -> tuple[int, Any, Any]:
        """Returns status, parsed JSON body (None if empty) and headers."""
        if body is not None:
            data = orjson.dumps(body)
        target = yarl.URL(url, encoded=True) if url else self.url(path, query, org=org)
        async with self.session.request(
            method, target, headers=self.headers if headers is None else headers, data=data
        ) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None, response.headers

    async def list(self, query: str = "") -> dict[str, Any]:
        status, body, _ = await self.call("GET", "/runs", query)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def all_ids(self, query: str = "") -> list[str]:
        """Every ID the query selects, page by page, with nothing changing meanwhile."""
        ids: list[str] = []
        page = 1
        while True:
            body = await self.list(f"{query}&per_page=100&page={page}".lstrip("&"))
            ids += [run["id"] for run in body["data"]]
            if page * 100 >= body["meta"]["pagination"]["total"]:
                return ids
            page += 1


@asynccontextmanager
async def http_for(sandbox: Sandbox) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        # aiohttp resends a DELETE or PUT once when a connection drops; the fault tests
        # must see exactly what the sandbox did.
        session._retry_connection = False
        yield Http(sandbox, session)


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[Http]:
    async with http_for(sandbox) as helper:
        yield helper


def live_runs(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every run in creation order, as copies."""
    runs = [sandbox.state.run(run_id) for run_id in sandbox.state.store.ids()]
    return [run for run in runs if run is not None]


def first_with(sandbox: Sandbox, status: str) -> dict[str, Any]:
    return next(run for run in live_runs(sandbox) if run["status"] == status)


# --- seeding ------------------------------------------------------------------------------


def test_seeding_is_deterministic_for_a_seed() -> None:
    now = 1_750_000_000.0
    first, prior_first = seed_runs(300, 7, now=now)
    again, prior_again = seed_runs(300, 7, now=now)
    other, _ = seed_runs(300, 8, now=now)
    assert first == again
    assert prior_first == prior_again
    assert [r["id"] for r in first] != [r["id"] for r in other]


def test_seeded_runs_have_the_documented_fields_and_mix() -> None:
    now = time.time()
    runs, prior = seed_runs(3000, 1, now=now)
    statuses = [run["status"] for run in runs]
    share = {s: statuses.count(s) / len(runs) for s in (*LIVE_STATUSES, "archived")}
    assert 0.07 <= share["archived"] <= 0.13
    assert share["active"] + share["complete"] >= 0.7
    assert share["problem"] > 0.02
    assert share["delayed"] > 0.02
    assert 0.16 <= sum(run["starred"] for run in runs) / len(runs) <= 0.24
    assert len({run["id"] for run in runs}) == len(runs)
    assert all(HEX32.match(run["id"]) for run in runs)
    assert set(prior) == {i for i, run in enumerate(runs) if run["status"] == "archived"}
    assert set(prior.values()) <= set(LIVE_STATUSES)
    created = [run["created_at"] for run in runs]
    assert created == sorted(created)
    assert len(set(created)) == len(created)
    two_years_ago = time.strftime("%Y-%m-%d", time.gmtime(now - 2 * 365 * 86400 - 86400))
    assert created[0] >= two_years_ago
    assert len({run["owner_id"] for run in runs}) >= 3
    assert len({run["checklist_id"] for run in runs}) >= 3
    for run in runs[:50]:
        assert ISO_Z.match(run["created_at"])
        assert ISO_Z.match(run["last_updated"])
        assert run["last_updated"] >= run["created_at"]
        assert (run["archived_at"] is None) == (run["status"] != "archived")
        assert set(run["progress"]) == {"complete", "total", "percent"}
        for key in ("increment_id", "checklist_title", "summary", "started_by", "is_public"):
            assert key in run
        for key in ("publicly_hidden_fields", "users", "groups", "tags"):
            assert isinstance(run[key], list)
        assert isinstance(run["prerun"], dict)
        assert run["type"] in ("procedure", "form", "document")


def test_config_is_validated_on_construction() -> None:
    for bad in (
        {"runs": -1},
        {"window": 0},
        {"fail_before": 1.5},
        {"latency": 0.1, "jitter": 0.2},
        {"delete_unarchived_status": 410},
        {"links_style": "dict"},
        {"org": "a/b"},
        {"token": "has space"},
        {"burst_limit": 0},
    ):
        with pytest.raises(ValueError, match=r"\w"):
            SandboxConfig(**bad)
    assert SandboxConfig().effective_burst_limit == 30  # 3 x 600/60 s
    assert SandboxConfig(rate_limit=60).effective_burst_limit == 5  # at least 5
    assert SandboxConfig(burst_limit=7).effective_burst_limit == 7


# --- envelopes and statuses -----------------------------------------------------------------


async def test_list_envelope_defaults_and_request_ids(sandbox: Sandbox, http: Http) -> None:
    status, body, headers = await http.call("GET", "/runs")
    assert status == 200
    assert set(body) == {"data", "meta"}
    pagination = body["meta"]["pagination"]
    live = sum(1 for run in live_runs(sandbox) if run["status"] != "archived")
    assert pagination["total"] == live
    assert pagination["per_page"] == 10
    assert pagination["count"] == len(body["data"]) == 10
    assert pagination["current_page"] == 1
    assert pagination["total_pages"] == math.ceil(live / 10)
    assert pagination["links"]["previous"] is None
    assert pagination["links"]["next"].endswith("page=2")
    run = body["data"][0]
    assert HEX32.match(run["id"])
    assert isinstance(run["progress"], dict)
    _, _, again = await http.call("GET", "/runs")
    assert headers["X-Request-Id"]
    assert headers["X-Request-Id"] != again["X-Request-Id"]


async def test_paths_with_and_without_api_prefix(sandbox: Sandbox, http: Http) -> None:
    root = f"{sandbox.root_url}/organizations/{sandbox.org}/runs"
    with_api = f"{sandbox.base_url}/organizations/{sandbox.org}/runs"
    assert (await http.call("GET", "", url=root))[0] == 200
    assert (await http.call("GET", "", url=with_api))[0] == 200


async def test_archive_answers_the_archived_run_and_hides_it(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "complete")
    status, body, _ = await http.call("DELETE", f"/runs/{run['id']}")
    assert status == 200
    assert body["data"]["id"] == run["id"]
    assert body["data"]["status"] == "archived"
    assert ISO_Z.match(body["data"]["archived_at"])
    # Mutation answers carry progress as a number, lists as an object (as Tallyfy does).
    assert body["data"]["progress"] == run["progress"]["percent"]
    assert run["id"] not in await http.all_ids()
    assert run["id"] in await http.all_ids("archived=only")
    assert run["id"] in await http.all_ids("archived=only")


@pytest.mark.parametrize("before", ["active", "complete", "problem", "delayed"])
async def test_archive_then_activate_restores_the_prior_status(
    sandbox: Sandbox, http: Http, before: str
) -> None:
    run = first_with(sandbox, before)
    assert (await http.call("DELETE", f"/runs/{run['id']}"))[0] == 200
    status, body, _ = await http.call("PUT", f"/runs/{run['id']}/activate")
    assert status == 200
    assert body["data"]["status"] == before
    assert body["data"]["archived_at"] is None
    assert run["id"] in await http.all_ids(f"status={before}")
    assert sandbox.state.changes(run["id"]) == 2


async def test_activating_a_live_run_is_a_no_op(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "active")
    status, body, _ = await http.call("PUT", f"/runs/{run['id']}/activate")
    assert status == 200
    assert body["data"]["status"] == "active"
    assert sandbox.state.changes(run["id"]) == 0
    assert sandbox.state.run(run["id"]) == run


async def test_archiving_an_archived_run_is_404(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "archived")
    status, body, _ = await http.call("DELETE", f"/runs/{run['id']}")
    assert status == 404
    assert body["error"] is True
    assert body["message"]
    assert sandbox.state.run(run["id"]) == run


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("DELETE", ""), ("PUT", "/activate"), ("PUT", ""), ("DELETE", "/delete")],
)
async def test_unknown_run_is_404_with_an_error_body(http: Http, method: str, suffix: str) -> None:
    status, body, headers = await http.call(method, f"/runs/{'0' * 32}{suffix}", body={})
    assert status == 404
    assert body["error"] is True
    assert "not found" in body["message"].lower()
    assert headers["X-Request-Id"]


async def test_update_changes_only_the_given_fields(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "active")
    changes = {
        "name": "Renamed run",
        "summary": "new summary",
        "starred": not run["starred"],
        "is_public": True,
        "users": [1002],
        "groups": [],
        "publicly_hidden_fields": ["field1"],
        "prerun": {"kickoff": "yes"},
        "owner_id": 1003,
        "no_such_field": 1,
    }
    status, body, _ = await http.call("PUT", f"/runs/{run['id']}", body=changes)
    assert status == 200
    data = body["data"]
    for key, value in changes.items():
        if key != "no_such_field":
            assert data[key] == value
    assert "no_such_field" not in data
    assert data["status"] == "active"
    assert data["checklist_id"] == run["checklist_id"]
    assert data["last_updated"] > run["last_updated"]
    assert sandbox.state.run(run["id"])["name"] == "Renamed run"  # type: ignore[index]


async def test_update_validation_is_422_with_field_errors(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "active")
    bad = {
        "name": "x" * 551,
        "starred": "yes",
        "is_public": None,
        "users": "1001",
        "groups": [True],
        "prerun": [],
        "owner_id": 9999,
        "summary": 5,
    }
    status, body, _ = await http.call("PUT", f"/runs/{run['id']}", body=bad)
    assert status == 422
    assert body["message"]
    assert set(body["errors"]) == set(bad)
    assert all(isinstance(msgs, list) and msgs for msgs in body["errors"].values())
    assert "550" in body["errors"]["name"][0]
    assert sandbox.state.run(run["id"]) == run
    # The 550-character limit is inclusive.
    ok, _, _ = await http.call("PUT", f"/runs/{run['id']}", body={"name": "y" * 550})
    assert ok == 200


async def test_update_with_a_body_that_is_not_json_is_400(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "active")
    status, body, _ = await http.call("PUT", f"/runs/{run['id']}", data=b"{name:")
    assert status == 400
    assert "JSON" in body["message"]


async def test_update_of_an_archived_run_is_404(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "archived")
    status, _, _ = await http.call("PUT", f"/runs/{run['id']}", body={"name": "x"})
    assert status == 404


async def test_permanent_delete_of_an_archived_run(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "archived")
    status, body, headers = await http.call("DELETE", f"/runs/{run['id']}/delete")
    assert status == 200
    assert body is None
    assert headers["Content-Length"] == "0"
    assert sandbox.state.run(run["id"]) is None
    assert run["id"] not in await http.all_ids("status=archived")
    assert (await http.call("DELETE", f"/runs/{run['id']}/delete"))[0] == 404
    assert (await http.call("PUT", f"/runs/{run['id']}/activate"))[0] == 404
    assert sandbox.state.stats()["runs"]["deleted"] == 1


async def test_permanent_delete_of_a_live_run_is_422(sandbox: Sandbox, http: Http) -> None:
    run = first_with(sandbox, "active")
    status, body, _ = await http.call("DELETE", f"/runs/{run['id']}/delete")
    assert status == 422
    assert "archived" in body["message"]
    assert sandbox.state.run(run["id"]) == run


async def test_permanent_delete_of_a_live_run_can_be_404(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    async with make_sandbox(delete_unarchived_status=404) as sandbox, http_for(sandbox) as http:
        run = first_with(sandbox, "active")
        assert (await http.call("DELETE", f"/runs/{run['id']}/delete"))[0] == 404
        assert sandbox.state.run(run["id"]) == run


# --- auth -----------------------------------------------------------------------------------


async def test_missing_or_wrong_token_is_401(sandbox: Sandbox, http: Http) -> None:
    no_token = {k: v for k, v in http.headers.items() if k != "Authorization"}
    wrong = {**http.headers, "Authorization": "Bearer nope"}
    for headers in (no_token, wrong):
        status, body, _ = await http.call("GET", "/runs", headers=headers)
        assert status == 401
        assert body["error"] is True
    assert sandbox.state.count("list", 401) == 2


async def test_another_org_is_403(http: Http) -> None:
    status, body, _ = await http.call("GET", "/runs", org="someone-else")
    assert status == 403
    assert body["message"]


async def test_missing_client_header_is_400_naming_it(http: Http) -> None:
    headers = {k: v for k, v in http.headers.items() if k != "X-Tallyfy-Client"}
    status, body, _ = await http.call("GET", "/runs", headers=headers)
    assert status == 400
    assert "X-Tallyfy-Client" in body["message"]


async def test_unknown_route_is_a_json_404_counted_as_other(sandbox: Sandbox, http: Http) -> None:
    status, body, _ = await http.call("POST", "/runs")
    assert status == 404
    assert body["error"] is True
    assert sandbox.state.count("other", 404) == 1


# --- listing: filters, sort, encoding, pages --------------------------------------------------


Predicate = Callable[[dict[str, Any]], bool]


def _live(run: dict[str, Any]) -> bool:
    return bool(run["status"] != "archived")


def _filter_cases(sample: dict[str, Any]) -> dict[str, tuple[str, Predicate]]:
    """Query strings and the predicate each must select by, built from one seeded run."""
    owner, checklist, folder = sample["owner_id"], sample["checklist_id"], sample["folder_id"]
    tag, group = sample["tags"][0], sample["groups"][0]

    def live_and(test: Predicate) -> Predicate:
        return lambda run: _live(run) and test(run)

    def overdue(run: dict[str, Any]) -> bool:
        progress = run["progress"]
        return bool(run["status"] == "delayed" and progress["complete"] < progress["total"])

    def combined(run: dict[str, Any]) -> bool:
        return bool(run["status"] == "active" and run["starred"] and run["type"] == "procedure")

    return {
        "q": ("q=ACME", live_and(lambda r: "acme" in r["name"].lower())),
        "q-spaces": (
            "q=onboarding%20-%20glo",
            live_and(lambda r: "onboarding - glo" in r["name"].lower()),
        ),
        "status": ("status=problem", lambda r: r["status"] == "problem"),
        # Tallyfy's clients never send it; by default the sandbox reads it as no filter
        "status-archived": ("status=archived", lambda r: r["status"] != "archived"),
        "archived-only": ("archived=only", lambda r: r["status"] == "archived"),
        "owners": (f"owners={owner}%2C1002", live_and(lambda r: r["owner_id"] in (owner, 1002))),
        "checklist": (
            f"checklist_id={checklist}",
            live_and(lambda r: r["checklist_id"] == checklist),
        ),
        "folder": (f"folder={folder}", live_and(lambda r: r["folder_id"] == folder)),
        "tag": (f"tag={tag}", live_and(lambda r: tag in r["tags"])),
        "starred": ("starred=true", live_and(lambda r: r["starred"])),
        "starred-0": ("starred=0", live_and(lambda r: not r["starred"])),
        "type": ("type=form", live_and(lambda r: r["type"] == "form")),
        "groups": (f"groups={group}", live_and(lambda r: group in r["groups"])),
        "task-status": ("task_status=overdue", overdue),
        "combined": ("status=active&starred=1&type=procedure", combined),
    }


FILTER_NAMES = list(
    _filter_cases({"owner_id": 1, "checklist_id": 1, "folder_id": 1, "tags": [1], "groups": [1]})
)


@pytest.mark.parametrize("case", FILTER_NAMES)
async def test_server_filters_select_exactly_the_matching_runs(
    sandbox: Sandbox, http: Http, case: str
) -> None:
    runs = live_runs(sandbox)
    sample = next(r for r in runs if r["tags"] and r["groups"] and r["folder_id"])
    query, predicate = _filter_cases(sample)[case]
    expected = [run["id"] for run in reversed(runs) if predicate(run)]  # newest first
    assert expected, "the seeded data must give every filter something to find"
    assert await http.all_ids(query) == expected


async def test_archived_only_with_a_status_means_the_status_before_archiving(
    sandbox: Sandbox, http: Http
) -> None:
    expected = {
        run_id
        for run_id in sandbox.state.store.ids()
        if sandbox.state.store.prior_status(run_id) == "complete"
    }
    assert expected
    assert set(await http.all_ids("archived=only&status=complete")) == expected


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [
        ("name", "name", False),
        ("-name", "name", True),
        ("created_at", "created_at", False),
        ("-created_at", "created_at", True),
        ("last_updated", "last_updated", False),
        ("-last_updated", "last_updated", True),
    ],
)
async def test_sort_orders(
    sandbox: Sandbox, http: Http, sort: str, key: str, reverse: bool
) -> None:
    ids = await http.all_ids(f"sort={sort}")
    values = [sandbox.state.run(i)[key] for i in ids]  # type: ignore[index]
    norm = [v.casefold() for v in values] if key == "name" else values
    assert norm == sorted(norm, reverse=reverse)
    assert len(set(ids)) == len(ids) == sum(1 for run in live_runs(sandbox) if _live(run))


async def test_default_order_is_newest_first(http: Http) -> None:
    assert await http.all_ids() == await http.all_ids("sort=-created_at")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=gone", "status"),
        ("sort=colour", "sort"),
        ("starred=maybe", "starred"),
        ("page=two", "page"),
        ("per_page=0", "per_page"),
    ],
)
async def test_invalid_list_parameters_are_422(http: Http, query: str, field: str) -> None:
    status, body, _ = await http.call("GET", "/runs", query)
    assert status == 422
    assert field in body["errors"]


async def test_plus_is_a_literal_plus_and_percent_20_a_space(sandbox: Sandbox, http: Http) -> None:
    plus, space = [run for run in live_runs(sandbox) if _live(run)][:2]
    assert (await http.call("PUT", f"/runs/{plus['id']}", body={"name": "Zeta+Omega"}))[0] == 200
    assert (await http.call("PUT", f"/runs/{space['id']}", body={"name": "Zeta Omega"}))[0] == 200
    assert await http.all_ids("q=zeta%2Bomega") == [plus["id"]]
    assert await http.all_ids("q=zeta+omega") == [plus["id"]]  # not read as a space
    assert await http.all_ids("q=zeta%20omega") == [space["id"]]


async def test_per_page_is_capped_at_100(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(runs=400) as sandbox, http_for(sandbox) as http:
        pagination = (await http.list("per_page=500"))["meta"]["pagination"]
        assert pagination["per_page"] == 100
        assert pagination["count"] == 100


async def test_pages_partition_the_result_set(http: Http) -> None:
    everything = await http.all_ids()
    pages = []
    for page in range(1, 100):
        body = await http.list(f"per_page=7&page={page}")
        if not body["data"]:
            break
        pages += [run["id"] for run in body["data"]]
    assert pages == everything


async def test_offsets_drift_so_a_naive_page_by_page_lister_misses_runs(
    sandbox: Sandbox, http: Http
) -> None:
    before = await http.all_ids()
    archived = []
    page = 1
    while True:  # list a page, archive what it holds, go to the next page: the classic bug
        body = await http.list(f"per_page=20&page={page}")
        if not body["data"]:
            break
        for run in body["data"]:
            assert (await http.call("DELETE", f"/runs/{run['id']}"))[0] == 200
            archived.append(run["id"])
        page += 1
    left = await http.all_ids()
    assert left, "the naive lister should have skipped runs"
    assert len(archived) < len(before)
    assert sorted(archived + left) == sorted(before)


async def test_total_pages_quirk_uses_page_size_10(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(total_pages_quirk=True) as sandbox, http_for(sandbox) as http:
        pagination = (await http.list("per_page=100"))["meta"]["pagination"]
        assert pagination["total_pages"] == math.ceil(pagination["total"] / 10)
        assert pagination["total_pages"] != math.ceil(pagination["total"] / 100)


@pytest.mark.parametrize(("style", "expected"), [("list", []), ("null", None)])
async def test_links_styles(
    make_sandbox: Callable[..., Sandbox], style: str, expected: object
) -> None:
    async with make_sandbox(links_style=style) as sandbox, http_for(sandbox) as http:
        assert (await http.list())["meta"]["pagination"]["links"] == expected


async def test_object_links_lead_to_the_neighbouring_pages(http: Http) -> None:
    first = await http.list("q=a&per_page=5")
    links = first["meta"]["pagination"]["links"]
    status, second, _ = await http.call("GET", "", url=links["next"])
    assert status == 200
    assert second["meta"]["pagination"]["current_page"] == 2
    assert "q=a" in links["next"]
    back = second["meta"]["pagination"]["links"]["previous"]
    assert (await http.call("GET", "", url=back))[1]["data"] == first["data"]
    last_page = math.ceil(first["meta"]["pagination"]["total"] / 5)  # not total_pages: 10 a page
    last = await http.list(f"q=a&per_page=5&page={last_page}")
    assert last["meta"]["pagination"]["links"]["next"] is None


def test_views_stay_exact_through_random_changes() -> None:
    """The cached views against a fresh scan after every kind of change."""
    rng = random.Random(3)
    store = RunStore.seeded(400, 5)
    queries = [
        parse_list_params(p)
        for p in (
            {},
            {"status": "archived"},
            {"status": "active", "sort": "name"},
            {"q": "corp", "sort": "-last_updated"},
            {"starred": "true", "archived": "only"},
            {"owners": "1001,1003"},
        )
    ]
    for query in queries:
        store.page(query)  # build the views before the changes
    ids = store.ids()
    refusals: Counter[int] = Counter()
    for _ in range(600):
        run_id = rng.choice(ids)
        action = rng.choice(("archive", "activate", "update", "delete"))
        try:
            if action == "archive":
                store.archive(run_id)
            elif action == "activate":
                store.activate(run_id)
            elif action == "update":
                fields = {"name": f"Corp {rng.random()}", "starred": rng.random() < 0.5}
                store.update(run_id, {**fields, "owner_id": 1003})
            elif rng.random() < 0.2:
                store.delete(run_id)
        except StoreError as exc:  # archiving an archived run, deleting a live one…
            refusals[exc.status] += 1
    assert store.changes.total() > 200
    assert set(refusals) <= {404, 422}
    fresh = RunStore([dict(store.get(i)) for i in store.ids()])  # type: ignore[arg-type]
    for request in queries:
        everything = ListRequest(request.query, 1, 100_000)
        got, total = store.page(everything)
        want, want_total = fresh.page(everything)
        assert [r["id"] for r in got] == [r["id"] for r in want]
        assert total == want_total == len(want)


# --- rate limit (its shapes: test_sandbox_limits.py) ------------------------------------------


async def test_rate_limit_over_http(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(rate_limit=3, window=0.5) as sandbox, http_for(sandbox) as http:
        for remaining in ("2", "1", "0"):
            status, _, headers = await http.call("GET", "/runs")
            assert status == 200
            assert headers["X-RateLimit-Limit"] == "3"
            assert headers["X-RateLimit-Remaining"] == remaining
        status, body, headers = await http.call("GET", "/runs")
        assert status == 429
        assert body == {"message": "Too Many Attempts.", "code": "RATE_LIMIT_EXCEEDED"}
        assert headers["Retry-After"] == "1"
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["X-Request-Id"]
        assert sandbox.state.throttled == 1
        await anyio.sleep(0.6)  # the window rolls on
        assert (await http.call("GET", "/runs"))[0] == 200


async def test_burst_penalty_over_http(make_sandbox: Callable[..., Sandbox]) -> None:
    config = {"rate_limit": 1000, "burst_limit": 3, "burst_penalty": 2.0}
    async with make_sandbox(**config) as sandbox, http_for(sandbox) as http:
        statuses = [(await http.call("GET", "/runs"))[0] for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        _, _, headers = await http.call("GET", "/runs")
        assert headers["Retry-After"] in ("1", "2")
        assert sandbox.state.throttled == 3
        assert sandbox.state.count("list", 429) == 3


# --- latency and faults ---------------------------------------------------------------------


async def test_latency_is_injected_per_request(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(latency=0.04, jitter=0.02) as sandbox, http_for(sandbox) as http:
        started = time.monotonic()
        for _ in range(4):
            await http.call("GET", "/runs")
        elapsed = time.monotonic() - started
        injected = sandbox.state.latency_total
        assert 4 * 0.02 <= injected <= 4 * 0.06
        assert elapsed >= 4 * 0.02  # a floor, never a ceiling
        assert sandbox.state.stats()["latency_seconds"] == pytest.approx(injected, abs=1e-5)


async def test_fail_before_leaves_the_run_unchanged(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(fail_before=1.0) as sandbox, http_for(sandbox) as http:
        run = first_with(sandbox, "active")
        status, body, _ = await http.call("DELETE", f"/runs/{run['id']}")
        assert status == 503
        assert body["error"] is True
        assert sandbox.state.run(run["id"]) == run
        assert sandbox.state.changes(run["id"]) == 0
        assert (await http.call("GET", "/runs"))[0] == 200  # lists are not failed
        assert sandbox.state.faults["fail_before"] == 1


async def test_fail_after_applied_the_change(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(fail_after=1.0) as sandbox, http_for(sandbox) as http:
        run = first_with(sandbox, "active")
        status, _, _ = await http.call("DELETE", f"/runs/{run['id']}")
        assert status == 500
        assert sandbox.state.run(run["id"])["status"] == "archived"  # type: ignore[index]
        assert sandbox.state.changes(run["id"]) == 1
        # A refused change is not "applied", so it is answered as it is.
        assert (await http.call("DELETE", f"/runs/{run['id']}"))[0] == 404


async def test_reset_drops_the_connection_after_applying(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    async with make_sandbox(reset_rate=1.0) as sandbox, http_for(sandbox) as http:
        run = first_with(sandbox, "active")
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await http.call("DELETE", f"/runs/{run['id']}")
        assert sandbox.state.run(run["id"])["status"] == "archived"  # type: ignore[index]
        assert sandbox.state.count("archive", "reset") == 1
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await http.call("GET", "/runs")


async def test_stall_holds_the_request(make_sandbox: Callable[..., Sandbox]) -> None:
    async with make_sandbox(stall_rate=1.0, stall_seconds=30.0) as sandbox:
        run = first_with(sandbox, "active")
        timeout = aiohttp.ClientTimeout(sock_read=0.2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            session._retry_connection = False
            http = Http(sandbox, session)
            with pytest.raises(TimeoutError):
                await http.call("DELETE", f"/runs/{run['id']}")
        assert sandbox.state.faults["stall"] == 1
        assert sandbox.state.run(run["id"]) == run  # still held, not applied
    # Closing the sandbox released the stalled request without applying it.
    assert sandbox.state.count("archive", "reset") == 1
    assert sandbox.state.changes(run["id"]) == 0


async def test_faults_replay_for_a_seed(make_sandbox: Callable[..., Sandbox]) -> None:
    async def outcomes() -> list[int]:
        async with make_sandbox(fail_before=0.5, seed=4) as sandbox, http_for(sandbox) as http:
            ids = [run["id"] for run in live_runs(sandbox) if run["status"] == "active"][:20]
            return [(await http.call("DELETE", f"/runs/{i}"))[0] for i in ids]

    first = await outcomes()
    assert first == await outcomes()
    assert set(first) == {200, 503}


# --- stats ------------------------------------------------------------------------------------


async def test_stats_count_requests_and_changes(sandbox: Sandbox, http: Http) -> None:
    active = [run for run in live_runs(sandbox) if run["status"] == "active"]
    before = sandbox.state.store.counts()
    await http.call("GET", "/runs")
    await http.call("DELETE", f"/runs/{active[0]['id']}")
    await http.call("PUT", f"/runs/{active[0]['id']}/activate")
    await http.call("DELETE", f"/runs/{active[1]['id']}")
    await http.call("DELETE", f"/runs/{active[1]['id']}/delete")
    await http.call("PUT", f"/runs/{active[2]['id']}", body={"starred": True})
    await http.call("PUT", f"/runs/{active[2]['id']}", body={"starred": "no"})
    await http.call("GET", "/runs", headers={})
    await http.call("GET", "/nowhere")
    status, stats, _ = await http.call("GET", "", url=f"{sandbox.root_url}/_sandbox/stats")
    assert status == 200
    assert stats == sandbox.state.stats()
    assert stats["requests"]["list"] == {"200": 1, "400": 1}
    assert stats["requests"]["archive"] == {"200": 2}
    assert stats["requests"]["activate"] == {"200": 1}
    assert stats["requests"]["update"] == {"200": 1, "422": 1}
    assert stats["requests"]["delete"] == {"200": 1}
    assert stats["requests"]["other"] == {"404": 1}
    assert stats["total"] == 9
    assert stats["throttled"] == 0
    assert stats["changes"] == {"applied": 5, "runs_changed": 3, "runs_changed_more_than_once": 2}
    assert stats["runs"]["active"] == before["active"] - 1
    assert stats["runs"]["archived"] == before["archived"]
    assert stats["runs"]["deleted"] == 1
    assert sandbox.state.change_counts[active[0]["id"]] == 2


# --- the command --------------------------------------------------------------------------------


def test_sandbox_command_refuses_bad_settings_with_one_line() -> None:
    result = CliRunner().invoke(main, ["sandbox", "--fail-before", "2", "--port", "0"])
    assert result.exit_code == 2
    assert "--fail-before must be a share between 0 and 1" in result.output
    assert "Traceback" not in result.output


# Bound to every address, it still prints a base URL the client accepts: the loopback one.
@pytest.mark.parametrize(
    ("flags", "limits"),
    [
        ([], "600 requests per 60 s;"),
        (
            ["--host", "0.0.0.0", "--limit", "12/5s get", "--cotenant", "1"],
            "600 requests per 60 s, 12/5s get, another client taking 1 requests/s of it;",
        ),
    ],
)
async def test_sandbox_command_serves_until_sigterm(flags: list[str], limits: str) -> None:
    command = [sys.executable, "-m", "bulkruns", "sandbox", "--port", "0", "--runs", "50"]
    process = await anyio.open_process(command + flags)
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        output = ""
        with anyio.fail_after(20):
            async for chunk in TextReceiveStream(process.stdout):
                output += chunk
                if "TALLYFY_ACCESS_TOKEN=" in output and output.endswith("\n"):
                    break
        assert limits in output
        env = dict(re.findall(r"^export (\w+)=(\S+)$", output, re.MULTILINE))
        assert env["TALLYFY_BASE_URL"].startswith("http://127.0.0.1:")
        assert env["TALLYFY_ORG_ID"] == "sandbox-org"
        client = Client(
            org=env["TALLYFY_ORG_ID"],
            token=env["TALLYFY_ACCESS_TOKEN"],
            base_url=env["TALLYFY_BASE_URL"],
        )
        async with client:
            page = await client.list_runs([], per_page=100)
        assert 0 < page.total < 50
        assert len(page.runs) == page.total
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
        errors = (await process.stderr.receive()).decode()
        assert "stopped" in errors
        assert "Traceback" not in errors
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
