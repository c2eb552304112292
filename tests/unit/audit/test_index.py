"""The index is derived data: rebuilt from the segments, checked by verify.

- a deleted index is reported missing, and ``reindex`` rebuilds the same rows;
- a row changed behind the archive's back fails verify, naming the record;
- an index behind the segments (a crash before indexing) catches up when a writer opens;
- rows beyond the archive fail verify.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kustos.audit.archive import Archive
from kustos.audit.indexing import EventQuery, Index
from kustos.audit.verifying import verify
from kustos.cli.main import main
from tests.unit.audit.test_records import event


def _archive(path: Path, count: int = 20) -> Path:
    with Archive(path) as archive:
        archive.append([event(n, user=f"user-{n % 3}") for n in range(count)])
    return path


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path / "index.sqlite") as db:
        return list(db.execute("SELECT * FROM events ORDER BY seq"))


def test_reindex_rebuilds_the_same_rows(tmp_path: Path) -> None:
    before = _rows(_archive(tmp_path))
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    result = verify(tmp_path)
    assert result.problems == ["the index is missing: run `kustos audit reindex`"]
    assert main(["audit", "reindex", "--archive", str(tmp_path)]) == 0
    assert _rows(tmp_path) == before
    assert verify(tmp_path).ok


def test_changed_row_fails_verify(tmp_path: Path) -> None:
    _archive(tmp_path)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE events SET user = 'nobody' WHERE seq = 7")
    result = verify(tmp_path)
    assert result.problems == [
        "the index row of record 7 differs from the record: run `kustos audit reindex`"
    ]
    assert main(["audit", "verify", "--archive", str(tmp_path)]) == 1
    assert main(["audit", "reindex", "--archive", str(tmp_path)]) == 0
    assert main(["audit", "verify", "--archive", str(tmp_path)]) == 0


def test_extra_rows_fail_verify(tmp_path: Path) -> None:
    _archive(tmp_path, 5)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("INSERT INTO events SELECT seq + 100, time, audit_id, stage, user, groups, "
                   "verb, resource, subresource, namespace, name, source_ip, user_agent, code "
                   "FROM events WHERE seq = 1")  # fmt: skip
    assert any("beyond record 5" in p for p in verify(tmp_path).problems)


def test_index_catches_up_when_a_writer_opens(tmp_path: Path) -> None:
    _archive(tmp_path, 10)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("DELETE FROM events WHERE seq > 6")  # as if the indexer died there
    assert not verify(tmp_path).ok
    Archive(tmp_path).open_writer()
    index = Index(tmp_path / "index.sqlite")
    try:
        assert index.last_seq() == 10
        assert len(index.query(EventQuery(user="user-1"))) == 3
    finally:
        index.close()
