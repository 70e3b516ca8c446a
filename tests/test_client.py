"""The client against the sandbox and against tiny servers that misbehave, over loopback."""

from __future__ import annotations

import dataclasses
import email.utils
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web

from bulkruns.api import DEFAULT_BASE_URL, Client, Page, Reply, normalise_base_url
from bulkruns.errors import (
    APIError,
    AuthError,
    BulkrunsError,
    ConfigError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    Unprocessable,
)
from bulkruns.sandbox import Sandbox
from bulkruns.sandbox.limits import FaultDice

pytestmark = pytest.mark.anyio

MakeSandbox = Callable[..., Sandbox]
MakeClient = Callable[..., Client]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def assert_secret_free(exc: BaseException, token: str) -> None:
    """Neither the error nor its cause may show the token."""
    texts = [str(exc), repr(exc)]
    if exc.__cause__ is not None:
        texts += [str(exc.__cause__), repr(exc.__cause__)]
    for text in texts:
        assert token not in text
        assert token[-8:] not in text


def active_id(sandbox: Sandbox) -> str:
    store = sandbox.state.store
    return next(i for i in store.ids() if store.get(i)["status"] == "active")  # type: ignore[index]


@asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` for every path on 127.0.0.1; yields an API base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api"
    finally:
        await runner.cleanup()


def answering(status: int, body: bytes, content_type: str | None, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.Response(status=status, body=body, headers=headers)
        if content_type is not None:
            response.content_type = content_type
        return response

    return handler


class Recorder:
    """A server that remembers each request and answers a valid run list or run."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.raw_path, dict(request.headers), body))
        if request.method == "GET":
            payload: Any = {"data": [], "meta": {"pagination": {"total": 0}}}
        else:
            payload = {"data": {"id": "x"}}
        return web.json_response(payload)


# --- round trips -------------------------------------------------------------------------


async def test_list_runs_returns_a_page(sandbox: Sandbox, client: Client) -> None:
    page = await client.list_runs([("status", "active")], page=2, per_page=7)
    active = sandbox.state.store.counts()["active"]
    assert isinstance(page, Page)
    assert page.total == active
    assert len(page.runs) == 7
    assert all(run["status"] == "active" for run in page.runs)
    assert (page.per_page, page.current_page) == (7, 2)
    assert page.page_count == math.ceil(active / 7)
    assert page.request_id
    assert re.match(r"^[0-9a-f]+-\d+$", page.request_id)


async def test_page_count_comes_from_total_not_total_pages(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(total_pages_quirk=True) as sandbox, make_client(sandbox) as client:
        page = await client.list_runs([], per_page=100)
        assert page.page_count == math.ceil(page.total / 100)
        assert page.page_count < math.ceil(page.total / 10)  # what total_pages claims


def test_page_count_of_an_empty_listing_is_zero() -> None:
    assert Page([], 0, 100, 1, None).page_count == 0
    assert Page([], 201, 100, 1, None).page_count == 3


async def test_mutations_round_trip(sandbox: Sandbox, client: Client) -> None:
    run_id = active_id(sandbox)
    archived = await client.archive(run_id)
    assert isinstance(archived, Reply)
    assert archived.status == 200
    assert archived.data is not None
    assert archived.data["status"] == "archived"
    assert archived.data["archived_at"]
    assert isinstance(archived.data["progress"], int)  # returned as parsed, not interpreted
    assert archived.request_id
    activated = await client.activate(run_id)
    assert activated.data is not None
    assert (activated.data["status"], activated.data["archived_at"]) == ("active", None)
    updated = await client.update(run_id, {"name": "Renamed", "starred": True, "users": []})
    assert updated.data is not None
    assert (updated.data["name"], updated.data["starred"]) == ("Renamed", True)
    await client.archive(run_id)
    deleted = await client.delete(run_id)
    assert deleted == Reply(200, None, deleted.request_id)
    assert sandbox.state.run(run_id) is None
    assert sandbox.state.changes(run_id) == 5


# --- error classes -------------------------------------------------------------------------


async def test_wrong_token_is_auth_error(sandbox: Sandbox, make_client: MakeClient) -> None:
    wrong = "wrong-token-0123456789abcdef"
    async with make_client(sandbox, token=wrong) as client:
        with pytest.raises(AuthError) as caught:
            await client.list_runs([])
    assert caught.value.status == 401
    assert caught.value.request_id
    assert caught.value.request_id in str(caught.value)
    assert_secret_free(caught.value, wrong)


async def test_another_org_is_permission_denied(sandbox: Sandbox, make_client: MakeClient) -> None:
    async with make_client(sandbox, org="not-mine") as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.archive(active_id(sandbox))
    assert caught.value.status == 403
    assert_secret_free(caught.value, sandbox.token)


async def test_unknown_run_is_not_found(sandbox: Sandbox, client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        await client.archive("0" * 32)
    assert caught.value.status == 404
    assert "not found" in str(caught.value).lower()
    assert_secret_free(caught.value, sandbox.token)


async def test_validation_error_is_unprocessable_with_field_errors(
    sandbox: Sandbox, client: Client
) -> None:
    with pytest.raises(Unprocessable) as caught:
        await client.update(active_id(sandbox), {"name": "x" * 551, "starred": "maybe"})
    error = caught.value
    assert error.status == 422
    assert set(error.errors) == {"name", "starred"}
    assert "550" in error.errors["name"][0]
    assert "name:" in str(error)
    assert_secret_free(error, sandbox.token)


async def test_throttling_is_rate_limited_with_retry_after(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox(rate_limit=1, window=60.0) as sandbox, make_client(sandbox) as client:
        await client.list_runs([])
        with pytest.raises(RateLimited) as caught:
            await client.list_runs([])
    error = caught.value
    assert error.status == 429
    assert error.retry_after is not None
    assert 1.0 <= error.retry_after <= 60.0
    assert "RATE_LIMIT_EXCEEDED" in str(error)
    assert_secret_free(error, sandbox.token)


@pytest.mark.parametrize(("fault", "status"), [("fail_before", 503), ("fail_after", 500)])
async def test_server_failures_are_server_errors(
    make_sandbox: MakeSandbox, make_client: MakeClient, fault: str, status: int
) -> None:
    async with make_sandbox(**{fault: 1.0}) as sandbox, make_client(sandbox) as client:
        with pytest.raises(ServerError) as caught:
            await client.archive(active_id(sandbox))
    assert caught.value.status == status
    assert_secret_free(caught.value, sandbox.token)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_a_transport_error_not_sent() -> None:
    token = "refused-token-0123456789"
    base_url = f"http://127.0.0.1:{_closed_port()}/api"
    async with Client(org="o", token=token, base_url=base_url) as client:
        with pytest.raises(TransportError) as caught:
            await client.archive("a" * 32)
    assert caught.value.sent is False
    # the call is named, not its method and URL
    assert str(caught.value).startswith(f"archive: cannot connect to {base_url[7:-4]} (")
    assert "DELETE" not in str(caught.value)
    assert "http" not in str(caught.value)
    assert_secret_free(caught.value, token)


async def test_reset_is_a_transport_error_sent_and_never_resent(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with make_sandbox() as sandbox, make_client(sandbox) as client:
        await client.list_runs([])  # a kept-alive connection, which aiohttp would resend on
        run_id = active_id(sandbox)
        # From now on every request is dropped after it was applied.
        sandbox.state.dice = FaultDice(dataclasses.replace(sandbox.config, reset_rate=1.0))
        with pytest.raises(TransportError) as caught:
            await client.archive(run_id)
    assert caught.value.sent is True
    assert "may have been applied" in str(caught.value)
    assert sandbox.state.count("archive") == 1  # exactly one request reached the server
    assert sandbox.state.changes(run_id) == 1
    assert_secret_free(caught.value, sandbox.token)


async def test_stall_past_the_read_timeout_is_a_transport_error_sent(
    make_sandbox: MakeSandbox, make_client: MakeClient
) -> None:
    async with (
        make_sandbox(stall_rate=1.0, stall_seconds=30.0) as sandbox,
        make_client(sandbox, read_timeout=0.2) as client,
    ):
        with pytest.raises(TransportError) as caught:
            await client.archive(active_id(sandbox))
        # a lost answer to a list changed nothing, and is never said to have
        with pytest.raises(TransportError) as stalled:
            await client.list_runs([], page=3)
        sandbox.state.dice = FaultDice(
            dataclasses.replace(sandbox.config, stall_rate=0.0, reset_rate=1.0)
        )
        with pytest.raises(TransportError) as reset:
            await client.list_runs([])
    assert caught.value.sent is True
    assert str(caught.value) == "archive: no answer within 0.2 s; it may have been applied"
    assert_secret_free(caught.value, sandbox.token)
    assert str(stalled.value) == "list page 3: no answer within 0.2 s"
    assert str(reset.value).startswith("list page 1: connection lost (")
    assert "applied" not in str(reset.value)


# --- odd bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (502, b"<p>" + b"x" * 1000 + b"</p>", "text/html", "non-JSON body (text/html, 1007 bytes)"),
        (500, b"", None, "empty body"),
        (503, b"upstream busy", "text/plain", "non-JSON body (text/plain, 13 bytes)"),
        (504, b'["odd"]', "application/json", '["odd"]'),
        (500, b'{"error": "database gone"}', "application/json", "database gone"),
    ],
)
async def test_error_bodies_that_are_not_tallyfy_json_still_read_clearly(
    status: int, body: bytes, content_type: str | None, expected: str
) -> None:
    token = "odd-body-token-0123456789"
    async with (
        tiny_server(answering(status, body, content_type, **{"X-Request-Id": "rid-7"})) as url,
        Client(org="o", token=token, base_url=url) as client,
    ):
        with pytest.raises(ServerError) as caught:
            await client.archive("a" * 32)
    assert caught.value.status == status
    assert expected in str(caught.value)
    assert caught.value.request_id == "rid-7"
    assert_secret_free(caught.value, token)


async def test_a_message_in_an_error_key_is_used() -> None:
    handler = answering(400, b'{"error": "bad filter"}', "application/json")
    async with tiny_server(handler) as url, Client(org="o", token="t", base_url=url) as client:
        with pytest.raises(Unprocessable, match="bad filter"):
            await client.list_runs([])


@pytest.mark.parametrize(
    "body",
    [b"<html>maintenance</html>", b'{"data": {}}', b'{"data": [], "meta": {}}', b"[]"],
)
async def test_a_2xx_list_that_is_not_a_run_list_is_a_clear_error(body: bytes) -> None:
    async with (
        tiny_server(answering(200, body, "application/json")) as url,
        Client(org="o", token="t", base_url=url) as client,
    ):
        with pytest.raises(ServerError, match="unexpected response") as caught:
            await client.list_runs([])
    assert caught.value.status == 200


async def test_a_2xx_mutation_without_a_data_object_is_a_clear_error() -> None:
    handler = answering(200, b'{"ok": true}', "application/json")
    async with tiny_server(handler) as url, Client(org="o", token="t", base_url=url) as client:
        with pytest.raises(ServerError, match="unexpected response"):
            await client.archive("a" * 32)


async def test_an_empty_2xx_is_a_reply_without_data() -> None:
    async with (
        tiny_server(answering(204, b"", None)) as url,
        Client(org="o", token="t", base_url=url) as client,
    ):
        assert (await client.delete("a" * 32)).data is None


async def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    body = b'{"message": "slow down"}'
    handler = answering(429, body, "application/json", **{"Retry-After": when})
    async with tiny_server(handler) as url, Client(org="o", token="t", base_url=url) as client:
        with pytest.raises(RateLimited) as caught:
            await client.list_runs([])
    assert caught.value.retry_after is not None
    assert 20 <= caught.value.retry_after <= 31


async def test_redirects_are_not_followed() -> None:
    handler = answering(302, b"", None, Location="https://login.example/")
    async with tiny_server(handler) as url, Client(org="o", token="t", base_url=url) as client:
        with pytest.raises(APIError, match=r"redirected to https://login\.example/") as caught:
            await client.archive("a" * 32)
    assert caught.value.status == 302


# --- what goes on the wire -------------------------------------------------------------------


async def test_query_uses_percent_20_and_never_plus() -> None:
    recorder = Recorder()
    async with (
        tiny_server(recorder.handle) as url,
        Client(org="o", token="t", base_url=url) as client,
    ):
        await client.list_runs([("q", "a b+c"), ("owners", "1,2"), ("tag", "é")], page=3)
    _, path, _, _ = recorder.requests[0]
    assert path == (
        "/api/organizations/o/runs?q=a%20b%2Bc&owners=1%2C2&tag=%C3%A9&page=3&per_page=100"
    )


async def test_a_query_with_space_and_plus_reaches_the_sandbox_intact(
    sandbox: Sandbox, client: Client
) -> None:
    store = sandbox.state.store
    plus, space = [i for i in store.ids() if store.get(i)["status"] == "active"][:2]  # type: ignore[index]
    await client.update(plus, {"name": "Alpha+Beta Gamma"})
    await client.update(space, {"name": "Alpha Beta Gamma"})
    assert [r["id"] for r in (await client.list_runs([("q", "alpha+beta gamma")])).runs] == [plus]
    assert [r["id"] for r in (await client.list_runs([("q", "alpha beta gamma")])).runs] == [space]


async def test_headers_on_every_request() -> None:
    recorder = Recorder()
    token = "header-token-0123456789"
    async with (
        tiny_server(recorder.handle) as url,
        Client(org="o", token=token, base_url=url) as client,
    ):
        await client.list_runs([])
        await client.archive("r1")
        await client.activate("r1")
        await client.update("r1", {"name": "N", "starred": False})
        await client.delete("r1")
    methods = [(method, path.split("/runs", 1)[1]) for method, path, _, _ in recorder.requests]
    assert methods == [
        ("GET", "?page=1&per_page=100"),
        ("DELETE", "/r1"),
        ("PUT", "/r1/activate"),
        ("PUT", "/r1"),
        ("DELETE", "/r1/delete"),
    ]
    for _, _, headers, body in recorder.requests:
        assert headers["Authorization"] == f"Bearer {token}"
        assert headers["Accept"] == "application/json"
        assert headers["X-Tallyfy-Client"] == "APIClient"
        if body:
            assert headers["Content-Type"] == "application/json"
            assert orjson.loads(body) == {"name": "N", "starred": False}
        else:
            assert "Content-Type" not in headers
    assert sum(1 for *_, body in recorder.requests if body) == 1


async def test_ids_and_org_are_quoted_into_the_path() -> None:
    recorder = Recorder()
    async with (
        tiny_server(recorder.handle) as url,
        Client(org="my org", token="t", base_url=url) as client,
    ):
        await client.archive("a/b?c")
    assert recorder.requests[0][1] == "/api/organizations/my%20org/runs/a%2Fb%3Fc"


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://go.tallyfy.com/api", "https://go.tallyfy.com/api"),
        ("https://go.tallyfy.com/api/", "https://go.tallyfy.com/api"),
        ("https://go.tallyfy.com", "https://go.tallyfy.com/api"),
        ("https://go.tallyfy.com/", "https://go.tallyfy.com/api"),
        ("https://api.tallyfy.com", "https://api.tallyfy.com"),
        ("https://api.tallyfy.com/", "https://api.tallyfy.com"),
        (" HTTPS://API.Tallyfy.com ", "https://api.tallyfy.com"),
        ("http://127.0.0.1:8765/api/", "http://127.0.0.1:8765/api"),
        ("http://localhost:9000/api", "http://localhost:9000/api"),
        ("http://[::1]:9000/api", "http://[::1]:9000/api"),
        ("https://tallyfy.internal:8443/x/api", "https://tallyfy.internal:8443/x/api"),
    ],
)
def test_base_url_normalisation(given: str, expected: str) -> None:
    assert normalise_base_url(given) == expected
    assert Client(org="o", token="t", base_url=given).base_url == expected


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("http://go.tallyfy.com/api", "loopback"),
        ("http://10.1.2.3:8765/api", "loopback"),
        ("", "empty"),
        ("go.tallyfy.com/api", "https://"),
        ("ftp://go.tallyfy.com/api", "https://"),
        ("https://", "https://"),
        ("https://go.tallyfy.com/api?access_token=secret-pw", "query"),
        ("go.tallyfy.com/api?access_token=secret-pw", "query"),
        ("http://evil.localhost:8765/api", "loopback"),
        ("https://go.tallyfy.com:99999/api", "malformed"),
        ("https://user:secret-pw@go.tallyfy.com/api", "credentials"),
    ],
)
def test_bad_base_urls_are_config_errors(given: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint) as caught:
        Client(org="o", token="t", base_url=given)
    assert "secret-pw" not in str(caught.value)


async def test_plain_http_to_a_remote_host_is_refused_before_any_request() -> None:
    recorder = Recorder()
    async with tiny_server(recorder.handle) as url:
        remote = url.replace("127.0.0.1", "example.com")
        with pytest.raises(ConfigError, match="loopback"):
            Client(org="o", token="t", base_url=remote)
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"org": " "}, "organisation"),
        ({"token": ""}, "TALLYFY_ACCESS_TOKEN"),
        ({"token": "secret-token-0123456789\n"}, "whitespace"),
        ({"token": "secret token 0123456789"}, "whitespace"),
        ({"concurrency": 0}, "concurrency"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any], hint: str) -> None:
    settings = {"org": "o", "token": "t", **options}
    with pytest.raises(ConfigError, match=hint) as caught:
        Client(**settings)
    if len(settings["token"]) > 8:
        assert_secret_free(caught.value, settings["token"].strip())


def test_repr_never_shows_the_token() -> None:
    token = "repr-secret-0123456789"
    client = Client(org="o", token=token, base_url=DEFAULT_BASE_URL)
    assert "o" in repr(client)
    assert DEFAULT_BASE_URL in repr(client)
    assert token not in repr(client)
    assert token not in str(client)


async def test_list_runs_rejects_bad_paging(client: Client) -> None:
    with pytest.raises(ValueError, match="per_page"):
        await client.list_runs([], per_page=101)
    with pytest.raises(ValueError, match="per_page"):
        await client.list_runs([], page=0)
    with pytest.raises(ValueError, match="arguments"):
        await client.list_runs([("page", "2")])


async def test_a_closed_client_refuses_work(sandbox: Sandbox, make_client: MakeClient) -> None:
    client = make_client(sandbox)
    async with client:
        await client.list_runs([])
    await client.aclose()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await client.list_runs([])


async def test_every_error_is_a_bulkruns_error(sandbox: Sandbox, client: Client) -> None:
    with pytest.raises(BulkrunsError):
        await client.activate("f" * 32)
