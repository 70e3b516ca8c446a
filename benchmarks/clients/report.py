"""How a benchmark client reports what it did and what it cost: one JSON line on stdout.

The harness reads the last line of the client's output. CPU time is measured around the
job only (not the interpreter's start-up and imports), peak RSS over the whole process:
what a user's machine would have to provide.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any


def rss_now_kib() -> int:
    """The resident set size now, in KiB (from /proc; 0 where it is not available)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * resource.getpagesize() // 1024


def peak_rss_kib() -> int:
    """The process's peak resident set size, in KiB.

    ``VmHWM`` from /proc, not ``getrusage``'s ``ru_maxrss``: on Linux the latter survives
    ``exec`` and so can report the peak of the parent that started the process.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Meter:
    """Wall and CPU time around a job, and the process's memory.

    Start it just before the job's first request is prepared; ``stop`` just after the
    job ends.
    """

    wall0: float = 0.0
    cpu0: float = 0.0
    wall: float = 0.0
    cpu: float = 0.0
    rss_start_kib: int = 0
    first_mutation: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.rss_start_kib = rss_now_kib()
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def mutation_sent(self) -> None:
        """Call as each mutation request is about to be sent; the first one is timed."""
        if self.first_mutation is None:
            self.first_mutation = time.perf_counter() - self.wall0

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0

    def emit(self, *, ok: int, failed: int, **values: Any) -> None:
        """Print the result line the harness reads."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        record = {
            "ok": ok,
            "failed": failed,
            "elapsed": self.wall,
            "cpu": self.cpu,
            "cpu_total": usage.ru_utime + usage.ru_stime,
            "maxrss_kib": peak_rss_kib(),
            "rss_start_kib": self.rss_start_kib,
            "first_mutation": self.first_mutation,
            **self.extra,
            **values,
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
