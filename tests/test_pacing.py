"""The pacer on a fake clock: spacing, bursts, pauses, lanes, rate changes, what it shows."""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from simulator import ON_TIME_AND_LATE, VirtualLoop

from bulkruns.api import RateLimitInfo
from bulkruns.errors import ConfigError, RateLimited, TransportError
from bulkruns.pace import Lane, Pacer, RetryPolicy, send_paced
from bulkruns.pace.budget import Budget
from bulkruns.pace.ceiling import Ceiling
from bulkruns.pace.history import Grants as GrantTimes

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": VirtualLoop})  # a fake clock: waits take no time


def paced(rate: float) -> Pacer:
    return Pacer(rate, clock=anyio.current_time)


class Grants:
    """Acquirers in both lanes, and the time of every grant, by lane."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.times: dict[Lane, list[float]] = {"read": [], "write": []}

    @property
    def all(self) -> list[float]:
        return sorted(self.times["read"] + self.times["write"])

    async def take(self, lane: Lane = "write") -> float:
        granted = await self.pacer.acquire(lane)
        assert granted == anyio.current_time()
        self.times[lane].append(granted)
        return granted

    async def keep_taking(self, lane: Lane = "write", *, pause: float = 0.0) -> None:
        while True:
            await self.take(lane)
            await anyio.sleep(pause)


def most_in_window(times: Sequence[float], window: float) -> list[tuple[float, int]]:
    """For each grant, how many grants the window starting there holds."""
    return [(start, bisect.bisect_left(times, start + window) - i) for i, start in enumerate(times)]


async def run_for(seconds: float, *tasks: Callable[[], Any]) -> None:
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(task)


# -- settings and what it shows --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": -1}, "rate must be at least 0"),
        ({"rate": math.nan}, "rate must be"),
        ({"rate": math.inf}, "rate must be"),
        ({"rate": True}, "rate must be"),
        ({"rate": 10, "headroom": 1.0}, "headroom must be at least 0 and below 1"),
        ({"rate": 10, "headroom": -0.1}, "headroom must be"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Pacer(**kwargs)


def test_initial_state() -> None:
    pacer = Pacer(10, clock=lambda: 0.0)
    assert (pacer.rate, pacer.current_rate, pacer.ceiling, pacer.pause) == (10, 10, None, None)
    with pytest.raises(ConfigError, match="rate must be at least 0"):
        pacer.set_rate(-5)
    assert pacer.rate == 10


# -- the pace --------------------------------------------------------------------------------


async def test_no_start_up_burst() -> None:
    pacer = paced(1000)
    grants = Grants(pacer)
    await run_for(1.0, *[grants.keep_taking] * 50)
    times = grants.all
    # the first request leaves at once, the next a whole interval later, fifty queued or not
    assert times[:2] == [0.0, pytest.approx(1 / 990)]
    for window in (0.001, 0.01, 0.1):
        assert max(count for _, count in most_in_window(times, window)) <= 990 * window + 1
    assert len(times) == pytest.approx(990, abs=1)  # the rate, less 1 % of headroom


async def test_requests_are_evenly_spaced() -> None:
    pacer = paced(100)
    grants = Grants(pacer)
    await run_for(10.0, *[grants.keep_taking] * 10)
    times = [t for t in grants.all if t >= 2.0]  # after the start-up ramp
    gaps = [b - a for a, b in itertools.pairwise(times)]
    interval = 1 / 99
    assert min(gaps) == pytest.approx(interval)  # on a fake clock, exactly
    assert max(gaps) == pytest.approx(interval)


@ON_TIME_AND_LATE
async def test_never_more_than_rate_times_t_plus_two_in_any_window(
    anyio_backend: tuple[str, dict[str, Any]],
) -> None:
    # rate changes up and down, pauses of either lane, both lanes busy, over 12 seconds; a
    # timer that fires late keeps the schedule, and never makes a burst
    pacer = paced(300)
    grants = Grants(pacer)
    rates = [(0.0, 300.0)]

    def set_rate(rate: float) -> None:
        pacer.set_rate(rate)
        rates.append((anyio.current_time(), rate))

    async def changes() -> None:
        for at, action in [
            (2.0, lambda: set_rate(2000)),
            (3.0, lambda: pacer.throttled("write", 0.5)),
            (4.5, lambda: set_rate(40)),
            (5.5, lambda: set_rate(1000)),
            (6.0, lambda: pacer.throttled("read", 2.0)),
            (7.0, lambda: set_rate(5)),
            (8.0, lambda: set_rate(3000)),
            (8.5, lambda: pacer.succeeded("write")),  # not 429s in a row: the next is as told
            (9.0, lambda: pacer.throttled("write", 0.01)),
            (10.0, lambda: set_rate(750)),
        ]:
            await anyio.sleep(at - anyio.current_time())
            action()

    readers = [lambda: grants.keep_taking("read", pause=0.001)] * 3
    await run_for(12.0, changes, *readers, *[grants.keep_taking] * 40)
    times = grants.all
    # timers 2 ms late cannot keep 2,000/s or 3,000/s (they lose what passes an interval)
    late = anyio_backend[1]["loop_factory"] is not VirtualLoop
    assert len(times) > (4000 if late else 8000)
    starts = [at for at, _ in rates]

    def fastest(start: float, end: float) -> float:
        first = bisect.bisect_right(starts, start) - 1
        return max(rate for at, rate in rates[first:] if at < end)

    for window in (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 3.0):
        for start, count in most_in_window(times, window):
            assert count <= fastest(start, start + window) * window + 2, (window, start, count)


@pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {"loop_factory": lambda: VirtualLoop(late=0.003)})]
)
async def test_a_late_timer_keeps_the_schedule() -> None:
    # timers up to 3 ms late at 200/s (an interval of 5 ms, half of it tolerated): a grant
    # that leaves late keeps the schedule, and the next follows sooner, so the pace holds
    pacer = paced(200)
    grants = Grants(pacer)
    await run_for(10.0, *[grants.keep_taking] * 10)
    times = grants.all
    late = [b - a for a, b in itertools.pairwise(times) if b - a > 1 / 198 * 1.1]
    assert len(late) > len(times) / 4  # the timers did fire late
    assert len(times) >= 0.995 * 198 * 10
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.5 / 198 - 1e-9


async def test_a_raise_takes_effect_at_once_and_is_no_burst() -> None:
    pacer = paced(2)
    grants = Grants(pacer)

    async def raise_it() -> None:
        await anyio.sleep(5.25)  # between two slots, with ten acquirers queued
        pacer.set_rate(100)

    await run_for(6.0, raise_it, *[grants.keep_taking] * 10)
    before = [t for t in grants.all if t < 5.25]
    after = [t for t in grants.all if t >= 5.25]
    # the queued acquirers followed the new pace at once, not after the old interval...
    assert after[0] == pytest.approx(5.25)
    # ...and evenly from there
    assert after[0] - before[-1] >= 1 / 99
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert min(gaps) == pytest.approx(1 / 99)
    assert len(after) == pytest.approx(0.75 * 99, abs=2)


async def test_unpacing_a_running_pacer_lets_the_queue_go_at_once() -> None:
    pacer = paced(1)
    grants = Grants(pacer)

    async def unpace() -> None:
        await anyio.sleep(2.5)
        pacer.set_rate(0)

    def worker() -> Any:
        return grants.keep_taking(pause=0.001)

    await run_for(2.6, unpace, *[worker] * 10)
    assert len([t for t in grants.all if t >= 2.5]) >= 10 * 99  # as fast as they ask


async def test_unpacing_lets_requests_the_ceiling_holds_go_at_once() -> None:
    pacer = paced(10)
    grants = Grants(pacer)

    async def answered() -> None:
        while True:
            pacer.succeeded("write", sent=await grants.take())

    await run_for(12.0, *[answered] * 5)
    await anyio.sleep(0.4)
    # a 429 with no pause, whose ceiling holds the next requests to its window
    pacer.throttled("write", 0.0, sent=await grants.take())

    async def unpace() -> None:
        await anyio.sleep(0.01)
        pacer.set_rate(0)

    start = anyio.current_time()
    await run_for(1.0, unpace, *[grants.take] * 3)
    assert grants.times["write"][-3:] == pytest.approx([start + 0.01] * 3)


async def test_a_request_unpaced_while_it_waited_is_the_slot_a_new_rate_follows() -> None:
    pacer = paced(2)
    grants = Grants(pacer)
    await grants.take()

    async def unpace_then_pace() -> None:
        await anyio.sleep(0.2)  # the second request waits for its slot at 0.5
        pacer.set_rate(0)
        await anyio.sleep(0.01)
        pacer.set_rate(2)
        await grants.take()

    await run_for(1.0, unpace_then_pace, grants.take)
    _, second, third = grants.times["write"]
    assert second == pytest.approx(0.2)  # let go at once by the unpacing
    assert third - second >= 1 / 2  # an interval after it, not after the first: no burst


async def test_a_rate_set_while_an_unpaced_job_is_paused_paces_its_waiting_requests() -> None:
    pacer = paced(0)
    grants = Grants(pacer)

    async def throttle_then_pace() -> None:
        await anyio.sleep(1.0)
        pacer.throttled("write", 2.0)  # everybody waits until 3.0 ...
        await anyio.sleep(0.5)
        pacer.set_rate(5)  # ... and is paced from then

    def worker() -> Any:
        return grants.keep_taking(pause=0.01)

    await run_for(5.0, throttle_then_pace, *[worker] * 50)
    after = [t for t in grants.all if t >= 1.5]
    assert after[0] == pytest.approx(3.0)
    assert max(count for _, count in most_in_window(after, 1.0)) <= 5 + 2


async def test_a_cut_takes_effect_at_once() -> None:
    pacer = paced(100)
    grants = Grants(pacer)

    async def cut() -> None:
        await anyio.sleep(3.0)
        pacer.set_rate(1)

    await run_for(8.0, cut, *[grants.keep_taking] * 10)
    after = [t for t in grants.all if t >= 3.0]
    assert len(after) <= 5 + 1
    assert pacer.current_rate == 1


# -- pauses and lanes ------------------------------------------------------------------------


async def test_a_changes_429_pauses_everybody_a_gets_pauses_listing() -> None:
    pacer = paced(200)
    grants = Grants(pacer)

    async def throttle() -> None:
        await anyio.sleep(2.0)
        pause = pacer.throttled("write", 1.5)
        assert (pause.reason, pause.lanes) == ("Retry-After 1.5 s", ("read", "write"))
        assert pause.until == pytest.approx(3.5)
        assert pacer.pause == pause
        await anyio.sleep(3.0)
        pause = pacer.throttled("read", 2.0, reason="the listing's own limit")
        assert pause.until == pytest.approx(7.0)
        assert pause.lanes == ("read",)
        assert pacer.pause == pause

    readers = [lambda: grants.keep_taking("read", pause=0.05)] * 2
    await run_for(9.0, throttle, *readers, *[grants.keep_taking] * 20)
    reads, writes = grants.times["read"], grants.times["write"]
    # nobody in 2.0-3.5, queued acquirers included (on a clock of floats, 3.5 is 3.4999…)
    assert not [t for t in reads + writes if 2.001 < t < 3.499]
    # listing only in 5.0-7.0, while changes went on
    assert not [t for t in reads if 5.001 < t < 6.999]
    assert len([t for t in writes if 5.0 < t < 7.0]) > 300
    assert pacer.pause is None  # both over


async def test_listing_goes_first_when_both_lanes_are_due() -> None:
    pacer = paced(100)
    grants = Grants(pacer)
    waits: list[float] = []

    async def lister() -> None:
        while True:
            asked = anyio.current_time()
            await grants.take("read")
            waits.append(anyio.current_time() - asked)
            await anyio.sleep(0.2)  # a page's worth of work for the workers

    await run_for(10.0, lister, *[grants.keep_taking] * 30)
    # with thirty workers queued, a page still waits no more than a slot
    assert max(waits[5:]) <= 1 / 99 + 1e-9
    # and the lanes share the rate, the changes taking the rest
    after_start = [t for t in grants.all if t >= 2.0]
    assert len(after_start) == pytest.approx(99 * 8, abs=2)
    assert len([t for t in grants.times["read"] if t >= 2.0]) == pytest.approx(8 / 0.21, abs=2)


async def test_a_cancelled_acquirer_leaves_no_trace() -> None:
    pacer = paced(10)
    grants = Grants(pacer)
    await grants.take()

    async def cancelled() -> None:
        with anyio.move_on_after(0.01):
            await pacer.acquire("write")

    await run_for(0.5, *[cancelled] * 20)
    await anyio.sleep(10.0)
    start = anyio.current_time()
    await grants.take()
    assert anyio.current_time() == start  # nobody queued, nothing reserved


async def test_unpaced_does_not_wait_but_honours_a_pause() -> None:
    pacer = paced(0)
    assert pacer.current_rate == 0
    for _ in range(100):
        coro = pacer.acquire("write")
        with pytest.raises(StopIteration):  # completes without suspending
            coro.send(None)
    pacer.throttled("write", 3.0)
    granted = await pacer.acquire("read")
    assert granted == pytest.approx(3.0)
    assert pacer.ceiling is None  # nothing is learnt when unpaced


# -- learning from the server ----------------------------------------------------------------


@pytest.mark.parametrize(("fate", "ceiling"), [("answered", 49.0), ("lost", 46.0)])
async def test_only_an_answer_shows_a_request_left_after_a_refused_one_was_let_through(
    fate: str, ceiling: float
) -> None:
    # 250 a second, the 47th refused and its 429 back in 35 ms; the three after it are done
    # in 20 ms, the others in 20 or 50: those three arrived first and, when the server
    # answered them, count toward its window. A transport error is no answer: unknown.
    pacer, calls = paced(250), itertools.count()

    async def request() -> None:
        i = next(calls)
        if i == 46:
            await anyio.sleep(0.035)
            raise RateLimited(429, "Too Many Attempts.", retry_after=2.0)
        await anyio.sleep(0.02 if i % 2 == 0 or 47 <= i <= 49 else 0.05)
        if 47 <= i <= 49 and fate == "lost":
            raise TransportError("connection reset", sent=True)

    async def item() -> None:
        await send_paced(request, pacer, RetryPolicy(), lane="write")

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(item)
    assert pacer.ceiling == ceiling


async def test_a_run_of_429s_teaches_once_and_the_pace_comes_back_under_it() -> None:
    pacer = paced(400)
    grants = Grants(pacer)
    seen: dict[str, Any] = {}

    async def server() -> None:
        # at 2 s the server refuses a request, and the ten that follow it while its 429 is
        # on the way back; they all come back 429 together
        await anyio.sleep(2.0)
        await anyio.sleep(0.03)
        refused = [t for t in grants.times["write"] if t >= 2.0][:11]
        for sent in refused:
            pacer.throttled("write", 2.0, sent=sent)
        seen["ceiling"], seen["pause"], seen["refused"] = pacer.ceiling, pacer.pause, refused[0]

    await run_for(8.0, server, *[grants.keep_taking] * 20)
    refused = seen["refused"]
    # the ceiling: the requests that left in the second before the refused one
    assert seen["ceiling"] == sum(1 for t in grants.all if refused - 1.0 <= t < refused)
    plateau = seen["ceiling"] * (1 - Ceiling().margin) - 0.5
    assert pacer.current_rate == pytest.approx(plateau)
    assert seen["pause"].until == pytest.approx(2.03 + 2.0)
    after = [t for t in grants.all if t >= seen["pause"].until]
    # back under it after the pause, ramping up from half over half a second, then steady
    assert after[0] == pytest.approx(seen["pause"].until)
    first_half_second = sum(1 for t in after if t < after[0] + 0.5)
    assert first_half_second == pytest.approx(0.75 * plateau * 0.5, rel=0.05)
    for start, count in most_in_window(after, 1.0):
        assert count <= plateau + 2, start


async def test_a_429_without_retry_after_waits_longer_each_time_in_a_row() -> None:
    pacer = paced(10)
    pauses = [pacer.throttled("write", None).until - anyio.current_time() for _ in range(1)]
    for _ in range(6):
        await anyio.sleep(pacer.pause.until - anyio.current_time() if pacer.pause else 0.0)
        pauses.append(pacer.throttled("write", None).until - anyio.current_time())
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0]
    assert pacer.pause is not None
    assert pacer.pause.reason == "Retry-After 32 s"
    await anyio.sleep(40.0)
    pacer.succeeded("write")  # an answer that was not a 429 ends the streak
    assert pacer.throttled("write", None).until - anyio.current_time() == 1.0


async def test_a_retry_after_of_0_that_keeps_meeting_429s_waits_longer_each_time() -> None:
    pacer = paced(0)  # unpaced, so that no ceiling holds it back: only the pause
    pauses = []
    for _ in range(4):
        sent = await pacer.acquire("write")
        pauses.append(pacer.throttled("write", 0.0, sent=sent).until - anyio.current_time())
    assert pauses == [0.0, 2.0, 4.0, 8.0]


async def fixed_windows(
    pacer: Pacer, seconds: float, *, announced: bool
) -> tuple[dict[int, int], list[float]]:
    """Changes sent through ``pacer`` for ``seconds`` to fixed windows of 50 requests a
    second, each counted 30 ms after it leaves and answered at once, with Limit and Remaining,
    and Reset if ``announced``: the requests each window held, and when each left."""
    used: dict[int, int] = {}
    times: list[float] = []

    async def request(tg: anyio.abc.TaskGroup) -> None:
        while True:
            sent = await pacer.acquire("write")
            times.append(sent)
            tg.start_soon(answer, sent)

    async def answer(sent: float) -> None:
        await anyio.sleep(0.03)
        now = anyio.current_time()
        window = math.floor(now)
        used[window] = used.get(window, 0) + 1
        reset = window + 1 - now if announced else None
        pacer.succeeded("write", RateLimitInfo(50, max(0, 50 - used[window]), reset), sent=sent)

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(request, tg)
    return used, times


async def test_the_headers_announce_the_ceiling_and_hold_the_pace() -> None:
    pacer = paced(100)
    used, _ = await fixed_windows(pacer, 10.0, announced=True)
    # 50 a window of a second (the window's length read from the resets announced: a little
    # short, as the first answer in a window comes a little after it began)
    assert pacer.ceiling == pytest.approx(50.0, rel=0.03)
    assert max(used.values()) <= 50  # never more than a window held: no 429 was needed
    assert all(used[second] >= 47 for second in range(1, 9)), used


@ON_TIME_AND_LATE
async def test_a_request_held_for_room_in_the_window_is_followed_half_an_interval_on() -> None:
    # fixed windows of 50 a second that announce no reset: once the window is learnt, each
    # one's end holds the lane until its reset, and the request after the held one follows
    # half an interval on, as if the schedule had been kept, not a whole one; never more than
    # pace x T + 2 all the same, at the pace in force
    used, times = await fixed_windows(paced(100), 20.0, announced=False)
    assert max(used.values()) <= 50
    interval = 1 / (50 * (1 - 0.015))  # the learnt window's pace, 1.5 % under its rate
    learnt = [t for t in times if t > 6.0]
    gaps = list(itertools.pairwise(itertools.pairwise(learnt)))
    after = [c - b for (a, b), (_, c) in gaps if b - a > 1.25 * interval]
    assert len(after) >= 8  # the window's ends held the lane, again and again
    # half an interval on, and the timers' lateness (2 ms at most), where a whole was waited
    assert interval / 2 - 1e-9 <= statistics.median(after) <= interval / 2 + 0.002
    for window in (0.001, 0.01, 0.1, 1.0):
        assert max(count for _, count in most_in_window(learnt, window)) <= window / interval + 2


async def test_a_job_paced_after_an_unpaced_spell_waits_out_the_window_it_spent() -> None:
    # ten workers, each change answered 30 ms after it leaves, into fixed windows of 50 a
    # second: unpaced, the job spends each window at once and learns it from the numbers;
    # paced from 6.5 s on, the window it has spent holds the changes until its reset (the
    # unpaced spell's answers are matched to its own requests: taken for the paced ones',
    # those would not count as in flight, and the spent window would seem to have room)
    pacer = paced(0)
    used: dict[int, int] = {}
    times: list[float] = []

    async def worker() -> None:
        while True:
            times.append(sent := await pacer.acquire("write"))
            await anyio.sleep(0.03)
            window = math.floor(anyio.current_time())
            used[window] = used.get(window, 0) + 1
            pacer.succeeded("write", RateLimitInfo(50, max(0, 50 - used[window])), sent=sent)

    async def rethrottle() -> None:
        await anyio.sleep(6.5)
        pacer.set_rate(100)

    await run_for(12.0, rethrottle, *[worker] * 10)
    assert min(used[second] for second in range(6)) > 50  # unpaced: nothing held it
    assert not [t for t in times if 6.501 <= t < 6.9]
    assert max(used[second] for second in range(7, 12)) <= 50


async def test_a_run_of_echoed_429s_never_paces_the_job_to_a_halt() -> None:
    pacer = paced(10)
    sent = [await pacer.acquire("write") for _ in range(4)]
    # the last one comes back 429 first, then the three that left before it: each is an
    # echo the ceiling takes off, which must stop at its floor, not at nothing
    pacer.throttled("write", 0.2, sent=sent[3])
    for each in sent[:3]:
        pacer.throttled("write", 0.2, sent=each)
    assert pacer.ceiling is not None
    assert pacer.ceiling > 0
    began = anyio.current_time()
    with anyio.fail_after(60):  # virtual seconds: a halted pacer would wait for ever
        await pacer.acquire("write")
    assert anyio.current_time() - began < 30


def test_a_long_rolling_window_read_a_little_short_is_not_taken_a_second_shorter() -> None:
    # A 10 s window of 100 that a job fills at 10 a second, each request counted 50 ms after
    # it is sent, its answer back 120 ms later, then from the 20th second 20 ms later. For
    # the next 10 s the bound on the window's length reads 0.1 s short: taken as 9 s, the
    # job's last second of requests would look like another client's.
    budget, grants = Budget(), GrantTimes()
    lengths = set()
    for n in range(400):
        sent = n / 10
        grants.add(sent)
        counted = sent + 0.05
        answered = counted + (0.12 if n < 200 else 0.02)
        # the requests counted in the 10 s up to this one
        info = RateLimitInfo(100, 100 - min(n + 1, 100), None)
        budget.answered(sent=sent, now=answered, counted=True)
        budget.update(info, sent=sent, now=answered, grants=grants)
        if (length := budget._rolling.length) is not None:
            lengths.add(length)
    assert lengths
    assert min(lengths) > 9.85, sorted(lengths)
