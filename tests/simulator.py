"""A deterministic simulation of a job against a rate-limited server, on virtual time.

:class:`VirtualLoop` is an asyncio event loop whose clock jumps to the next timer whenever
nothing is ready to run, so a minute of requests takes a moment of CPU and the same seed
always gives the same result. :class:`Server` models a limit's shape (a rolling or a fixed
window, a penalty after a 429, another client spending the same budget, ``X-RateLimit-*``
headers); :func:`simulate` drives the real :class:`~bulkruns.pace.Pacer` and
:func:`~bulkruns.pace.send_paced` through it with a pool of workers and a latency each way.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import random
import selectors
from collections import deque
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import ObjectReceiveStream

from bulkruns.api import RateLimitInfo, Reply
from bulkruns.errors import RateLimited
from bulkruns.pace import Pacer, RetryPolicy, send_paced


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when nothing is ready, its clock jumps to the next timer.

    Args:
        late: a timer fires up to this many seconds late, uniformly at random (seeded), as a
            busy event loop's do: at 200 answers a second, a few milliseconds.
    """

    def __init__(self, late: float = 0.0) -> None:
        self.virtual = 0.0
        self.late = late
        self.random = random.Random(late)
        super().__init__(_Jumping(self))

    def time(self) -> float:
        return self.virtual


class _Jumping(selectors.DefaultSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("deadlock: nothing is scheduled and nothing is ready")
            loop = self._loop
            loop.virtual += timeout
            if timeout and loop.late:  # a timer was waited for: it fires late
                loop.virtual += loop.random.uniform(0.0, loop.late)
        return events


ON_TIME_AND_LATE = pytest.mark.parametrize(
    "anyio_backend",
    [
        ("asyncio", {"loop_factory": VirtualLoop}),
        ("asyncio", {"loop_factory": functools.partial(VirtualLoop, late=0.002)}),
    ],
    ids=["timers-on-time", "timers-late"],
)
"""Runs a test twice on the virtual loop: its timers on time, and up to 2 ms late."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """A server's limit, and the network to it.

    Attributes:
        limit: requests accepted per ``window``.
        window: seconds.
        fixed: fixed windows (counted from 0, every ``window`` seconds) instead of rolling.
        penalty: seconds during which every request is refused after a 429; 0 refuses only
            while the window is full.
        headers: answers carry ``X-RateLimit-Limit`` and ``-Remaining``.
        reset_header: and ``X-RateLimit-Reset``.
        cotenant: requests a second another client spends of the same budget, evenly; as in
            the sandbox, its refusals neither count nor start a penalty.
        gets: a tighter budget for GETs alone, (requests, seconds), rolling, as Tallyfy's.
        phase: seconds into a fixed window the job begins (the server's clock is its own).
        latency: the range of seconds a request takes to arrive, uniform; the answer takes
            a millisecond back (as in the sandbox, which waits its latency before counting).
    """

    limit: int
    window: float = 1.0
    fixed: bool = False
    penalty: float = 0.0
    headers: bool = False
    reset_header: bool = False
    cotenant: float = 0.0
    gets: tuple[int, float] | None = None
    phase: float = 0.0
    latency: tuple[float, float] = (0.02, 0.05)

    @property
    def allowed(self) -> float:
        """The requests a second left to the job."""
        return self.limit / self.window - self.cotenant


@dataclass(slots=True)
class Server:
    """The model of a rate-limited server; refused requests do not count."""

    shape: Shape
    accepted: deque[float] = field(default_factory=deque)  # rolling: within the window
    counts: dict[int, int] = field(default_factory=dict)  # fixed: accepted per window
    penalised_until: float = -math.inf
    refused: int = 0  # the job's requests refused
    refusals: list[float] = field(default_factory=list)  # when they were
    gets: Server | None = None  # the GETs' own budget

    def decide(
        self, now: float, *, penalise: bool = True
    ) -> tuple[bool, float, RateLimitInfo | None]:
        """Count one request arriving at ``now``: accepted?, Retry-After, headers; a refusal
        starts the penalty only if ``penalise``."""
        shape = self.shape
        if shape.fixed:
            index = math.floor((now + shape.phase) / shape.window)
            used = self.counts.get(index, 0)
            reset = (index + 1) * shape.window - now - shape.phase
        else:
            while self.accepted and self.accepted[0] <= now - shape.window:
                self.accepted.popleft()
            used = len(self.accepted)
            reset = self.accepted[0] + shape.window - now if self.accepted else shape.window
        allowed = now >= self.penalised_until and used < shape.limit
        if allowed:
            used += 1
            if shape.fixed:
                self.counts[index] = used
            else:
                self.accepted.append(now)
            wait = 0.0
        elif now < self.penalised_until:
            wait = self.penalised_until - now
        else:
            wait = reset
            if shape.penalty and penalise:
                self.penalised_until = now + shape.penalty
                wait = shape.penalty
        info = None
        if shape.headers:
            info = RateLimitInfo(
                shape.limit, max(0, shape.limit - used), reset if shape.reset_header else None
            )
        # Retry-After in whole seconds, at least one, as Laravel and the sandbox send it
        return allowed, max(1.0, math.ceil(wait)), info


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a simulated job came to."""

    items: int
    pages: int  # listing requests answered
    elapsed: float
    refusals: list[float]  # when the job's requests were refused (429)
    allowed: float  # the requests a second the server left to the job
    pacer: Pacer

    @property
    def efficiency(self) -> float:
        """Items a second over the rate the server allowed the job."""
        return self.items / self.elapsed / self.allowed

    @property
    def requests(self) -> float:
        """Requests a second answered (items and pages) over the rate the server allowed."""
        return (self.items + self.pages) / self.elapsed / self.allowed

    @property
    def throttled(self) -> int:
        """429s the job received."""
        return len(self.refusals)

    @property
    def runs(self) -> int:
        """Runs of 429s: refusals more than a second after the previous one start a run."""
        return sum(1 for a, b in itertools.pairwise([-math.inf, *self.refusals]) if b - a > 1.0)


async def simulate(
    shape: Shape,
    *,
    rate: float,
    seconds: float = 60.0,
    concurrency: int = 16,
    page: int = 0,
    seed: int = 1,
) -> Outcome:
    """Run a job of ``seconds`` at the server's limit (that many seconds of its allowance)
    through a pacer told ``rate``, on the running :class:`VirtualLoop`.

    With ``page``, a lister GETs the runs ``page`` at a time in the read lane and hands them
    to the workers through a queue as short as the pool, as the job's listing does.
    """
    rng = random.Random(seed)
    gets = Server(Shape(limit=shape.gets[0], window=shape.gets[1])) if shape.gets else None
    server = Server(shape, gets=gets)
    pacer = Pacer(rate, clock=anyio.current_time)
    policy = RetryPolicy(random=rng.random)
    items = round(shape.allowed * seconds)
    low, high = shape.latency

    async def request(gets: Server | None = None) -> Reply:
        await anyio.sleep(rng.uniform(low, high))
        now = anyio.current_time()
        allowed, wait, info = gets.decide(now) if gets else (True, 0.0, None)
        if allowed:
            allowed, wait, info = server.decide(now)
        await anyio.sleep(0.001)
        if not allowed:
            server.refusals.append(now)
            raise RateLimited(429, "Too Many Attempts.", retry_after=wait, rate_limit=info)
        return Reply(200, None, None, info)

    send, receive = anyio.create_memory_object_stream[int](concurrency)

    async def lister() -> None:
        async with send:
            for item in range(items):
                if page and item % page == 0:
                    get = functools.partial(request, server.gets)
                    await send_paced(get, pacer, policy, lane="read")
                await send.send(item)

    async def worker(ids: ObjectReceiveStream[int]) -> None:
        async with ids:
            async for _ in ids:
                await send_paced(request, pacer, policy, lane="write")

    async def cotenant(scope: anyio.CancelScope) -> None:
        # at a phase of its own to the windows' edges, each time counted from its start
        first = anyio.current_time() + rng.random() / shape.cotenant
        with scope:
            for n in itertools.count():
                await anyio.sleep(first + n / shape.cotenant - anyio.current_time())
                server.decide(anyio.current_time(), penalise=False)

    async with anyio.create_task_group() as tg:
        other = anyio.CancelScope()
        if shape.cotenant:
            tg.start_soon(cotenant, other)
            await anyio.sleep(shape.window)  # the other client was there first
        start = anyio.current_time()
        async with anyio.create_task_group() as pool:
            pool.start_soon(lister)
            for _ in range(concurrency):
                pool.start_soon(worker, receive.clone())
            receive.close()
        other.cancel()
    pages = math.ceil(items / page) if page else 0
    return Outcome(
        items, pages, anyio.current_time() - start, server.refusals, shape.allowed, pacer
    )
