"""The index is derived data: rebuilt from the segments, checked by verify.

- a deleted index is reported missing, and ``reindex`` rebuilds the same rows;
- a posting changed behind the archive's back fails verify, naming the records;
- an index behind the segments (a crash before indexing) catches up when a writer opens;
- entries beyond the archive fail verify;
- posting lists span blocks and appends of any size give the same rows as a rebuild;
- the native core's rows, waiting across appends and blocks until the index is written,
  give the rows the Python path writes;
- a query reads records through the index and refuses a stale pointer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from kustos.audit import archive as archive_module
from kustos.audit import indexing, native
from kustos.audit.archive import Archive
from kustos.audit.querying import EventQuery, run_query
from kustos.audit.receiving import read_batch
from kustos.audit.verifying import verify
from kustos.cli.main import main
from kustos.errors import ArchiveError
from tests.unit.audit.test_records import event


def _archive(path: Path, count: int = 20, *, batch: int = 7) -> Path:
    with Archive(path) as archive:
        for start in range(0, count, batch):
            archive.append(
                [event(n, user=f"user-{n % 3}") for n in range(start, min(start + batch, count))]
            )
    return path


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path / "index.sqlite") as db:
        return list(db.execute("SELECT * FROM postings ORDER BY bucket, block"))


def _bucket(key: str) -> int:
    return indexing.key_hash(key) % indexing.BUCKETS


def _drop_index(path: Path) -> None:
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (path / name).unlink(missing_ok=True)


def test_reindex_rebuilds_the_same_rows(tmp_path: Path) -> None:
    before = _rows(_archive(tmp_path))
    _drop_index(tmp_path)
    result = verify(tmp_path)
    assert result.problems == ["the index is missing: run `kustos audit reindex`"]
    assert main(["audit", "reindex", "--archive", str(tmp_path)]) == 0
    assert _rows(tmp_path) == before
    assert verify(tmp_path).ok


def test_changed_posting_fails_verify(tmp_path: Path) -> None:
    _archive(tmp_path)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute(
            "UPDATE postings SET entries = substr(entries, 17) WHERE bucket = ?",
            (_bucket("user:user-1"),),
        )
    result = verify(tmp_path)
    assert len(result.problems) == 1
    assert result.problems[0].startswith("the index differs from records 1 to 20 (bucket")
    assert main(["audit", "verify", "--archive", str(tmp_path)]) == 1
    assert main(["audit", "reindex", "--archive", str(tmp_path)]) == 0
    assert main(["audit", "verify", "--archive", str(tmp_path)]) == 0


def test_extra_entries_fail_verify(tmp_path: Path) -> None:
    _archive(tmp_path, 5)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("INSERT INTO postings VALUES (3, 7, '', '', x'00')")
    assert any("beyond record 5" in p for p in verify(tmp_path).problems)


def test_index_catches_up_when_a_writer_opens(tmp_path: Path) -> None:
    _archive(tmp_path, 10, batch=10)
    _drop_index(tmp_path)
    with Archive(tmp_path) as archive:
        archive.append([event(6)])  # as if the indexer had died before record 1
    assert verify(tmp_path).ok
    assert len(run_query(tmp_path, EventQuery(user="user-1"))) == 3


def test_a_writer_gone_before_its_index_flush_verifies_with_a_note(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    archive.append([event(n, user=f"user-{n % 3}") for n in range(5)])
    archive._release()  # killed: the entries waiting for the next index write are lost
    result = verify(tmp_path)
    assert result.ok, result.problems  # the records are intact; the index only lags
    assert any("not indexed yet" in note for note in result.notes)
    with Archive(tmp_path) as again:  # the next writer indexes what is missing
        again.append([event(9, user="user-0")])
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert not any("not indexed yet" in note for note in result.notes)
    assert len(run_query(tmp_path, EventQuery(user="user-1"))) == 2  # records 2 and 5
    assert len(run_query(tmp_path, EventQuery(user="user-0"))) == 3


def test_blocks_and_batches_do_not_change_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexing, "BLOCK", 4)
    one_by_one = _rows(_archive(tmp_path / "a", 23, batch=1))
    in_bulk = _rows(_archive(tmp_path / "b", 23, batch=9))
    assert one_by_one == in_bulk
    assert max(int(str(row[1])) for row in one_by_one) == 5  # six blocks of four
    assert verify(tmp_path / "a").ok
    _drop_index(tmp_path / "b")
    Archive(tmp_path / "b").reindex()
    assert _rows(tmp_path / "b") == one_by_one
    assert len(run_query(tmp_path / "a", EventQuery(user="user-2"))) == 7


@pytest.mark.skipif(not native.enabled(), reason="the native core is not built")
def test_native_rows_waiting_across_blocks_give_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexing, "BLOCK", 4)
    monkeypatch.setattr(archive_module, "BLOCK", 4)
    monkeypatch.setattr(archive_module, "INDEX_SECONDS", 3600.0)  # written on close only
    python_path = _rows(_archive(tmp_path / "python", 23, batch=9))
    with Archive(tmp_path / "native") as archive:
        assert archive.native
        for start in range(0, 23, 5):
            items = [event(n, user=f"user-{n % 3}") for n in range(start, min(start + 5, 23))]
            body = orjson.dumps(
                {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
            )
            archive.append_batches([read_batch(body, archive)])
        assert archive.index_waiting  # five appends over six blocks, none written yet
    assert _rows(tmp_path / "native") == python_path
    assert verify(tmp_path / "native").ok


def test_stale_pointer_is_refused(tmp_path: Path) -> None:
    _archive(tmp_path, 4)
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        bucket = _bucket("user:user-1")
        blob = db.execute("SELECT entries FROM postings WHERE bucket = ?", (bucket,)).fetchone()[0]
        # The entries are (hash, offset, seq): point the first one at record 5, not there.
        broken = bytes(blob[:8]) + (5).to_bytes(8, "little") + bytes(blob[16:])
        db.execute("UPDATE postings SET entries = ? WHERE bucket = ?", (broken, bucket))
    with pytest.raises(ArchiveError, match="reindex"):
        run_query(tmp_path, EventQuery(user="user-1"))
