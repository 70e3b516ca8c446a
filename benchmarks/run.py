"""Run the benchmarks, print the table, and write it to ``benchmarks/RESULTS.md``.

    make bench                          # the default: sections 1-5 in 15 minutes, 6 in 65-100
    make bench BENCH_ARGS=--quick       # a smoke-size run: about 8 minutes, one repetition
    make bench BENCH_ARGS=--full        # sections 1-5 at Tallyfy's real limit, 10 requests/s
    python -m benchmarks.run --only side-by-side --repeat 5
    python -m benchmarks.run --quick --only limit-unknown --out /tmp/limit-unknown.md

Every measured run gets a fresh sandbox in its own process and runs one client in another
(bulkruns through its library, or a baseline), so state never carries over and each
process's CPU time and memory are its own. Figures are medians over the repetitions, with
the spread (min-max). Nothing here asserts: the targets are reported as met or missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks import limit_unknown
from benchmarks.figures import COLUMNS, DASH, Row, spread, table
from benchmarks.harness import (
    COMPLETE_SHARE,
    PYTHON,
    ROOT,
    Measure,
    Server,
    ServerSpec,
    measure,
)
from benchmarks.journals import write_journal

BULKRUNS = "benchmarks.clients.bulkruns_job"
DOCS_LOOP = "benchmarks.baselines.docs_requests_loop"
GATHER = "benchmarks.baselines.gather_aiohttp"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The sizes of one mode of the benchmark."""

    mode: str
    limit: float  # the server's limit, requests/s
    window: float  # its rolling window, seconds
    latency_ms: float = 40.0
    jitter_ms: float = 20.0
    main_items: int  # runs the filter selects for bulkruns and the gather
    loop_items: int  # for the docs' loop, which is slow by design
    overhead_items: int
    memory_sizes: tuple[int, int] = (10_000, 100_000)
    journal_lines: int = 1_000_000
    journal_reads: int = 5
    # section 6, the limit unknown: its shapes are its own, not scaled by ``limit``
    unknown_seconds: float = 60.0  # a job's length at the real limit
    unknown_loop_runs: int = 400  # the docs' loop's job (one request at a time)
    unknown_cap: float = 1.5  # the AWS peer takes no new run after this many job lengths
    tallyfy_seconds: float = 60.0  # shape (e), Tallyfy's 10/s: its job's length
    tallyfy_loop_runs: int = 200
    repeat: int = 3
    out: str = "RESULTS.md"


PLANS = {
    # 200/s with a 10 s window: 12,000 runs take about a minute at the limit.
    "default": Plan(
        mode="default",
        limit=200.0,
        window=10.0,
        main_items=12_000,
        loop_items=2_400,
        overhead_items=34_000,
    ),
    "quick": Plan(
        mode="quick",
        limit=200.0,
        window=10.0,
        main_items=2_000,
        loop_items=300,
        overhead_items=12_000,
        journal_reads=3,
        unknown_seconds=10.0,
        unknown_loop_runs=150,
        tallyfy_seconds=10.0,
        tallyfy_loop_runs=60,
        repeat=1,
        out="RESULTS-quick.md",
    ),
    # Tallyfy's own limit: 600 requests a minute, rolling; 3,000 runs take 5 minutes.
    "full": Plan(
        mode="full",
        limit=10.0,
        window=60.0,
        main_items=3_000,
        loop_items=3_000,  # enough to meet the limit, where its lack of retries shows
        overhead_items=34_000,
        tallyfy_seconds=300.0,  # 3,000 runs, as the other sections' jobs here
        out="RESULTS-full.md",
    ),
}

# --- scenarios -----------------------------------------------------------------------------


def _runs_for(selected: int) -> int:
    """Runs to seed so that about ``selected`` of them have status complete."""
    return round(selected / COMPLETE_SHARE)


@dataclass
class Bench:
    plan: Plan
    workdir: Path
    log: Callable[[str], None]
    sections: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)

    def limited(self, items: int) -> ServerSpec:
        p = self.plan
        return ServerSpec(
            runs=_runs_for(items),
            rate=p.limit,
            window=p.window,
            latency_ms=p.latency_ms,
            jitter_ms=p.jitter_ms,
        )

    def repeat(self, key: str, label: str, run: Callable[[], Measure]) -> Row:
        for n in range(self.plan.repeat):
            self.once(key, label, run, n)
        return self.rows[key]

    def once(self, key: str, label: str, run: Callable[[], Measure], n: int) -> Row:
        """Measure one repetition (number ``n``, from 0) of a row, and log it."""
        row = self.rows.setdefault(key, Row(label))
        started = time.perf_counter()
        m = run()
        row.measures.append(m)
        f = m.figures()
        eff, used = f["efficiency"], f["limit_used"]
        self.log(
            f"  {label} #{n + 1}: {f['done']:,}/{f['selected']:,} runs in "
            f"{f['elapsed']:.1f} s, {f['items_per_s']:,.1f}/s"
            + (f", efficiency {eff:.3f}" if eff is not None else "")
            + (f", limit used {used:.3f}" if used is not None else "")
            + f", {f['throttled']} 429s, {f['failed']} failed, "
            f"other load {m.other_load:.0%} ({time.perf_counter() - started:.0f} s)"
        )
        return row

    # 1 -----------------------------------------------------------------------------------
    def side_by_side(self) -> None:
        p = self.plan
        self.log(f"side by side, at {p.limit:g} requests/s")
        spec = self.limited(p.main_items)
        loop_spec = self.limited(p.loop_items)
        rate = str(p.limit)
        rows = [
            self.repeat(
                "bulkruns",
                f"bulkruns (--rate {p.limit:g})",
                lambda: measure(spec, "bulkruns", BULKRUNS, ["--rate", rate]),
            ),
            self.repeat(
                "docs",
                "docs' requests loop",
                lambda: measure(loop_spec, "docs", DOCS_LOOP, []),
            ),
            self.repeat(
                "gather",
                "asyncio.gather (aiohttp)",
                lambda: measure(spec, "gather", GATHER, []),
            ),
        ]
        self.sections.append(
            "## 1. Side by side at the limit\n\n"
            f"Archive every run with status `complete` (the filter), against a sandbox limited "
            f"to {spec.describe()}. The docs' loop is given {p.loop_items:,} runs instead of "
            f"{p.main_items:,}: it sends one request at a time, so it needs no more to show "
            "its pace.\n\n"
            + table(rows, COLUMNS)
            + "\n\nThe docs' loop lists 10 runs a page, as the docs' sample does, and archives "
            "each page's runs before it fetches the next: every archive shifts the offset pages, "
            "so it skips about half the runs without an error. The gather lists first, then "
            "sends every archive at once: the sandbox's burst rule (as Tallyfy's, more than "
            "three times the average rate in any one second earns a few seconds of 429s) and "
            "the rolling window refuse most of them, and nothing retries them. Over its few "
            "seconds it can even show an efficiency above 1, having spent in one go the "
            "allowance of a window that started empty, which a paced client spreads out."
        )

    # 2 -----------------------------------------------------------------------------------
    def overestimated(self) -> None:
        p = self.plan
        self.log(f"overestimated limit: bulkruns at {2 * p.limit:g}/s, server {p.limit:g}/s")
        spec = self.limited(p.main_items)
        rate = str(2 * p.limit)
        row = self.repeat(
            "over",
            f"bulkruns (--rate {2 * p.limit:g})",
            lambda: measure(spec, "bulkruns", BULKRUNS, ["--rate", rate]),
        )
        self.sections.append(
            "## 2. Limit overestimated\n\n"
            f"bulkruns configured at twice the server's limit ({2 * p.limit:g} requests/s) "
            f"against {spec.describe()}: it must find the real pace from the 429s.\n\n"
            + table([row], COLUMNS)
        )

    # 3 -----------------------------------------------------------------------------------
    def overhead(self) -> None:
        p = self.plan
        self.log("overhead: no limit, no latency")
        spec = ServerSpec(runs=_runs_for(p.overhead_items))
        rows = [
            self.repeat(
                "overhead",
                "bulkruns (--rate 0)",
                lambda: measure(spec, "bulkruns", BULKRUNS, ["--rate", "0"]),
            ),
            self.repeat(
                "overhead-gather",
                "asyncio.gather (aiohttp)",
                lambda: measure(spec, "gather", GATHER, []),
            ),
        ]
        columns = [
            c
            for c in COLUMNS
            if c[0] not in ("efficiency", "throttled", "requests_per_item", "first_mutation")
        ]
        columns.append(("server_cpu_per_1000", "sandbox CPU-s/1k items", 2, 1.0))
        columns.append(("other_load", "other load", 2, 1.0))
        client = rows[0].median("cpu_per_1000") or 0.0
        server = rows[0].median("server_cpu_per_1000") or 0.0
        ceiling = 1000 / max(client, server) if max(client, server) else 0.0
        self.data["overhead_ceiling"] = ceiling
        bound = (
            f"\n\nCPU per item bounds the pace: bulkruns used {client:.2f} ms of CPU per item and "
            f"the sandbox {server:.2f} ms, so with a core each to themselves the pace cannot "
            f"exceed about **{ceiling:,.0f} items/s** (the busier of the two, "
            f"{'bulkruns' if client >= server else 'the sandbox'}, sets it)."
        )
        self.sections.append(
            "## 3. Overhead\n\n"
            "The same job against a sandbox with no limit and no added latency: the pace is "
            "what the client and the sandbox can do on this machine, both on its CPUs. "
            "*other load* is the share of the machine's CPU used by processes other than the "
            "two during the run.\n\n" + table(rows, columns) + bound
        )

    # 4 -----------------------------------------------------------------------------------
    def memory(self) -> None:
        p = self.plan
        small, large = p.memory_sizes
        self.log(f"memory: ID-file jobs of {small:,} and {large:,} IDs")
        from bulkruns.sandbox.seed import seed_runs  # only the harness needs the seeding

        seeded = round(large / 0.88) + 1000  # about 10 % of the seeded runs are archived
        runs, _ = seed_runs(seeded, 1)
        live = [r["id"] for r in runs if r["status"] != "archived"]
        del runs
        spec = ServerSpec(runs=seeded)
        rows = []
        for size in (small, large):
            ids = live[:size]

            def prepare(server: Server, tmp: Path, ids: list[str] = ids) -> tuple[list[str], int]:
                path = tmp / "ids.txt"
                path.write_text("\n".join(ids) + "\n")
                return ["--ids-file", str(path)], len(ids)

            rows.append(
                self.repeat(
                    f"memory-{size}",
                    f"bulkruns, {size:,} IDs",
                    lambda prepare=prepare: measure(
                        spec, "bulkruns", BULKRUNS, ["--rate", "0"], prepare=prepare
                    ),
                )
            )
        columns = [
            ("selected", "IDs", 0, 1.0),
            ("items_per_s", "items/s", 0, 1.0),
            ("missed", "runs missed", 0, 1.0),
            ("failed", "runs failed", 0, 1.0),
            ("start_rss_mib", "RSS at start MiB", 1, 1.0),
            ("peak_rss_mib", "peak RSS MiB", 1, 1.0),
            ("first_mutation", "first change ms", 0, 1000.0),
        ]
        growth = (rows[1].median("peak_rss_mib") or 0) - (rows[0].median("peak_rss_mib") or 0)
        self.data["rss_growth_mib"] = growth
        per_id = growth * 1024 * 1024 / (large - small)
        self.sections.append(
            "## 4. Memory\n\n"
            "An ID-file job (archive the runs of a file of IDs, with its result log), against "
            "a sandbox with no limit. Peak RSS is the client process's high-water mark, "
            "interpreter and imports included.\n\n"
            + table(rows, columns)
            + f"\n\nPeak RSS growth from {small:,} to {large:,} IDs: **{growth:.1f} MiB** "
            f"(medians), {per_id:.0f} bytes per added ID."
        )

    # 5 -----------------------------------------------------------------------------------
    def journal(self) -> None:
        p = self.plan
        self.log(f"journal: loading {p.journal_lines:,} lines, and time to first change")
        path = self.workdir / "journal-1m.jsonl"
        write_journal(path, lines=p.journal_lines, org="bench-org", base_url="http://x/api")
        loads = []
        loader = [PYTHON, "-m", "benchmarks.clients.journal_load", str(path)]
        for n in range(p.repeat):
            out = subprocess.run(
                [*loader, "--repeat", str(p.journal_reads)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            loads.append(result)
            self.log(f"  load #{n + 1}: " + ", ".join(f"{t:.2f}" for t in result["times"]) + " s")
        size_mib = path.stat().st_size / 2**20
        path.unlink()
        times = [t for r in loads for t in r["times"]]
        self.data["journal_load_s"] = statistics.median(times)

        # Resume a long job: its log is read, then the rest of the selection is listed and
        # done (a few hundred runs, so that the run stays short).
        spec = self.limited(400)

        def prepare(server: Server, tmp: Path) -> tuple[list[str], int]:
            log = tmp / "resume.jsonl"
            # No failures in it: they would be retried first, and these runs do not exist.
            write_journal(
                log, lines=p.journal_lines, org=server.org, base_url=server.base_url, failures=0
            )
            return ["--resume", str(log)], int(server.stats()["runs"]["complete"])

        self.repeat(
            "resume",
            f"resume a {p.journal_lines:,}-line log",
            lambda: measure(spec, "bulkruns", BULKRUNS, ["--rate", str(p.limit)], prepare=prepare),
        )

        def firsts(key: str) -> list[float]:
            return self.rows[key].values("first_mutation") if key in self.rows else []

        large = p.memory_sizes[1]
        first = [
            (f"new filter job (section 1, {p.limit:g}/s)", firsts("bulkruns")),
            (
                f"new ID-file job of {large:,} IDs (section 4; it writes its plan first)",
                firsts(f"memory-{large}"),
            ),
            (f"resume of a {p.journal_lines:,}-line log ({p.limit:g}/s)", firsts("resume")),
        ]
        rss = [r["maxrss_kib"] / 1024 for r in loads]
        self.sections.append(
            "## 5. Journal\n\n"
            f"Loading a {p.journal_lines:,}-line result log ({size_mib:.0f} MiB: claims and "
            "outcomes of 500,000 items, as a long archive job writes them) into resume state "
            f"with `bulkruns.journal.read_journal` ({p.journal_reads} loads in each of "
            f"{p.repeat} process(es)): **{spread(times, 2)} s**; peak RSS of the loading "
            f"process {spread(rss, 0)} MiB.\n\n"
            "Time from the start of a job (before it is built: a resume reads its log, an "
            "ID-file job writes its plan) to its first change request leaving:\n\n"
            "| job | first change, ms |\n|---|---|\n"
            + "\n".join(f"| {label} | {spread(v, 0, 1000.0)} |" for label, v in first)
        )

    # 6 -----------------------------------------------------------------------------------
    def limit_unknown(self) -> None:
        limit_unknown.run(self)


# --- targets -------------------------------------------------------------------------------


def targets(bench: Bench) -> str:
    rows, data = bench.rows, bench.data
    lines = ["| target | figure | |", "|---|---|---|"]

    def add(target: str, figure: str, met: bool | None) -> None:
        mark = DASH if met is None else ("met" if met else "**missed**")
        lines.append(f"| {target} | {figure} | {mark} |")

    if "bulkruns" in rows:
        eff = rows["bulkruns"].median("efficiency") or 0.0
        throttled = max(rows["bulkruns"].values("throttled"))
        add(
            "efficiency ≥ 0.97 at the configured limit, with 0 429s",
            f"{eff:.3f}, {throttled:.0f} 429s",
            eff >= 0.97 and throttled == 0,
        )
    if "over" in rows:
        eff = rows["over"].median("efficiency") or 0.0
        add("efficiency ≥ 0.90 configured at twice the limit", f"{eff:.3f}", eff >= 0.90)
    ours = [m for r in rows.values() for m in r.measures if m.client == "bulkruns"]
    if ours:
        missed = sum(m.figures()["missed"] or 0 for m in ours)
        failed = sum(m.report["failed"] for m in ours)
        add(
            "0 runs missed wherever bulkruns runs",
            f"{missed:.0f} missed, {failed:.0f} failed, over {len(ours)} runs",
            missed == 0,
        )
    if "overhead" in rows:
        pace = rows["overhead"].median("items_per_s") or 0.0
        add(
            f"≥ 3,000 items/s with no limit on a 2-core machine (this one: {os.cpu_count()})",
            f"{pace:,.0f} items/s",
            pace >= 3000,
        )
    if "rss_growth_mib" in data:
        growth = data["rss_growth_mib"]
        small, large = bench.plan.memory_sizes
        add(
            f"peak RSS growth from {small:,} to {large:,} IDs < 12 MiB",
            f"{growth:.1f} MiB",
            growth < 12,
        )
    if "journal_load_s" in data:
        load = data["journal_load_s"]
        add(
            f"a {bench.plan.journal_lines:,}-line journal loads in < 3 s",
            f"{load:.2f} s",
            load < 3,
        )
    for target, figure, met in limit_unknown.target_lines(bench):
        add(target, figure, met)
    return "## Targets\n\n" + "\n".join(lines)


# --- the machine ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = psutil.virtual_memory().total / 2**30
    versions = []
    for name in ("aiohttp", "orjson", "anyio", "aiolimiter", "requests", "botocore"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:  # a missing package is just not listed
            continue
    return (
        f"{cpu}, {os.cpu_count()} cores ({psutil.cpu_count(logical=False)} physical), "
        f"{ram:.1f} GiB RAM; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {platform.platform()}; " + ", ".join(versions)
    )


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def revision() -> tuple[str, str]:
    """The commit benchmarked, as shown; and a fingerprint of the code of bulkruns/."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown", ""
    dirty = _git("status", "--porcelain", "--", "bulkruns")
    shown = f"`{head}`" + (" with uncommitted changes to bulkruns/" if dirty else "")
    return shown, _git("rev-parse", "HEAD:bulkruns") + _git("diff", "HEAD", "--", "bulkruns")


SECTIONS = ("side-by-side", "overestimated", "overhead", "memory", "journal", "limit-unknown")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="at Tallyfy's real 10 requests/s")
    mode.add_argument("--quick", action="store_true", help="smoke-size, one repetition")
    parser.add_argument("--repeat", type=int, help="repetitions of each measured run")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument("--out", help="the Markdown file to write (default: per mode)")
    args = parser.parse_args(argv)
    plan = PLANS["full" if args.full else "quick" if args.quick else "default"]
    if args.repeat is not None:
        if args.repeat < 1:
            parser.error("--repeat must be at least 1")
        plan = Plan(
            **{**{f: getattr(plan, f) for f in plan.__dataclass_fields__}, "repeat": args.repeat}
        )
    out = Path(args.out) if args.out else HERE / plan.out
    only = args.only or list(SECTIONS)
    command = _command(argv)

    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    code, fingerprint = revision()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    log(f"bulkruns benchmarks, {plan.mode} mode, {plan.repeat} repetition(s): {command}")
    with tempfile.TemporaryDirectory(prefix="bulkruns-bench-") as tmp:
        bench = Bench(plan, Path(tmp), log)
        for name in SECTIONS:
            if name in only:
                getattr(bench, name.replace("-", "_"))()
    took = time.perf_counter() - started
    if revision()[1] != fingerprint:
        code += " (bulkruns/ changed while the benchmarks ran)"
    report = render(bench, when, took, command, load, code)
    out.write_text(report)
    (out.with_suffix(".json")).write_text(json.dumps(raw(bench), indent=1) + "\n")
    print()
    print(report)
    print(f"written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def _command(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(args))}" if args else "")
    return shlex.join(["python", "-m", "benchmarks.run", *args])


def render(
    bench: Bench,
    when: dt.datetime,
    took: float,
    command: str,
    load: tuple[float, ...],
    code: str,
) -> str:
    p = bench.plan
    loads = [m.other_load for row in bench.rows.values() for m in row.measures]
    busy = max(loads) if loads else 0.0
    warning = ""
    if busy > 0.10:
        warning = (
            f"\n> **Note:** other processes used up to {busy:.0%} of the machine's CPU during "
            "some runs (see *other load*); CPU-bound figures (section 3 above all) are lower "
            "than on an idle machine.\n"
        )
    if p.mode == "quick":
        warning += (
            "\n> **Quick mode:** smoke-size runs of about 10 s. The fixed costs of a job (its "
            "first list page, the verifying sweeps at the end) weigh a few times more than in "
            "the minute-long runs of the default mode, so efficiency reads lower here; judge "
            "the targets from `make bench`.\n"
        )
    return (
        "# bulkruns benchmarks\n\n"
        f"- **Command:** `{command}` ({p.mode} mode, {p.repeat} repetition(s); took "
        f"{took / 60:.1f} min)\n"
        f"- **Date:** {when:%Y-%m-%d %H:%M} UTC; **code:** {code}\n"
        f"- **Machine:** {machine()}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in load)}\n"
        "- Figures are medians, with the spread (min-max) over the repetitions. Each run has "
        "a fresh sandbox (`python -m bulkruns sandbox`) in its own process and the client in "
        "another. *items/s* counts runs the server saw changed, over the client's time from "
        "the start of the job to its end; *efficiency* is that over the server's limit in "
        "requests/s; *429s* and *requests/item* are as the server counted them (requests "
        "over runs changed); *runs missed* are runs that matched the filter at the start and "
        "were not archived at the end; *runs failed* as the client reported them; CPU is the "
        "client's own during the job; peak RSS the client process's high-water mark. See "
        "`benchmarks/README.md` for the method.\n"
        f"{warning}\n" + "\n\n".join([*bench.sections, targets(bench)]) + "\n"
    )


def raw(bench: Bench) -> dict[str, Any]:
    """Every measure, for a closer look."""
    return {
        "plan": {f: getattr(bench.plan, f) for f in bench.plan.__dataclass_fields__},
        "data": bench.data,
        "rows": {
            key: {
                "label": row.label,
                "measures": [
                    {"figures": m.figures(), "report": m.report, "after": m.after}
                    for m in row.measures
                ],
            }
            for key, row in bench.rows.items()
        },
    }


if __name__ == "__main__":
    main()
