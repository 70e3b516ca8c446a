"""Reading a result log: its records, a torn last line tolerated, and the state a resumed
job or an undo starts from.

Lines are flushed as they are written and fsynced at least every second, so a crash can
only tear the last line. Reading tolerates that torn line; a corrupt line anywhere else is
a :class:`~bulkruns.errors.JournalError` naming the line. What the records mean is
:mod:`bulkruns.journal.schema`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bulkruns.errors import JournalError
from bulkruns.journal.schema import JournalState, Parsed, Record, fold, header_problem, ok_befores

__all__ = ["iter_records", "ok_items", "read_journal"]

_CHUNK = 8 << 20  # bytes read at a time: a few large reads, then bytes.split


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

    def __iter__(self) -> Iterator[Parsed]:
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
        header: Record | None = None
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

    def _check_header(self, record: Record) -> Record:
        problem = header_problem(record)
        if problem is not None:
            raise self._error(problem)
        return record


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
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

    Raises:
        JournalError: as :func:`iter_records`, or an item with an unknown outcome.
    """
    return _load(path)[0]


def _load(path: str | os.PathLike[str]) -> tuple[JournalState, set[int]]:
    """The state, and the keys of the done items whose last outcome is skipped."""
    reader = _Records(path)
    records = iter(reader)
    header, _, _ = next(records)
    state, skipped = fold(header, records, where=str(reader.path))
    state.torn = reader.torn
    state.lines = reader.lines
    return state, skipped


def ok_items(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``(id, before)`` for each item whose last outcome is ok, once, in log order.

    The job that undoes a log is made of these. ``before`` comes from the first ok record
    of the item, or from its claim when the ok record has none.

    Raises:
        JournalError: as :func:`read_journal`.
    """
    state, skipped = _load(path)
    remaining = state.done - skipped if skipped else set(state.done)
    yield from ok_befores(iter(_Records(path)), remaining)
