"""One request sent the way every request of a job is: through the pacer in its lane, retried
as the policy allows, a 429 pausing everyone until the server lets it through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from bulkruns.api import Page, Reply
from bulkruns.errors import APIError, RateLimited, TransportError, WaitTooLong
from bulkruns.pace.pacer import Lane, Pacer
from bulkruns.pace.retry import RetryPolicy, outcome_unknown, throttle_wait

__all__ = ["Attempts", "send_paced"]

T = TypeVar("T")


@dataclass(slots=True)
class Attempts:
    """What the tries of one request came to: how many (429s included), and whether any may
    have applied."""

    count: int = 0
    unknown: bool = False


async def send_paced(
    request: Callable[[], Awaitable[T]],
    pacer: Pacer,
    policy: RetryPolicy,
    attempts: Attempts | None = None,
    *,
    lane: Lane,
    on_send: Callable[[], None] | None = None,
    on_error: Callable[[APIError | TransportError, bool], None] | None = None,
) -> T:
    """Send one request through ``pacer`` in ``lane``, retrying as ``policy`` allows.

    A 429 pauses the pacer (every lane, or listing for a GET) for as long as it asks, and the
    request is sent again when the pause is over, as often as it takes: throttles count
    against neither ``policy.max_attempts`` nor ``policy.max_elapsed``, whose time is that of
    the request's own tries and backoffs, never its turns in the pacer. The error of the last
    attempt is raised.

    Args:
        request: makes the request afresh for each attempt.
        pacer: the budget the request takes its slot from.
        policy: which failures are retried, and after how long.
        attempts: updated as the attempts go: their count, and whether one may have applied.
        lane: ``"read"`` for a GET, ``"write"`` for a change.
        on_send: called as each attempt is sent.
        on_error: called with each failed attempt's error, and whether it will be retried.

    Raises:
        WaitTooLong: a 429 asked to wait longer than ``policy.max_wait``, or 429s have
            held the request's scope that long with no other answer between.
    """
    tries = attempts if attempts is not None else Attempts()
    failures = 0  # attempts that failed, 429s aside
    spent = 0.0  # seconds of those attempts and their backoffs
    while True:
        sent = await pacer.acquire(lane)
        tries.count += 1
        if on_send is not None:
            on_send()
        began = anyio.current_time()
        try:
            result = await request()
        except RateLimited as exc:
            wait, reason = throttle_wait(exc)
            pause = pacer.throttled(lane, wait, exc.rate_limit, sent=sent, reason=reason)
            too_long = wait if wait is not None and wait > policy.max_wait else None
            if too_long is None and pause.until - pause.since > policy.max_wait:
                # short waits, one after another, with nothing let through: as long a wait
                too_long, reason = pause.until - pause.since, "429 after 429, none let through"
            if on_error is not None:
                on_error(exc, too_long is None)
            if too_long is not None:
                raise WaitTooLong(
                    exc, wait=too_long, reason=reason, max_wait=policy.max_wait
                ) from exc
            continue  # the next acquire waits out the pause
        except (APIError, TransportError) as exc:
            if isinstance(exc, APIError):
                pacer.succeeded(lane, exc.rate_limit, sent=sent)
            else:
                pacer.succeeded(lane, sent=sent, answered=False)
            if outcome_unknown(exc):
                tries.unknown = True
            failures += 1
            spent += anyio.current_time() - began
            delay = policy.next_delay(exc, attempt=failures, elapsed=spent)
            if on_error is not None:
                on_error(exc, delay is not None)
            if delay is None:
                raise
            spent += delay
            await anyio.sleep(delay)
            continue
        pacer.succeeded(
            lane, result.rate_limit if isinstance(result, Page | Reply) else None, sent=sent
        )
        return result
