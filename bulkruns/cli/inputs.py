"""What the command line reads besides its flags: where to connect and with which token,
ID files, ``--set`` values, and the result log's name. Each is checked before any request.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from bulkruns.api import DEFAULT_BASE_URL, Client
from bulkruns.api.client import READ_TIMEOUT
from bulkruns.errors import ConfigError
from bulkruns.job import JobOptions
from bulkruns.model import read_ids, validate_fields

__all__ = [
    "PROG",
    "Connection",
    "Display",
    "IdSource",
    "check_new_log",
    "default_journal",
    "job_options",
    "parse_set",
    "read_connection",
]

PROG = "bulkruns"


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """Where jobs go and who sends them.

    Attributes:
        org: the organisation ID.
        token: the access token; never shown (left out of repr).
        base_url: the API root as given (the client normalises it); None for Tallyfy's.
        ca_file: a PEM bundle of the CAs to trust instead of the system's.
        timeout: seconds to wait for a request's answer; None for the client's default.
        flags: the global options as typed, repeated in the resume and undo commands shown.
    """

    org: str
    token: str = field(repr=False)
    base_url: str | None = None
    ca_file: Path | None = None
    timeout: float | None = None
    flags: tuple[str, ...] = ()

    def client(self, *, concurrency: int = 16) -> Client:
        """A new client (not yet open); the proxy comes from ``HTTPS_PROXY``/``NO_PROXY``.

        Raises:
            ConfigError: a malformed base URL, plain http:// to a host not on loopback, a
                timeout that is not a positive number of seconds, an unusable CA file or
                proxy variable.
        """
        return Client(
            org=self.org,
            token=self.token,
            base_url=self.base_url or DEFAULT_BASE_URL,
            concurrency=concurrency,
            read_timeout=READ_TIMEOUT if self.timeout is None else self.timeout,
            ca_file=self.ca_file,
        )

    def command(self, *words: str) -> str:
        """A bulkruns command line, with the global options this one was given."""
        return shlex.join([PROG, *self.flags, *words])


@dataclass(frozen=True, slots=True, kw_only=True)
class Display:
    """What the user sees. ``quiet``: errors only; ``json``: the summary as JSON on stdout."""

    quiet: bool = False
    json: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IdSource:
    """Run IDs from a file (or ``-``, standard input), validated and counted up front.

    A regular file is read twice, once to validate and count it before anything is sent and
    once as the job pins its plan (still before any request), so memory stays flat however
    long it is; the file must not change in between. Standard input, a pipe or a process
    substitution (``<(…)``) can only be read once, so their IDs are kept.
    Files are read as UTF-8; a byte-order mark and CRLF line ends are accepted.

    Attributes:
        path: the path given (``-`` for standard input).
        count: the number of distinct IDs.
        stamp: a regular file's size, modification time and inode when it was counted, to
            notice a file that changed before it was read again.
        kept: the IDs themselves, when the source cannot be read twice.
    """

    path: str
    count: int
    stamp: tuple[int, int, int] | None = None
    kept: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """The source as messages call it."""
        return "standard input" if self.path == "-" else self.path

    @classmethod
    def read(cls, path: str, stdin: IO[str] | None = None) -> IdSource:
        """Validate the IDs and count the distinct ones.

        Args:
            path: a file, or ``-`` for standard input.
            stdin: what ``-`` reads instead of the process's standard input (for tests).

        Raises:
            ConfigError: the file cannot be read, holds a line that is not a run ID, or
                holds no ID at all.
        """
        source = cls(path=path, count=0)
        stamp = None if path == "-" else source._stamp()
        with source._open(stdin) as lines:
            if stamp is not None:
                count = _distinct(source._ids(lines))
                source = cls(path=path, count=count, stamp=stamp)
                source._check_unchanged()
            else:
                kept = tuple(source._ids(lines))
                count = _distinct(kept)
                source = cls(path=path, count=count, kept=kept)
        if not count:
            raise ConfigError(f"{source.name} holds no run IDs")
        return source

    def __iter__(self) -> Iterator[str]:
        """The IDs in file order, duplicates included (the engine dedupes them).

        Raises:
            ConfigError: a file that no longer holds the IDs counted before.
        """
        if self.kept is not None:
            yield from self.kept
            return
        # No set of IDs here: the engine keeps one as it pins the plan, and one is enough.
        self._check_unchanged()
        with self._open(None) as lines:
            yield from self._ids(lines)
        self._check_unchanged()

    def _stamp(self) -> tuple[int, int, int] | None:
        """A regular file's size, modification time and inode; None for anything else."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.path}: {exc.strerror or exc}"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            return None
        return info.st_size, info.st_mtime_ns, info.st_ino

    def _check_unchanged(self) -> None:
        if self._stamp() != self.stamp:
            raise ConfigError(
                f"{self.path} changed while bulkruns was reading it; nothing was changed: "
                "run the command again once the file is final"
            )

    @contextlib.contextmanager
    def _open(self, stdin: IO[str] | None) -> Iterator[IO[str]]:
        if self.path == "-" and stdin is not None:
            yield stdin
            return
        try:
            if self.path == "-":  # the same descriptor, decoded as a file is
                stream = open(sys.stdin.fileno(), encoding="utf-8-sig", closefd=False)  # noqa: SIM115
            else:
                stream = open(self.path, encoding="utf-8-sig")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.name}: {exc.strerror or exc}"
            ) from None
        with stream:
            yield stream

    def _ids(self, lines: IO[str]) -> Iterator[str]:
        try:
            yield from read_ids(lines, source=self.name)
        except UnicodeDecodeError:
            raise ConfigError(f"{self.name} is not a UTF-8 text file of run IDs") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the ID file {self.name}: {exc.strerror or exc}"
            ) from None


def _distinct(ids: Iterable[str]) -> int:
    """The number of distinct IDs."""
    return len({int(run_id, 16) for run_id in ids})


def parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` options as update fields, checked.

    Each VALUE is read as JSON, else as a string: ``starred=true`` is a boolean,
    ``name=Q3 review`` a string, ``users=["a","b"]`` a list.

    Raises:
        ConfigError: an item without ``=``, a field set twice, an unknown field, or a
            value of the wrong kind.
    """
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                f"--set {item!r}: write FIELD=VALUE, such as --set starred=true "
                "or --set 'name=Q3 review'"
            )
        if name in fields:
            raise ConfigError(f"--set {name} is given twice")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        try:
            validate_fields({name: value})
        except ConfigError as exc:
            if isinstance(value, str | list | dict):
                raise
            # `--set name=123` read 123 as a number; say how to keep it text
            raise ConfigError(
                f"{exc} (--set values are read as JSON: quote text that looks like a "
                f"number, true/false or null, such as --set '{name}=\"{raw}\"')"
            ) from None
        fields[name] = value
    return fields


def job_options(
    flags: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    journal: Path | None,
) -> JobOptions:
    """Options from the flags given, over ``defaults`` (a resumed job's recorded settings,
    from :meth:`JobOptions.recorded`), over the library's defaults.

    Raises:
        ConfigError: a value a setting cannot take, naming the setting.
    """
    return JobOptions(**{**(defaults or {}), **flags, "journal": journal})


def read_connection(
    *,
    org: str | None,
    base_url: str | None,
    token_file: Path | None,
    ca_file: Path | None = None,
    timeout: float | None = None,
    flags: tuple[str, ...] = (),
) -> Connection:
    """Organisation, token, base URL and CA bundle, from the global options (which take
    the environment's values when not given) and the token's file or variable.

    Raises:
        ConfigError: no organisation, no token, or a token file that cannot be read.
    """
    org = (org or "").strip()
    if not org:
        raise ConfigError(
            "no organisation given: pass --org ORG or set TALLYFY_ORG_ID "
            "to your Tallyfy Organization ID"
        )
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(f"cannot read the token file {token_file}: {reason}") from None
        if not token:
            raise ConfigError(f"the token file {token_file} is empty")
    else:
        token = os.environ.get("TALLYFY_ACCESS_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "no access token: set TALLYFY_ACCESS_TOKEN or pass --token-file PATH "
                "(never on the command line)"
            )
    if any(c.isspace() for c in token):
        raise ConfigError("the access token contains whitespace; check the token file")
    return Connection(
        org=org, token=token, base_url=base_url, ca_file=ca_file, timeout=timeout, flags=flags
    )


def check_new_log(path: Path) -> None:
    """Check that a new job can create its result log, before anything is sent: the folder
    exists and takes a new file, and the file does not exist yet.

    The file is created, then removed again: only creating it shows that it can be made
    (permissions, a read-only or special filesystem such as /proc).

    Raises:
        ConfigError: the log exists, or cannot be created there.
    """
    if path.is_dir():
        raise ConfigError(f"--log {path} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path} already exists: resume it, or choose another --log")
    if not path.parent.is_dir():
        raise ConfigError(f"--log {path}: the folder {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists: resume it, or choose another --log") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the result log {path}: {exc.strerror or exc}") from None
    os.close(fd)
    path.unlink()


def default_journal(
    kind: str, *, now: datetime | None = None, directory: Path | None = None
) -> Path:
    """``./bulkruns-<kind>-<UTC timestamp>.jsonl``, with a suffix if that name is taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = directory if directory is not None else Path(".")
    path = folder / f"bulkruns-{kind}-{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"bulkruns-{kind}-{stamp}-{n}.jsonl"
    return path
