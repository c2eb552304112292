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

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kustos.audit.archive import complete_lines, read_checkpoints, segment_files
from kustos.audit.hashing import (
    GENESIS,
    Checkpoint,
    RecordFormatError,
    RecordLine,
    link,
    parse_line,
)
from kustos.audit.indexing import Entry, Index, KeyHasher, block_of, postings_of
from kustos.audit.records import text_view
from kustos.audit.signing import PUBLIC_KEY, read_chain, read_public_key, walk_chain
from kustos.errors import ArchiveError, InputError


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
        raise InputError(f"{directory}: not an audit archive (no segments folder)")
    result = Verification()
    checkpoints = _checked_checkpoints(directory, public_key, result)
    index = _index(directory, result)
    try:
        walk = _Walk(result, {c.size: c for c in checkpoints}, index)
        intact = walk.segments(directory)
        result.records = walk.seq
        if intact:
            _check_end(walk, max((c.size for c in checkpoints), default=0), result)
    finally:
        if index is not None:
            index.close()
    return result


class _Walk:
    """The chain walked record by record; the first problem ends it."""

    def __init__(
        self, result: Verification, by_size: dict[int, Checkpoint], index: Index | None
    ) -> None:
        self.result = result
        self.by_size = by_size
        self.index = index
        # Records after this one are not indexed yet (a writer indexes a block, or once a
        # second, and a crash can leave its last entries unwritten): the next writer or
        # `kustos audit reindex` adds them. Only what the index claims is compared.
        self.indexed_to = index.last_seq() if index is not None else 0
        self.seq, self.head = 0, GENESIS
        self.pending: list[Entry] = []
        self.hasher = KeyHasher()
        if 0 in by_size and by_size[0].head != GENESIS:
            result.problems.append("checkpoint of size 0 does not hold the empty chain")

    def segments(self, directory: Path) -> bool:
        """Walk every segment; ``False`` once a record is bad (it is then named)."""
        for first, path in segment_files(directory):
            if first != self.seq + 1:
                self.result.problems.append(_gap(self.seq + 1, first, f"segment {path.name}"))
                return False
            if not self._segment(path):
                return False
            _note_torn_tail(path, self.result)
        return True

    def _segment(self, path: Path) -> bool:
        offset = 0
        for number, line in enumerate(complete_lines(path), start=1):
            at, offset = offset, offset + len(line)
            record, problem = _check(line, self.seq, self.head, f"{path.name} line {number}")
            if record is None:
                expected = self.seq + 1
                if problem and "deleted" in problem and _appears_later(path, number, expected):
                    problem = (
                        f"record {_seq_of(line)} ({path.name} line {number}) is out of order: "
                        f"record {expected} was expected (records were reordered)"
                    )
                self.result.problems.append(problem or "")
                return False
            self.seq, self.head = record.seq, record.digest
            checkpoint = self.by_size.get(self.seq)
            if checkpoint is not None and checkpoint.head != self.head:
                self.result.problems.append(
                    f"record {self.seq} does not end the chain its checkpoint signed: records "
                    f"up to {self.seq} were rewritten"
                )
                return False
            if not self._indexed(record.seq, at, record.data):
                return False
        return True

    def _indexed(self, seq: int, offset: int, data: bytes) -> bool:
        try:
            hashes, time = self.hasher(text_view(data))
        except ValueError:  # orjson.JSONDecodeError among them
            self.result.problems.append(f"record {seq} holds no JSON event (modified)")
            return False
        if self.index is None or seq > self.indexed_to:
            return True
        if self.pending and block_of(seq) != block_of(self.pending[0][0]):
            _compare_block(self.index, self.pending, self.result)
            self.pending = []
        self.pending.append((seq, offset, hashes, time))
        return True


def _check_end(walk: _Walk, signed: int, result: Verification) -> None:
    seq = walk.seq
    if signed > seq:
        result.problems.append(
            f"the archive ends at record {seq} but a checkpoint signed {signed} records: "
            f"records {seq + 1} to {signed} were cut off (truncated)"
        )
    elif signed < seq:
        result.notes.append(f"records {signed + 1} to {seq} are not covered by a checkpoint yet")
    index = walk.index
    if index is not None:
        if walk.indexed_to < seq:
            result.notes.append(
                f"records {walk.indexed_to + 1} to {seq} are not indexed yet (the next "
                "`kustos audit serve` or `ingest` adds them, or `kustos audit reindex`)"
            )
        if walk.pending:
            _compare_block(index, walk.pending, result)
        last_block = block_of(seq) if seq else -1
        if any(b > last_block for b in index.blocks()) or index.last_seq() > seq:
            _index_problem(result, f"the index has entries beyond record {seq}")


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
    """The checkpoints whose signatures the key chain vouches for; problems for the rest.

    The anchor is ``checkpoint.pub`` (or ``--public-key``, kept elsewhere); each rotation
    in ``checkpoint-keys.jsonl`` must be certified by the key before it. A checkpoint must
    be signed by a key of the chain, and a retired key signs nothing past the size where
    its successor took over.
    """
    own = directory / PUBLIC_KEY
    key_path = public_key or own
    checkpoints = read_checkpoints(directory)
    result.checkpoints = len(checkpoints)
    if not key_path.exists():
        if checkpoints:
            result.problems.append(f"{key_path}: no public key to verify the checkpoints")
        return []
    root = read_public_key(key_path)
    if public_key is not None and own.exists() and _raw(read_public_key(own)) != _raw(root):
        result.problems.append(
            f"{own} is not the key given with --public-key: the archive's key was replaced"
        )
    try:
        links = read_chain(directory)
    except ArchiveError as exc:
        result.problems.append(f"{exc}: the chain was altered")
        links = []
    chain, broken = walk_chain(root, links)
    if broken:
        result.problems.append(broken)
    if len(chain) > 1:
        result.notes.append(
            f"signing keys: {' -> '.join(k.key_id for k in chain)} (rotated {len(chain) - 1}x)"
        )
    keys = {k.key_id: k for k in chain}
    good = []
    largest = -1
    for number, checkpoint in enumerate(checkpoints, start=1):
        key = keys.get(checkpoint.key_id)
        where = f"checkpoint {number} (size {checkpoint.size})"
        if key is None:
            result.problems.append(
                f"{where} is signed by key {checkpoint.key_id[:16]}, which is not in the "
                "archive's key chain"
            )
            continue
        if not checkpoint.verify(key.public):
            result.problems.append(f"{where} has a bad signature")
            continue
        if key.until_size is not None and checkpoint.size > key.until_size:
            result.problems.append(
                f"{where} is signed by retired key {key.key_id}, past size {key.until_size} "
                "where its successor took over"
            )
            continue
        if checkpoint.size < largest:
            result.problems.append(f"{where} is smaller than an earlier one")
        largest = max(largest, checkpoint.size)
        good.append(checkpoint)
    if not checkpoints and any(True for _ in segment_files(directory)):
        result.notes.append("no checkpoint yet: a truncation could not be detected")
    return good


def _index(directory: Path, result: Verification) -> Index | None:
    path = directory / "index.sqlite"
    if not path.exists():
        result.problems.append("the index is missing: run `kustos audit reindex`")
        return None
    return Index(path)


def _index_problem(result: Verification, problem: str) -> None:
    if not any(p.startswith("the index") for p in result.problems):  # the first is enough
        result.problems.append(f"{problem}: run `kustos audit reindex`")


def _compare_block(index: Index, entries: list[Entry], result: Verification) -> None:
    """The index rows of the block of *entries* must be exactly what the records give."""
    block = block_of(entries[0][0])
    expected = {
        bucket: (p.min_time, p.max_time, bytes(p.entries))
        for (bucket, _), p in postings_of(entries).items()
    }
    stored = index.block(block)
    if stored == expected:
        return
    wrong = sorted(set(stored) ^ set(expected)) or sorted(
        k for k in expected if stored.get(k) != expected[k]
    )
    first, last = entries[0][0], entries[-1][0]
    _index_problem(
        result,
        f"the index differs from records {first} to {last} (bucket {wrong[0]})",
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
