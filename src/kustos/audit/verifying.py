"""``kustos audit verify``: walk the chain, check every checkpoint, compare the index.

The walk stops at the first bad record and names it: a line that is not a record or whose
content no longer matches its hash (modified), a sequence number that jumps (deleted), one
that goes back (reordered), a checkpoint whose head the chain no longer reaches (rewritten),
and an archive shorter than its last signed checkpoint (truncated). Records written after
the last checkpoint are protected by the chain only: someone who can write the folder can
cut them without a trace, which is why checkpoints are frequent and why the public key can
be kept elsewhere (``--public-key``). The index is derived data: every row must equal what
the record it stands for gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kustos.audit.archive import (
    PUBLIC_KEY,
    complete_lines,
    read_checkpoints,
    read_public_key,
    segment_files,
)
from kustos.audit.hashing import (
    GENESIS,
    Checkpoint,
    RecordFormatError,
    RecordLine,
    link,
    parse_line,
)
from kustos.audit.indexing import Index, Row, row_of
from kustos.audit.records import summary_of
from kustos.errors import ArchiveError


@dataclass(slots=True)
class Verification:
    """What verification found: counts, problems (each one line) and notes."""

    records: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the archive and its index are intact."""
        return not self.problems


def verify(directory: Path, *, public_key: Path | None = None) -> Verification:
    """Verify the archive in *directory* (its own public key unless *public_key* is given)."""
    if not (directory / "segments").is_dir():
        raise ArchiveError(f"{directory}: not an audit archive (no segments folder)")
    result = Verification()
    checkpoints = _checked_checkpoints(directory, public_key, result)
    by_size = {c.size: c for c in checkpoints}
    index_rows = _index_rows(directory, result)
    seq, head = 0, GENESIS
    if 0 in by_size and by_size[0].head != GENESIS:
        result.problems.append("checkpoint of size 0 does not hold the empty chain")
    broken = False
    for first, path in segment_files(directory):
        if first != seq + 1:
            result.problems.append(_gap(seq + 1, first, f"segment {path.name}"))
            broken = True
            break
        for number, line in enumerate(complete_lines(path), start=1):
            record, problem = _check(line, seq, head, f"{path.name} line {number}")
            if record is None:
                if problem and "deleted" in problem and _appears_later(path, number, seq + 1):
                    problem = (
                        f"record {_seq_of(line)} ({path.name} line {number}) is out of order: "
                        f"record {seq + 1} was expected (records were reordered)"
                    )
                result.problems.append(problem or "")
                broken = True
                break
            seq, head = record.seq, record.digest
            checkpoint = by_size.get(seq)
            if checkpoint is not None and checkpoint.head != head:
                result.problems.append(
                    f"record {seq} does not end the chain its checkpoint signed: records up to "
                    f"{seq} were rewritten"
                )
                broken = True
                break
            if index_rows is not None and not broken:
                _compare_row(seq, record.data, index_rows, result)
        if broken:
            break
        _note_torn_tail(path, result)
    result.records = seq
    if not broken:
        signed = max((c.size for c in checkpoints), default=0)
        if signed > seq:
            result.problems.append(
                f"the archive ends at record {seq} but a checkpoint signed {signed} records: "
                f"records {seq + 1} to {signed} were cut off (truncated)"
            )
        elif signed < seq:
            result.notes.append(
                f"records {signed + 1} to {seq} are not covered by a checkpoint yet"
            )
        index_failed = any(p.startswith("the index") for p in result.problems)
        if index_rows is not None and not index_failed and next(index_rows, None) is not None:
            result.problems.append(
                f"the index has rows beyond record {seq}: run `kustos audit reindex`"
            )
    return result


def _check(
    line: bytes, seq: int, head: bytes, where: str
) -> tuple[RecordLine, None] | tuple[None, str]:
    """The record on *line* if it follows record *seq* (chain value *head*), else why not."""
    try:
        record = parse_line(line)
    except RecordFormatError:
        return None, f"record {seq + 1} ({where}) was modified: not a record line"
    if record.seq > seq + 1:
        return None, _gap(seq + 1, record.seq, where)
    if record.seq <= seq:
        return None, (
            f"record {record.seq} ({where}) is out of order: record {seq + 1} was expected "
            "(records were reordered)"
        )
    if link(head, record.seq, record.data) != record.digest:
        return None, (
            f"record {record.seq} ({where}) was modified: it does not match the hash chain"
        )
    return record, None


def _seq_of(line: bytes) -> str:
    return line.split(b" ", 1)[0].decode("ascii", "replace")[:20]


def _appears_later(path: Path, after: int, seq: int) -> bool:
    """Whether record *seq* sits further down the segment (moved, not deleted)."""
    prefix = b"%d " % seq
    return any(
        line.startswith(prefix)
        for number, line in enumerate(complete_lines(path), start=1)
        if number > after
    )


def _gap(expected: int, found: int, where: str) -> str:
    last = f" to {found - 1}" if found - 1 > expected else ""
    return f"record {expected}{last} is missing before {where} (records were deleted)"


def _checked_checkpoints(
    directory: Path, public_key: Path | None, result: Verification
) -> list[Checkpoint]:
    own = directory / PUBLIC_KEY
    key_path = public_key or own
    checkpoints = read_checkpoints(directory)
    result.checkpoints = len(checkpoints)
    if not key_path.exists():
        if checkpoints:
            result.problems.append(f"{key_path}: no public key to verify the checkpoints")
        return []
    key = read_public_key(key_path)
    if public_key is not None and own.exists() and _raw(read_public_key(own)) != _raw(key):
        result.problems.append(
            f"{own} is not the key given with --public-key: the archive's key was replaced"
        )
    good = []
    largest = -1
    for number, checkpoint in enumerate(checkpoints, start=1):
        if not checkpoint.verify(key):
            result.problems.append(
                f"checkpoint {number} (size {checkpoint.size}) has a bad signature"
            )
            continue
        if checkpoint.size < largest:
            result.problems.append(
                f"checkpoint {number} (size {checkpoint.size}) is smaller than an earlier one"
            )
        largest = max(largest, checkpoint.size)
        good.append(checkpoint)
    if not checkpoints and any(True for _ in segment_files(directory)):
        result.notes.append("no checkpoint yet: a truncation could not be detected")
    return good


def _index_rows(directory: Path, result: Verification) -> Iterator[Row] | None:
    path = directory / "index.sqlite"
    if not path.exists():
        result.problems.append("the index is missing: run `kustos audit reindex`")
        return None
    index = Index(path)

    def rows() -> Iterator[Row]:
        try:
            yield from index.rows()
        finally:
            index.close()

    return rows()


def _compare_row(seq: int, data: bytes, rows: Iterator[Row], result: Verification) -> None:
    if any(p.startswith("the index") for p in result.problems):
        return
    row = next(rows, None)
    try:
        expected = row_of(seq, summary_of(orjson.loads(data)))
    except orjson.JSONDecodeError:
        result.problems.append(f"record {seq} holds no JSON event")
        return
    if row is None:
        result.problems.append(f"the index stops before record {seq}: run `kustos audit reindex`")
    elif tuple(row) != expected:
        result.problems.append(
            f"the index row of record {seq} differs from the record: run `kustos audit reindex`"
        )


def _note_torn_tail(path: Path, result: Verification) -> None:
    with path.open("rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return
        fh.seek(-1, 2)
        if fh.read(1) != b"\n":
            result.notes.append(
                f"{path.name} ends with an unfinished record (a write cut short, never "
                "acknowledged); the next writer removes it"
            )


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()
