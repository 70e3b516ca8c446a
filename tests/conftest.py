from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bulkruns.api import Client
from bulkruns.sandbox import Sandbox, SandboxConfig

# The default sandbox of the tests: small, and unthrottled so that tests which are not
# about the rate limit never meet it. Tests about limits pass their own settings.
SANDBOX_DEFAULTS: dict[str, Any] = {"runs": 250, "rate_limit": 0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_sandbox() -> Callable[..., Sandbox]:
    """A factory of sandboxes on 127.0.0.1, port 0; use it as an async context manager.

        async with make_sandbox(runs=50, rate_limit=5, window=1.0) as sandbox: ...

    Keyword arguments are SandboxConfig fields, over SANDBOX_DEFAULTS.
    """

    def factory(**overrides: Any) -> Sandbox:
        return Sandbox(SandboxConfig(**{**SANDBOX_DEFAULTS, **overrides}))

    return factory


@pytest.fixture
async def sandbox(make_sandbox: Callable[..., Sandbox]) -> AsyncIterator[Sandbox]:
    """A running sandbox with 250 seeded runs and no rate limit."""
    async with make_sandbox() as running:
        yield running


@pytest.fixture
def make_client() -> Callable[..., Client]:
    """A factory of clients for a sandbox: ``make_client(sandbox, read_timeout=1.0)``.

    Use the client as an async context manager (or close it) in the test.
    """

    def factory(target: Sandbox, **kwargs: Any) -> Client:
        options: dict[str, Any] = {
            "org": target.org,
            "token": target.token,
            "base_url": target.base_url,
        }
        return Client(**{**options, **kwargs})

    return factory


@pytest.fixture
async def client(sandbox: Sandbox, make_client: Callable[..., Client]) -> AsyncIterator[Client]:
    """A client connected to the ``sandbox`` fixture."""
    async with make_client(sandbox) as connected:
        yield connected
