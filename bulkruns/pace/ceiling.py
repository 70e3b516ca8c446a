"""What 429s taught about one limit: the rate they came at, and the pace to keep under it.

Tallyfy does not say its limit (its figures disagree, a user's budget is shared with their
other integrations, and an edge proxy has limits of its own), so a 429 is the evidence: it
came when the server's window held one request too many. The **ceiling** is the rate the
requests left at over that window, up to the refused one; those that left after it and were
answered before its 429 came back count too (the network's jitter let them arrive first),
within the latencies' spread after it, and those that left before it but were refused do not.
After the pause the pace comes back below it, ramping up from half, and stays there (a
**plateau**). Only after the plateau does it climb above, slowly, to find out whether more
has become available: a 429 met while climbing confirms the ceiling and makes the next
plateau twice as long and the next climb half as steep (CUBIC's plateau, with a memory of
how often the limit was found there).

The server's window is unknown: Tallyfy's are a second's worth or a few seconds (``~12 per
5 s``, ``~140 per 10 s``) or a minute. A 429 is measured over 1, 5, 10 and 60 seconds before
it, pauses included, as the server counts; a window is ruled out when more requests than that
were accepted over it before. The first 429 sets the ceiling from the shortest window left.
A later one met on the plateau is explained by the shortest window whose rate lies under the
ceiling (a window longer than a second, whose one-second rate read high); when none does, the
budget is being spent by someone else too, and the ceiling comes down by a factor, as AIMD's
would.
"""

from __future__ import annotations

import math
from collections import deque

from bulkruns.pace.history import Grants

__all__ = ["Ceiling"]

_HORIZONS = (1.0, 5.0, 10.0, 60.0)  # the windows a 429 is measured over, in seconds
_CUT = 0.04  # a 429 that no window explains cuts the ceiling by this share, then by twice it…
_SPARE = 0.5  # requests a window kept spare besides the margin, against latency jitter
_RULED_OUT = 0.9  # a window is ruled out when over a tenth more was accepted over it before
_EVIDENCE = 3  # a window holding fewer of the job's requests says nothing about the limit
# the latest accepted answers whose grant times are kept, to count those that left after a
# refused one and arrived before it (at 2,000 a second, those of 128 ms)
_AHEAD = 256
_LATENCIES = 32  # the latest accepted answers whose latencies give their spread


class Ceiling:
    """The rate one scope's 429s came at, and the pace to aim at under it.

    Args:
        margin: the plateau is this share under the ceiling, and half a request a window
            more (at a one-second window, 20-50 ms of latency jitter puts a few per cent
            more in some windows than left in them).
        ramp: seconds from half the plateau to all of it, after a pause.
        plateau: seconds on the plateau before the first climb.
        climb: the climb's steepness, a share of the ceiling per second.
    """

    __slots__ = (
        "_accepted",
        "_floor",
        "_latencies",
        "_measured",
        "_peaks",
        "_since",
        "climb",
        "cuts",
        "margin",
        "plateau",
        "ramp",
        "strikes",
        "value",
        "window",
    )

    def __init__(
        self,
        *,
        margin: float = 0.0325,
        ramp: float = 0.5,
        plateau: float = 60.0,
        climb: float = 0.01,
    ) -> None:
        self.margin = margin
        self.ramp = ramp
        self.plateau = plateau
        self.climb = climb
        self.value: float | None = None  # requests per second; None until a 429
        self.window = 1.0  # seconds: the server's window the value was measured over
        self.strikes = 0  # 429s met while climbing, since the ceiling last rose
        self.cuts = -1  # cuts for 429s met on the plateau, in a row
        self._since = -math.inf  # when the latest pause ended
        self._peaks = [0] * len(_HORIZONS)  # the most requests accepted over each window
        self._measured: tuple[float, float] | None = None  # the latest measure: when, over what
        self._floor = 0.0  # the lowest the ceiling may go, as the latest 429 said it
        self._accepted: deque[float] = deque(maxlen=_AHEAD)  # the latest accepted, by grant
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)  # of the latest accepted

    def pace(self, now: float) -> float:
        """The rate to aim at, at ``now``: unlimited until a 429 has set a ceiling."""
        if self.value is None:
            return math.inf
        aim = self._plateau(self.value)
        elapsed = now - self._since
        if elapsed < self.ramp:
            return aim * (0.5 + 0.5 * max(elapsed, 0.0) / self.ramp)
        slower = 2.0**self.strikes
        hold = self.plateau * slower
        if elapsed > hold:
            aim += self.value * self.climb * (elapsed - hold) / slower
        return aim

    def due(self, grants: Grants) -> float:
        """When the window the ceiling was measured over has room for one more request at
        the plateau (less one, for latency jitter): after a 429, a window longer than a
        second must drain before the pace can hold."""
        if self.value is None or self.window <= 1.0:
            return -math.inf  # a second's worth is the pace's own business
        room = max(1, math.floor(self._plateau(self.value) * self.window) - 1)
        return grants.latest(room) + self.window

    def _plateau(self, value: float) -> float:
        return max(value * (1.0 - self.margin) - _SPARE / self.window, value / 2)

    def resume(self, when: float) -> None:
        """The pause ends at ``when``: the ramp and the plateau start from there."""
        self._since = when

    def echoed(self, sent: float) -> None:
        """Another 429 of the run, for a request granted at ``sent``. One that left in the
        window measured, before the refused one, landed after it (a slower request): the
        server did not count it, so the ceiling does not either."""
        if self._measured is not None and self.value is not None:
            when, horizon = self._measured
            if when - horizon <= sent < when:
                # never under the floor: a run of echoes must not pace the job to a halt
                self.value = max(self._floor, self.value - 1.0 / horizon)

    def accepted(self, grants: Grants, sent: float, now: float) -> None:
        """A request granted at ``sent`` was answered at ``now``, and not refused: raise the
        peaks it reached, and keep when it left and its latency."""
        self._accepted.append(sent)
        self._latencies.append(now - sent)
        for i, horizon in enumerate(_HORIZONS):
            self._peaks[i] = max(self._peaks[i], grants.count(sent - horizon, sent + 1e-9))

    def throttled(self, grants: Grants, *, sent: float, floor: float) -> None:
        """Learn from a 429 whose request was granted at ``sent``.

        Args:
            grants: the scope's grants, the refused request's among them.
            sent: when the refused request was granted.
            floor: the ceiling is never set below this rate.
        """
        self._floor = floor
        value = self.value
        ahead = self._ahead(sent)
        recent = grants.count(sent - 1.0, sent) + ahead
        if value is not None and recent >= _EVIDENCE and self.pace(sent) > self._plateau(value):
            # met while climbing: found again where it was (climb less next time), or higher
            self.strikes = self.strikes + 1 if recent <= value * (1.0 + self.margin) else 0
            self.value, self.cuts, self._measured = max(floor, float(recent)), -1, (sent, 1.0)
            return
        # the windows not ruled out, shortest first: the rate over each, and its length
        windows = [
            (count / horizon, horizon)
            for horizon, peak in zip(_HORIZONS, self._peaks, strict=True)
            if horizon == 1.0 or sent - horizon >= grants.began
            if (count := grants.count(sent - horizon, sent) + ahead)
            >= max(_EVIDENCE, _RULED_OUT * peak)
        ]
        self._measured = None
        if windows and (value is None or windows[0][0] < _RULED_OUT * value):
            # the shortest window left, which explains a 429 under the ceiling
            self.value, self.window = max(floor, windows[0][0]), windows[0][1]
            self._measured = (sent, self.window)
        elif value is not None and recent >= _RULED_OUT * self._plateau(value):
            # met on the plateau, where it was safe: the margin was too thin for the network's
            # jitter, or others spend the budget too; a small cut, and twice as large for each
            # 429 more before a climb. (Met below it, on the ramp after a pause, it only says
            # that a long window has not drained.)
            self.cuts += 1
            self.value = max(floor, value * (1.0 - min(0.5, _CUT * 2.0**self.cuts)))

    def _ahead(self, sent: float) -> int:
        """The requests granted after the one refused at ``sent`` and answered, let through,
        before its 429 came back: they arrived first, and the server counted them.

        One answered that soon left less than the refused one's latency after it, so the
        bound here, the latencies' spread, holds back only when the refused one was slower
        than every recent answer (it stalled): those sent later than the spread after it
        would have arrived after it on any usual trip, and counting them would read a
        stall's worth of the job's pace as the server's limit.
        """
        latencies = self._latencies
        spread = max(latencies) - min(latencies) if latencies else 0.0
        return sum(1 for each in self._accepted if sent < each <= sent + spread)
