"""One limit a job's requests keep to, the whole job's or one lane's: its latest slot, its
pause, and what the server has taught about it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from bulkruns.pace.ceiling import Ceiling
from bulkruns.pace.history import Grants

__all__ = ["LANES", "Lane", "Pause", "Scope"]

Lane = Literal["read", "write"]
LANES: tuple[Lane, ...] = ("read", "write")

_TOLERANCE = 0.5  # of an interval: how early a slot may be taken, so a late timer costs nothing
# a 429 without Retry-After waits 1 s, doubling for each run in a row (and so does one whose
# Retry-After the runs show too short), up to this
_LONGEST_GUESS = 32.0


@dataclass(frozen=True, slots=True)
class Pause:
    """Requests of ``lanes`` wait until ``until`` (on the pacer's clock), for ``reason``;
    ``since`` is when the 429s began that no other answer has come between."""

    until: float
    reason: str
    lanes: tuple[Lane, ...]
    since: float = -math.inf


class Scope:
    """The job's limit, or a lane's. Each has a ceiling, and two of them learn: the job's
    (from a change's 429) and the listing's (from a GET's).

    Slots are spaced by GCRA's virtual scheduling: ``slot`` is the latest grant's theoretical
    time, and the next leaves one interval after it; a grant a little late (up to half an
    interval, and up to half an interval more that its timer fired late) does not delay the
    schedule, so the one after it may follow sooner, but never within half an interval. A
    busy event loop fires timers a few milliseconds late, a whole interval at 200/s: without
    that allowance each would start a new schedule and the pace would fall by what they lose.
    A grant that waited longer starts a new schedule; one that waited for room in the server's
    window starts it half an interval back, as if it had been kept: the request after it may
    follow half an interval on (the room a window gives back is not spread evenly, and a
    whole interval more would leave some of it unused).
    """

    __slots__ = (
        "ceiling",
        "granted",
        "grants",
        "pause",
        "slot",
        "streak",
        "throttled_at",
        "throttled_since",
    )

    def __init__(self) -> None:
        self.ceiling = Ceiling()
        self.grants = Grants()
        self.slot = self.granted = -math.inf
        self.pause: Pause | None = None
        self.throttled_at = -math.inf  # when the latest run of 429s began
        self.streak = 0  # runs of 429s with no other answer between
        self.throttled_since = -math.inf  # when the first of those runs began

    def due(self, pace: float) -> float:
        """When the next request may leave: at ``pace``, with room in the ceiling's window
        and after the pause."""
        step = 1.0 / pace if pace > 0.0 else math.inf
        at = max(self.slot + step, self.granted + (1.0 - _TOLERANCE) * step)
        at = max(at, self.ceiling.due(self.grants))
        return at if self.pause is None else max(at, self.pause.until)

    def grant(self, now: float, pace: float, *, late: float = 0.0, held: bool = False) -> None:
        """A request leaves at ``now``, at ``pace``, ``late`` seconds after it was due (its
        timer fired late); ``held`` when it waited for room in the server's window."""
        slot = self.slot + 1.0 / pace
        tolerance = _TOLERANCE / pace
        if now - slot <= tolerance + min(late, tolerance):
            self.slot = slot  # a late timer keeps the schedule
        else:
            # a longer wait (idle, paused) starts a new schedule; one for room in the window
            # starts it half an interval back, so that the next may follow as soon as that
            self.slot = now - tolerance if held else now
        self.granted = now
        self.grants.add(now)

    def accepted(self, sent: float, now: float, *, learn: bool) -> None:
        """An answer other than a 429, to a request granted at ``sent``, came at ``now``: it
        ends the streak of runs of 429s, and when ``learn`` (paced, and answered) the ceiling
        counts it."""
        self.streak = 0
        if learn:
            self.ceiling.accepted(self.grants, sent, now)

    def refused(
        self,
        sent: float,
        now: float,
        retry_after: float | None,
        reason: str | None,
        *,
        lanes: tuple[Lane, ...],
        floor: float | None,
    ) -> Pause:
        """A 429 to a request granted at ``sent`` came at ``now``: pause ``lanes`` for
        ``retry_after`` seconds (a guess when None, or when runs of 429s in a row show it too
        short), or for the pause in force if it is longer, and learn from it unless ``floor``
        is None (the lowest ceiling it may teach).

        Only the first 429 of a run sets the ceiling: those to requests that left before it
        came back echo it (their windows held the same requests), and only take off the
        ceiling what the server did not count (:meth:`~bulkruns.pace.ceiling.Ceiling.echoed`)."""
        if sent >= self.throttled_at:  # it begins a run
            if not self.streak:
                self.throttled_since = now
            self.throttled_at, self.streak = now, self.streak + 1
            if floor is not None:
                self.ceiling.throttled(self.grants, sent=sent, floor=floor)
        elif floor is not None:
            self.ceiling.echoed(sent)
        guess = min(2.0 ** (self.streak - 1), _LONGEST_GUESS)
        if retry_after is None:
            wait = guess
        else:  # one that runs of 429s in a row outlast is too short: wait longer each time
            wait = retry_after if self.streak < 2 else max(retry_after, guess)
        since = self.throttled_since if self.streak else now
        if self.pause is None or now + wait > self.pause.until:
            reason = reason or f"Retry-After {round(wait, 1):g} s"
            self.pause = Pause(now + wait, reason, lanes, since)
        else:
            self.pause = replace(self.pause, since=since)
        self.ceiling.resume(self.pause.until)  # the ceiling's ramp starts at the pause's end
        return self.pause
