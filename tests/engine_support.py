"""Helpers of the engine tests: a sandbox and a client over loopback, and ways to read what
a job did, from the sandbox and from its log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from bulkruns.api import Client
from bulkruns.job import Job, JobOptions, Summary
from bulkruns.model import Operation
from bulkruns.sandbox import Sandbox, SandboxConfig

FAST = {"rate": 0.0, "concurrency": 8}


@asynccontextmanager
async def serve(**config: Any) -> AsyncIterator[tuple[Sandbox, Client]]:
    config.setdefault("rate_limit", 0)
    async with Sandbox(SandboxConfig(**config)) as sandbox:
        client = Client(
            org=sandbox.org, token=sandbox.token, base_url=sandbox.base_url, read_timeout=2.0
        )
        async with client:
            yield sandbox, client


def ids_with(sandbox: Sandbox, predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    found = set()
    for run_id in sandbox.state.store.ids():
        run = sandbox.state.run(run_id)
        if run is not None and predicate(run):
            found.add(run_id)
    return found


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def items(path: Path, outcome: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in records(path)
        if r["type"] == "item" and (outcome is None or r["outcome"] == outcome)
    ]


async def run(
    client: Client,
    operation: Operation,
    selection: Any,
    journal: Path | None = None,
    **options: Any,
) -> Summary:
    opts = JobOptions(**{**FAST, **options}, journal=journal)
    return await Job(client, operation, selection, opts).run()


def complete(run: dict[str, Any]) -> bool:
    return run["status"] == "complete" and run["archived_at"] is None
