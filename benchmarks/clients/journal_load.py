"""Load a result log into resume state, several times; print the times.

python -m benchmarks.clients.journal_load LOG --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from benchmarks.clients.report import peak_rss_kib
from bulkruns.journal import read_journal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = []
    lines = done = pending = 0
    for _ in range(args.repeat):
        gc.collect()
        started = time.perf_counter()
        state = read_journal(args.log)
        times.append(time.perf_counter() - started)
        lines, done, pending = state.lines, len(state.done), len(state.pending)
        del state
    record = {"times": times, "lines": lines, "done": done, "pending": pending}
    record["maxrss_kib"] = peak_rss_kib()
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
