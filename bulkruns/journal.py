"""The result log: one JSON object a line, appended as a job goes, read back to resume or undo.

Records (``None`` values are left out by the writer of the record)::

    {"type":"job","version":1,"job_id":…,"operation":…,"params":{…},"filter":{…}|null,
     "org":…,"base_url":…,"created_at":…,"dry_run":…,"undo_of":…}     the first line
    {"type":"item","id":…,"outcome":"planned","fields":{…}?,"before":{…}?}   pinned work
    {"type":"planned","count":N}                                      end of the pinned work
    {"type":"claim","id":…,"before":{…}?}          just before an item's first request
    {"type":"item","id":…,"outcome":"ok|failed|skipped","status":…,"attempts":…,
     "error":…,"request_id":…,"before":{…},"note":…,"unknown":true?}
    {"type":"summary",…}                            the end of each session of the job

Lines are flushed as they are written and fsynced at least every ``fsync_interval``
seconds, so a crash can only tear the last line. Reading tolerates that torn line; a
corrupt line anywhere else is a :class:`~bulkruns.errors.JournalError` naming the line.

Resume state: for each id the last record wins. ``ok`` and ``skipped`` are done; ``planned``,
``claim`` and ``failed`` are pending. IDs are kept as ``int(id, 16)``, which keeps a
journal of a million items to a few tens of megabytes in memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn

import orjson

from bulkruns.errors import JournalError

__all__ = [
    "JOURNAL_VERSION",
    "JournalState",
    "JournalWriter",
    "PendingItem",
    "id_key",
    "id_str",
    "iter_records",
    "ok_items",
    "read_journal",
]

JOURNAL_VERSION = 1

_CHUNK = 8 << 20  # bytes read at a time: a few large reads, then bytes.split
_TAIL_BLOCK = 64 << 10
_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE
_OUTCOMES = frozenset({"ok", "failed", "skipped", "planned"})


def id_key(run_id: str) -> int:
    """The compact form of a run ID: its value as an integer (``int(run_id, 16)``).

    The ID is not validated here; :func:`read_journal` validates the IDs it reads.
    """
    return int(run_id, 16)


def id_str(key: int) -> str:
    """The run ID (32 lowercase hex characters) of a key made by :func:`id_key`."""
    return f"{key:032x}"


class JournalWriter:
    """Appends records to a result log, one JSON line each.

    Every record is flushed to the operating system as it is written, and fsynced when
    more than ``fsync_interval`` seconds have passed since the last fsync (and at
    :meth:`close`), so a crash loses at most that long of records, and tears at most the
    last line. Usable as a context manager, which closes it.

    If the file already ends in a torn line, the fragment is removed first (or, if it is
    a whole record that only lacks its newline, the newline is added), so that the next
    record starts on a fresh line and the log stays readable.

    Args:
        path: the log; created if missing, appended to otherwise.
        fsync_interval: the longest time, in seconds, written records may wait for an fsync.
        clock: monotonic seconds; replace it in tests.

    Raises:
        JournalError: the file cannot be opened or written (a full disk, say); after a
            failed write the writer refuses every further one.
    """

    path: Path

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._interval = fsync_interval
        self._clock = clock
        try:
            created = not self.path.exists()
            if not created:
                with self.path.open("r+b") as existing:
                    _repair_tail(existing)
            self._file: BinaryIO | None = self.path.open("ab")
            if created:
                # The new directory entry must survive a crash too, or the log is lost.
                _fsync_dir(self.path.parent)
        except OSError as exc:
            raise JournalError(
                f"cannot write the result log {self.path}: {exc.strerror or exc}"
            ) from exc
        self._last_sync = clock()
        self._failure: JournalError | None = None

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._file is None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line, flush it, and fsync if one is due.

        Args:
            record: a JSON-serialisable mapping with a ``"type"``.
        """
        self._append(orjson.dumps(record, option=_DUMP_OPTIONS))

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append several records with one write and one flush, then fsync if one is due."""
        data = b"".join(orjson.dumps(r, option=_DUMP_OPTIONS) for r in records)
        if data:
            self._append(data)

    def _append(self, data: bytes) -> None:
        file = self._open_file()
        try:
            file.write(data)
            file.flush()
        except OSError as exc:
            self._fail(exc)
        self.sync_if_due()

    def sync_if_due(self) -> None:
        """fsync if at least ``fsync_interval`` seconds have passed since the last fsync."""
        if self._clock() - self._last_sync >= self._interval:
            self.sync()

    def sync(self) -> None:
        """Flush and fsync now."""
        file = self._open_file()
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            self._fail(exc)
        self._last_sync = self._clock()

    def close(self) -> None:
        """fsync and close the file; closing twice is harmless.

        A writer that has failed closes without writing more: what reached the file is a
        log whose last line may be torn, which reading and reopening both handle.
        """
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            if self._failure is None:
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            self._failure = self._error(exc)
            raise self._failure from exc
        finally:
            with contextlib.suppress(OSError):  # the buffer's flush failed already
                file.close()

    def _open_file(self) -> BinaryIO:
        if self._failure is not None:
            raise self._failure
        if self._file is None:
            raise ValueError(f"the result log {self.path} is closed")
        return self._file

    def _error(self, exc: OSError) -> JournalError:
        return JournalError(f"cannot write the result log {self.path}: {exc.strerror or exc}")

    def _fail(self, exc: OSError) -> NoReturn:
        # Once a write failed, nothing more is written: a record after a torn one would
        # turn the torn line into a corrupt line in the middle of the log.
        self._failure = self._error(exc)
        raise self._failure from exc


def _repair_tail(file: BinaryIO) -> None:
    """Make the log end with a whole line, as :func:`read_journal` would read it."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return
    file.seek(size - 1)
    terminated = file.read(1) == b"\n"
    end = size - 1 if terminated else size
    start = _line_start(file, end)
    file.seek(start)
    last = file.read(end - start)
    if not last.strip():
        if terminated:
            return
        file.truncate(start)
    elif _parses(last):
        if terminated:
            return
        # A whole record that lost only its newline: keep it.
        file.seek(size)
        file.write(b"\n")
    else:
        # The reader drops an unreadable last line; appending after it would turn it
        # into a corrupt line in the middle of the log.
        file.truncate(start)
    file.flush()
    os.fsync(file.fileno())


def _line_start(file: BinaryIO, end: int) -> int:
    """The offset just after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        lo = max(0, pos - _TAIL_BLOCK)
        file.seek(lo)
        found = file.read(pos - lo).rfind(b"\n")
        if found >= 0:
            return lo + found + 1
        pos = lo
    return 0


def _parses(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - and some cannot fsync one
        pass
    finally:
        os.close(fd)


@dataclass(slots=True)
class PendingItem:
    """An item a resumed job still has to do.

    Attributes:
        id: the run ID.
        before: the run's state before the change, as last recorded.
        fields: the pinned fields to set (an update plan), if any.
        unknown: the item may already have been changed: it was claimed without an
            outcome, or its last attempt failed with an unknown outcome.
        error: the last error recorded for it.
        attempts: the attempts its last failure took.
    """

    id: str
    before: dict[str, Any] | None
    fields: dict[str, Any] | None
    unknown: bool
    error: str | None
    attempts: int


@dataclass(slots=True)
class JournalState:
    """What a result log says about its job.

    Attributes:
        header: the job record (the first line).
        done: keys (:func:`id_key`) of the items whose last outcome is ok or skipped.
        pending: key -> the item still to do (planned, claimed or failed last), in the
            order the items first appeared.
        pinned: the log holds planned items (a plan, an ID-file job, an undo job).
        plan_complete: the ``{"type":"planned"}`` marker that ends the pinned items was seen.
        counts: the number of items per last outcome: ok, failed, skipped, planned, and
            unfinished (claimed without an outcome).
        sessions: the number of summary lines (finished sessions).
        torn: an unreadable last line was dropped.
        lines: the number of records read.
    """

    header: dict[str, Any]
    done: set[int] = field(default_factory=set)
    pending: dict[int, PendingItem] = field(default_factory=dict)
    pinned: bool = False
    plan_complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    sessions: int = 0
    torn: bool = False
    lines: int = 0


class _Records:
    """Reads a log's records: (record, id key or None); checks the header and the IDs.

    After iteration, ``torn`` and ``lines`` describe what was read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.torn = False
        self.lines = 0

    def _error(self, problem: str) -> JournalError:
        return JournalError(f"result log {self.path}: {problem}")

    def _open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except FileNotFoundError:
            raise JournalError(f"result log {self.path} does not exist") from None
        except OSError as exc:  # pragma: no cover - unreadable (permissions; not as root)
            raise JournalError(f"cannot read result log {self.path}: {exc.strerror}") from None

    def __iter__(self) -> Iterator[tuple[dict[str, Any], Any, int | None]]:
        """Yield (record, its type, the key of its id or None), the job record first."""
        if self.path.exists() and not self.path.is_file():
            raise JournalError(f"result log {self.path} is not a file")
        # Locals, and no work per line beyond parsing and the id: a log can be 1e6 lines.
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        fromhex = bytes.fromhex
        from_bytes = int.from_bytes
        lineno = 0
        count = 0
        bad = 0  # an unreadable line: an error once another line follows it
        header: dict[str, Any] | None = None
        with self._open() as file:
            rest = b""
            final = False
            while not final:
                chunk = file.read(_CHUNK)
                if chunk:
                    lines = (rest + chunk if rest else chunk).split(b"\n")
                    rest = lines.pop()
                else:
                    # End of file: what is left lacks its newline, a torn write or not.
                    final = True
                    lines = [rest] if rest else []
                for line in lines:
                    lineno += 1
                    try:
                        record = loads(line)
                    except decode_error:
                        if line.strip():  # a blank line holds no record: skip it
                            if bad:
                                raise self._corrupt(bad) from None
                            bad = lineno
                        continue
                    if bad:
                        raise self._corrupt(bad)
                    if type(record) is not dict:
                        bad = lineno
                        continue
                    count += 1
                    kind = record.get("type")
                    if header is None:
                        header = self._check_header(record)
                        yield record, kind, None
                    elif kind == "item" or kind == "claim":
                        run_id: Any = record.get("id")
                        # bytes.fromhex is the fastest strict parse of hex; turning the bytes
                        # back to lowercase hex and comparing refuses uppercase and spaces.
                        try:
                            raw = fromhex(run_id)
                        except (TypeError, ValueError):
                            raw = b""
                        if len(raw) != 16 or raw.hex() != run_id:
                            raise self._bad_id(lineno, kind, run_id)
                        yield record, kind, from_bytes(raw)
                    elif kind == "job":
                        raise self._error(
                            f"line {lineno} is a second job record (two logs joined together?)"
                        )
                    else:
                        yield record, kind, None
        self.lines = count
        self.torn = bool(bad)
        if header is None:
            if bad:
                raise self._error("its only line is torn: there is no job record")
            raise JournalError(f"result log {self.path} is empty")

    def _corrupt(self, lineno: int) -> JournalError:
        return self._error(f"line {lineno} is corrupt (not a JSON object)")

    def _bad_id(self, lineno: int, kind: str, run_id: object) -> JournalError:
        if run_id is None:
            return self._error(f"line {lineno}: {kind} record without an id")
        return self._error(f"line {lineno}: id {run_id!r} is not 32 lowercase hex characters")

    def _check_header(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("type") != "job":
            raise self._error('the first line is not a job record ({"type":"job",…})')
        version = record.get("version")
        if version != JOURNAL_VERSION:
            raise self._error(
                f"unknown journal version {version!r} (this bulkruns reads version "
                f"{JOURNAL_VERSION}; use the bulkruns that wrote it)"
            )
        return record


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield every record of a result log, the job record first.

    A torn last line is skipped.

    Raises:
        JournalError: the log is missing, not a file, empty, does not start with a job
            record of a known version, has a corrupt line before its last, or has an item
            or claim record without a valid id.
    """
    for record, _, _ in _Records(path):
        yield record


def read_journal(path: str | os.PathLike[str]) -> JournalState:
    """Read a result log into the state a resumed job starts from.

    For each id the last record wins: ok and skipped items are done; planned, claimed and
    failed ones are pending.

    Returns:
        the :class:`JournalState`.

    Raises:
        JournalError: as :func:`iter_records`, or an item with an unknown outcome.
    """
    return _load(path)[0]


# While a log is read, a pending item is a plain tuple, cheaper to build than a PendingItem:
# (last record type: planned, claim or failed; id; before; fields; unknown; error; attempts).
_Open = tuple[str, str, Any, Any, bool, Any, int]


def _load(path: str | os.PathLike[str]) -> tuple[JournalState, set[int]]:
    """The state, and the keys of the done items whose last outcome is skipped."""
    reader = _Records(path)
    records = iter(reader)
    header, _, _ = next(records)
    state = JournalState(header=header)
    done = state.done
    skipped: set[int] = set()
    opened: dict[int, _Open] = {}
    for record, kind, key in records:
        if key is None:
            if kind == "summary":
                state.sessions += 1
            elif kind == "planned":
                state.plan_complete = True
            continue  # other record types carry no item state
        # The two hot paths, inline: a long log is mostly claims, each followed by an ok.
        if kind == "claim":
            before = record.get("before")
            previous = opened.get(key)
            if previous is None:
                opened[key] = ("claim", record["id"], before, None, True, None, 0)
                done.discard(key)
                if skipped:
                    skipped.discard(key)
            else:
                # A claim after a plan or a failure keeps their fields and last error.
                if before is None:
                    before = previous[2]
                _, run_id, _, fields, _, error, attempts = previous
                opened[key] = ("claim", run_id, before, fields, True, error, attempts)
            continue
        outcome = record.get("outcome")
        if outcome == "ok":
            done.add(key)
            if opened:
                opened.pop(key, None)
            if skipped:
                skipped.discard(key)
        elif outcome == "skipped":
            done.add(key)
            skipped.add(key)
            opened.pop(key, None)
        elif outcome == "failed" or outcome == "planned":
            if outcome == "planned":
                state.pinned = True
            opened[key] = _reopen(record, outcome, opened.get(key))
            done.discard(key)
            skipped.discard(key)
        else:
            raise JournalError(
                f"result log {reader.path}: item {record['id']} has an unknown outcome "
                f"{outcome!r} (expected one of {', '.join(sorted(_OUTCOMES))})"
            )
    by_kind = Counter(item[0] for item in opened.values())
    state.pending = {key: PendingItem(*item[1:]) for key, item in opened.items()}
    state.counts = {
        "ok": len(done) - len(skipped),
        "failed": by_kind["failed"],
        "skipped": len(skipped),
        "planned": by_kind["planned"],
        "unfinished": by_kind["claim"],
    }
    state.torn = reader.torn
    state.lines = reader.lines
    return state, skipped


def _reopen(record: dict[str, Any], outcome: str, previous: _Open | None) -> _Open:
    """The pending state after a planned or failed item record."""
    before = record.get("before")
    fields = record.get("fields")
    if previous is not None:
        # Failures do not repeat a plan's fields, nor always the claim's before-state.
        if before is None:
            before = previous[2]
        if fields is None:
            fields = previous[3]
    if outcome == "planned":
        return ("planned", record["id"], before, fields, False, None, 0)
    error = record.get("error")
    attempts = record.get("attempts")
    return (
        "failed",
        record["id"],
        before,
        fields,
        record.get("unknown") is True,
        None if error is None else str(error),
        attempts if type(attempts) is int else 0,
    )


def ok_items(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``(id, before)`` for each item whose last outcome is ok, once, in log order.

    The job that undoes a log is made of these. ``before`` comes from the first ok record
    of the item, or from its claim when the ok record has none.

    Raises:
        JournalError: as :func:`read_journal`.
    """
    state, skipped = _load(path)
    remaining = state.done - skipped if skipped else state.done
    # The befores of claims and failures not yet followed by their outcome.
    befores: dict[int, dict[str, Any]] = {}
    for record, kind, key in _Records(path):
        if key is None:
            continue
        if kind == "claim" or record.get("outcome") in ("planned", "failed"):
            before = record.get("before")
            if before is not None:
                befores[key] = before
            continue
        before = record.get("before")
        recorded = befores.pop(key, None)
        if key in remaining and record.get("outcome") == "ok":
            remaining.discard(key)
            yield record["id"], recorded if before is None else before
