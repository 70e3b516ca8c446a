"""The sandbox's HTTP face: Tallyfy's run endpoints, its checks, throttling and faults.

Every request goes through one pipeline (:func:`_serve`): latency, the
``X-Tallyfy-Client`` header (400), the bearer token (401), the rate limit (429), the
organisation (403), an optional stall, then the endpoint itself with the injected faults
around it. The pipeline does constant work per request; the store does the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn
from urllib.parse import unquote

import orjson
from aiohttp import web

from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.limits import Verdict
from bulkruns.sandbox.rules import StoreError, parse_list_params
from bulkruns.sandbox.state import SandboxState

__all__ = ["STATE_KEY", "make_app", "state_of"]

STATE_KEY = web.AppKey("bulkruns_sandbox_state", SandboxState)

_MUTATIONS = frozenset({"archive", "activate", "update", "delete"})
_JSON = "application/json"
_Action = Callable[[web.Request, SandboxState], Awaitable[tuple[int, Any]]]
_EMPTY = object()  # an action's "answer with an empty body"
_CLIENT_HEADER_MISSING = "The X-Tallyfy-Client header is required (X-Tallyfy-Client: APIClient)."


def make_app(config: SandboxConfig) -> web.Application:
    """An aiohttp application serving a fresh sandbox with ``config``.

    Its :class:`SandboxState` is ``state_of(app)``.
    """
    app = web.Application()
    app[STATE_KEY] = SandboxState(config)
    for prefix in ("/api", ""):
        runs = prefix + "/organizations/{org}/runs"
        app.router.add_get(runs, _handler("list", _list), allow_head=False)
        app.router.add_get(runs + "/{run_id}", _handler("get", _get), allow_head=False)
        app.router.add_delete(runs + "/{run_id}", _handler("archive", _archive))
        app.router.add_put(runs + "/{run_id}/activate", _handler("activate", _activate))
        app.router.add_put(runs + "/{run_id}", _handler("update", _update))
        app.router.add_delete(runs + "/{run_id}/delete", _handler("delete", _delete))
    app.router.add_get("/_sandbox/stats", _stats, allow_head=False)
    app.router.add_route("*", "/{tail:.*}", _handler("other", _not_found))
    return app


def state_of(app: web.Application) -> SandboxState:
    """The live state of an application made by :func:`make_app`."""
    return app[STATE_KEY]


def _json(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type=_JSON)


def _error(status: int, message: str, headers: dict[str, str]) -> web.Response:
    return _json(status, {"error": True, "message": message}, headers)


# An edge proxy's 429, as Cloudflare's rate limiting answers: a page, not the API's JSON.
_EDGE_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>Error 1015 | Rate limited</title></head>
<body>
<h1>Error 1015</h1>
<h2>You are being rate limited</h2>
<p>The owner of this website has banned you temporarily from accessing this website.</p>
<p>Ray ID: {ray}</p>
</body>
</html>
"""


def _throttled(verdict: Verdict, headers: dict[str, str]) -> web.Response:
    """The 429 of the limit that refused: Tallyfy's JSON, or an edge proxy's HTML page."""
    rule = verdict.rule
    assert rule is not None  # a refusal always names its limit
    if rule.html:
        # The API never saw the request: the edge's own headers, and no request ID.
        ray = headers["X-Request-Id"]
        edge = {"Server": "cloudflare", "CF-RAY": ray, **verdict.headers()}
        page = _EDGE_PAGE.format(ray=ray)
        return web.Response(status=429, text=page, content_type="text/html", headers=edge)
    body = {"message": rule.message, "code": "RATE_LIMIT_EXCEEDED"}
    return _json(429, body, {**headers, **verdict.headers()})


def _drop(request: web.Request) -> NoReturn:
    """Close the connection without an answer, as a reset or a dead proxy would."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp treats a cancelled handler as a vanished client: no response, no log.
    raise asyncio.CancelledError


def _handler(kind: str, action: _Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(request, kind, action)

    return handle


async def _serve(request: web.Request, kind: str, action: _Action) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    config = state.config
    dice = state.dice
    state.total += 1
    headers = {"X-Request-Id": state.next_request_id()}

    delay = dice.latency()
    if delay > 0:
        state.latency_total += delay
        await asyncio.sleep(delay)

    if "X-Tallyfy-Client" not in request.headers:
        state.record(kind, 400)
        return _error(400, _CLIENT_HEADER_MISSING, headers)
    if request.headers.get("Authorization") != "Bearer " + config.token:
        state.record(kind, 401)
        return _error(401, "Unauthenticated.", headers)
    verdict = state.limiter.check(config.token, request.method)
    if not verdict.allowed:
        state.record(kind, 429)
        return _throttled(verdict, headers)
    headers.update(verdict.headers())
    org = request.match_info.get("org")
    if org is not None and org != config.org:
        state.record(kind, 403)
        return _error(403, "You do not have access to this organization.", headers)

    if dice.stall():
        state.faults["stall"] += 1
        try:
            await asyncio.wait_for(state.closing.wait(), config.stall_seconds)
        except TimeoutError:
            pass
        else:  # the sandbox is shutting down: give up without touching anything
            state.record(kind, "reset")
            _drop(request)

    # Roll every die up front, in a fixed order, so that a seed replays the same faults.
    mutation = kind in _MUTATIONS
    reset = dice.reset()
    fail_before = mutation and dice.fail_before()
    fail_after = mutation and dice.fail_after()
    if fail_before:
        state.faults["fail_before"] += 1
        state.record(kind, 503)
        return _error(503, "Service Unavailable.", headers)
    try:
        status, body = await action(request, state)
    except StoreError as exc:
        status, body = exc.status, exc.body()
    if reset:
        state.faults["reset"] += 1
        state.record(kind, "reset")
        _drop(request)
    if fail_after and status == 200:
        state.faults["fail_after"] += 1
        state.record(kind, 500)
        return _error(500, "Server Error.", headers)
    state.record(kind, status)
    if body is _EMPTY:
        return web.Response(status=status, headers=headers)
    return _json(status, body, headers)


# --- endpoints: each returns (status, JSON body or _EMPTY), or raises StoreError ----------


def _query_params(raw: str) -> dict[str, str]:
    # Tallyfy decodes %XX but does not read "+" as a space, so the query is split by hand:
    # aiohttp's request.query would turn "C++" into "C  ".
    params: dict[str, str] = {}
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
    return params


async def _list(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    raw_query = request.rel_url.raw_query_string
    config = state.config
    wanted = parse_list_params(
        _query_params(raw_query),
        ignored=config.ignored_filters,
        status_archived=config.status_archived,
    )
    served = wanted.per_page if config.page_size is None else min(wanted.per_page, config.page_size)
    runs, total = state.store.page(dataclasses.replace(wanted, per_page=served))
    if config.list_omits:
        runs = [{k: v for k, v in run.items() if k not in config.list_omits} for run in runs]
    if state.others.busy:
        # They change run objects in place once this page is taken: serve it as it was.
        runs = [dict(run) for run in runs]
        state.others.act()
    # The quirk: total_pages computed with Tallyfy's default page size instead of per_page.
    total_pages = max(1, math.ceil(total / (10 if config.total_pages_quirk else served)))
    last = max(1, math.ceil(total / served))
    links: Any = None
    if config.links_style == "list":
        links = []
    elif config.links_style == "object":
        links = {
            "next": _page_url(request, raw_query, wanted.page + 1) if wanted.page < last else None,
            "previous": _page_url(request, raw_query, wanted.page - 1) if wanted.page > 1 else None,
        }
    pagination = {
        "total": total,
        "count": len(runs),
        "per_page": served if config.per_page_reported == "served" else wanted.per_page,
        "current_page": wanted.page,
        "total_pages": total_pages,
        "links": links,
    }
    return 200, {"data": runs, "meta": {"pagination": pagination}}


def _page_url(request: web.Request, raw_query: str, page: int) -> str:
    parts = [p for p in raw_query.split("&") if p and not p.startswith("page=")]
    parts.append(f"page={page}")
    return f"{request.scheme}://{request.host}{request.rel_url.raw_path}?{'&'.join(parts)}"


async def _get(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    # The run as a list shows it (progress an object): Tallyfy's run transformer always
    # writes "users" and "groups", so clients may read them back before an update.
    return 200, {"data": state.store.read(request.match_info["run_id"])}


def _mutation_body(run: dict[str, Any]) -> dict[str, Any]:
    # Mutation answers carry progress as a bare percentage, as Tallyfy's do; lists carry
    # the {complete, total, percent} object. Clients must not rely on either shape.
    return {**run, "progress": run["progress"]["percent"]}


async def _archive(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    run = state.store.archive(request.match_info["run_id"])
    return 200, {"data": _mutation_body(run)}


async def _activate(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    run, _ = state.store.activate(request.match_info["run_id"])
    return 200, {"data": _mutation_body(run)}


async def _update(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise StoreError(400, "The request body is not valid JSON.") from None
    run = state.store.update(
        request.match_info["run_id"],
        body,
        strip_unsent_assignees=state.config.strip_unsent_assignees,
    )
    return 200, {"data": _mutation_body(run)}


async def _delete(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    state.store.delete(
        request.match_info["run_id"], unarchived_status=state.config.delete_unarchived_status
    )
    return 200, _EMPTY


async def _not_found(request: web.Request, state: SandboxState) -> tuple[int, Any]:
    raise StoreError(404, f"No route for {request.method} {request.rel_url.raw_path}.")


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(200, state.stats(), {"X-Request-Id": state.next_request_id()})
