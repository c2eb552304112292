"""``kustos audit ingest``: audit log files, rotated and gzipped, resumable, never twice.

- a log is ingested once; running again stores nothing;
- lines appended later are picked up from where the last run stopped;
- a line still being written (no newline) waits for the next run;
- a rotated file that is then gzipped is recognised by its first line and continued;
- files come in any order on the command line: events are stored oldest file first;
- a crash after the append but before the cursor was saved repeats no event;
- non-event lines are counted and skipped; a Secret body in a line is stripped (canary).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from kustos.audit.archive import Archive
from kustos.audit.ingesting import cursor_file, ingest
from kustos.cli.main import main
from tests.unit.audit.test_records import CANARY, event, leaking_event


def _lines(numbers: range, *, day: int = 1) -> bytes:
    return b"".join(
        orjson.dumps(event(n, time=f"2026-11-{day:02d}T10:00:{n % 60:02d}.000000Z")) + b"\n"
        for n in numbers
    )


def _ids(archive: Path) -> list[str]:
    return [str(e.event["auditID"])[-4:] for e in Archive(archive).read()]


def test_once_then_resumed(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(_lines(range(5)) + b'{"kind":"Event","auditID":"half')
    archive = tmp_path / "archive"
    with Archive(archive) as store:
        report = ingest(store, [log])
    assert (report.stored, report.lines) == (5, 5)
    with log.open("ab") as fh:  # the half line completes, more follow
        fh.write(b'way"}\n' + _lines(range(5, 8)))
    with Archive(archive) as store:
        report = ingest(store, [log])
        again = ingest(store, [log])
    assert (report.stored, report.skipped) == (3, 1)  # the completed line is no Event
    assert (again.stored, again.lines) == (0, 0)
    assert _ids(archive) == [f"{n:04d}" for n in range(8)]


def test_rotated_then_gzipped(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(_lines(range(4), day=1))
    archive = tmp_path / "archive"
    with Archive(archive) as store:
        ingest(store, [log])
    # The API server appends, rotates (rename), starts a new file; later the old one is gzipped.
    with log.open("ab") as fh:
        fh.write(_lines(range(4, 6), day=1))
    rotated = tmp_path / "audit-2026-11-01T23-00-00.000.log.gz"
    rotated.write_bytes(gzip.compress(log.read_bytes()))
    log.write_bytes(_lines(range(6, 9), day=2))
    with Archive(archive) as store:
        report = ingest(store, [log, rotated])  # newest named first on purpose
    assert report.stored == 5
    assert report.repeated == 0
    assert _ids(archive) == [f"{n:04d}" for n in range(9)]


def test_crash_between_append_and_cursor(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(_lines(range(10)))
    archive = tmp_path / "archive"
    with Archive(archive) as store:
        ingest(store, [log], batch_lines=4)
    cursor_file(archive).path.unlink()  # as if the cursor write never happened
    with Archive(archive) as store:
        report = ingest(store, [log], batch_lines=4)
    assert (report.stored, report.repeated) == (0, 10)
    assert len(_ids(archive)) == 10


def test_values_stripped_from_log_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(orjson.dumps(leaking_event(1)) + b"\nnot json\n")
    archive = tmp_path / "archive"
    assert main(["audit", "ingest", "--archive", str(archive), str(log)]) == 0
    out = capsys.readouterr().out
    assert "1 event(s) stored" in out
    assert "1 not audit events" in out
    assert "1 with values stripped" in out
    assert CANARY not in out
    for path in archive.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "ingest", "--archive", str(tmp_path / "a"), str(tmp_path / "no")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
