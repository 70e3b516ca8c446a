"""Section 6, the limit unknown: does a client find a limit it was not told, or told wrong?

Tallyfy's real limit is unknown (its published figures disagree, the budget is shared with a
user's other integrations, a 429 can cost seconds of penalty), so it may be anywhere from a
sixth of the default to the default. This section runs bulkruns, told the exact limit and told
too much, beside the peers a user would pick instead (the AWS SDKs' adaptive retry mode, which
is told nothing and finds the pace from the 429s, and the docs' requests loop), against
sandboxes harder than the default one is kind: one-second rolling windows with a 2 s penalty
after any 429, a co-tenant, a fixed window that announces itself (Laravel's), and Tallyfy's own
10/s with its latency; and those two shared with a co-tenant. Repetitions are interleaved (each
repetition runs every configuration once), so that a busy spell of the machine does not fall on
one client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from benchmarks.figures import COLUMNS as TABLE_COLUMNS
from benchmarks.figures import DASH, Row, table
from benchmarks.harness import COMPLETE_SHARE, Measure, ServerSpec, measure

if TYPE_CHECKING:
    from benchmarks.run import Bench

BULKRUNS = "benchmarks.clients.bulkruns_job"
AWS = "benchmarks.baselines.aws_adaptive"
DOCS_LOOP = "benchmarks.baselines.docs_requests_loop"

AWS_LABEL = "AWS adaptive retry mode (botocore), not told"
DOCS_LABEL = "docs' requests loop, not told"
TITLE = "6. The limit unknown"
PENALTY = "penalty=2"  # every shape's: once it refuses, 2 s of refusals
# (a)-(c) announce nothing, so that their limit is found from 429s alone; (d)-(g) send
# X-RateLimit-Limit and -Remaining, as Laravel's throttle (Tallyfy's) does.
QUIET = "quiet"
TIMES = "\u00d7"  # multiplication sign


@dataclass(frozen=True, slots=True)
class Target:
    """What bulkruns should reach in a configuration: efficiency, and 429s at most."""

    efficiency: float
    throttled: int

    def describe(self) -> str:
        most = {0: "0 429s", 1: "at most one 429"}.get(self.throttled, "")
        return f"≥ {self.efficiency:.2f}, {most or f'at most {self.throttled} 429s'}"


EXACT = Target(0.97, 0)  # at the exact limit, any shape
OVER = Target(0.90, 5)  # told 2x or 6x over, or sharing with a client that takes 30 %
HEADERS = Target(0.95, 1)  # told over, with X-RateLimit-* headers to read


@dataclass(frozen=True, slots=True)
class Told:
    """What bulkruns is told: a rate in requests/s (None: its default settings)."""

    key: str
    rate: float | None
    meaning: str  # "exact", "2x over", …
    target: Target

    def label(self) -> str:
        if self.rate is None:
            return f"bulkruns, default settings ({self.meaning})"
        return f"bulkruns, told {self.rate:g}/s ({self.meaning})"

    def args(self) -> list[str]:
        return [] if self.rate is None else ["--rate", f"{self.rate:g}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """A server's limit, and what bulkruns is told about it."""

    key: str
    title: str
    limits: tuple[str, ...]
    told: tuple[Told, ...]
    cotenant: float = 0.0
    latency_ms: float = 35.0  # 20-50 ms
    jitter_ms: float = 15.0
    tallyfy: bool = False  # Tallyfy's own 10/s: its job's length is the plan's own
    peers: bool = True  # the AWS peer and the docs' loop run on it too

    def spec(self, selected: int) -> ServerSpec:
        return ServerSpec(
            runs=round(selected / COMPLETE_SHARE),
            limits=self.limits,
            cotenant=self.cotenant,
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
        )

    @property
    def capacity(self) -> float:
        """Requests/s left to the client: the real limit, or what the co-tenant leaves."""
        return self.spec(0).capacity


# (d) and (e), which (f) and (g) share
FIXED = Shape(
    key="d",
    title="100 per 1 s fixed window, with X-RateLimit-* headers",
    limits=(f"100/1s fixed {PENALTY}",),
    told=(
        Told("exact", 100, "exact", EXACT),
        Told("2x", 200, f"2{TIMES} over", HEADERS),
        Told("6x", 600, f"6{TIMES} over", HEADERS),
    ),
)
TALLYFY = Shape(
    key="e",
    title=f"Tallyfy's 10/s, latency 80{DASH}200 ms",
    limits=(f"10/1s {PENALTY}",),
    latency_ms=140.0,
    jitter_ms=60.0,
    told=(Told("default", None, "10/s, exact", EXACT),),
    tallyfy=True,
)
SHAPES = (
    Shape(
        key="a",
        title="200/s",
        limits=(f"200/1s {QUIET} {PENALTY}",),
        told=(Told("exact", 200, "exact", EXACT), Told("2x", 400, f"2{TIMES} over", OVER)),
    ),
    Shape(
        key="b",
        title="50/s",
        limits=(f"50/1s {QUIET} {PENALTY}",),
        told=(
            Told("exact", 50, "exact", EXACT),
            Told("2x", 100, f"2{TIMES} over", OVER),
            Told("6x", 300, f"6{TIMES} over", OVER),
        ),
    ),
    Shape(
        key="c",
        title="200/s shared with a co-tenant taking 60/s",
        limits=(f"200/1s {QUIET} {PENALTY}",),
        cotenant=60.0,
        told=(
            Told("exact", 140, "what is left, exactly", EXACT),
            Told("whole", 200, "the whole limit", OVER),
            Told("2x", 280, f"2{TIMES} what is left", OVER),
        ),
    ),
    FIXED,
    TALLYFY,
    # (d) and (e) shared, as a user's budget is with their other integrations: the peers read
    # no headers, so the co-tenant tells nothing of them that (c) does not
    replace(
        FIXED,
        key="f",
        title="(d) shared with a co-tenant taking 30/s",
        cotenant=30.0,
        told=(
            Told("exact", 70, "what is left, exactly", EXACT),
            Told("whole", 100, "the whole limit", HEADERS),
        ),
        peers=False,
    ),
    replace(
        TALLYFY,
        key="g",
        title="(e) shared with a co-tenant taking 3/s",
        cotenant=3.0,
        told=(Told("default", None, "10/s, the whole limit", HEADERS),),
        peers=False,
    ),
)

# Section 1's columns, but memory and the first change, with the server's counts to check them by
COLUMNS = [c for c in TABLE_COLUMNS if c[0] not in ("peak_rss_mib", "first_mutation")]
COLUMNS.insert(-1, ("limit_used", "limit used", 3, 1.0))
COTENANT_COLUMN = ("cotenant_share", "co-tenant served", 2, 1.0)
CAP_COLUMN = ("not_reached", "not reached (cap)", 0, 1.0)


def _key(shape: Shape, what: str) -> str:
    return f"unknown-{shape.key}-{what}"


def run(bench: Bench) -> None:
    """Measure every shape with every client, and write the section."""
    p = bench.plan
    try:
        from botocore.retries.standard import ThrottlingStatusCodeChecker  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the limit-unknown section needs botocore 1.44 or newer, for its AWS peer: "
            "`make bench` installs it (pip install -e '.[bench]')"
        ) from None
    bench.log(f"the limit unknown: {len(SHAPES)} shapes, jobs of {p.unknown_seconds:g} s")
    configs: list[tuple[Shape, str, str, Callable[[], Measure]]] = []
    for shape in SHAPES:
        seconds = p.tallyfy_seconds if shape.tallyfy else p.unknown_seconds
        spec = shape.spec(round(shape.capacity * seconds))
        loop_spec = shape.spec(p.tallyfy_loop_runs if shape.tallyfy else p.unknown_loop_runs)
        cap = ["--time-cap", f"{seconds * p.unknown_cap:g}"]
        runs = [
            (t.key, t.label(), partial(measure, spec, "bulkruns", BULKRUNS, t.args()))
            for t in shape.told
        ]
        if shape.peers:
            runs.append(("aws", AWS_LABEL, partial(measure, spec, "aws-adaptive", AWS, cap)))
            runs.append(("docs", DOCS_LABEL, partial(measure, loop_spec, "docs", DOCS_LOOP, [])))
        configs += [(shape, _key(shape, key), label, run) for key, label, run in runs]
    for n in range(p.repeat):
        bench.log(f"the limit unknown, repetition {n + 1} of {p.repeat}")
        for shape, key, label, measured in configs:
            bench.once(key, f"({shape.key}) {label}", measured, n)
            bench.rows[key].label = label  # the table says which shape
    bench.sections.append(_section(bench))


def _rows(bench: Bench, shape: Shape) -> list[Row]:
    keys = [_key(shape, t.key) for t in shape.told] + [_key(shape, "aws"), _key(shape, "docs")]
    return [bench.rows[k] for k in keys if k in bench.rows]


def _cell(row: Row | None) -> str:
    if row is None or not row.values("efficiency"):
        return DASH
    eff = row.median("efficiency") or 0.0
    return f"{eff:.3f} ({max(row.values('throttled')):.0f})"


def _told(bench: Bench, shape: Shape, told: Told) -> str:
    rate = "default" if told.rate is None else f"{told.rate:g}/s"
    return f"{rate}: {_cell(bench.rows.get(_key(shape, told.key)))}"


def _glance(bench: Bench) -> str:
    lines = [
        "| shape | bulkruns told exactly | bulkruns told over | AWS adaptive | docs' loop |",
        "|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        exact = [_told(bench, shape, t) for t in shape.told if t.target is EXACT]
        over = [_told(bench, shape, t) for t in shape.told if t.target is not EXACT]
        cells = [
            f"({shape.key}) {shape.title}",
            "; ".join(exact) or DASH,
            "; ".join(over) or DASH,
            _cell(bench.rows.get(_key(shape, "aws"))),
            _cell(bench.rows.get(_key(shape, "docs"))),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _section(bench: Bench) -> str:
    p = bench.plan
    parts = [
        f"## {TITLE}\n\n"
        "bulkruns is fast when told the exact limit of a forgiving server; Tallyfy's real "
        "limit is unknown and may be anywhere from a sixth of the default to the default. "
        "Here the server is harder than the default sandbox: every shape is a rolling "
        "window of one second's worth of requests (no allowance to burst into) with a "
        f"**2 s penalty** after any 429 (every request refused meanwhile), and latency "
        f"20{DASH}50 ms, unless said. bulkruns is told a rate through `JobOptions(rate=…)`: the "
        "exact limit (of what is left, with the co-tenant), or too much. Its peers are told "
        "nothing: the **AWS SDKs' adaptive retry mode** "
        "(`baselines/aws_adaptive.py`: botocore's own `ClientRateLimiter`, a token bucket "
        "whose rate a CUBIC calculator sets from the 429s, on top of its standard retries, "
        "wired as botocore wires them, 8 attempts and 16 threads as bulkruns' defaults; it "
        "lists every page, then archives) and the docs' requests loop; (f) and (g) share "
        "(d) and (e) with a co-tenant, for bulkruns alone (the peers read no headers).\n\n"
        f"Each job is sized to take **{p.unknown_seconds:g} s at the real limit** "
        f"((e) and (g): {p.tallyfy_seconds:g} s), {p.repeat} repetition(s), interleaved. "
        f"*efficiency* is runs changed per second over the *real* limit, or over what the "
        f"co-tenant leaves; *429s* in the summary are the most in any repetition. "
        "*limit used* checks it against the server's own counts: the requests it served "
        "(the client's, and the co-tenant's over the same span) per second, over the whole "
        "limit; a one-second window cannot serve more than 1 + 1/T of it in T seconds. "
        "*co-tenant served* is the share of its rate the co-tenant got: it is simulated and "
        "polite (a request that does not fit is dropped, not retried), so a client that "
        "takes more than what is left takes it from the co-tenant. The AWS peer takes no new "
        f"run after {p.unknown_cap:g}{TIMES} the job's nominal time (*not reached (cap)*: its "
        "figures are those of its first minutes); the docs' loop, one request at a time, "
        f"gets {p.unknown_loop_runs:,} runs ({p.tallyfy_loop_runs:,} at (e)).\n\n"
        "The sandbox counts a request when it arrives, after its latency, so jitter moves "
        "arrivals closer together than they were sent: to never put more than a second's "
        "worth in any one-second window, a client sending evenly must stay under about "
        f"0.97 of the limit at 20{DASH}50 ms, and 0.89 at (e)'s 80{DASH}200 ms; one that "
        "paces from the answers (which leave as the request is counted) can reach about "
        "0.985 and 0.94. So the exact-limit targets leave a client almost no margin, and at "
        "(e) none: there, every 429 also costs 2 s of refusals, a thirtieth of a minute.\n\n"
        "At a glance: median efficiency (most 429s in a repetition).\n\n" + _glance(bench)
    ]
    for shape in SHAPES:
        rows = _rows(bench, shape)
        if not rows:
            continue
        columns = list(COLUMNS)
        if shape.cotenant:
            columns.insert(-1, COTENANT_COLUMN)
        if any(row.values("not_reached") and max(row.values("not_reached")) for row in rows):
            columns.insert(5, CAP_COLUMN)
        seconds = p.tallyfy_seconds if shape.tallyfy else p.unknown_seconds
        spec = shape.spec(round(shape.capacity * seconds))
        parts.append(
            f"### ({shape.key}) {shape.title}\n\n{spec.describe()}; the real limit left to "
            f"the client: {shape.capacity:g} requests/s.\n\n" + table(rows, columns)
        )
    return "\n\n".join(parts)


def target_lines(bench: Bench) -> Sequence[tuple[str, str, bool | None]]:
    """The section's targets: (what, the figure, met), for the shapes that were measured."""
    lines: list[tuple[str, str, bool | None]] = []
    for shape in SHAPES:
        for told in shape.told:
            row = bench.rows.get(_key(shape, told.key))
            if row is None or not row.values("efficiency"):
                continue
            eff = row.median("efficiency") or 0.0
            throttled = max(row.values("throttled"))
            goal = told.target
            what = told.label().removeprefix("bulkruns, ")
            lines.append(
                (
                    f"({shape.key}) {shape.title}, {what}: {goal.describe()}",
                    f"{eff:.3f}, {throttled:.0f} 429s",
                    eff >= goal.efficiency and throttled <= goal.throttled,
                )
            )
    return lines
