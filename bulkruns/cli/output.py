"""How a running job shows itself: a live display on a terminal, plain lines otherwise.

Reporters are fed the engine's :class:`~bulkruns.job.Progress` events through the job's
progress hook, which can fire thousands of times a second. The hook therefore only keeps
the latest snapshot (and notes a failed item); drawing happens at a fixed, low rate: rich's
refresh thread four times a second for the live display, at most one line every ten
seconds for the plain reporter, so the display costs the job nothing.

* :class:`LiveDisplay` — a terminal: done/total, a bar, items/s, ETA, failures, the pacer's
  current rate, retries and 429s.
* :class:`PlainLines` — cron and pipes: one line at most every ``interval`` seconds.
* :class:`Reporter` — the quiet base: only failed items (the first few) reach the output.

Off a terminal every line starts with the time, in UTC to the second
(``2026-11-23T04:45:14Z``), so that a cron mail or a log file says when each thing happened.

:mod:`bulkruns.cli.summary` words the end of a job, whichever reporter ran it.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bulkruns.cli.inputs import Display
from bulkruns.journal.schema import utcnow

if TYPE_CHECKING:
    from bulkruns.job import Progress
    from bulkruns.model import ItemResult

__all__ = [
    "LiveDisplay",
    "PlainLines",
    "Reporter",
    "Throughput",
    "format_duration",
    "make_reporter",
    "progress_line",
    "waiting",
]

Clock = Callable[[], float]

MAX_FAILURE_LINES = 10
"""Failed items shown one by one; the rest are counted, and all are in the journal."""


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``: short and unambiguous."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Throughput:
    """Items per second over the last ``window`` seconds, from (time, done) samples.

    A recent window rather than the whole job's average, so that the ETA follows the pace
    after a 429 pause or a slow listing start.
    """

    __slots__ = ("_samples", "_spacing", "_window")

    def __init__(self, *, window: float = 10.0, spacing: float = 0.25) -> None:
        self._window = window
        self._spacing = spacing
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        """Record that ``done`` items were finished at ``now``."""
        samples = self._samples
        if samples and now - samples[-1][0] < self._spacing:
            return
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()

    def rate(self) -> float:
        """Items per second across the samples kept; 0 until two samples exist."""
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


def _counts(progress: Progress) -> tuple[int, int | None, str]:
    """Items done, earlier sessions' included; the total they lead to (an upper bound when
    the total is unknown), and that total as shown: ``1,001``, ``≤1,138`` or ``?``."""
    done = progress.earlier + progress.done
    if progress.total is not None:
        total = progress.earlier + progress.total
        return done, total, f"{total:,}"
    if progress.bound is not None:
        bound = progress.earlier + progress.bound
        return done, bound, f"≤{bound:,}"
    return done, None, "?"


def _eta(done: int, total: int | None, rate: float) -> float | None:
    if total is None or rate <= 0:
        return None
    return max(0, total - done) / rate


def waiting(progress: Progress, rate: float, now: float) -> str | None:
    """What the job waits for while nothing finishes, said instead of "0.0 items/s": a
    pause and its reason, or answers that are slow to come.

    Args:
        progress: the latest snapshot.
        rate: items per second lately.
        now: the wall clock, in epoch seconds.
    """
    until = progress.paused_until
    if until is not None and until > now:
        reason = progress.pause_reason or "paused"
        if until - now >= 60:  # a long wait, such as an hourly cap: say until when
            clock = time.strftime("%H:%M", time.gmtime(until))
            return f"{reason}: waiting until {clock} UTC"
        return f"{reason}: {format_duration(until - now)} left"
    if rate > 0:
        return None
    if progress.in_flight:
        n = progress.in_flight
        return f"waiting for {n:,} answer{'s' if n != 1 else ''}"
    return None


def progress_line(operation: str, progress: Progress, rate: float, now: float) -> str:
    """One plain line about a running job."""
    done, total, shown = _counts(progress)
    share = f" ({100 * done / total:.0f}%)" if total else ""
    eta = _eta(done, total, rate)
    pace = waiting(progress, rate, now) or f"{rate:.1f} items/s"
    parts = [
        f"{operation}: {done:,}/{shown}{share}",
        f"ok {progress.ok:,} failed {progress.failed:,} skipped {progress.skipped:,}",
        pace,
        f"ETA {format_duration(eta) if eta is not None else '?'}",
        f"pace {progress.rate:.1f} req/s" if progress.rate else "unpaced",
        f"requests {progress.requests:,} retries {progress.retries:,} 429s {progress.throttled:,}",
        f"in flight {progress.in_flight:,}",
    ]
    if progress.listing:
        parts.append(f"listing (pass {progress.sweeps})")
    return " | ".join(parts)


class Reporter:
    """The quiet reporter, and the base of the others: shows failed items only.

    Use an instance as the job's ``on_progress`` hook; call :meth:`start` before the job
    and :meth:`stop` after it.

    Args:
        operation: the operation's name, for the lines shown.
        err: where lines go (standard error).
        clock: a monotonic clock, replaceable in tests.
        stamp: the time each line starts with, replaceable in tests.
        wall: the wall clock (epoch seconds) a pause's end is read against, replaceable
            in tests.
    """

    def __init__(
        self,
        operation: str,
        *,
        err: IO[str],
        clock: Clock = time.monotonic,
        stamp: Callable[[], str] = utcnow,
        wall: Clock = time.time,
    ) -> None:
        self.operation = operation
        self.err = err
        self.clock = clock
        self.stamp = stamp
        self.wall = wall
        self.latest: Progress | None = None
        self.failures_shown = 0
        self.meter = Throughput()

    def __call__(self, progress: Progress) -> None:
        """The progress hook: keep the snapshot; anything slower happens in :meth:`tick`."""
        self.latest = progress
        item = progress.item
        if item is not None and item.outcome == "failed":
            self.failed_item(item)
        self.tick(progress)

    def tick(self, progress: Progress) -> None:
        """Called on every event; reporters that draw do it here, rate-limited."""

    def failed_item(self, item: ItemResult) -> None:
        """Show one failed item, or say once that the rest are only in the journal."""
        self.failures_shown += 1
        if self.failures_shown <= MAX_FAILURE_LINES:
            self.print(f"failed {item.id}: {item.error or item.status}")
        elif self.failures_shown == MAX_FAILURE_LINES + 1:
            self.print("more items failed; every failure is recorded in the journal")

    def print(self, line: str) -> None:
        """Write a line to standard error, after the time (above the display, live)."""
        self.err.write(f"{self.stamp()} {line}\n")
        self.err.flush()

    def start(self) -> None:
        """Begin showing progress."""

    def stop(self) -> None:
        """Stop showing progress (the summary follows). Safe to call twice."""


class PlainLines(Reporter):
    """One plain line at most every ``interval`` seconds, for cron mail and log files."""

    def __init__(
        self,
        operation: str,
        *,
        err: IO[str],
        interval: float = 10.0,
        clock: Clock = time.monotonic,
        stamp: Callable[[], str] = utcnow,
        wall: Clock = time.time,
    ) -> None:
        super().__init__(operation, err=err, clock=clock, stamp=stamp, wall=wall)
        self.interval = interval
        self._next = math.inf
        self._pause: float | None = None  # the end of the latest pause said

    def start(self) -> None:
        self._next = self.clock() + self.interval

    def tick(self, progress: Progress) -> None:
        now = self.clock()
        self.meter.add(now, progress.done)
        until = progress.paused_until
        # a pause longer than a line's interval is said when it starts: no line would come
        # until it ends
        long_pause = until is not None and until - self.wall() >= self.interval
        if now >= self._next or (long_pause and until != self._pause):
            self._next = now + self.interval
            self._pause = until
            rate = self.meter.rate()
            self.print(progress_line(self.operation, progress, rate, self.wall()))


class LiveDisplay(Reporter):
    """A live view on a terminal, redrawn by rich a few times a second."""

    def __init__(
        self,
        operation: str,
        *,
        console: Console,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        refresh_per_second: float = 4.0,
    ) -> None:
        super().__init__(operation, err=console.file, clock=clock, wall=wall)
        self.console = console
        self._started = clock()
        self._live = Live(
            _View(self),
            console=console,
            refresh_per_second=refresh_per_second,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def print(self, line: str) -> None:
        # Through the console, so the line lands above the live display, not through it;
        # no time: the display shows the elapsed time.
        style = "red" if line.startswith("failed") else ""
        # soft-wrapped: a command shown stays one line, to copy whole
        self.console.print(Text(line, style=style), soft_wrap=True)

    def start(self) -> None:
        self._started = self.clock()
        self._live.start()

    def stop(self) -> None:
        if self._live.is_started:
            self._live.stop()

    def render(self) -> RenderableType:
        """The display for the latest snapshot (runs on rich's refresh thread)."""
        progress = self.latest
        now = self.clock()
        if progress is None:
            return Text(f"{self.operation}: starting…", style="dim")
        self.meter.add(now, progress.done)
        rate = self.meter.rate()
        done, total, shown = _counts(progress)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self.operation, style="bold"),
            ProgressBar(total=float(total or 1), completed=float(done), width=40)
            if total is not None
            else ProgressBar(total=None, width=40, pulse=True, animation_time=now),
            Text(f"{done:,}/{shown}" + (f" {100 * done / total:.0f}%" if total else "")),
        )
        eta = _eta(done, total, rate)
        idle = waiting(progress, rate, self.wall())
        stats = Text.assemble(
            (idle, "yellow") if idle else (f"{rate:,.1f} items/s", "cyan"),
            "  ETA ",
            format_duration(eta) if eta is not None else "?",
            "  elapsed ",
            format_duration(now - self._started),
            "  ",
            (f"failed {progress.failed:,}", "red" if progress.failed else "green"),
            f"  skipped {progress.skipped:,}" if progress.skipped else "",
        )
        pace = Text.assemble(
            ("pace ", "dim"),
            f"{progress.rate:.1f} req/s" if progress.rate else "unpaced",
            ("  in flight ", "dim"),
            f"{progress.in_flight:,}",
            ("  requests ", "dim"),
            f"{progress.requests:,}",
            ("  retries ", "dim"),
            f"{progress.retries:,}",
            ("  429s ", "dim"),
            (f"{progress.throttled:,}", "yellow" if progress.throttled else ""),
            (f"  listing, pass {progress.sweeps}", "dim") if progress.listing else "",
        )
        return Group(head, stats, pace)


def make_reporter(operation: str, display: Display) -> Reporter:
    """The live display on a terminal, plain lines otherwise, failures only when quiet."""
    if display.quiet:
        return Reporter(operation, err=sys.stderr)
    console = Console(file=sys.stderr)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveDisplay(operation, console=console)
    return PlainLines(operation, err=sys.stderr)


class _View:
    """Hands rich the display's current rendering each time it refreshes."""

    def __init__(self, display: LiveDisplay) -> None:
        self.display = display

    def __rich__(self) -> RenderableType:
        return self.display.render()
