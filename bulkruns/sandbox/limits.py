"""What the sandbox does to requests besides serving them: throttling, latency and faults.

The rate limit mimics Tallyfy's: a rolling window per token (``limit`` requests in any
``window`` seconds; refused requests do not count), and a burst rule on top of it (more
than ``burst_limit`` requests in any one second earns ``burst_penalty`` seconds of 429s).
Both are pure, with an injectable clock, so they can be tested without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bulkruns.sandbox.config import SandboxConfig

__all__ = ["FaultDice", "RateLimiter", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rate limiter's answer for one request.

    Attributes:
        allowed: whether the request may be served.
        limit: the window's limit, for ``X-RateLimit-Limit`` (0 when unlimited).
        remaining: requests left in the window, for ``X-RateLimit-Remaining``.
        retry_after: whole seconds (≥ 1) to wait, when refused; 0 otherwise.
        burst: whether the refusal is a burst penalty rather than a full window.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: int = 0
    burst: bool = False


@dataclass(slots=True)
class _Bucket:
    window: deque[float] = field(default_factory=deque)  # accepted requests, oldest first
    second: deque[float] = field(default_factory=deque)  # accepted in the last second
    penalised_until: float = 0.0


class RateLimiter:
    """A rolling-window limit per key, plus a penalty for bursts.

    Args:
        limit: requests accepted per ``window`` seconds and key; 0 disables all limits.
        window: the rolling window, in seconds.
        burst_limit: requests accepted in any one second before the penalty.
        burst_penalty: seconds during which every request of the key is refused.
        clock: a monotonic clock in seconds; replace it in tests.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        burst_limit: int,
        burst_penalty: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.burst_limit = burst_limit
        self.burst_penalty = burst_penalty
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_config(
        cls, config: SandboxConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> RateLimiter:
        """The limiter a sandbox with ``config`` applies."""
        return cls(
            config.rate_limit,
            config.window,
            burst_limit=config.effective_burst_limit,
            burst_penalty=config.burst_penalty,
            clock=clock,
        )

    def check(self, key: str) -> Verdict:
        """Decide one request of ``key``, counting it when it is accepted."""
        if self.limit == 0:
            return Verdict(True, 0, 0)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        if now < bucket.penalised_until:
            return self._refuse(bucket, bucket.penalised_until - now, burst=True)
        in_window, in_second = bucket.window, bucket.second
        horizon = now - self.window
        while in_window and in_window[0] <= horizon:
            in_window.popleft()
        while in_second and in_second[0] <= now - 1.0:
            in_second.popleft()
        if len(in_second) >= self.burst_limit:
            bucket.penalised_until = now + self.burst_penalty
            return self._refuse(bucket, self.burst_penalty, burst=True)
        if len(in_window) >= self.limit:
            return self._refuse(bucket, in_window[0] + self.window - now, burst=False)
        in_window.append(now)
        in_second.append(now)
        return Verdict(True, self.limit, self.limit - len(in_window))

    def _refuse(self, bucket: _Bucket, wait: float, *, burst: bool) -> Verdict:
        # Retry-After is whole seconds; rounding up (and at least 1) means a client that
        # obeys it is never refused again for the same reason.
        remaining = max(0, self.limit - len(bucket.window))
        return Verdict(False, self.limit, remaining, max(1, math.ceil(wait)), burst)


class FaultDice:
    """Seeded random decisions about latency and injected faults, one roll per question."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        # Its own stream, so the faults a run of requests meets do not depend on seeding.
        self._random = random.Random(config.seed * 7919 + 17)

    def _roll(self, share: float) -> bool:
        # No roll for a disabled fault, so that enabling one fault does not reshuffle
        # another's sequence.
        return share > 0.0 and (share >= 1.0 or self._random.random() < share)

    def latency(self) -> float:
        """Seconds this request waits before it is handled."""
        config = self._config
        if config.jitter == 0.0:
            return config.latency
        return config.latency + self._random.uniform(-config.jitter, config.jitter)

    def stall(self) -> bool:
        """Whether to hold this request ``stall_seconds`` before handling it."""
        return self._roll(self._config.stall_rate)

    def reset(self) -> bool:
        """Whether to drop this request's connection without answering."""
        return self._roll(self._config.reset_rate)

    def fail_before(self) -> bool:
        """Whether to answer this mutation 503 without applying it."""
        return self._roll(self._config.fail_before)

    def fail_after(self) -> bool:
        """Whether to answer this mutation 500 after applying it."""
        return self._roll(self._config.fail_after)
