"""One request sent the way every request of a job is: through the pacer, retried as the
policy allows, a 429 pausing everyone."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from bulkruns.errors import APIError, RateLimited, TransportError
from bulkruns.pace.pacer import Pacer
from bulkruns.pace.retry import RetryPolicy, outcome_unknown

__all__ = ["Attempts", "send_paced"]

T = TypeVar("T")


@dataclass(slots=True)
class Attempts:
    """What the tries of one request came to: how many, and whether any may have applied."""

    count: int = 0
    unknown: bool = False


async def send_paced(
    request: Callable[[], Awaitable[T]],
    pacer: Pacer,
    policy: RetryPolicy,
    attempts: Attempts | None = None,
    *,
    on_send: Callable[[], None] | None = None,
    on_error: Callable[[APIError | TransportError, bool], None] | None = None,
) -> T:
    """Send one request through ``pacer``, retrying as ``policy`` allows.

    A 429 pauses the pacer for everyone; the error of the last attempt is raised.

    Args:
        request: makes the request afresh for each attempt.
        pacer: the budget the request takes its slot from.
        policy: which failures are retried, and after how long.
        attempts: updated as the attempts go: their count, and whether one may have applied.
        on_send: called as each attempt is sent.
        on_error: called with each failed attempt's error, and whether it will be retried.
    """
    tries = attempts if attempts is not None else Attempts()
    started = time.monotonic()
    while True:
        tries.count += 1
        await pacer.acquire()
        if on_send is not None:
            on_send()
        try:
            result = await request()
        except (APIError, TransportError) as exc:
            if isinstance(exc, RateLimited):
                pacer.throttled(exc.retry_after)
            if outcome_unknown(exc):
                tries.unknown = True
            elapsed = time.monotonic() - started
            delay = policy.next_delay(exc, attempt=tries.count, elapsed=elapsed)
            if on_error is not None:
                on_error(exc, delay is not None)
            if delay is None:
                raise
            await anyio.sleep(delay)
            continue
        pacer.succeeded()
        return result
