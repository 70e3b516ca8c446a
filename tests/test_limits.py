"""What the pacer learns, with no clock but the numbers given: the grants' history, the
ceiling 429s reveal, and the budget the X-RateLimit-* headers leave."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from bulkruns.api import RateLimitInfo
from bulkruns.pace.budget import Budget
from bulkruns.pace.ceiling import Ceiling
from bulkruns.pace.history import KEEP, Grants
from bulkruns.pace.rolling import RollingWindow

MARGIN = Ceiling().margin
LATENCY = 0.03  # seconds from a grant to its answer


def steady(
    grants: Grants, rate: float, start: float, end: float, ceiling: Ceiling | None = None
) -> None:
    """Grants at ``rate`` from ``start`` up to ``end``, each accepted (for ``ceiling``)."""
    count = round((end - start) * rate)
    for i in range(count):
        grants.add(start + i / rate)
        if ceiling is not None:
            ceiling.accepted(grants, start + i / rate, start + i / rate + LATENCY)


def learnt(rate: float, *, resume: float) -> tuple[Grants, Ceiling]:
    """A ceiling taught by a 429 after a second at ``rate``, the pause over at ``resume``."""
    grants, ceiling = Grants(), Ceiling()
    steady(grants, rate, 0.0, 1.0, ceiling)
    ceiling.throttled(grants, sent=1.0, floor=1.0)
    ceiling.resume(resume)
    return grants, ceiling


# -- the history -----------------------------------------------------------------------------


def test_grants_count_by_window_and_forget_the_old() -> None:
    grants = Grants()
    assert grants.count(-math.inf) == 0
    assert grants.latest(1) == -math.inf
    steady(grants, 100, 0.0, 200.0)
    assert grants.began == 0.0
    assert grants.count(190.0, 191.0) == 100  # at or after the start, before the end
    assert grants.count(199.0) == 100
    assert grants.latest(1) == pytest.approx(199.99)
    assert grants.latest(100) == pytest.approx(199.0)
    # a minute and a little more is kept, and no more (the oldest are dropped in batches)
    assert grants.count(-math.inf) == pytest.approx(KEEP * 100, abs=2)
    assert grants.latest(10**6) == -math.inf


# -- the ceiling -----------------------------------------------------------------------------


def test_no_ceiling_until_a_429_and_none_from_too_few_requests() -> None:
    ceiling = Ceiling()
    assert ceiling.pace(0.0) == math.inf
    assert ceiling.due(Grants()) == -math.inf
    grants = Grants()
    grants.add(10.0)
    grants.add(10.5)
    ceiling.throttled(grants, sent=10.5, floor=1.0)  # the budget was spent by others
    assert ceiling.value is None


def test_the_first_429_sets_the_rate_of_the_second_before_then_a_plateau() -> None:
    grants, ceiling = Grants(), Ceiling()
    steady(grants, 100, 0.0, 3.0)
    grants.add(3.0)  # the refused request
    ceiling.throttled(grants, sent=3.0, floor=1.0)
    assert (ceiling.value, ceiling.window) == (100, 1.0)
    ceiling.resume(5.0)  # the Retry-After's end
    plateau = 100 * (1 - MARGIN) - 0.5
    # a ramp from half of the plateau over half a second...
    assert ceiling.pace(5.0) == pytest.approx(plateau / 2)
    assert ceiling.pace(5.25) == pytest.approx(0.75 * plateau)
    # ...then the plateau, for a minute...
    assert ceiling.pace(5.5) == ceiling.pace(64.9) == pytest.approx(plateau)
    # ...then a slow climb, a hundredth of the ceiling a second
    assert ceiling.pace(75.0) == pytest.approx(plateau + 10 * 1.0)


def test_429s_for_requests_that_left_before_the_refused_one_come_off_the_ceiling() -> None:
    # they were counted in its second, but landed after it (slower), and were refused too
    _, ceiling = learnt(100, resume=3.0)
    assert ceiling.value == 100
    ceiling.echoed(0.98)
    ceiling.echoed(0.99)
    ceiling.echoed(1.01)  # left after it: never counted
    ceiling.echoed(-0.5)  # outside the second measured
    assert ceiling.value == 98


def test_requests_that_left_after_the_refused_one_but_were_let_through_count_toward_it() -> None:
    # 4 ms apart, the 47th refused; the answers take 20 or 50 ms, so jitter can put those
    # that left up to 30 ms after it ahead of it
    sends = [i / 250 for i in range(60)]
    refused = sends[46]

    def taught(accepted: list[float], *, after: Sequence[float] = ()) -> float:
        grants, ceiling = Grants(), Ceiling()
        for sent in sends:
            grants.add(sent)
        for i, sent in enumerate(accepted):
            ceiling.accepted(grants, sent, sent + 0.02 + 0.03 * (i % 2))
        ceiling.throttled(grants, sent=refused, floor=1.0)
        for sent in after:
            ceiling.accepted(grants, sent, sent + 0.05)
        assert ceiling.value is not None
        return ceiling.value

    # three that left after it arrived first and were let through: the server's second held
    # them, so the ceiling counts them
    assert taught(sends[:46] + sends[47:50]) == 49
    # answers that come after its 429 were counted after it: they are not added
    assert taught(sends[:46], after=sends[47:50]) == 46
    # it stalled, slower than every recent answer, and eleven that left after it were let
    # through before its 429 came: the seven that left within the spread (30 ms) of it count;
    # the four that left later would have arrived after it on any usual trip, and do not
    assert taught(sends[:46] + sends[47:58]) == 46 + 7


def test_a_429_met_while_climbing_confirms_the_ceiling_and_slows_the_next_climb() -> None:
    grants, ceiling = learnt(100, resume=2.0)
    # climbing from 62 s; at 72 s, 10 % over the plateau, the limit is met where it was
    steady(grants, 101, 71.0, 72.0)
    ceiling.throttled(grants, sent=72.0, floor=1.0)
    assert (ceiling.value, ceiling.strikes) == (101, 1)
    ceiling.resume(73.0)
    plateau = 101 * (1 - MARGIN) - 0.5
    assert ceiling.pace(73.0 + 119.0) == pytest.approx(plateau)  # twice the plateau now
    assert ceiling.pace(73.0 + 130.0) == pytest.approx(
        plateau + 101 * 0.01 * 10 / 2
    )  # half as steep
    # found higher up, it rises, and the memory of where it was is dropped
    steady(grants, 150, 212.0, 213.0)
    ceiling.throttled(grants, sent=213.0, floor=1.0)
    assert (ceiling.value, ceiling.strikes) == (150, 0)


def test_a_429_on_the_plateau_cuts_the_ceiling_a_little_then_more() -> None:
    grants, ceiling = learnt(100, resume=3.0)
    # on the plateau for six seconds, where it was safe: latency jitter, or someone else
    # spending the budget too
    steady(grants, 96, 3.0, 9.0, ceiling)
    ceiling.throttled(grants, sent=9.0, floor=1.0)
    assert ceiling.value == pytest.approx(96.0)
    # again soon after: twice the cut, then twice that
    ceiling.resume(11.0)
    steady(grants, 92, 11.0, 20.0, ceiling)
    ceiling.throttled(grants, sent=20.0, floor=1.0)
    assert ceiling.value == pytest.approx(96.0 * 0.92)
    # a 429 on the ramp, under the plateau, only says that a window has not drained
    ceiling.resume(22.0)
    steady(grants, 30, 22.0, 22.4, ceiling)
    ceiling.throttled(grants, sent=22.4, floor=1.0)
    assert ceiling.value == pytest.approx(96.0 * 0.92)
    # after a plateau held until the climb, a small cut again
    ceiling.resume(23.0)
    steady(grants, 90, 23.0, 90.0, ceiling)
    ceiling.throttled(grants, sent=90.0, floor=1.0)  # met while climbing
    assert ceiling.value == 90
    ceiling.resume(91.0)
    steady(grants, 86, 91.0, 95.0, ceiling)
    ceiling.throttled(grants, sent=95.0, floor=1.0)
    assert ceiling.value == pytest.approx(90 * 0.96)
    # and never below the floor
    for _ in range(10):
        ceiling.resume(91.0)
        ceiling.throttled(grants, sent=95.0, floor=60.0)
    assert ceiling.value == 60.0


def test_a_longer_window_explains_a_429_after_a_pause_and_must_drain() -> None:
    # a limit of 2,000 requests in 10 s: told 400 a second, the first 429 comes at 5 s and
    # reads 400 a second; after the pause the window is still nearly full, and the 429 that
    # follows at once is explained by ten seconds, not by one (which accepted far more)
    grants, ceiling = Grants(), Ceiling()
    steady(grants, 400, 0.0, 5.0)
    ceiling.throttled(grants, sent=5.0, floor=1.0)
    assert (ceiling.value, ceiling.window) == (400, 1.0)
    ceiling.accepted(grants, 4.99, 4.99 + LATENCY)
    ceiling.resume(10.0)
    steady(grants, 200, 10.0, 10.2)
    ceiling.throttled(grants, sent=10.2, floor=1.0)
    assert ceiling.window == 10.0
    assert ceiling.value == pytest.approx((2000 - 80 + 40) / 10)
    # and the next request waits until that window has room at the plateau
    room = math.floor(((2000 - 80 + 40) / 10 * (1 - MARGIN) - 0.05) * 10) - 1
    assert ceiling.due(grants) == pytest.approx(grants.latest(room) + 10.0)
    assert ceiling.due(grants) > 10.2


# -- the budget ------------------------------------------------------------------------------


def test_no_numbers_no_limit() -> None:
    budget = Budget()
    assert budget.pace(0.0, Grants()) == math.inf
    budget.update(None, sent=0.0, now=0.1, grants=Grants())
    budget.update(RateLimitInfo(100, None), sent=0.0, now=0.1, grants=Grants())
    assert (budget.pace(0.2, Grants()), budget.allowed) == (math.inf, None)


def answer(budget: Budget, grants: Grants, info: RateLimitInfo, *, sent: float, now: float) -> None:
    """An answer with numbers, noted then read, as the pacer does."""
    budget.answered(sent=sent, now=now, counted=True)
    budget.update(info, sent=sent, now=now, grants=grants)


def test_what_is_left_less_what_is_in_flight_holds_the_lane() -> None:
    budget, grants = Budget(), Grants()
    for sent in (0.0, 0.1, 0.2, 0.3):
        grants.add(sent)
    answer(budget, grants, RateLimitInfo(10, 3), sent=0.1, now=0.35)
    # three left when the second arrived; two more left since: one left, the reserve
    assert budget.pace(0.35, grants) == 0.0
    answer(budget, grants, RateLimitInfo(10, 2), sent=0.2, now=0.4)
    answer(budget, grants, RateLimitInfo(10, 1), sent=0.3, now=0.45)
    assert budget.pace(0.5, grants) == 0.0
    # held with nothing sent since the carrier still in flight, it sends one request after a
    # moment, to see (the first request's answer is late, but it left before the carrier,
    # whose count most likely holds it)
    assert budget.pace(0.45 + 0.3, grants) == math.inf
    # an older request's answer, coming late, changes nothing
    answer(budget, grants, RateLimitInfo(10, 9), sent=0.0, now=0.8)
    assert budget.pace(0.5, grants) == 0.0


def test_a_lane_held_by_a_request_still_unanswered_probes_once_its_numbers_are_stale() -> None:
    budget, grants = Budget(), Grants()
    grants.add(0.0)
    budget.update(RateLimitInfo(10, 1), sent=0.0, now=0.05, grants=grants)
    grants.add(0.3)  # its answer does not come: lost, or stalled
    assert budget.pace(1.0, grants) == 0.0  # in flight, perhaps: held
    assert budget.pace(2.1, grants) == 4.0  # stale: one request every quarter second


def test_a_held_lane_probes_though_a_request_sent_since_came_back_without_numbers() -> None:
    # a GET's numbers are not read: once it is answered, nothing is in flight, and a lane held
    # by a window with only the reserve left sends one request after a moment, to see, rather
    # than wait until the numbers it has are stale
    budget, grants = Budget(), Grants()
    grants.add(0.0)
    answer(budget, grants, RateLimitInfo(10, 1), sent=0.0, now=0.05)
    grants.add(0.1)  # a GET
    assert budget.pace(0.12, grants) == 0.0
    budget.answered(sent=0.1, now=0.15, counted=True)
    assert budget.pace(0.2, grants) == 0.0
    assert budget.pace(0.05 + 0.26, grants) == math.inf
    # the probe is a GET too, and refused: the next waits a moment after its answer
    grants.add(0.31)
    budget.answered(sent=0.31, now=0.36, counted=False)
    assert budget.pace(0.4, grants) == 0.0
    assert budget.pace(0.36 + 0.26, grants) == math.inf


def test_another_clients_use_until_a_request_is_counted_comes_off_what_is_left() -> None:
    # before the window's shape is known: the job sends one request every 20 ms, and Remaining
    # falls by two each time, as another client takes 50 a second too
    budget, grants = Budget(), Grants()
    for i in range(100):
        sent = i * 0.02
        grants.add(sent)
        answer(budget, grants, RateLimitInfo(500, 204 - 2 * i), sent=sent, now=sent + 0.03)
    grants.add(2.0)
    answer(budget, grants, RateLimitInfo(500, 4), sent=2.0, now=2.03)
    # four left: three above the reserve, spent within a quarter second, less what the other
    # client takes before a request sent now is counted (a latency on), at the rate the
    # carriers showed: one a carrier, averaged over a second, not yet the whole 50 a second
    others = sum(math.exp(-0.02 * k) for k in range(100))
    assert budget.pace(2.03, grants) == pytest.approx((3 - others * 0.03) / 0.25)
    # 50 ms on, the other client's share has taken the rest: held
    assert budget.pace(2.08, grants) == 0.0


def test_a_429s_reset_says_when_it_ends_not_how_long_a_window_is() -> None:
    # a one-second rolling window of 10 whose 429 earns a penalty: the 429's Reset is the
    # penalty's end, 2.9 s away, and no window's length
    budget, grants = Budget(), Grants()
    for sent in (0.0, 0.1, 0.2):
        grants.add(sent)
    budget.update(RateLimitInfo(10, 0, 2.9), sent=0.2, now=0.25, grants=grants, refused=True)
    assert (budget.window, budget.allowed) == (None, None)
    # past it, with nothing in flight, one request goes to see what is left ...
    assert budget.pace(3.2, grants) == math.inf
    grants.add(3.2)
    budget.update(RateLimitInfo(10, 9), sent=3.2, now=3.3, grants=grants)
    # ... and the lane is paced by that, not held to 10 requests per 2.9 s
    assert budget.pace(3.3, grants) > 10.0
    # a reset announced on answers that let the requests through bounds a fixed window, once
    # a second answer announces the same one
    budget.update(RateLimitInfo(10, 8, 0.8), sent=3.3, now=3.35, grants=grants)
    assert budget.window is None
    grants.add(3.4)
    budget.update(RateLimitInfo(10, 7, 0.7), sent=3.4, now=3.45, grants=grants)
    assert budget.window == 0.8


def test_a_rolling_window_is_followed_at_its_refill_rate() -> None:
    # sending 50 a second into a full rolling window that gives back 50 a second: Remaining
    # stays at 5, and the budget lets the lane go on at that rate
    budget, grants = Budget(), Grants()
    for i in range(300):
        sent = i / 50
        grants.add(sent)
        budget.update(RateLimitInfo(600, 5), sent=sent, now=sent + 0.03, grants=grants)
    now = 299 / 50 + 0.031
    # the refill rate, and what is left now (what came back since the latest answer, too)
    # brought down to the reserve within a quarter of a second
    assert budget.pace(now, grants) == pytest.approx(50 + (5 + 50 * 0.031 - 1) / 0.25, rel=0.02)
    assert budget.allowed is None  # a rolling window tells no length


def rolling_window(budget: Budget, grants: Grants, *, limit: int, sends: list[float]) -> None:
    """Requests sent at ``sends`` into a rolling one-second window of ``limit``, each counted
    50 ms after it leaves and answered then, with Limit and Remaining."""
    counted: list[float] = []
    for sent in sends:
        grants.add(sent)
        now = sent + 0.05
        counted = [*(c for c in counted if c > now - 1.0), now]
        budget.answered(sent=sent, now=now, counted=True)
        budget.update(RateLimitInfo(limit, limit - len(counted)), sent=sent, now=now, grants=grants)


def test_a_rolling_window_is_measured_by_the_jobs_own_requests_leaving_it() -> None:
    # one request every 120 ms into a rolling window of 10 a second: each answer's window
    # holds the latest 9, and the one before them left it 1.08 s before: no longer than that
    budget, grants = Budget(), Grants()
    rolling_window(budget, grants, limit=10, sends=[k * 0.12 for k in range(24)])
    carrier = 23 * 0.12 + 0.05
    assert budget.pace(carrier, grants) == pytest.approx(10 / 1.08)  # the limit over it
    assert budget.allowed is None  # a rolling window announces no rate
    # 9 counted leave room for one more now ...
    assert budget.due(grants, carrier) == -math.inf
    # ... and with one in flight the next waits until the oldest counted has left by the
    # time a request sent then, at the quickest latency, is counted
    grants.add(2.85)
    oldest = 15 * 0.12 + 0.05
    assert budget.due(grants, 2.85) == pytest.approx(oldest + 1.08 - 0.05)
    # with nine more in flight, room comes only with their answers
    for _ in range(9):
        grants.add(2.86)
    assert budget.due(grants, 2.86) == math.inf
    # requests lost on the way are not waited for once their answers are overdue
    assert budget.due(grants, 5.0) == -math.inf


def test_a_window_read_long_holds_no_more_of_the_jobs_requests_than_its_carrier_said() -> None:
    # the length is a bound let loose slowly, and can read long: 1.11 s of a one-second window
    # takes in a request that has left it, the one counted at 9.168; the carrier's window held
    # 9, the latest 9, so the first to leave is the one counted at 9.408 (taken for the first,
    # the one at 9.168, it would foresee room a request too soon)
    rolling = RollingWindow()
    counted = [9.168, 9.408, 9.418, 9.554, 9.652, 9.801, 9.809, 10.014, 10.033, 10.257]
    for when in counted:
        rolling.counted(when, 10)
    rolling.length = 1.11
    assert rolling.leaves(1, 10.257, 9) == pytest.approx(9.408 + 1.11)
    assert rolling.leaves(2, 10.257, 9) == pytest.approx(9.418 + 1.11)
    # a window that held more than the job's own in it leaves them as the length places them
    assert rolling.leaves(1, 10.257, 10) == pytest.approx(9.168 + 1.11)


def test_answers_before_the_first_numbers_are_no_requests_in_flight() -> None:
    # a GET answered before any change brought numbers is no request in flight: one request
    # every 120 ms reads the one-second window as 1.08 s long, and with one change in flight the
    # next waits only for the oldest counted to leave
    budget, grants = Budget(), Grants()
    grants.add(-0.1)
    budget.answered(sent=-0.1, now=-0.05, counted=True)
    rolling_window(budget, grants, limit=10, sends=[k * 0.12 for k in range(12)])
    grants.add(1.45)
    oldest = 3 * 0.12 + 0.05
    assert budget.due(grants, 1.45) == pytest.approx(oldest + 1.08 - 0.05)


def carrier_read_with_an_earlier_request(budget: Budget, grants: Grants) -> None:
    """A measured rolling window of 10 a second; requests sent at 2.84 and 2.86, and the
    later-sent's answer, the carrier, read at 2.95 saying one is left (the earlier-sent's
    answer, read at the same instant, is the test's)."""
    rolling_window(budget, grants, limit=10, sends=[k * 0.12 for k in range(24)])
    grants.add(2.84)
    grants.add(2.86)
    answer(budget, grants, RateLimitInfo(10, 1), sent=2.86, now=2.95)


def test_an_answer_read_with_the_carriers_but_counted_after_it_fills_the_window() -> None:
    # two answers read at one instant: the later-sent, the carrier, says one is left; the
    # earlier-sent, counted after it, that none is. The window is full until the oldest of the
    # job's requests in it leaves
    budget, grants = Budget(), Grants()
    carrier_read_with_an_earlier_request(budget, grants)
    answer(budget, grants, RateLimitInfo(10, 0), sent=2.84, now=2.95)
    oldest = 16 * 0.12 + 0.05  # the window held the job's latest nine when the carrier came
    spread = 0.11 - 0.05  # of the answers' latencies: a tenth of it is kept
    length = budget._rolling.length
    assert length == pytest.approx(1.08, abs=0.01)
    assert budget.due(grants, 2.95) == pytest.approx(oldest + length - 0.05 + 0.1 * spread)


def test_a_429_read_with_the_carriers_answer_is_no_request_counted_after_it() -> None:
    # as above, but the earlier-sent request was refused: the server did not count it, and
    # the window has the room the carrier said
    budget, grants = Budget(), Grants()
    carrier_read_with_an_earlier_request(budget, grants)
    budget.answered(sent=2.84, now=2.95, counted=False)
    budget.update(RateLimitInfo(10, 0), sent=2.84, now=2.95, grants=grants, refused=True)
    assert budget.due(grants, 2.95) == -math.inf


def test_before_a_windows_shape_is_known_an_answer_counted_after_the_carrier_is_spent() -> None:
    budget, grants = Budget(), Grants()
    grants.add(0.0)
    grants.add(0.1)
    answer(budget, grants, RateLimitInfo(10, 3), sent=0.1, now=0.2)
    answer(budget, grants, RateLimitInfo(10, 2), sent=0.0, now=0.2)
    # three left when the carrier was counted, one counted since: one above the reserve,
    # spent within a quarter second
    assert budget.pace(0.2, grants) == pytest.approx((3 - 1 - 1) / 0.25)


def test_a_window_read_long_by_another_clients_requests_holds_the_jobs_of_its_seconds() -> None:
    # one of the job's requests every 100 ms; the carrier's window held 15, so the bound
    # reads 1.5 s, but a window is a whole number of seconds: the job's requests in it are
    # those of the latest second, and the first of them to leave is the one counted at 2.1
    rolling = RollingWindow()
    for k in range(31):
        rolling.counted(k / 10, 20)
    rolling.measure(15, 3.0)
    assert rolling.length == pytest.approx(1.5)
    assert rolling.leaves(1, 3.0, 15) == pytest.approx(2.1 + 1.5)


def test_a_fixed_windows_reset_tells_no_rolling_length() -> None:
    # the requests counted before a reset all left the window at once, not a length before
    # the answers that showed it: the window is paced by its resets, never as a rolling one
    budget, grants = Budget(), Grants()
    fixed_window(budget, grants, limit=100, rate=90, seconds=2.5)
    assert budget.window is None  # two resets so far: not yet a steady length
    # what is left of this window, spent within a quarter second (a rolling length read
    # across the reset would be a few milliseconds, and the pace thousands a second)
    assert 100.0 < budget.pace(2.5, grants) < 1000.0
    assert budget.due(grants, 2.5) == -math.inf


def test_a_rolling_window_another_client_filled_is_probed_once_nothing_since_is_in_flight() -> None:
    budget, grants = Budget(), Grants()
    rolling_window(budget, grants, limit=10, sends=[k * 0.12 for k in range(24)])
    # after a quiet spell, another client has filled the window: the job's next request is
    # refused, none of its own is left in the window to make room by leaving, and nothing
    # foretells when the other's will; a slow request that left before the refused one is
    # still in flight, but its answer will bring older numbers: it is not waited for
    grants.add(4.45)
    grants.add(4.5)
    budget.answered(sent=4.5, now=4.55, counted=False)
    budget.update(RateLimitInfo(10, 0), sent=4.5, now=4.55, grants=grants, refused=True)
    assert budget.due(grants, 4.55) == pytest.approx(4.55 + 0.25)  # one request, to see
    grants.add(4.8)
    assert budget.due(grants, 4.8) == math.inf  # and its answer is waited for
    # a GET's, whose numbers are not read: refused, it is the latest probe, not yet the carrier
    budget.answered(sent=4.8, now=4.85, counted=False)
    assert budget.due(grants, 4.85) == pytest.approx(4.85 + 0.25)


def test_a_lightly_used_fixed_windows_reset_tells_no_rolling_length() -> None:
    # the job begins late in a window another client has used a little: the reset takes
    # back less than half of it, and the request before the first counted after it is 10 ms
    # older, which is no rolling window's length
    budget, grants = Budget(), Grants()
    for i in range(50):
        sent = 0.7 + i / 100
        grants.add(sent)
        left = 100 - (10 + i + 1 if sent + 0.03 < 1.0 else i - 26)
        budget.answered(sent=sent, now=sent + 0.03, counted=True)
        budget.update(RateLimitInfo(100, left), sent=sent, now=sent + 0.03, grants=grants)
    assert 100.0 < budget.pace(1.2, grants) < 1000.0


def fixed_window(
    budget: Budget,
    grants: Grants,
    *,
    limit: int,
    rate: float,
    seconds: float,
    reset: float | None = None,
) -> None:
    """Requests at ``rate`` into windows of ``limit`` a second, counted 30 ms after they
    leave, answered 5 ms later, with Limit and Remaining (and ``reset`` as the Reset)."""
    used: dict[int, int] = {}
    for i in range(round(rate * seconds)):
        sent = i / rate
        window = math.floor(sent + 0.03)
        used[window] = used.get(window, 0) + 1
        grants.add(sent)
        left = max(0, limit - used[window])
        budget.answered(sent=sent, now=sent + 0.035, counted=True)
        info = RateLimitInfo(limit, left, reset)
        budget.update(info, sent=sent, now=sent + 0.035, grants=grants)


def test_a_fixed_window_is_learnt_from_its_resets_and_then_paced_evenly() -> None:
    budget, grants = Budget(), Grants()
    fixed_window(budget, grants, limit=100, rate=90, seconds=2.5)
    assert budget.window is None  # two resets so far: not yet a steady length
    fixed_window(budget, grants, limit=100, rate=90, seconds=6.0)
    assert budget.window == pytest.approx(1.0, abs=0.01)
    assert budget.allowed == pytest.approx(100, rel=0.01)
    assert budget.pace(6.0, grants) == pytest.approx(98.5, rel=0.01)


def test_a_spent_fixed_window_holds_the_lane_until_it_resets() -> None:
    # each reset was first seen by the answer of the request sent 22 ms before it (88/90 s,
    # ...), counted 8 ms after it; the window of the seventh second has had 88 requests
    budget, grants = Budget(), Grants()
    fixed_window(budget, grants, limit=100, rate=90, seconds=6.95)
    assert budget.due(grants, 7.0) == -math.inf  # 90 a second leave room in every window
    for sent in (6.945, 6.95, 6.955, 6.96):
        grants.add(sent)
    budget.answered(sent=6.95, now=6.985, counted=True)
    budget.update(RateLimitInfo(100, 5), sent=6.95, now=6.985, grants=grants)
    assert budget.due(grants, 7.0) == -math.inf  # five left, three in flight: room for one more
    # the request before it answers 20 ms slower, overtaken: counted after the carrier, it is
    # no longer in flight but spent all the same, and leaves only the reserve
    budget.answered(sent=6.945, now=7.0, counted=True)
    budget.update(RateLimitInfo(100, 4), sent=6.945, now=7.0, grants=grants)
    assert budget.due(grants, 7.0) == -math.inf
    grants.add(7.0)
    # the rest wait until a request sent at the quickest latency (a tenth of the latencies'
    # spread quicker than any seen) is counted after the next reset, which is no later than a
    # whole window after the soonest seen, at 6 + 88/90 + 0.035
    assert budget.due(grants, 7.0) == pytest.approx(6 + 88 / 90 + 0.1 * 0.02)


def test_a_stalled_answer_is_no_jitter_a_windows_edge_can_be_kept_from() -> None:
    budget, grants = Budget(), Grants()
    fixed_window(budget, grants, limit=100, rate=90, seconds=6.95)
    grants.add(6.95)
    budget.update(RateLimitInfo(100, 1), sent=6.95, now=6.985, grants=grants)
    budget.update(RateLimitInfo(100, 2), sent=6.9, now=11.9, grants=grants)  # 5 s late
    # a request may be a tenth of the latencies' spread quicker than any seen, and that
    # spread is taken as no more than a tenth of the window, not 5 s
    assert budget.due(grants, 7.0) == pytest.approx(6 + 88 / 90 + 0.1 * 0.1)


def jittery_window(
    budget: Budget,
    grants: Grants,
    *,
    rate: float,
    seconds: float,
    others: float = 0.0,
    seed: int = 1,
) -> None:
    """Requests at ``rate`` into windows of 100 a second, each counted 20-50 ms after it leaves
    and answered a millisecond later, the answers read in the order they come; another client
    spends ``others`` a second of every window, evenly from its start."""
    rng, used, answers = random.Random(seed), {}, []
    for i in range(round(rate * seconds)):
        sent = i / rate
        for arrived, carried, left in sorted(a for a in answers if a[0] <= sent):
            budget.answered(sent=carried, now=arrived, counted=True)
            budget.update(RateLimitInfo(100, left), sent=carried, now=arrived, grants=grants)
        answers = [a for a in answers if a[0] > sent]
        grants.add(sent)
        counted = sent + rng.uniform(0.02, 0.05)
        window = math.floor(counted)
        used[window] = used.get(window, 0) + 1
        left = 100 - used[window] - math.floor((counted - window) * others)
        answers.append((counted + 0.001, sent, left))


def test_a_fixed_window_seen_late_by_varying_amounts_is_placed_by_its_soonest_reset() -> None:
    # each reset is seen by the first request counted after it, up to 40 ms late: over a few
    # windows that reads the length a percent or more short, and a whole second is meant
    budget, grants = Budget(), Grants()
    jittery_window(budget, grants, rate=99, seconds=8.97)
    assert budget.window == 1.0
    grants.add(8.97)
    budget.answered(sent=8.97, now=9.0, counted=True)
    budget.update(RateLimitInfo(100, 0), sent=8.97, now=9.0, grants=grants)
    # a request sent when the lanes may go again, counted after 20 ms (the quickest), is
    # counted after the reset at 9, and not much later: the soonest reset seen is placed
    assert 9.0 <= budget.due(grants, 9.0) + 0.02 <= 9.02


def test_a_fixed_window_spent_early_and_seen_back_late_is_learnt_all_the_same() -> None:
    # each window of 100 is spent in half a second, and the held lane sees it back by a
    # request sent up to 0.3 s after its reset: no two resets are seen a steady length apart,
    # but between the last answer before each and the first after, one length places them all
    budget, grants, rng = Budget(), Grants(), random.Random(4)
    for window in range(5):
        start = window + rng.uniform(0.0, 0.3)
        for i in range(100):
            sent = start + i / 200
            grants.add(sent)
            budget.answered(sent=sent, now=sent + 0.035, counted=True)
            budget.update(RateLimitInfo(100, 99 - i), sent=sent, now=sent + 0.035, grants=grants)
        assert budget.window == (1.0 if window >= 3 else None)  # three resets seen


def test_another_clients_steady_share_of_a_fixed_window_is_left_to_it() -> None:
    budget, grants = Budget(), Grants()
    jittery_window(budget, grants, rate=60, seconds=8.0, others=30.0)
    assert budget.window == 1.0
    # what it leaves, 1.5 % under, as the whole of a window it does not share
    assert budget.pace(8.0, grants) == pytest.approx(70 * 0.985, rel=0.02)


def test_a_learnt_window_another_client_seemed_to_spend_whole_is_still_probed() -> None:
    budget, grants = Budget(), Grants()
    jittery_window(budget, grants, rate=99, seconds=8.96)
    assert budget.window == 1.0
    # in each of two windows, another client takes 40 between each two of the job's answers
    # just after the reset: at the rate the carriers saw it take, it leaves the job nothing
    for start in (9.02, 10.02):
        for i, left in enumerate((99, 59, 19)):
            sent = start + i / 100
            grants.add(sent)
            budget.answered(sent=sent, now=sent + 0.03, counted=True)
            budget.update(RateLimitInfo(100, left), sent=sent, now=sent + 0.03, grants=grants)
    assert budget.window == 1.0  # both resets came in step
    # nothing sent would bring no answer to show that the other client stopped: the lane
    # sends one request every quarter second all the same
    assert budget.pace(10.1, grants) == pytest.approx(4.0)


def test_an_answer_just_after_a_reset_that_shows_no_fresh_window_was_counted_before_it() -> None:
    due = []
    for sent in (8.96, 8.995):  # answered 30 ms later, before and after the next reset is due
        budget, grants = Budget(), Grants()
        jittery_window(budget, grants, rate=99, seconds=8.96)
        grants.add(sent)
        budget.update(RateLimitInfo(100, 0), sent=sent, now=sent + 0.03, grants=grants)
        due.append(budget.due(grants, sent + 0.03))
    # the later answer showed no fresh window: counted before the reset all the same, it
    # has the lanes wait for that reset only, not the one after
    assert due[1] == pytest.approx(due[0])
    assert due[1] < 8.995 + 0.03


def test_an_announced_reset_spreads_what_is_left_until_it() -> None:
    budget, grants = Budget(), Grants()
    for sent in (0.0, 0.1, 0.2):
        grants.add(sent)
    budget.update(RateLimitInfo(100, 41, 0.5), sent=0.0, now=0.04, grants=grants)
    budget.update(RateLimitInfo(100, 40, 0.4), sent=0.1, now=0.14, grants=grants)
    # 40 left, one in flight, one kept: 38 over the 0.4 s to the reset the two announced
    assert budget.pace(0.14, grants) == pytest.approx(38 / 0.4)
    assert budget.window == 0.5
    assert budget.allowed == 200
    # once it has passed, a fresh window, spread evenly at the announced rate
    assert budget.pace(0.6, grants) == pytest.approx(200 * 0.985)


def test_a_reset_due_now_tells_no_windows_length() -> None:
    # every answer gives its reset as a Unix time the client's clock has passed: 0 s to go.
    # A window of no length would pace nothing; its resets still tell its length
    budget, grants = Budget(), Grants()
    fixed_window(budget, grants, limit=100, rate=90, seconds=2.5, reset=0.0)
    assert budget.window is None  # two resets so far
    fixed_window(budget, grants, limit=100, rate=90, seconds=6.0, reset=0.0)
    assert budget.window == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("length", "odd"), [(60.0, 3600.0), (1.0, 2.2)])
def test_one_answers_odd_reset_does_not_lengthen_the_window(length: float, odd: float) -> None:
    # fixed windows of 100 whose answers announce their reset, but one announces another
    # limit's: believed, it would slow the job for good
    budget, grants = Budget(), Grants()
    for i in range(30):
        sent = i * length / 100
        grants.add(sent)
        reset = odd if i == 20 else length - sent % length
        info = RateLimitInfo(100, 99 - i, reset)
        budget.update(info, sent=sent, now=sent + 0.003, grants=grants)
    assert budget.window == pytest.approx(length)
    assert budget.allowed == pytest.approx(100 / length)


def test_a_drop_is_a_resets_reordering_only_if_sent_before_the_carriers_answer() -> None:
    # one request every 2 s into a minute's window of 100, the latest answered slowly. One
    # sent before that answer came may have been counted before the carrier, in the window
    # before a reset: its drop is not read. One sent after it was counted after the carrier,
    # so a drop that large is another client's use: it takes 70 of the window
    budget, grants = Budget(), Grants()
    for i in range(6):
        sent = i * 2.0
        grants.add(sent)
        now = sent + (0.3 if i == 5 else 0.05)
        budget.update(RateLimitInfo(100, 99 - i), sent=sent, now=now, grants=grants)
    grants.add(10.2)
    budget.update(RateLimitInfo(100, 25), sent=10.2, now=10.25, grants=grants)
    assert budget.pace(10.25, grants) > 300  # 93 left, less the one sent since
    grants.add(10.4)
    budget.update(RateLimitInfo(100, 24), sent=10.4, now=10.45, grants=grants)
    # 24 left, one kept: no more than 23 over the quarter second it is neared in
    assert budget.pace(10.45, grants) <= 23 / 0.25


def test_a_pause_refills_the_window_without_teaching_a_reset_or_a_refill_rate() -> None:
    budget, grants = Budget(), Grants()
    for i, (sent, left) in enumerate([(0.0, 2), (0.01, 1), (0.02, 0), (3.0, 99), (3.01, 98)]):
        grants.add(sent)
        if i == 3:
            budget.pause(2.5)  # a 429 paused the lane until 2.5
        budget.update(RateLimitInfo(100, left), sent=sent, now=sent + 0.03, grants=grants)
    assert budget.window is None
    assert budget.pace(3.05, grants) == pytest.approx((98 - 1) / 0.25)  # no refill rate


def test_a_late_count_is_ignored_and_a_broken_rhythm_is_learnt_again() -> None:
    # fixed windows of 100 that reset at 1, 2, 3, 4, then at 5.3 and 6.9; a request every
    # 10 ms, counted 10 or 40 ms after it leaves and answered at once or 30 ms later, so that
    # some answers come back after a newer one showed the reset
    resets = [0.0, 1.0, 2.0, 3.0, 4.0, 5.3, 6.9, 100.0]
    budget, grants, used = Budget(), Grants(), [0] * len(resets)
    answers, rng = [], random.Random(8)
    for i in range(750):
        sent = i / 100
        counted = sent + rng.choice((0.01, 0.04))
        window = next(k for k, end in enumerate(resets) if counted < end) - 1
        used[window] += 1
        grants.add(sent)
        answers.append((counted + rng.choice((0.0, 0.03)), sent, 100 - used[window]))
        if sent == 4.5:
            assert budget.window == pytest.approx(1.0, abs=0.02)
            assert budget.pace(sent, grants) == pytest.approx(98.5, rel=0.02)
        for arrived, carried, left in sorted(a for a in answers if a[0] <= sent):
            budget.update(RateLimitInfo(100, left), sent=carried, now=arrived, grants=grants)
        answers = [a for a in answers if a[0] > sent]
    # out of step from 5.3 on: the length is learnt afresh, and not from two resets alone
    assert budget.window is None
