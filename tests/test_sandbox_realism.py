"""The sandbox where Tallyfy's server differs from its docs, as Tallyfy's own clients record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bulkruns.api import Client
from bulkruns.errors import NotFound
from bulkruns.sandbox import Sandbox
from bulkruns.sandbox.rules import StoreError
from bulkruns.sandbox.store import RunStore

pytestmark = pytest.mark.anyio

MakeSandbox = Callable[..., Sandbox]
MakeClient = Callable[..., Client]


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
    live = next(i for i in store.ids() if store.get(i)["status"] != "archived")  # type: ignore[index]
    archived = next(i for i in store.ids() if store.get(i)["status"] == "archived")  # type: ignore[index]
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
