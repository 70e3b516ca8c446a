"""Bad input: one clear line on standard error, exit 2, no traceback, and no request sent.

The whole catalogue runs against one sandbox, whose request counter must still read zero
at the end: nothing reached it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest
from cli_support import ThreadedSandbox, job_header, run, run_many

RUN_ID = "0123456789abcdef0123456789abcdef"

# (arguments, environment changes (None removes a variable), what the one line must say)
CATALOGUE: list[tuple[list[str], dict[str, str | None], str]] = [
    # flags and their values
    (["archive", "--bogus"], {}, "No such option '--bogus'"),
    (["frobnicate"], {}, "No such command 'frobnicate'"),
    (
        ["archive", "--concurrency", "0", "--all"],
        {},
        "--concurrency must be a whole number of at least 1",
    ),
    (["archive", "--rate", "fast", "--all"], {}, "'fast' is not a valid float"),
    (["archive", "--rate", "-1", "--all"], {}, "--rate must be at least 0"),
    (["archive", "--limit", "0", "--all"], {}, "--limit must be a whole number of at least 1"),
    (
        ["archive", "--per-page", "500", "--all"],
        {},
        "--per-page must be a whole number from 1 to 100",
    ),
    (
        ["archive", "--max-failures", "-1", "--all"],
        {},
        "--max-failures must be a whole number of at least 0",
    ),
    (["list", "--per-page", "0"], {}, "--per-page must be a whole number from 1 to 100"),
    (["archive", "--max-failures", "many", "--all"], {}, "'many' is not a number of failures"),
    (["archive", "--archived-style", "maybe", "--all"], {}, "'--archived-style'"),
    (["archive", "--token", "x"], {}, "No such option '--token'"),
    (["archive", "--set", "starred=true", "--all"], {}, "No such option '--set'"),
    (["resume"], {}, "Missing argument 'LOG'"),
    (["resume", "archive.jsonl", "--log", "x.jsonl"], {}, "No such option '--log'"),
    # rates that are not finite: refused before a delete's count request
    (["archive", "--rate", "inf", "--all"], {}, "--rate must be at least 0 (requests per second"),
    (
        ["delete", "--yes", "--rate", "inf", "--all"],
        {},
        "--rate must be at least 0 (requests per second",
    ),
    (["list", "--rate", "nan"], {}, "--rate must be at least 0 (requests per second"),
    (["sandbox", "--rate", "inf"], {}, "'--rate': inf is not a finite number"),
    (["sandbox", "--port", "99999"], {}, "'--port': 99999 is not in the range 0<=x<=65535"),
    # filters and dates
    (["archive", "--status", "nope"], {}, "unknown status 'nope'"),
    (["archive", "--created-before", "last tuesday"], {}, "'last tuesday' is not a date"),
    (["archive", "--updated-before", "2025-13-45"], {}, "'2025-13-45' is not a date"),
    (["list", "--created-before", "soon"], {}, "'soon' is not a date"),
    (["archive", "--updated-before", "6m"], {}, "'m' could be minutes or months"),
    (["archive", "--status", "archived"], {}, "--status archived would select none"),
    (
        ["archive"],
        {},
        "no filter given: that would select every run of the organisation; pass --all",
    ),
    (["archive", "--ids-file", "ids.txt", "--all"], {}, "leave out --all"),
    (["archive", "--owners", "a,,b"], {}, "--owners takes IDs separated by commas"),
    (["activate", "--status", "active"], {}, "--status active cannot be combined"),
    (
        ["activate", "--status", "complete", "--archived-style", "only"],
        {},
        "archived runs are selected whatever their status was before they were archived",
    ),
    (["delete", "--status", "complete"], {}, "add --archive-first"),
    # --set fields and values
    (["update", "--status", "complete"], {}, "update needs at least one --set"),
    (["update", "--set", "colour=red", "--all"], {}, "'colour' cannot be updated"),
    (["update", "--set", "starred=maybe", "--all"], {}, "starred must be true or false"),
    (["update", "--set", "name", "--all"], {}, "write FIELD=VALUE"),
    (["update", "--set", "name=123", "--all"], {}, "--set 'name=\"123\"'"),
    (["update", "--set", "users=a,b", "--all"], {}, "users must be a JSON list of IDs"),
    (["update", "--set", "name=" + "x" * 551, "--all"], {}, "Tallyfy allows at most 550"),
    (["update", "--set", "starred=true", "--set", "starred=false", "--all"], {}, "given twice"),
    # ID files
    (["archive", "--ids-file", "missing.txt"], {}, "cannot read the ID file missing.txt"),
    (["archive", "--ids-file", "bad-ids.txt"], {}, "bad-ids.txt line 2: 'not-an-id'"),
    (["archive", "--ids-file", "empty.txt"], {}, "empty.txt holds no run IDs"),
    (["archive", "--ids-file", "ids.txt", "--status", "complete"], {}, "leave out --status"),
    (["archive", "--ids-file", "latin1.txt"], {}, "latin1.txt is not a UTF-8 text file"),
    (["list", "--ids-file", "ids.txt"], {}, "list prints what a query selects"),
    # journals
    (["resume", "missing.jsonl"], {}, "missing.jsonl: no such result log"),
    (["resume", "corrupt.jsonl"], {}, "line 2 is corrupt"),
    (["resume", "other-org.jsonl"], {}, "records a job of organisation 'someone-else'"),
    (["resume", "other-server.jsonl"], {}, "pass the same --base-url"),
    (["resume", "ids.txt"], {}, "ids.txt"),
    (["undo", "delete.jsonl"], {}, "a permanent delete cannot be undone"),
    (["undo", "archive.jsonl", "--log", "archive.jsonl"], {}, "the undo needs a log of its own"),
    (["resume", "params-list.jsonl"], {}, "params-list.jsonl: the job's recorded settings"),
    (["undo", "params-list.jsonl"], {}, "params-list.jsonl: the job's recorded settings"),
    (["resume", "params-bad.jsonl"], {}, "params-bad.jsonl: the recorded setting params.rate"),
    (["resume", "params-list.jsonl", "--dry-run"], {}, "(params) are not an object"),
    (["archive", "--log", "delete.jsonl", "--all"], {}, "delete.jsonl already exists"),
    (["archive", "--log", "nowhere/job.jsonl", "--all"], {}, "the folder nowhere does not exist"),
    (["archive", "--log", ".", "--all"], {}, "--log . is a folder"),
    # the log is made before a delete counts its runs
    (
        ["delete", "--yes", "--log", "/proc/self/e2.jsonl", "--all"],
        {},
        "cannot create the result log",
    ),
    # base URLs, token and organisation
    (["--base-url", "ftp://example.com/api", "archive", "--all"], {}, "ftp://example.com/api"),
    (["--base-url", "http://example.com/api", "archive", "--all"], {}, "http://"),
    (["archive", "--all"], {"TALLYFY_ACCESS_TOKEN": None}, "no access token"),
    (["archive", "--all"], {"TALLYFY_ACCESS_TOKEN": "  "}, "no access token"),
    (["archive", "--all"], {"TALLYFY_ORG_ID": None}, "no organisation given"),
    (["--token-file", "no-token-here", "archive", "--all"], {}, "cannot read the token file"),
    (
        ["--token-file", "empty-token", "archive", "--all"],
        {},
        "the token file empty-token is empty",
    ),
    # global options also follow the command, once
    (["--org", "a", "archive", "--org", "b", "--all"], {}, "--org is given twice"),
    (["archive", "--token-file", "no-token-here", "--all"], {}, "cannot read the token file"),
    (["report", "archive.jsonl", "--org", "x"], {}, "No such option '--org'"),
    # timeouts, CA bundles and proxies
    (["archive", "--timeout", "0", "--all"], {}, "--timeout must be above 0 (seconds), not 0"),
    (["archive", "--timeout", "inf", "--all"], {}, "--timeout must be above 0"),
    (["archive", "--timeout", "soon", "--all"], {}, "'soon' is not a valid float"),
    (["list", "--timeout", "-1"], {}, "--timeout must be above 0"),
    (["resume", "archive.jsonl", "--timeout", "0"], {}, "--timeout must be above 0"),
    (["resume", "archive.jsonl", "--dry-run", "--timeout", "0"], {}, "--timeout must be above 0"),
    (["undo", "archive.jsonl", "--timeout", "0"], {}, "--timeout must be above 0"),
    (["archive", "--ca-file", "missing.pem", "--all"], {}, "cannot read the CA file missing.pem"),
    (["--ca-file", "junk.pem", "list"], {}, "junk.pem (--ca-file or SSL_CERT_FILE) holds no PEM"),
    (["archive", "--all"], {"SSL_CERT_FILE": "missing.pem"}, "cannot read the CA file missing.pem"),
    (
        ["archive", "--base-url", "https://tallyfy.example/api", "--all"],
        {"HTTPS_PROXY": "socks5://u:secret-pw@proxy.example:1080"},
        "HTTPS_PROXY names a socks5:// proxy",
    ),
    # logs in a folder of their own
    (["archive", "--log", "x.jsonl", "--log-dir", ".", "--all"], {}, "give one of them"),
    (["undo", "archive.jsonl", "--log", "x.jsonl", "--log-dir", "."], {}, "give one of them"),
    (["archive", "--log-dir", "nowhere", "--all"], {}, "Directory 'nowhere' does not exist"),
    (["archive", "--log-dir", "ids.txt", "--all"], {}, "Directory 'ids.txt' is a file"),
    # list and report
    (["list", "--ids", "--count"], {}, "--ids and --count print different things"),
    (["report"], {}, "Missing argument 'LOG'"),
    (["report", "missing.jsonl"], {}, "missing.jsonl: no such result log"),
    (["report", "corrupt.jsonl"], {}, "line 2 is corrupt"),
    (["report", "archive.jsonl", "--json", "--failed-ids"], {}, "give one of them"),
]


@pytest.fixture
def box() -> Iterator[ThreadedSandbox]:
    sandbox = ThreadedSandbox(runs=50).start()
    yield sandbox
    sandbox.stop()


def _files(box: ThreadedSandbox, where: Path) -> None:
    item = orjson.dumps({"type": "item", "id": RUN_ID, "outcome": "ok"}) + b"\n"
    (where / "bad-ids.txt").write_text(f"{RUN_ID}\nnot-an-id\n")
    (where / "empty.txt").write_text("# nothing\n\n")
    (where / "ids.txt").write_text(f"{RUN_ID}\n")
    (where / "corrupt.jsonl").write_bytes(job_header(box) + b"{not json\n" + item)
    (where / "other-org.jsonl").write_bytes(job_header(box, org="someone-else") + item)
    (where / "other-server.jsonl").write_bytes(
        job_header(box, base_url="https://go.tallyfy.com/api") + item
    )
    (where / "delete.jsonl").write_bytes(job_header(box, operation="delete") + item)
    (where / "archive.jsonl").write_bytes(job_header(box) + item)
    (where / "params-list.jsonl").write_bytes(job_header(box, params=[1, 2]) + item)
    (where / "params-bad.jsonl").write_bytes(job_header(box, params={"rate": "fast"}) + item)
    (where / "latin1.txt").write_bytes(f"# caf\xe9\n{RUN_ID}\n".encode("latin-1"))
    (where / "empty-token").write_text("\n")
    (where / "junk.pem").write_text("not a certificate\n")


def test_bad_input_is_one_line_exit_2_and_sends_nothing(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    assert len(CATALOGUE) >= 15
    _files(box, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    base = box.env(tmp_path)
    cases: list[tuple[list[str], Mapping[str, str]]] = []
    for args, changes, _ in CATALOGUE:
        env = dict(base)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        cases.append((args, env))
    results = run_many(cases, cwd=tmp_path)
    problems = []
    for (args, _, expected), result in zip(CATALOGUE, results, strict=True):
        out, err = result.out, result.err
        lines = err.splitlines()
        if (
            result.code != 2
            or out
            or len(lines) != 1
            or not lines[0].startswith("bulkruns: error: ")
            or expected not in lines[0]
        ):
            problems.append(f"{args[:3]}: exit {result.code}, out {out!r}, err {err!r}")
    assert not problems, "\n".join(problems)
    stats = box.stats()
    assert stats["total"] == 0, stats["requests"]
    # and no journal was left behind by a job that never started
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == before


def test_bad_input_in_a_process_of_its_own(box: ThreadedSandbox, tmp_path: Path) -> None:
    """The same mistakes through a fresh interpreter, as a user meets them."""
    env = box.env(tmp_path)
    for args in (["archive", "--status", "nope"], ["resume", "missing.jsonl"]):
        result = run(args, env=env, cwd=tmp_path)
        assert result.code == 2
        assert result.out == ""
        assert result.err.startswith("bulkruns: error: ")
        assert result.err.count("\n") == 1
    assert box.stats()["total"] == 0
