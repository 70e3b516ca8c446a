"""What any client can reach at section 6's shape (e), Tallyfy's 10/s: a model with no server.

A rolling window of 10 requests a second; each request takes 80-200 ms to arrive, is counted
then and answered at once. The client of the model knows when each of its requests was
counted, as the answers' numbers tell bulkruns, and sends each request when the one that
makes room leaves, less the quickest latency (and a margin): so it never meets a 429, and the
latencies' spread is what it loses. Spacing rules cost more:

* none: the bound for any client that never meets a 429;
* "never a burst", at most ``rate * T + 2`` requests in any T seconds: GCRA whose schedule a
  request may lag by up to one interval;
* bulkruns' own: a request may lag its schedule by half an interval; one held longer for room
  in the window starts a new schedule half an interval back, so the next may follow half an
  interval after it;
* a new schedule after each held request, so the next waits a whole interval (bulkruns' rule
  before it started the new schedule half an interval back).

Efficiency is requests counted a second over the limit (a job's listing takes 1 % of them).
``python -m benchmarks.bounds`` prints them, for margins of 0 and of bulkruns' 12 ms.
"""

from __future__ import annotations

import bisect
import random
import statistics

LIMIT = 10  # requests a window
WINDOW = 1.0  # seconds
QUICKEST, SLOWEST = 0.08, 0.2  # seconds a request takes to arrive
RATE = 10 * 0.99  # the pace the spacing rules keep: Tallyfy's 10/s less bulkruns' headroom
REQUESTS = 6000
SEEDS = (1, 2, 3)
RULES = {
    "none": "no spacing",
    "burst": "never more than rate x T + 2 in T seconds",
    "bulkruns": "bulkruns' schedule: a held request half an interval back",
    "restart": "a new schedule after each held request",
}


def efficiency(rule: str, margin: float, seed: int) -> float:
    """Requests counted a second over the limit, for one spacing rule and one seed."""
    rng = random.Random(seed)
    step = 1.0 / RATE
    counted: list[float] = []  # every request's count time, in order
    now, slot, granted = 0.0, -1e9, -1e9  # the latest send, its schedule, its time
    for _ in range(REQUESTS):
        # room for one more once the request counted LIMIT before the latest has left
        room = counted[-LIMIT] + WINDOW - QUICKEST + margin if len(counted) >= LIMIT else 0.0
        if rule == "none":
            spaced = 0.0
        elif rule == "burst":
            spaced = slot  # GCRA: the theoretical time, a whole interval of tolerance
        else:
            spaced = max(slot + step, granted + step / 2)
        now = max(now, room, spaced)
        if rule == "burst":
            slot = max(now, slot + step)
        elif now - (slot + step) <= step / 2:
            slot = slot + step
        else:
            slot = now - step / 2 if rule == "bulkruns" and room >= spaced else now
        granted = now
        bisect.insort(counted, now + rng.uniform(QUICKEST, SLOWEST))
    return REQUESTS / (counted[-1] - counted[0]) / (LIMIT / WINDOW)


def main() -> None:
    print(f"{LIMIT}/{WINDOW:g}s rolling, latency {QUICKEST:g}-{SLOWEST:g} s, seeds {SEEDS}")
    for margin in (0.0, 0.012):
        for rule, meaning in RULES.items():
            median = statistics.median(efficiency(rule, margin, seed) for seed in SEEDS)
            print(f"margin {margin * 1000:2.0f} ms  {meaning:<58} {median:.3f}")


if __name__ == "__main__":
    main()
