"""What the sandbox does to requests besides serving them: throttling, latency and faults.

The rate limit is any mix of :class:`~bulkruns.sandbox.shape.Limit` windows, per token: a
request is served only if every limit it counts on has room, and then counts on each of
them; a refused request counts on none. A limit with a penalty refuses every request for a
while once it has refused one (today's burst rule is such a limit), and another client can
take its share of the same budget (``cotenant``). It is pure, with an injectable clock, so
it can be tested without waiting.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bulkruns.sandbox.config import SandboxConfig
from bulkruns.sandbox.shape import Limit

__all__ = ["FaultDice", "RateLimiter", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rate limiter's answer for one request.

    Attributes:
        allowed: whether the request may be served.
        limit: the ``X-RateLimit-Limit`` to announce; 0 when no limit announces itself.
        remaining: requests left in that limit, for ``X-RateLimit-Remaining``.
        retry_after: whole seconds (≥ 1) to wait, when refused; 0 otherwise.
        reset: when refused, the epoch second from which it would be served, for
            ``X-RateLimit-Reset``; 0 otherwise.
        rule: the limit that refused it: the one that keeps it waiting longest.
        penalty: whether the refusal is ``rule``'s penalty rather than its full window.
    """

    allowed: bool
    limit: int = 0
    remaining: int = 0
    retry_after: int = 0
    reset: int = 0
    rule: Limit | None = None
    penalty: bool = False

    @property
    def refused_by(self) -> str:
        """What the stats count the refusal under: the limit's label, `` penalty`` added."""
        if self.rule is None:
            return ""
        return self.rule.label + (" penalty" if self.penalty else "")

    def headers(self) -> dict[str, str]:
        """The answer's rate-limit headers: ``X-RateLimit-*``, and on a 429 ``Retry-After``."""
        headers: dict[str, str] = {}
        if self.limit:
            headers["X-RateLimit-Limit"] = str(self.limit)
            headers["X-RateLimit-Remaining"] = str(self.remaining)
        if self.rule is not None:
            if self.rule.retry_after:
                headers["Retry-After"] = str(self.retry_after)
            if self.rule.headers:
                headers["X-RateLimit-Reset"] = str(self.reset)
        return headers


class _Rolling:
    """A rolling window: the requests it accepted in the last ``seconds``, oldest first."""

    __slots__ = ("_times", "limit")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._times: deque[float] = deque()

    def used(self, now: float) -> int:
        horizon = now - self.limit.seconds
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def free_at(self, now: float) -> float:
        """When it has room for one more: ``now`` if it has room now."""
        if self.used(now) < self.limit.requests:
            return now
        return self._times[0] + self.limit.seconds

    def add(self, now: float) -> None:
        self._times.append(now)


class _Fixed:
    """A fixed window: the requests it accepted since the last multiple of ``seconds``."""

    __slots__ = ("_count", "_window", "limit")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._window = 0
        self._count = 0

    def used(self, now: float) -> int:
        window = math.floor(now / self.limit.seconds)
        if window != self._window:
            self._window, self._count = window, 0
        return self._count

    def free_at(self, now: float) -> float:
        """When it has room for one more: ``now`` if it has room now."""
        if self.used(now) < self.limit.requests:
            return now
        return (self._window + 1) * self.limit.seconds

    def add(self, now: float) -> None:
        self._count += 1


_Window = _Rolling | _Fixed


@dataclass(slots=True)
class _Budget:
    """One token's windows (one a limit), its penalty, and where its co-tenant is."""

    windows: list[_Window]
    shared: list[_Window] = field(default_factory=list)  # those the co-tenant counts on
    penalised_until: float = -math.inf
    penalised_by: Limit | None = None
    cotenant_next: int = 1  # the co-tenant's next request, numbered from the start


class RateLimiter:
    """The sandbox's rate limit: every limit of a shape, per key (a token).

    Args:
        limits: the limits in force (see :attr:`SandboxConfig.rate_limits`); none = no limit.
        cotenant: another client's requests per second on each key's budget, one every
            ``1/cotenant`` seconds from the limiter's start; each counts on every limit but
            the GET-only ones when they all have room (and not during a penalty).
        clock: the time in epoch seconds (fixed windows align to it, ``X-RateLimit-Reset``
            reports it); replace it in tests.

    Attributes:
        refused: refusals counted by what refused them (:attr:`Verdict.refused_by`).
        cotenant_requests: the co-tenant's requests that counted on the limits.
    """

    def __init__(
        self,
        limits: Sequence[Limit] = (),
        *,
        cotenant: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = tuple(limits)
        self.cotenant = cotenant
        self.refused: Counter[str] = Counter()
        self.cotenant_requests = 0
        self._clock = clock
        self._start = clock()
        # Co-tenant requests older than the longest window no longer matter to any limit.
        self._horizon = max((limit.seconds for limit in self.limits), default=0.0)
        self._budgets: dict[str, _Budget] = {}

    @classmethod
    def from_config(
        cls, config: SandboxConfig, *, clock: Callable[[], float] = time.time
    ) -> RateLimiter:
        """The limiter a sandbox with ``config`` applies."""
        return cls(config.rate_limits, cotenant=config.cotenant, clock=clock)

    def check(self, key: str, method: str) -> Verdict:
        """Decide one request of ``key`` with HTTP ``method``, counting it if it is accepted."""
        if not self.limits:
            return Verdict(True)
        now = self._clock()
        budget = self._budget(key, now)
        windows = [w for w in budget.windows if method == "GET" or not w.limit.gets_only]
        if now < budget.penalised_until:
            until, by = budget.penalised_until, budget.penalised_by
            return self._refuse(windows, by, now, until, penalty=True)
        full: list[tuple[float, Limit]] = []
        for window in windows:
            free_at = window.free_at(now)
            if free_at > now:
                limit = window.limit
                full.append((max(free_at, now + limit.penalty), limit))
                if limit.penalty > 0 and now + limit.penalty > budget.penalised_until:
                    budget.penalised_until, budget.penalised_by = now + limit.penalty, limit
        if full:
            until, rule = max(full, key=lambda wait: wait[0])  # the first, on a tie
            return self._refuse(windows, rule, now, until, penalty=False)
        for window in windows:
            window.add(now)
        return Verdict(True, *self._announced(windows, now, None))

    def _budget(self, key: str, now: float) -> _Budget:
        budget = self._budgets.get(key)
        if budget is None:
            windows: list[_Window] = [
                _Fixed(limit) if limit.kind == "fixed" else _Rolling(limit) for limit in self.limits
            ]
            shared = [w for w in windows if not w.limit.gets_only]
            budget = self._budgets[key] = _Budget(windows, shared)
        if self.cotenant > 0 and budget.shared:
            self._replay_cotenant(budget, now)
        return budget

    def _replay_cotenant(self, budget: _Budget, now: float) -> None:
        """Count the co-tenant's requests up to ``now``, in order, as if they had come."""
        rate, start = self.cotenant, self._start
        first_that_matters = math.ceil((now - self._horizon - start) * rate)
        n = max(budget.cotenant_next, first_that_matters)
        while (at := start + n / rate) <= now:
            if at >= budget.penalised_until and all(w.free_at(at) <= at for w in budget.shared):
                for window in budget.shared:
                    window.add(at)
                self.cotenant_requests += 1
            n += 1
        budget.cotenant_next = n

    def _refuse(
        self,
        windows: list[_Window],
        rule: Limit | None,
        now: float,
        until: float,
        *,
        penalty: bool,
    ) -> Verdict:
        # Retry-After is whole seconds; rounding up (and at least 1) means a client that
        # obeys it is never refused again for the same reason.
        verdict = Verdict(
            False,
            *self._announced(windows, now, rule),
            retry_after=max(1, math.ceil(until - now)),
            reset=math.ceil(until),
            rule=rule,
            penalty=penalty,
        )
        self.refused[verdict.refused_by] += 1
        return verdict

    @staticmethod
    def _announced(windows: list[_Window], now: float, rule: Limit | None) -> tuple[int, int]:
        """``X-RateLimit-Limit`` and ``-Remaining``: (0, 0) for none.

        A refusing limit that announces itself speaks (with none left); an edge proxy's
        answer carries no header of the API's; otherwise the announcing limit with the
        fewest requests left speaks, the first listed on a tie.
        """
        if rule is not None and (rule.headers or rule.html):
            return (rule.requests, 0) if rule.headers else (0, 0)
        speaking = [(w.limit.requests - w.used(now), w.limit) for w in windows if w.limit.headers]
        if not speaking:
            return 0, 0
        remaining, limit = min(speaking, key=lambda left: left[0])
        return limit.requests, remaining


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
