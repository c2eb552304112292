"""The archive: chain, checkpoints, tamper detection, recovery, reading, hooks, canary.

- appended events read back in order with dense 1-based numbers, after any ``after_seq``;
- a batch sent again (same auditID and stage) is stored once;
- verify passes on an intact archive and names the first bad record when one is modified,
  deleted, reordered, rewritten with a fixed hash, or when the tail is truncated;
- a checkpoint with a bad signature, or a replaced public key, fails verify;
- a half-written last line (a crash mid-write) is removed by the next writer;
- a second writer is refused; the signing key is 0600 and a key readable by others refused;
- hooks see each durable batch; a Secret value sent in a RequestResponse event appears in
  no file of the archive (segments, index, checkpoints).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from kustos.audit.archive import Archive, Fsync
from kustos.audit.records import ArchivedEvent
from kustos.audit.verifying import verify
from kustos.errors import ArchiveError, ConfigError
from tests.unit.audit.test_records import CANARY, event, leaking_event


def _filled(directory: Path, count: int = 10, *, every: int = 4) -> Path:
    with Archive(directory, checkpoint_every=every, fsync=_no_sync()) as archive:
        for start in range(0, count, 3):
            archive.append([event(n) for n in range(start, min(start + 3, count))])
    return directory


def _no_sync() -> Fsync:
    return Fsync.NONE


def _segment(directory: Path) -> Path:
    return next((directory / "segments").iterdir())


def _lines(directory: Path) -> list[bytes]:
    return _segment(directory).read_bytes().splitlines(keepends=True)


def _write_lines(directory: Path, lines: Sequence[bytes]) -> None:
    _segment(directory).write_bytes(b"".join(lines))


def test_read_back_in_order(tmp_path: Path) -> None:
    _filled(tmp_path, 10)
    read = list(Archive(tmp_path).read())
    assert [e.seq for e in read] == list(range(1, 11))
    assert read[4].event["auditID"] == event(4)["auditID"]
    assert [e.seq for e in Archive(tmp_path).read(after_seq=7)] == [8, 9, 10]
    assert list(Archive(tmp_path).read(after_seq=10)) == []


def test_reading_across_segments(tmp_path: Path) -> None:
    with Archive(tmp_path, segment_bytes=1500, fsync=_no_sync()) as archive:
        for n in range(12):
            archive.append([event(n)])
    assert len(list((tmp_path / "segments").iterdir())) > 3
    assert [e.seq for e in Archive(tmp_path).read(after_seq=5)] == list(range(6, 13))
    assert verify(tmp_path).ok


def test_a_batch_sent_again_is_stored_once(tmp_path: Path) -> None:
    with Archive(tmp_path) as archive:
        first = archive.append([event(1), event(2)])
        again = archive.append([event(2), event(1), event(3)])
    assert [e.seq for e in first] == [1, 2]
    assert [e.seq for e in again] == [3]
    with Archive(tmp_path) as reopened:  # remembered across a restart too
        assert reopened.append([event(3), event(1)]) == []
        assert reopened.size == 3


def test_intact_archive_verifies(tmp_path: Path) -> None:
    result = verify(_filled(tmp_path, 10))
    assert result.ok, result.problems
    assert result.records == 10
    assert result.checkpoints >= 2


def test_modified_record_is_named(tmp_path: Path) -> None:
    lines = _lines(_filled(tmp_path))
    lines[5] = lines[5].replace(b'"username":"alice"', b'"username":"mallory"')
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert not result.ok
    assert result.problems[0].startswith("record 6 ")
    assert "modified" in result.problems[0]


def test_deleted_record_is_named(tmp_path: Path) -> None:
    lines = _lines(_filled(tmp_path))
    del lines[3]
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert result.problems[0].startswith("record 4 is missing")
    assert "deleted" in result.problems[0]


def test_reordered_records_are_named(tmp_path: Path) -> None:
    lines = _lines(_filled(tmp_path))
    lines[2], lines[3] = lines[3], lines[2]
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert not result.ok
    assert result.problems[0].startswith("record 4 ")
    assert "record 3 was expected" in result.problems[0]


def test_truncated_tail_is_caught_by_the_checkpoint(tmp_path: Path) -> None:
    lines = _lines(_filled(tmp_path, 10))
    _write_lines(tmp_path, lines[:7])
    result = verify(tmp_path)
    assert not result.ok
    assert "ends at record 7" in result.problems[0]
    assert "truncated" in result.problems[0]


def test_rewritten_record_with_a_fixed_hash_breaks_the_checkpoint(tmp_path: Path) -> None:
    from kustos.audit.hashing import link, parse_line, record_line  # noqa: PLC0415

    lines = _lines(_filled(tmp_path, 10))
    # The attacker rewrites the whole chain from record 2 on, consistently.
    head = parse_line(lines[0]).digest
    for i in range(1, len(lines)):
        record = parse_line(lines[i])
        data = record.data.replace(b"alice", b"carol")
        head = link(head, record.seq, data)
        lines[i] = record_line(record.seq, head, data)
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert not result.ok
    assert any("does not end the chain its checkpoint signed" in p for p in result.problems)


def test_bad_checkpoint_signature_and_replaced_key(tmp_path: Path) -> None:
    _filled(tmp_path, 10)
    public = tmp_path / "checkpoint.pub"
    kept = tmp_path.parent / "kept.pub"
    kept.write_bytes(public.read_bytes())
    checkpoints = tmp_path / "checkpoints.jsonl"
    text = checkpoints.read_text()
    checkpoints.write_text(text.replace('"size":9', '"size":8', 1))
    result = verify(tmp_path)
    assert any("bad signature" in p for p in result.problems)
    # A forger who re-signs with a new key must also replace checkpoint.pub: the copy kept
    # elsewhere (--public-key) catches that.
    checkpoints.write_text(text)
    public.write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    assert any("was replaced" in p for p in verify(tmp_path, public_key=kept).problems)


def test_half_written_line_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    _filled(tmp_path, 5)
    with _segment(tmp_path).open("ab") as fh:
        fh.write(b'6 abc {"kind":"Ev')
    assert any("unfinished" in n for n in verify(tmp_path).notes)
    assert [e.seq for e in Archive(tmp_path).read()] == [1, 2, 3, 4, 5]
    with Archive(tmp_path) as archive:
        assert [e.seq for e in archive.append([event(99)])] == [6]
    assert verify(tmp_path).ok


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with Archive(tmp_path), pytest.raises(ArchiveError, match="another process"):
        Archive(tmp_path).open_writer()


def test_signing_key_is_private_and_checked(tmp_path: Path) -> None:
    _filled(tmp_path, 1)
    key = tmp_path / "keys" / "checkpoint.key"
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        Archive(tmp_path).open_writer()
    key.chmod(0o600)
    other = tmp_path.parent / "other.key"
    with pytest.raises(ConfigError, match="not the key of this archive"):
        Archive(tmp_path, signing_key=other).open_writer()


def test_signing_key_outside_the_archive(tmp_path: Path) -> None:
    key = tmp_path / "outside" / "audit.key"
    archive_dir = tmp_path / "archive"
    with Archive(archive_dir, signing_key=key) as archive:
        archive.append([event(1)])
    assert key.exists()
    assert not (archive_dir / "keys").exists()
    assert verify(archive_dir).ok


def test_hooks_see_durable_batches(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    def hook(batch: Sequence[ArchivedEvent]) -> None:
        on_disk = [e.seq for e in Archive(tmp_path).read()]
        assert all(e.seq in on_disk for e in batch)  # durable before the hook runs
        seen.append([e.seq for e in batch])

    with Archive(tmp_path, hooks=[hook]) as archive:
        archive.append([event(1), event(2)])
        archive.append([event(2)])  # nothing new: no call
        archive.append([event(3)])
    assert seen == [[1, 2], [3]]


def test_canary_appears_in_no_file_of_the_archive(tmp_path: Path) -> None:
    stored: list[ArchivedEvent] = []
    with Archive(tmp_path, hooks=[stored.extend]) as archive:
        archive.append([leaking_event(1), event(2)])
        assert archive.stripped == 1
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in repr(stored)
    first = next(iter(Archive(tmp_path).read()))
    assert "responseObject" not in first.event
    assert first.event["annotations"]["kustos.io/values-stripped"]


def test_a_failing_hook_does_not_undo_the_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(batch: Sequence[ArchivedEvent]) -> None:
        raise RuntimeError(f"cannot handle {CANARY}")

    seen: list[int] = []
    with Archive(tmp_path, hooks=[broken, lambda b: seen.extend(e.seq for e in b)]) as archive:
        assert [e.seq for e in archive.append([event(1)])] == [1]
    assert seen == [1]  # the next hook still ran
    assert "RuntimeError" in caplog.text
    assert CANARY not in caplog.text
