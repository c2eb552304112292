"""``kustos audit ingest``: the API server's audit log files into the archive, once.

The log backend (``--audit-log-path``) writes one Event per line and rotates files by
renaming them (``audit-2024-12-13T05-28-40.000.log``), optionally gzipping them later. A
file is therefore recognised by its first line, not by its name: the cursor
(``ingest-cursor.json``, a :class:`~kustos.files.StateFile`) keeps, for each first line's
hash, how many bytes of the uncompressed text were ingested. A rotated or gzipped copy of
a file already read continues where the plain file stopped; a line still being written
(no newline yet) is left for the next run. The cursor is saved after each batch is
durable; a crash between the two is harmless because the archive skips events it holds
already (same ``auditID`` and stage). Lines that are not Events are counted and skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import orjson
from pydantic import Field

from kustos.audit import native
from kustos.audit.archive import Archive
from kustos.audit.records import Prepared, prepare
from kustos.errors import FileAccessError, InputError
from kustos.files.state import StateFile, StateModel

if TYPE_CHECKING:
    from kustos._native import Batch

CURSOR: Final = "ingest-cursor.json"
#: Lines per append: one block of the index (fewer rewrites of its rows, fewer fsyncs).
BATCH_LINES: Final = 16384
#: The least read at a time on the native path (a batch of lines is cut from them).
_READ_BYTES: Final = 8 * 1024 * 1024
#: The most read at once for a batch (its lines' mean size times the lines it misses).
_READ_MAX: Final = 64 * 1024 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"


class IngestCursor(StateModel):
    """Bytes of uncompressed text ingested, by the hash of each file's first line."""

    files: dict[str, int] = Field(default_factory=dict)


@dataclass(slots=True)
class IngestReport:
    """What one ``ingest`` run did."""

    files: int = 0
    lines: int = 0
    stored: int = 0
    repeated: int = 0
    skipped: int = 0
    stripped: int = 0


def cursor_file(archive: Path) -> StateFile[IngestCursor]:
    """The ingest cursor of an archive."""
    return StateFile(archive / CURSOR, IngestCursor, what="ingest cursor", mode=0o644)


def _open(path: Path) -> IO[bytes]:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            return gzip.open(path, "rb")  # type: ignore[return-value] # a binary file object
        return path.open("rb")
    except OSError as exc:
        raise FileAccessError(path, "read audit log", exc.strerror or str(exc)) from exc


def _first_line(path: Path) -> bytes:
    with _open(path) as fh:
        try:
            line = fh.readline()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: cannot read the audit log: {exc}") from exc
    return line if line.endswith(b"\n") else b""


def fingerprint(first_line: bytes) -> str:
    """The identity of a log file: the hash of its first complete line."""
    return hashlib.sha256(first_line).hexdigest()[:32]


def _start_time(first_line: bytes) -> str:
    try:
        event = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return ""
    stamp = event.get("requestReceivedTimestamp") if isinstance(event, dict) else None
    return stamp if isinstance(stamp, str) else ""


def _chunks(fh: IO[bytes], skip: int, path: Path, size: int) -> Iterator[list[bytes]]:
    """The complete lines after byte *skip*, *size* at a time; a line still being written
    (no newline yet) ends the file."""
    try:
        if skip:
            fh.seek(skip)
        while True:
            lines = list(itertools.islice(fh, size))
            if not lines:
                return
            if not lines[-1].endswith(b"\n"):
                lines.pop()
                if lines:
                    yield lines
                return
            yield lines
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the audit log: {exc}") from exc


def ingest(
    archive: Archive, paths: Sequence[Path], *, batch_lines: int = BATCH_LINES
) -> IngestReport:
    """Ingest *paths* (oldest events first, whatever their order on the command line)."""
    report = IngestReport()
    state = cursor_file(archive.directory)
    done = dict(state.read_or(IngestCursor).files)
    ordered = []
    for path in paths:
        first = _first_line(path)
        if first:
            ordered.append((_start_time(first), str(path), path, fingerprint(first)))
    ordered.sort()
    stripped_before = archive.stripped
    for _, _, path, print_ in ordered:
        report.files += 1
        offset = done.get(print_, 0)
        with _open(path) as fh:
            if archive.native:
                for taken in _native_batches(
                    archive, fh, offset, path=path, size=batch_lines, report=report
                ):
                    offset += taken
                    done[print_] = offset
                    state.write(IngestCursor(files=done))
            for lines in () if archive.native else _chunks(fh, offset, path, batch_lines):
                batch = []
                for line in lines:
                    item = prepare(line)
                    if item is None:
                        report.skipped += 1
                    else:
                        batch.append(item)
                report.lines += len(lines)
                report.stored += _flush(archive, batch, report)
                offset += sum(map(len, lines))
                done[print_] = offset
                state.write(IngestCursor(files=done))
        done[print_] = offset
        state.write(IngestCursor(files=done))
    report.stripped = archive.stripped - stripped_before
    return report


class _BatchReader:
    """The batches of one file for the native core, read (and settled) one ahead."""

    def __init__(self, archive: Archive, fh: IO[bytes], *, path: Path, size: int) -> None:
        self.archive = archive
        self.fh = fh
        self.path = path
        self.size = size
        self.buf = b""
        self.at = 0
        self.ended = False

    def next(self) -> tuple[Batch, int] | None:
        """The next batch and the bytes it took; ``None`` at the end of the complete lines."""
        lines = 0
        end = self.at
        try:
            while True:
                # Lines are counted once (from where the last count stopped), and the file
                # is read about as much as the lines still missing take (their mean size so
                # far), so that a batch is copied once, not once per block read.
                end, found = native.core.cut_lines(self.buf, end, self.size - lines)
                lines += found
                if lines == self.size or self.ended:
                    break
                mean = (end - self.at) // lines if lines else 0
                want = min(max(_READ_BYTES, mean * (self.size - lines) * 9 // 8), _READ_MAX)
                block = self.fh.read(want)
                self.ended = not block
                self.buf = self.buf[self.at :] + block
                end -= self.at
                self.at = 0
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self.path}: cannot read the audit log: {exc}") from exc
        if lines == 0:
            return None
        batch = native.core.read_lines(self.buf, self.at, end)
        self.archive.settle(batch)
        taken, self.at = end - self.at, end
        return batch, taken


def _native_batches(
    archive: Archive, fh: IO[bytes], skip: int, *, path: Path, size: int, report: IngestReport
) -> Iterator[int]:
    """Store the complete lines after byte *skip*, *size* at a time, through the native
    core (the same batches as :func:`_chunks`); yield the bytes each batch took.

    The next batch is read in a second thread while this one is stored: the native reader
    and the chain both run without the GIL, so the two use two cores.
    """
    try:
        if skip:
            fh.seek(skip)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the audit log: {exc}") from exc
    reader = _BatchReader(archive, fh, path=path, size=size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-reader") as ahead:
        coming = ahead.submit(reader.next)
        while (item := coming.result()) is not None:
            coming = ahead.submit(reader.next)
            batch, taken = item
            stored = archive.append_batches([batch])[0] if batch.events else 0
            report.lines += batch.lines
            report.skipped += batch.skipped
            report.stored += stored
            report.repeated += batch.events - stored
            yield taken


def _flush(archive: Archive, batch: list[Prepared], report: IngestReport) -> int:
    if not batch:
        return 0
    stored = archive.append_prepared(batch)
    report.repeated += len(batch) - len(stored)
    return len(stored)
