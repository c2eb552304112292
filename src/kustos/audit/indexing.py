"""The archive's index: SQLite (WAL) posting lists from lookup keys to records.

Derived data. For every record the index keeps its number and its byte offset in its
segment under a few keys (:class:`KeyHasher`): the object it names (``obj:secrets/ns/name``),
or for a request without a name (list, watch, create) its collection
(``col:secrets/ns``, ``col:secrets/`` across namespaces), its namespace (``ns:payments``)
and its user (``user:alice``). A key is stored as its CRC-32, in one of :data:`BUCKETS`
buckets; entries are grouped by bucket and by block of :data:`BLOCK` records, one row
each with the block's earliest and latest event time. So an append writes at most one
row per bucket, whatever the number of distinct Secrets and users, and the history of one
key is one small row per block. A query reads the rows of its keys' buckets, keeps the
entries with the keys' hashes, then reads the records themselves from the segments (by
offset) and checks every filter on them: a hash collision costs a read, never a wrong
answer.

The file can be deleted and rebuilt (``kustos audit reindex``) and ``kustos audit
verify`` recomputes every block from the segments and compares. It is written without
waiting for the disk (``synchronous=OFF``): after a crash the archive re-indexes what the
index misses when it next opens.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kustos.audit.records import EventView, RefView
from kustos.errors import ArchiveError

#: Records per block of a posting list.
BLOCK: Final = 16384
#: Buckets of key hashes: rows written per append are at most this many.
BUCKETS: Final = 1024
_ENTRY: Final = struct.Struct("<IIq")  # key hash, offset in its segment, seq
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS postings (
    bucket INTEGER NOT NULL, block INTEGER NOT NULL, min_time TEXT NOT NULL,
    max_time TEXT NOT NULL, entries BLOB NOT NULL, PRIMARY KEY (bucket, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_UPSERT: Final = (
    "INSERT OR REPLACE INTO postings (bucket, block, min_time, max_time, entries) "
    "VALUES (?, ?, ?, ?, ?)"
)


def key_hash(key: str) -> int:
    """The stored form of a lookup key."""
    return zlib.crc32(key.encode())


def block_of(seq: int) -> int:
    """The block of posting lists that record *seq* falls in."""
    return (seq - 1) // BLOCK


def _ref_keys(ref: RefView) -> tuple[str, ...]:
    namespace = ref.namespace
    first = (
        f"obj:{ref.resource}/{namespace}/{ref.name}"
        if ref.name
        else f"col:{ref.resource}/{namespace}"
    )
    return (first, f"ns:{namespace}") if namespace else (first,)


#: Hashes of recent objects and users (they repeat), cleared when past this many.
_HASH_CACHE: Final = 200_000


class KeyHasher:
    """The stored key hashes of events, and their times.

    Runs for every archived event: the hashes of an object's keys and of a user's key are
    remembered, so a repeated object or user costs a dictionary lookup.
    """

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str, str], tuple[int, ...]] = {}
        self._users: dict[str, int] = {}

    def __call__(self, view: EventView) -> tuple[tuple[int, ...], str]:
        """``(key hashes, time)`` of one event."""
        ref = view.objectRef
        hashes: tuple[int, ...] = ()
        if ref is not None:
            where = (ref.resource, ref.namespace, ref.name)
            found = self._refs.get(where)
            if found is None:
                if len(self._refs) > _HASH_CACHE:
                    self._refs.clear()
                found = self._refs[where] = tuple(key_hash(k) for k in _ref_keys(ref))
            hashes = found
        user = view.user
        if user is not None and user.username is not None:
            hashed = self._users.get(user.username)
            if hashed is None:
                if len(self._users) > _HASH_CACHE:
                    self._users.clear()
                hashed = self._users[user.username] = key_hash(f"user:{user.username}")
            hashes += (hashed,)
        return hashes, view.requestReceivedTimestamp or view.stageTimestamp


#: One record as the index sees it: seq, offset in its segment, key hashes, time. A plain
#: tuple: one is made for every archived event.
Entry = tuple[int, int, tuple[int, ...], str]


@dataclass(slots=True)
class _Posting:
    min_time: str
    max_time: str
    entries: bytearray


def postings_of(entries: Iterable[Entry]) -> dict[tuple[int, int], _Posting]:
    """Posting rows, by (bucket, block), of *entries* (used by appends and by verify).

    The hot path of every append: written flat.
    """
    rows: dict[tuple[int, int], _Posting] = {}
    pack = _ENTRY.pack
    size = BLOCK
    for seq, offset, hashes, time in entries:
        block = (seq - 1) // size
        for hashed in hashes:
            where = (hashed % BUCKETS, block)
            posting = rows.get(where)
            if posting is None:
                posting = rows[where] = _Posting(time, time, bytearray())
            elif time:
                if time < posting.min_time or not posting.min_time:
                    posting.min_time = time
                if time > posting.max_time:  # noqa: PLR1730 - faster than max() here
                    posting.max_time = time
            posting.entries += pack(hashed, offset, seq)
    return rows


def _extend(posting: _Posting, later: _Posting) -> None:
    """Append the entries of *later* (the same row, later records) to *posting*."""
    posting.entries += later.entries
    posting.min_time = min(filter(None, (posting.min_time, later.min_time)), default="")
    posting.max_time = max(posting.max_time, later.max_time)


#: A posting row as the native core makes it: (bucket, block, min time, max time, entries).
Row = tuple[int, int, str, str, bytes]
_BUCKET: Final = operator.itemgetter(0)
_BLOCK: Final = operator.itemgetter(1)
_MIN_TIME: Final = operator.itemgetter(2)
_MAX_TIME: Final = operator.itemgetter(3)
_ENTRIES: Final = operator.itemgetter(4)


def _gathered(rows: list[Row]) -> dict[tuple[int, int], _Posting]:
    """*rows* (several appends', in record order) merged per (bucket, block) as
    :func:`_extend` merges them, with the per-row work in C: a stable sort by bucket keeps
    each row's entries in record order, and each row is joined once."""
    rows.sort(key=_BUCKET)
    merged = {}
    for bucket, group in itertools.groupby(rows, _BUCKET):
        same = list(group)
        if same[0][1] != same[-1][1]:  # the rows span blocks (rare): one merge per block
            for block, part in itertools.groupby(same, _BLOCK):
                merged[bucket, block] = _merged(list(part))
        else:
            merged[bucket, same[0][1]] = _merged(same)
    return merged


def _merged(same: list[Row]) -> _Posting:
    return _Posting(
        min(filter(None, map(_MIN_TIME, same)), default=""),
        max(map(_MAX_TIME, same)),
        bytearray(b"".join(map(_ENTRIES, same))),
    )


def decode_entries(blob: bytes, hashes: frozenset[int]) -> list[tuple[int, int]]:
    """``(seq, offset)`` of the entries of a posting row whose key hash is in *hashes*."""
    return [(seq, offset) for h, offset, seq in _ENTRY.iter_unpack(blob) if h in hashes]


class Index:
    """One index file; opened (and created) on construction, closed with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Rows of the newest block, as written: appends extend them without a read.
        self._cache: dict[tuple[int, int], _Posting] = {}
        self._cache_block = -1
        #: Blocks from this one on were begun by this process: the cache holds all their
        #: rows, so a key missing from it has no row yet (no read needed).
        self._complete_from = -1
        #: Rows added and not yet written (:meth:`flush`): records up to ``_pending_last``.
        self._pending: dict[tuple[int, int], _Posting] = {}
        #: The native core's rows, in record order, merged only when written: merging them
        #: one append at a time cost more Python work per row than anything else.
        self._pending_rows: list[Row] = []
        self._pending_last = 0
        self._pending_records = 0
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ArchiveError(f"{path}: cannot open the archive index: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def last_seq(self) -> int:
        """The highest record indexed (0 for an empty index)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def add(self, entries: Sequence[Entry]) -> None:
        """Add the entries of one append (in record order); written by :meth:`flush`."""
        if entries:
            self._stage(postings_of(entries), entries[-1][0], len(entries))

    def add_rows(self, rows: Iterable[Row], last_seq: int, records: int) -> None:
        """Add the posting rows of one append of *records* made by the native core
        (``(bucket, block, min time, max time, entries)``, as :func:`postings_of` makes them)."""
        if self._pending:  # rows of the Python path wait: keep record order
            self._stage(_gathered(list(rows)), last_seq, records)
            return
        self._pending_rows += rows
        self._pending_last = last_seq
        self._pending_records += records

    @property
    def pending(self) -> int:
        """Records added and not yet written."""
        return self._pending_records

    def flush(self) -> None:
        """Write what was added since the last flush, in one transaction."""
        if self._pending_records:
            self._stage_rows()
            rows, self._pending, self._pending_records = self._pending, {}, 0
            self._merge(rows, self._pending_last)

    def _stage_rows(self) -> None:
        if self._pending_rows:
            rows, self._pending_rows = self._pending_rows, []
            self._stage(_gathered(rows), self._pending_last, 0)

    def _stage(self, fresh: dict[tuple[int, int], _Posting], last_seq: int, records: int) -> None:
        """Merge the rows of one append into those waiting (as :meth:`_merge` merges them
        into the file: the rows written are the same however appends are grouped)."""
        self._stage_rows()
        pending = self._pending
        if not pending:
            self._pending = fresh
        else:
            for where, posting in fresh.items():
                kept = pending.get(where)
                if kept is None:
                    pending[where] = posting
                else:
                    _extend(kept, posting)
        self._pending_last = last_seq
        self._pending_records += records

    def _merge(self, fresh: dict[tuple[int, int], _Posting], last_seq: int) -> None:
        if self._complete_from < 0:
            last = self.last_seq()
            self._complete_from = block_of(last + 1) if last % BLOCK == 0 else block_of(last) + 1
        try:
            self._db.execute("BEGIN")
            rows = []
            for (bucket, block), posting in fresh.items():
                merged = self._current(bucket, block)
                if merged is None:
                    merged = posting
                else:
                    _extend(merged, posting)
                self._cache[bucket, block] = merged
                rows.append(
                    (bucket, block, merged.min_time, merged.max_time, bytes(merged.entries))
                )
            self._db.executemany(_UPSERT, rows)
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)",
                (last_seq,),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._cache.clear()
            self._complete_from = -1
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ArchiveError(f"{self.path}: cannot write the archive index: {exc}") from exc

    def _current(self, bucket: int, block: int) -> _Posting | None:
        if block != self._cache_block:
            if block > self._cache_block:
                self._cache = {k: v for k, v in self._cache.items() if k[1] >= block}
            self._cache_block = max(self._cache_block, block)
        cached = self._cache.get((bucket, block))
        if cached is not None or block >= self._complete_from:
            return cached
        row = self._db.execute(
            "SELECT min_time, max_time, entries FROM postings WHERE bucket = ? AND block = ?",
            (bucket, block),
        ).fetchone()
        return _Posting(row[0], row[1], bytearray(row[2])) if row else None

    def lookup(
        self, keys: Sequence[str], *, since: str | None = None, until: str | None = None
    ) -> list[tuple[int, int]]:
        """``(seq, offset)`` of the records under any of *keys*, in record order.

        Blocks whose events all lie outside ``[since, until)`` are skipped (records are
        filtered again by their own time afterwards).
        """
        hashes = frozenset(key_hash(k) for k in keys)
        buckets = sorted({h % BUCKETS for h in hashes})
        where = [f"bucket IN ({', '.join('?' * len(buckets))})"]
        params: list[object] = list(buckets)
        if since is not None:
            where.append("(max_time >= ? OR max_time = '')")
            params.append(since)
        if until is not None:
            where.append("min_time < ?")
            params.append(until)
        sql = f"SELECT entries FROM postings WHERE {' AND '.join(where)}"  # noqa: S608
        found: set[tuple[int, int]] = set()
        try:
            for (blob,) in self._db.execute(sql, params):
                found.update(decode_entries(blob, hashes))
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot read the archive index: {exc}") from exc
        return sorted(found)

    def block(self, block: int) -> dict[int, tuple[str, str, bytes]]:
        """Every row of one block: bucket → (min time, max time, entries)."""
        cursor = self._db.execute(
            "SELECT bucket, min_time, max_time, entries FROM postings WHERE block = ?", (block,)
        )
        return {bucket: (lo, hi, bytes(blob)) for bucket, lo, hi, blob in cursor}

    def blocks(self) -> Iterator[int]:
        """The blocks that have rows, in order."""
        for (block,) in self._db.execute("SELECT DISTINCT block FROM postings ORDER BY block"):
            yield int(block)
