"""Helpers of the command-line tests: a sandbox served from a thread, and ways to run the
real ``bulkruns`` command in a subprocess, on pipes or on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from bulkruns.api import normalise_base_url
from bulkruns.sandbox import Sandbox, SandboxConfig

TOKEN = "tok-SECRET-5f2b9c0e7d3a41e6"
"""The sandbox's token in CLI tests: distinctive, so a leak is found by a plain search."""

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", re.MULTILINE)
"""The UTC time that starts each plain line and a summary's first line."""


def unstamped(text: str) -> str:
    """``text`` without the time at the start of its lines."""
    return STAMP.sub("", text)


_NETWORK_VARIABLES = {"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE"}


class ThreadedSandbox:
    """A sandbox served by an event loop in a thread, so tests can block on subprocesses.

    With ``tls`` (a server context, and the CA file that trusts it) it serves https.
    """

    def __init__(self, *, tls: tuple[ssl.SSLContext, Path] | None = None, **config: Any) -> None:
        settings: dict[str, Any] = {"runs": 250, "rate_limit": 0, "token": TOKEN}
        settings.update(config)
        self.config = SandboxConfig(**settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._ready = threading.Event()
        self.server = Sandbox(self.config, ssl_context=tls[0] if tls else None)
        self._verify = str(tls[1]) if tls else True
        self._error: BaseException | None = None

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.server.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def start(self) -> ThreadedSandbox:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def org(self) -> str:
        return self.server.org

    def stats(self) -> dict[str, Any]:
        """The sandbox's own accounting (``GET /_sandbox/stats``, which it does not count)."""
        reply = requests.get(
            f"{self.server.root_url}/_sandbox/stats", timeout=10, verify=self._verify
        )
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def ids(self, predicate: Callable[[dict[str, Any]], bool]) -> list[str]:
        """IDs of the runs that satisfy ``predicate`` (read between jobs, not during)."""
        state = self.server.state
        found = []
        for run_id in state.store.ids():
            run = state.run(run_id)
            if run is not None and predicate(run):
                found.append(run_id)
        return found

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """An environment pointing bulkruns at this sandbox, its lock under ``home``, with
        no proxy or CA bundle of the machine's."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TALLYFY_") and k.upper() not in _NETWORK_VARIABLES
        }
        env.update(
            TALLYFY_BASE_URL=self.base_url,
            TALLYFY_ORG_ID=self.org,
            TALLYFY_ACCESS_TOKEN=self.config.token,
            XDG_STATE_HOME=str(home / "state"),
            COLUMNS="120",
        )
        env.pop("NO_COLOR", None)
        env.update(extra)
        return env


@contextlib.contextmanager
def sandboxes() -> Iterator[Callable[..., ThreadedSandbox]]:
    """A factory of started sandboxes (``ThreadedSandbox`` settings), all stopped at the end."""
    started: list[ThreadedSandbox] = []

    def factory(**config: Any) -> ThreadedSandbox:
        box = ThreadedSandbox(**config).start()
        started.append(box)
        return box

    try:
        yield factory
    finally:
        for box in started:
            box.stop()


def live(run: dict[str, Any]) -> bool:
    """A run that is not archived."""
    return run["archived_at"] is None


def complete(run: dict[str, Any]) -> bool:
    """A complete run that is not archived."""
    return run["status"] == "complete" and live(run)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bulkruns", *args]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.out)
        return value


def run(
    args: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 60,
) -> Result:
    """Run ``bulkruns ARGS`` on pipes (not a terminal) and wait for it."""
    done = subprocess.run(
        command(*args),
        env=dict(env),
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def start(args: list[str], *, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start ``bulkruns ARGS`` on pipes, without waiting."""
    return subprocess.Popen(
        command(*args),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until ``condition()`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        time.sleep(0.02)


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def job_header(box: ThreadedSandbox, **changes: object) -> bytes:
    """A result log's first line, for a filter archive job against ``box``, with ``changes``."""
    record: dict[str, object] = {
        "type": "job",
        "version": 1,
        "job_id": "0" * 32,
        "operation": "archive",
        "params": {},
        "filter": {"status": "complete"},
        "org": box.org,
        "base_url": normalise_base_url(box.base_url),
        "created_at": "2026-01-01T00:00:00Z",
        "dry_run": False,
    }
    record.update(changes)
    return orjson.dumps(record) + b"\n"


def item_lines(path: Path) -> int:
    """Finished items in a journal so far (tolerates a line being written)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return data.count(b'"type":"item"')


class Terminal:
    """``bulkruns ARGS`` on a pseudo-terminal (stdin, stdout and stderr), 120 columns."""

    def __init__(self, args: list[str], *, env: Mapping[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master = master
        self.process = subprocess.Popen(
            command(*args),
            env={**env, "TERM": "xterm-256color"},
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            start_new_session=True,  # the pty becomes its controlling terminal
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"{text!r} never came; got {self.output[-2000:]!r}")

    def _read(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            return False
        self.output += data
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        try:
            code = self.process.wait(max(0.0, deadline - time.monotonic()) + 1)
        finally:
            os.close(self.master)
        return code

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


_FORKING_DRIVER = """
import json, os, sys, tempfile, traceback
from bulkruns.cli import main

results = []
for case in json.load(sys.stdin):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.environ.clear()
            os.environ.update(case["env"])
            os.chdir(case["cwd"])
            code = 1
            try:
                main(case["args"], prog_name="bulkruns")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        results.append(
            {"code": os.waitstatus_to_exitcode(status), "out": out.read().decode(),
             "err": err.read().decode()}
        )
sys.stdout.write(json.dumps(results))
"""


def run_many(cases: list[tuple[list[str], Mapping[str, str]]], *, cwd: Path) -> list[Result]:
    """Run ``bulkruns`` once per case, each in a process of its own, quickly.

    One interpreter imports bulkruns once, then forks a child per case that runs the real
    entry point (``bulkruns.cli.main``) with the case's arguments and environment, its
    output on files of its own. The children are real processes with real exit statuses;
    only the interpreter start-up is shared, which for a catalogue of dozens of bad inputs
    is most of the time.
    """
    payload = [{"args": args, "env": dict(env), "cwd": str(cwd)} for args, env in cases]
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_DRIVER],
        input=orjson.dumps(payload).decode(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [Result(r["code"], r["out"], r["err"]) for r in orjson.loads(done.stdout)]
