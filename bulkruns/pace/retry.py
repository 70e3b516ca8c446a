"""The retry policy, with no I/O: which failures are worth another attempt, and when.

Throttling (429), server failures (500, 502, 503, 504), connection errors and timeouts are
retried with exponential backoff and full jitter, bounded by a number of attempts and by the
time spent on the item. A ``Retry-After`` from the server wins over the computed delay. Every
other error is final for the item.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bulkruns import settings
from bulkruns.errors import APIError, BulkrunsError, RateLimited, TransportError

__all__ = ["RetryPolicy", "outcome_unknown", "retryable"]

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def retryable(error: BulkrunsError) -> bool:
    """Whether another attempt could succeed where this one failed."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, APIError) and error.status in RETRYABLE_STATUSES


def outcome_unknown(error: BulkrunsError) -> bool:
    """Whether the failed request may still have changed the run.

    A timeout or reset after sending, a 5xx, and a 2xx whose body made no sense leave the
    change undecided; a refused connection or a 4xx (429 included) did not change anything.
    """
    if isinstance(error, TransportError):
        return error.sent
    return isinstance(error, APIError) and (error.status >= 500 or 200 <= error.status < 300)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to try one item.

    Attributes:
        max_attempts: attempts per item, the first included.
        max_elapsed: seconds after the first attempt past which no retry starts.
        base_delay: the backoff ceiling after the first failure; it doubles each time.
        max_delay: the largest computed backoff ceiling.
        random: the source of jitter, in [0, 1); replace it for deterministic tests.
    """

    max_attempts: int = 8
    max_elapsed: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        settings.whole("max_attempts", self.max_attempts, low=1)
        settings.number("max_elapsed", self.max_elapsed, low=0, meaning="seconds")
        settings.number("base_delay", self.base_delay, low=0, meaning="seconds")
        settings.number("max_delay", self.max_delay, low=self.base_delay, meaning="seconds")

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt number ``attempt`` (1-based): full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 62))
        return self.random() * ceiling

    def next_delay(self, error: BulkrunsError, *, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before the next attempt, or None when ``error`` is final.

        Args:
            error: why attempt number ``attempt`` failed.
            attempt: how many attempts have been made (1-based).
            elapsed: seconds since the first attempt started.
        """
        if not retryable(error) or attempt >= self.max_attempts:
            return None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            delay = error.retry_after
        elif isinstance(error, APIError) and error.retry_after is not None:
            delay = min(error.retry_after, self.max_delay)
        else:
            delay = self.backoff(attempt)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay
