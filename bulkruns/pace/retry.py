"""The retry policy, with no I/O: which failures are worth another attempt, and when.

Server failures (500, 502, 503, 504), connection errors and timeouts are retried with
exponential backoff and full jitter, bounded by a number of attempts and by the time spent on
the item; a ``Retry-After`` from the server wins over the computed delay, up to ``max_delay``.
Every other error is final for the item.

A throttle (429) is not a failure: it is retried until the server lets the request through,
after the wait it asks for in full, and counts against neither bound. Only a wait longer than
``max_wait`` (an hourly cap), or 429s with nothing let through between that add up to it, is
final: the job stops there, to be resumed later.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bulkruns import settings
from bulkruns.errors import APIError, BulkrunsError, RateLimited, TransportError

__all__ = ["RetryPolicy", "outcome_unknown", "retryable", "throttle_wait"]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Tallyfy's per-organisation hourly cap says so in its message; without a Retry-After, the
# worst case is assumed: the hour has just begun.
_HOURLY = "hourly limit"
_HOUR = 3600.0


def retryable(error: BulkrunsError) -> bool:
    """Whether another attempt could succeed where this one failed."""
    if isinstance(error, TransportError):
        return not error.lasting
    return isinstance(error, APIError) and error.status in RETRYABLE_STATUSES


def outcome_unknown(error: BulkrunsError) -> bool:
    """Whether the failed request may still have changed the run.

    A timeout or reset after sending, a 5xx, and a 2xx whose body made no sense leave the
    change undecided; a refused connection or a 4xx (429 included) did not change anything.
    """
    if isinstance(error, TransportError):
        return error.sent
    return isinstance(error, APIError) and (error.status >= 500 or 200 <= error.status < 300)


def throttle_wait(error: RateLimited) -> tuple[float | None, str]:
    """How long a 429 asks to wait (None when it does not say), and why, for a person.

    ``Retry-After`` (seconds or an HTTP date) or ``X-RateLimit-Reset`` say how long; a
    message about the hourly limit with neither means up to an hour.
    """
    hourly = _HOURLY in error.message.lower()
    wait = error.retry_after
    if wait is None and hourly:
        wait = _HOUR
    if hourly:
        return wait, "the hourly limit"
    if wait is None:
        return None, "a 429 without Retry-After"
    return wait, f"Retry-After {round(wait, 1):g} s"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to try one item.

    Attributes:
        max_attempts: attempts per item, the first included.
        max_elapsed: seconds after the first attempt past which no retry starts.
        base_delay: the backoff ceiling after the first failure; it doubles each time.
        max_delay: the largest computed backoff ceiling.
        max_wait: the longest wait a 429 may ask for, or 429s in a row may add up to; a
            longer one is final.
        random: the source of jitter, in [0, 1); replace it for deterministic tests.

    Attempts and time count the failures other than 429s: a throttle is not a failure.
    """

    max_attempts: int = 8
    max_elapsed: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_wait: float = 3600.0
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        settings.whole("max_attempts", self.max_attempts, low=1)
        settings.number("max_elapsed", self.max_elapsed, low=0, meaning="seconds")
        settings.number("base_delay", self.base_delay, low=0, meaning="seconds")
        settings.number("max_delay", self.max_delay, low=self.base_delay, meaning="seconds")
        settings.number("max_wait", self.max_wait, low=0, meaning="seconds")

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt number ``attempt`` (1-based): full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 62))
        return self.random() * ceiling

    def next_delay(self, error: BulkrunsError, *, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt after a failure, or None when it is final.

        For failures other than a 429, which the paced send leaves to the pacer's pause.

        Args:
            error: why the latest attempt failed.
            attempt: how many attempts have failed, 429s aside (1-based).
            elapsed: seconds spent on those attempts and their backoffs.
        """
        if not retryable(error) or attempt >= self.max_attempts:
            return None
        if isinstance(error, APIError) and error.retry_after is not None:
            delay = min(error.retry_after, self.max_delay)
        else:
            delay = self.backoff(attempt)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay
