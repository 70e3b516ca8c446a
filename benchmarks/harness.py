"""Processes for a benchmark: a fresh sandbox per measured run, and one client against it.

The sandbox is ``python -m bulkruns sandbox --port 0 …`` in its own process; the client is
another process (see :mod:`benchmarks.clients`), so each one's CPU time and peak memory
are its own. After the client exits, the sandbox's ``/_sandbox/stats`` say what really
happened: requests and 429s received, runs changed, runs left matching.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bulkruns.sandbox.shape import Limit

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
# Share of seeded runs that the benchmark filter (status=complete) selects: the sandbox
# draws 38 of 90 weight units complete, then archives 10 % of all runs. Only used to size
# a sandbox; the figures use the count the sandbox reports.
COMPLETE_SHARE = 0.38


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """A sandbox to start: runs seeded, rate limit (per second, 0 = none), latency.

    ``limits`` are more limits, as ``bulkruns sandbox --limit`` specs (``"200/1s penalty=2"``),
    and ``cotenant`` another client's requests per second taken from the same budget.
    """

    runs: int
    rate: float = 0.0  # requests per second; 0 = no limit
    window: float = 10.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 1
    limits: tuple[str, ...] = ()
    cotenant: float = 0.0

    def args(self) -> list[str]:
        extra = [arg for spec in self.limits for arg in ("--limit", spec)]
        if self.cotenant:
            extra += ["--cotenant", f"{self.cotenant:g}"]
        return [
            "--runs", str(self.runs),
            "--seed", str(self.seed),
            "--rate", f"{self.rate * 60:g}",
            "--window", f"{self.window:g}",
            "--latency", f"{self.latency_ms:g}",
            "--jitter", f"{self.jitter_ms:g}",
            *extra,
        ]  # fmt: skip

    @property
    def ceiling(self) -> float:
        """The server's limit in requests/s: its tightest (GET-only budgets aside); 0 = none."""
        rates = [self.rate] if self.rate else []
        for spec in self.limits:
            limit = Limit.parse(spec)
            if not limit.gets_only:
                rates.append(limit.requests / limit.seconds)
        return min(rates, default=0.0)

    @property
    def capacity(self) -> float:
        """What of the limit is left to the client, requests/s: the ceiling less the co-tenant."""
        return max(0.0, self.ceiling - self.cotenant) if self.ceiling else 0.0

    @property
    def horizon(self) -> float:
        """The longest window of its limits, in seconds (the co-tenant is counted over it)."""
        windows = [self.window] if self.rate else []
        windows += [Limit.parse(spec).seconds for spec in self.limits]
        return max(windows, default=0.0)

    def describe(self) -> str:
        limit = (
            f"{self.rate:g} requests/s ({self.rate * self.window:g} per {self.window:g} s "
            "rolling window)"
            if self.rate
            else "no rate limit"
        )
        if self.limits:
            shapes = ", ".join(f"`{spec}`" for spec in self.limits)
            limit = shapes if not self.rate else f"{limit} and {shapes}"
        if self.cotenant:
            limit += f", a co-tenant taking {self.cotenant:g} requests/s of it"
        if self.latency_ms:
            delay = f"latency {self.latency_ms:g} ± {self.jitter_ms:g} ms"
        else:
            delay = "no added latency"
        return f"{limit}, {delay}"


@dataclass
class Server:
    """A running sandbox process."""

    process: subprocess.Popen[str]
    base_url: str
    org: str
    token: str
    log: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/api")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root_url + "/_sandbox/stats", timeout=30) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TALLYFY_BASE_URL": self.base_url,
            "TALLYFY_ORG_ID": self.org,
            "TALLYFY_ACCESS_TOKEN": self.token,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(spec: ServerSpec, workdir: Path) -> Server:
    """Start a sandbox and wait until it prints where it listens."""
    log = workdir / f"sandbox-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [PYTHON, "-m", "bulkruns", "sandbox", "--port", "0", *spec.args()],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )
    found: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        for key in ("TALLYFY_BASE_URL", "TALLYFY_ORG_ID", "TALLYFY_ACCESS_TOKEN"):
            prefix = f"export {key}="
            if line.startswith(prefix):
                found[key] = line[len(prefix) :].strip()
        if len(found) == 3:
            break
    if len(found) != 3:
        process.kill()
        process.wait()
        raise RuntimeError(f"the sandbox did not start: {log.read_text()[-2000:]}")
    return Server(
        process,
        found["TALLYFY_BASE_URL"],
        found["TALLYFY_ORG_ID"],
        found["TALLYFY_ACCESS_TOKEN"],
        log,
    )


@dataclass
class Measure:
    """One measured run of one client: what it reported, and what the server saw."""

    client: str
    limit: float  # what of the server's limit is left to the client, requests/s (0 = none)
    selected: int  # runs the job had to change when it started
    report: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    server_cpu: float = 0.0  # CPU seconds the sandbox used while the client ran
    other_load: float = 0.0  # share of the machine's CPU used by other processes meanwhile
    spec: ServerSpec | None = None  # the sandbox it ran against

    @property
    def done(self) -> int:
        """Runs the server saw changed (archived) during the run."""
        changes: int = (
            self.after["changes"]["runs_changed"] - self.before["changes"]["runs_changed"]
        )
        return changes

    @property
    def requests(self) -> int:
        return int(self.after["total"] - self.before["total"])

    @property
    def throttled(self) -> int:
        return int(self.after["throttled"] - self.before["throttled"])

    @property
    def not_reached(self) -> int:
        """Runs the client did not get to before its time cap (0 for a client without one)."""
        return int(self.report.get("not_reached", 0))

    @property
    def accepted(self) -> int:
        """The client's requests the server served: not refused by its limits."""
        return self.requests - self.throttled

    @property
    def cotenant_served(self) -> int:
        """The co-tenant's requests that counted on the limits while the client ran.

        The sandbox counts them when a request of the client comes in, back to one window
        before it: so over the client's time and one window more (``measure`` starts the
        client a window after the sandbox). A pause of the client's longer than a window
        leaves out what the co-tenant did in it, but for its last window.
        """
        return int(self.after.get("cotenant_requests", 0) - self.before.get("cotenant_requests", 0))

    def _shares(self, elapsed: float) -> tuple[float | None, float | None]:
        """(the share of the server's limit that was served, the co-tenant's share of its own
        rate that it got), from the server's counts; None where they mean nothing."""
        spec = self.spec
        if spec is None or not spec.ceiling or elapsed <= 0:
            return None, None
        cotenant = self.cotenant_served / (elapsed + spec.horizon) if spec.cotenant else 0.0
        used = (self.accepted / elapsed + cotenant) / spec.ceiling
        return used, (cotenant / spec.cotenant if spec.cotenant else None)

    @property
    def repeated(self) -> int:
        """Runs changed more than once: a fault-free job should change each run once."""
        return int(self.after["changes"]["runs_changed_more_than_once"])

    def figures(self) -> dict[str, float | None]:
        """The figures the report shows, by name."""
        r = self.report
        elapsed = r["elapsed"]
        ok = r["ok"]
        per_second = self.done / elapsed if elapsed > 0 else 0.0
        limit_used, cotenant_share = self._shares(elapsed)
        return {
            "selected": self.selected,
            "done": self.done,
            "elapsed": elapsed,
            "items_per_s": per_second,
            "efficiency": per_second / self.limit if self.limit else None,
            "throttled": self.throttled,
            # runs a time cap left unreached were not missed: the client never got to them
            "missed": self.selected - self.done - self.not_reached,
            "not_reached": self.not_reached,
            "failed": r["failed"],
            "requests_per_item": self.requests / self.done if self.done else None,
            "cpu_per_1000": r["cpu"] / ok * 1000 if ok else None,
            "peak_rss_mib": r["maxrss_kib"] / 1024,
            "start_rss_mib": r["rss_start_kib"] / 1024,
            "first_mutation": r["first_mutation"],
            "repeated": self.repeated,
            "server_cpu_per_1000": self.server_cpu / self.done * 1000 if self.done else None,
            "other_load": self.other_load,
            "limit_used": limit_used,
            "cotenant_share": cotenant_share,
        }


def run_client(
    server: Server,
    module: str,
    args: list[str],
    *,
    timeout: float,
) -> dict[str, Any]:
    """Run ``python -m module args`` against ``server``; its JSON result line."""
    completed = subprocess.run(
        [PYTHON, "-m", module, *args],
        env=server.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"{module} exited with {completed.returncode}: {completed.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr_tail"] = completed.stderr[-500:]
    return result


def measure(
    spec: ServerSpec,
    client: str,
    module: str,
    args: list[str],
    *,
    selected_key: str = "complete",
    timeout: float = 1800.0,
    workdir: Path | None = None,
    prepare: Any = None,
) -> Measure:
    """Start a fresh sandbox, run one client against it, and collect the figures.

    ``selected_key`` names the run status the job selects: the runs of that status when the
    client starts are the job. ``prepare(server, workdir)`` may return extra client args
    (an ID file, a journal) and the number of runs selected, built once the server is up.
    """
    with tempfile.TemporaryDirectory(prefix="bulkruns-bench-", dir=workdir) as tmp:
        tmpdir = Path(tmp)
        server = start_server(spec, tmpdir)
        if spec.cotenant:
            # The sandbox counts the co-tenant from its start, over one window before each
            # request: a client that starts a window later is shared with it from the first.
            time.sleep(spec.horizon)
        try:
            before = server.stats()
            selected = int(before["runs"].get(selected_key, 0))
            extra: list[str] = []
            if prepare is not None:
                extra, selected = prepare(server, tmpdir)
            full = [*args, *extra]
            full += _journal_arg(module, full, tmpdir)
            watch = _Watch(server.process.pid)
            report = run_client(server, module, full, timeout=timeout)
            server_cpu, other_load = watch.stop(report["cpu_total"])
            after = server.stats()
        finally:
            server.stop()
    return Measure(
        client, spec.capacity, selected, report, before, after, server_cpu, other_load, spec
    )


class _Watch:
    """CPU time of the sandbox, and of the whole machine, while a client runs."""

    def __init__(self, server_pid: int) -> None:
        self._server = psutil.Process(server_pid)
        self._server0 = _busy(self._server.cpu_times())
        self._machine0 = _machine_busy()
        self._wall0 = time.perf_counter()

    def stop(self, client_cpu: float) -> tuple[float, float]:
        """(the sandbox's CPU seconds, the share of all CPUs that others used)."""
        wall = time.perf_counter() - self._wall0
        server = _busy(self._server.cpu_times()) - self._server0
        machine = _machine_busy() - self._machine0
        others = max(0.0, machine - server - client_cpu)
        return server, others / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0


def _busy(times: Any) -> float:
    return float(times.user + times.system)


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _journal_arg(module: str, args: list[str], tmpdir: Path) -> list[str]:
    if module.endswith("bulkruns_job") and "--resume" not in args and "--journal" not in args:
        return ["--journal", str(tmpdir / "job.jsonl")]
    return []
