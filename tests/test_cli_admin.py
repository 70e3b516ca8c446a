"""The command line's conventions, for an admin and a cron job: ``--version``, global
options after the command, help with examples, shell completion, ``--timeout``,
``list --ids/--count``, ``--log-dir``, and a job behind a proxy with a CA of its own."""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from cli_support import (
    TOKEN,
    ThreadedSandbox,
    complete,
    journal_records,
    live,
    run,
    run_many,
    sandboxes,
    unstamped,
)
from net_support import ConnectProxy, LoopThread, make_tls


@pytest.fixture
def make_box() -> Iterator[Callable[..., ThreadedSandbox]]:
    with sandboxes() as factory:
        yield factory


@pytest.fixture
def box(make_box: Callable[..., ThreadedSandbox]) -> ThreadedSandbox:
    return make_box()


# --- conventions ----------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], env=dict(os.environ), cwd=tmp_path)
    assert result.code == 0
    assert result.out == f"bulkruns {importlib.metadata.version('bulkruns')}\n"


def test_global_options_may_follow_the_command(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path, TALLYFY_ORG_ID="another-org", TALLYFY_BASE_URL="http://127.0.0.1:9/")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env.pop("TALLYFY_ACCESS_TOKEN")
    delayed = box.ids(lambda r: r["status"] == "delayed" and r["archived_at"] is None)

    result = run(
        [
            *("archive", "--status", "delayed", "--rate", "0", "--json"),
            *("--org", box.org, "--base-url", box.base_url, "--token-file", "token"),
        ],
        env=env,
        cwd=tmp_path,
    )

    assert result.code == 0, result.err
    assert result.json["ok"] == len(delayed) > 0
    # the commands shown put them before the command, a file by its absolute path
    assert result.json["undo_command"].startswith(
        f"bulkruns --base-url {box.base_url} --org {box.org} --token-file {token_file} undo "
    )


def test_resume_and_undo_read_the_organisation_and_server_from_the_log(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    first = run(
        ["archive", "--status", "complete", "--limit", "5", "--rate", "0", "--log", "j.jsonl"],
        env=env,
        cwd=tmp_path,
    )
    assert first.code == 0, first.err
    bare = {k: v for k, v in env.items() if k not in ("TALLYFY_ORG_ID", "TALLYFY_BASE_URL")}

    resumed = run(["resume", "j.jsonl", "--limit", "8", "--json"], env=bare, cwd=tmp_path)
    undone = run(["undo", "j.jsonl", "--json"], env=bare, cwd=tmp_path)

    assert resumed.code == 0, resumed.err
    assert resumed.json["ok"] == 3
    assert undone.code == 0, undone.err
    assert undone.json["ok"] == 8


def test_every_command_helps_with_examples_environment_and_exit_codes(tmp_path: Path) -> None:
    names = [
        *("list", "archive", "activate", "update", "delete"),
        *("resume", "undo", "report", "rethrottle", "sandbox"),
    ]
    results = run_many([([name, "--help"], dict(os.environ)) for name in names], cwd=tmp_path)
    for name, result in zip(names, results, strict=True):
        text = result.out
        assert result.code == 0, name
        examples = re.findall(rf"^    bulkruns {name} ", text, re.MULTILINE)
        assert 2 <= len(examples) <= 3, name
        assert "Exit codes:" in text, name
        assert re.search(r"^    0 ", text, re.MULTILINE), name
        assert ("130" in text) == (name not in ("report", "rethrottle", "sandbox")), name
        if name in ("report", "sandbox"):
            assert "Environment: none" in text
        elif name == "rethrottle":  # it finds the job by its lock: no token
            assert "TALLYFY_ORG_ID" in text
            assert "TALLYFY_ACCESS_TOKEN" not in text
        else:
            for variable in ("TALLYFY_ORG_ID", "TALLYFY_ACCESS_TOKEN", "HTTPS_PROXY"):
                assert variable in text, (name, variable)
        if name not in ("resume", "undo", "report", "rethrottle", "sandbox"):
            # the age units, and the one refused
            assert "30min, 12h, 90d, 2w, 6mo, 1y or 45s" in text, name
            assert "a bare m is refused" in text, name
    root = run(["--help"], env=dict(os.environ), cwd=tmp_path)
    assert "_BULKRUNS_COMPLETE=bash_source bulkruns" in root.out
    assert "Global options may also follow the command" in root.out


def _complete(words: str, cwd: Path) -> list[str]:
    env = {**os.environ, "_BULKRUNS_COMPLETE": "bash_complete", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(len(words.split(" ")) - 1)
    result = run([], env=env, cwd=cwd)
    assert result.code == 0, result.err
    return [line for line in result.out.splitlines() if line]


def test_shell_completion_of_statuses_and_logs(tmp_path: Path) -> None:
    (tmp_path / "nightly").mkdir()
    (tmp_path / "nightly" / "bulkruns-archive-1.jsonl").write_text("")
    (tmp_path / "j.jsonl").write_text("")
    (tmp_path / "ids.txt").write_text("")

    assert _complete("bulkruns archive --status c", tmp_path) == ["plain,complete"]
    assert _complete("bulkruns list --status ", tmp_path) == [
        "plain,active",
        "plain,complete",
        "plain,problem",
        "plain,delayed",
        "plain,archived",
    ]
    assert _complete("bulkruns report ", tmp_path) == ["plain,j.jsonl", "plain,nightly/"]
    assert _complete("bulkruns resume nightly/", tmp_path) == [
        "plain,nightly/bulkruns-archive-1.jsonl"
    ]
    assert _complete("bulkruns undo nowhere/", tmp_path) == []
    assert _complete("bulkruns archive --ids-file i", tmp_path) == ["file,i"]


def test_a_stalled_request_waits_no_longer_than_the_timeout(
    make_box: Callable[..., ThreadedSandbox], tmp_path: Path
) -> None:
    stalled = make_box(runs=20, stall_rate=1.0, stall_seconds=60)
    (tmp_path / "ids.txt").write_text("\n".join(stalled.ids(live)[:2]) + "\n")

    result = run(
        [
            *("archive", "--ids-file", "ids.txt", "--timeout", "0.3", "--max-attempts", "1"),
            *("--rate", "0", "--log", "j.jsonl", "--json"),
        ],
        env=stalled.env(tmp_path),
        cwd=tmp_path,
    )

    assert result.code == 1, result.err
    failed = [r for r in journal_records(tmp_path / "j.jsonl") if r.get("outcome") == "failed"]
    assert len(failed) == 2
    # the error names the operation, not the method and URL
    assert {r["error"] for r in failed} == {
        "archive: no answer within 0.3 s; it may have been applied"
    }
    # the log records the timeout: a resumed job waits no longer either
    again = run(["resume", "j.jsonl", "--json"], env=stalled.env(tmp_path), cwd=tmp_path)
    assert again.code == 1, again.err
    retried = [r for r in journal_records(tmp_path / "j.jsonl") if r.get("outcome") == "failed"]
    assert len(retried) == 4
    assert all("within 0.3 s" in r["error"] for r in retried)


def test_a_damaged_recorded_timeout_is_named_as_the_logs(
    box: ThreadedSandbox, tmp_path: Path
) -> None:
    env = box.env(tmp_path)
    (tmp_path / "ids.txt").write_text(box.ids(live)[0] + "\n")
    first = run(["archive", "--ids-file", "ids.txt", "--log", "j.jsonl"], env=env, cwd=tmp_path)
    assert first.code == 0, first.err
    lines = (tmp_path / "j.jsonl").read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    header["params"]["timeout"] = -1
    (tmp_path / "j.jsonl").write_bytes(orjson.dumps(header) + b"\n" + b"".join(lines[1:]))

    result = run(["resume", "j.jsonl"], env=env, cwd=tmp_path)

    assert result.code == 2
    assert result.err == (
        "bulkruns: error: the log's recorded timeout -1 is not a number of seconds above 0; "
        "give --timeout SECONDS\n"
    )


# --- list for people and pipes -------------------------------------------------------------


def test_list_prints_ids_or_a_count(box: ThreadedSandbox, tmp_path: Path) -> None:
    env = box.env(tmp_path)
    expected = box.ids(complete)
    before = box.stats()["requests"]["list"]

    ids = run(["list", "--status", "complete", "--ids", "--per-page", "9"], env=env, cwd=tmp_path)
    count = run(["list", "--status", "complete", "--count"], env=env, cwd=tmp_path)
    dated = run(
        ["list", "--status", "complete", "--count", "--updated-before", "2099-01-01"],
        env=env,
        cwd=tmp_path,
    )
    capped = run(["list", "--count", "--limit", "4"], env=env, cwd=tmp_path)

    assert ids.code == count.code == dated.code == capped.code == 0, ids.err + count.err
    assert sorted(ids.out.splitlines()) == sorted(expected)
    assert count.out == dated.out == f"{len(expected)}\n"
    assert capped.out == "4\n"
    served = sum(box.stats()["requests"]["list"].values()) - sum(before.values())
    pages = -(-len(expected) // 9)
    # a count that the server can make alone takes one request; a dated one lists every page
    assert served == pages + 1 + (-(-len(expected) // 100)) + 1


# --- cron ---------------------------------------------------------------------------------


def test_a_log_dir_keeps_default_names_in_one_folder(box: ThreadedSandbox, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    env = box.env(tmp_path)

    result = run(
        ["archive", "--status", "delayed", "--rate", "0", "--log-dir", "logs"],
        env=env,
        cwd=tmp_path,
    )

    assert result.code == 0, result.err
    (log,) = (tmp_path / "logs").iterdir()
    assert re.fullmatch(r"bulkruns-archive-\d{8}T\d{6}Z\.jsonl", log.name)
    assert f"  journal: logs/{log.name}" in unstamped(result.out).splitlines()
    undo = run(
        ["undo", f"logs/{log.name}", "--rate", "0", "--log-dir", "logs", "--json"],
        env=env,
        cwd=tmp_path,
    )
    assert undo.code == 0, undo.err
    assert Path(undo.json["journal"]).parent == Path("logs")
    assert not list(tmp_path.glob("*.jsonl"))


# --- corporate networks -------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def test_a_job_through_a_proxy_with_a_ca_of_its_own(
    make_box: Callable[..., ThreadedSandbox], loop: LoopThread, tmp_path: Path
) -> None:
    tls = make_tls(tmp_path, "tallyfy.test", "127.0.0.1")
    box = make_box(runs=40, tls=(tls.server, tls.ca_file))
    proxy = loop.run(ConnectProxy(box.server.port).start())
    url = f"https://tallyfy.test:{box.server.port}/api"
    env = box.env(tmp_path, TALLYFY_BASE_URL=url, HTTPS_PROXY=proxy.url, NO_PROXY="localhost")
    expected = len(box.ids(complete))

    try:
        counted = run(
            ["list", "--status", "complete", "--count", "--ca-file", str(tls.ca_file)],
            env=env,
            cwd=tmp_path,
        )
        archived = run(
            ["archive", "--status", "complete", "--rate", "0", "--json"],
            env={**env, "SSL_CERT_FILE": str(tls.ca_file)},
            cwd=tmp_path,
        )
    finally:
        loop.run(proxy.close())

    assert counted.code == 0, counted.err
    assert counted.out == f"{expected}\n"
    assert archived.code == 0, archived.err
    assert archived.json["ok"] == expected
    # the proxy saw where to, never what: no path, no token
    assert {line for line, _ in proxy.requests} == {
        f"CONNECT tallyfy.test:{box.server.port} HTTP/1.1"
    }
    seen = orjson.dumps([list(r) for r in proxy.requests]) + bytes(proxy.tunnelled)
    assert TOKEN.encode() not in seen
    assert b"/organizations/" not in seen
    for result in (counted, archived):
        assert TOKEN not in result.out + result.err


def test_an_untrusted_certificate_says_how_to_trust_it(
    make_box: Callable[..., ThreadedSandbox], tmp_path: Path
) -> None:
    tls = make_tls(tmp_path, "127.0.0.1")
    box = make_box(runs=10, tls=(tls.server, tls.ca_file))

    result = run(
        ["archive", "--all", "--rate", "0", "--log", "j.jsonl"],
        env=box.env(tmp_path),
        cwd=tmp_path,
    )

    assert result.code == 3, result.err
    # a certificate not trusted is not retried: another attempt would meet it again
    assert "requests 1 " in unstamped(result.out)
    head = unstamped(result.out).splitlines()[0]
    assert head.startswith("archive aborted (listing): list page 1: ")  # said once
    assert f"the TLS certificate of 127.0.0.1:{box.server.port} is not trusted" in head
    assert "--ca-file or SSL_CERT_FILE" in head
    assert box.stats()["total"] == 0
