"""``make demo``: a real bulk job against a local sandbox, start to finish, in well under
two minutes.

It starts ``bulkruns sandbox`` as a subprocess with a few thousand seeded runs and a brisk
rate limit, then drives the real ``bulkruns`` command, echoing each command line first so
that what you see is what you would type: a dry run, an archive with live progress and its
summary, and the undo of that archive. It finishes by checking, from the sandbox's own
statistics, that the undo put every run back, and stops the sandbox.

    python -m bulkruns.demo [--runs N] [--rate R]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

__all__ = ["main"]

RUNS = 4000
RATE = 100.0  # requests per second: brisk, and still well under the sandbox's limit
STATUS = "complete"


def _say(text: str) -> None:
    print(f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text, flush=True)


def _show(words: list[str]) -> None:
    _say(f"\n$ {shlex.join(words)}")


class _Sandbox:
    """``bulkruns sandbox`` in a subprocess; its settings read from what it prints."""

    def __init__(self, runs: int, rate_per_minute: float) -> None:
        words = ["bulkruns", "sandbox", "--port", "0", "--runs", str(runs)]
        words += ["--rate", f"{rate_per_minute:g}"]
        _show(words)
        self.process = subprocess.Popen(
            [sys.executable, "-m", *words],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # our Ctrl-C is for the job, not the sandbox
        )
        self.env: dict[str, str] = {}
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while "TALLYFY_ACCESS_TOKEN" not in self.env:
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                self.env[name] = value
        self.root = self.env["TALLYFY_BASE_URL"].removesuffix("/api")
        shown = dict(self.env, TALLYFY_ACCESS_TOKEN="<the sandbox's token>")
        for name, value in shown.items():
            print(f"export {name}={value}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.root}/_sandbox/stats", timeout=10) as reply:
            data: dict[str, Any] = json.load(reply)
        return data

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _bulkruns(words: list[str], *, env: dict[str, str], cwd: str) -> int:
    _show(["bulkruns", *words])
    return subprocess.call([sys.executable, "-m", "bulkruns", *words], env=env, cwd=cwd)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit status is the first failing step's, else 0."""
    parser = argparse.ArgumentParser(prog="python -m bulkruns.demo", description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS, help="runs to seed")
    parser.add_argument("--rate", type=float, default=RATE, help="job rate, requests/s")
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="bulkruns-demo-")
    _say(f"bulkruns demo: a sandbox with {args.runs:,} runs; journals go to {workdir}")
    # The sandbox allows a little more than the job's pace, as Tallyfy's 600/min would.
    sandbox = _Sandbox(args.runs, rate_per_minute=args.rate * 60 * 1.2)
    env = {**os.environ, **sandbox.env}
    # The demo's job lock lives with its journals, not in the user's state directory.
    env["XDG_STATE_HOME"] = workdir
    try:
        before = sandbox.stats()["runs"]
        steps: list[list[str]] = [
            ["archive", "--status", STATUS, "--dry-run", "--rate", f"{args.rate:g}"],
            ["archive", "--status", STATUS, "--rate", f"{args.rate:g}"],
        ]
        for words in steps:
            code = _bulkruns(words, env=env, cwd=workdir)
            if code != 0:
                return code
        archived = sandbox.stats()["runs"]
        _say(
            f"\nsandbox: {before[STATUS]:,} {STATUS} runs before, "
            f"{archived[STATUS]:,} after; archived {before['archived']:,} -> "
            f"{archived['archived']:,}"
        )
        journals = sorted(glob.glob(os.path.join(workdir, "bulkruns-archive-*.jsonl")))
        job_log = max(journals, key=os.path.getmtime)
        code = _bulkruns(
            ["undo", os.path.basename(job_log), "--rate", f"{args.rate:g}"], env=env, cwd=workdir
        )
        if code != 0:
            return code
        after = sandbox.stats()["runs"]
        restored = after == before
        _say(
            f"\nsandbox: {after[STATUS]:,} {STATUS} runs after the undo; "
            + ("every run is back as it was." if restored else f"not restored: {after}")
        )
        return 0 if restored else 1
    except KeyboardInterrupt:
        return 130
    finally:
        sandbox.stop()  # it says "sandbox stopped" itself


if __name__ == "__main__":
    sys.exit(main())
