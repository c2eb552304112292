"""The archive's index: SQLite (WAL) posting lists from lookup keys to records.

Derived data. For every record the index keeps its number and its byte offset in its
segment under a few keys (:func:`keys_of`): the object it names (``obj:secrets/ns/name``),
or for a request without a name (list, watch, create) its collection
(``col:secrets/ns``, ``col:secrets/`` across namespaces), its namespace (``ns:payments``)
and its user (``user:alice``). Entries are grouped by key and by block of
:data:`BLOCK` records, one row each, with the block's earliest and latest event time, so
an append writes one row per distinct key of the batch rather than one row per event per
index. A query reads the posting lists of its keys, then the records themselves from the
segments (by offset), so answers always come from the archive.

The file can be deleted and rebuilt (``kustos audit reindex``) and ``kustos audit
verify`` recomputes every block from the segments and compares. It is written without
waiting for the disk (``synchronous=OFF``): after a crash the archive re-indexes what the
index misses when it next opens.
"""

from __future__ import annotations

import sqlite3
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kustos.errors import ArchiveError

#: Records per block of a posting list.
BLOCK: Final = 16384
_ENTRY: Final = struct.Struct("<qq")  # seq, offset in its segment
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS postings (
    key TEXT NOT NULL, block INTEGER NOT NULL, min_time TEXT NOT NULL, max_time TEXT NOT NULL,
    entries BLOB NOT NULL, PRIMARY KEY (key, block)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_UPSERT: Final = (
    "INSERT OR REPLACE INTO postings (key, block, min_time, max_time, entries) "
    "VALUES (?, ?, ?, ?, ?)"
)


def block_of(seq: int) -> int:
    """The block of posting lists that record *seq* falls in."""
    return (seq - 1) // BLOCK


def keys_of(event: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """The lookup keys of an event and its time (MicroTime text, ``""`` when absent).

    Written for speed (it runs for every archived event): decoded JSON is dicts and
    strings, anything else counts as absent.
    """
    ref = event.get("objectRef")
    user = event.get("user")
    keys = []
    if type(ref) is dict:
        resource = ref.get("resource") or ""
        namespace = ref.get("namespace") or ""
        name = ref.get("name")
        if type(resource) is str and type(namespace) is str:
            if name and type(name) is str:
                keys.append(f"obj:{resource}/{namespace}/{name}")
            else:
                keys.append(f"col:{resource}/{namespace}")
            if namespace:
                keys.append(f"ns:{namespace}")
    if type(user) is dict:
        username = user.get("username")
        if type(username) is str:
            keys.append(f"user:{username}")
    time = event.get("requestReceivedTimestamp") or event.get("stageTimestamp")
    return tuple(keys), time if type(time) is str else ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One record as the index sees it."""

    seq: int
    offset: int
    keys: tuple[str, ...]
    time: str


@dataclass(slots=True)
class _Posting:
    min_time: str
    max_time: str
    entries: bytearray


def postings_of(entries: Iterable[Entry]) -> dict[tuple[str, int], _Posting]:
    """Posting rows, by (key, block), of *entries* (used by appends and by verify)."""
    grouped: dict[tuple[str, int], list[Entry]] = defaultdict(list)
    for entry in entries:
        block = block_of(entry.seq)
        for key in entry.keys:
            grouped[key, block].append(entry)
    rows = {}
    for where, members in grouped.items():
        times = [e.time for e in members if e.time]
        packed = bytearray(len(members) * _ENTRY.size)
        for i, e in enumerate(members):
            _ENTRY.pack_into(packed, i * _ENTRY.size, e.seq, e.offset)
        rows[where] = _Posting(min(times, default=""), max(times, default=""), packed)
    return rows


def decode_entries(blob: bytes) -> list[tuple[int, int]]:
    """``(seq, offset)`` pairs of a posting row."""
    return [_ENTRY.unpack_from(blob, i) for i in range(0, len(blob), _ENTRY.size)]


class Index:
    """One index file; opened (and created) on construction, closed with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Rows of the newest block, as written: appends extend them without a read.
        self._cache: dict[tuple[str, int], _Posting] = {}
        self._cache_block = -1
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
        """Add the entries of one append (in record order) in one transaction."""
        if not entries:
            return
        fresh = postings_of(entries)
        try:
            self._db.execute("BEGIN")
            rows = []
            for (key, block), posting in fresh.items():
                merged = self._current(key, block)
                if merged is None:
                    merged = posting
                else:
                    merged.entries += posting.entries
                    merged.min_time = min(filter(None, (merged.min_time, posting.min_time)),
                                          default="")  # fmt: skip
                    merged.max_time = max(merged.max_time, posting.max_time)
                self._cache[key, block] = merged
                rows.append((key, block, merged.min_time, merged.max_time, bytes(merged.entries)))
            self._db.executemany(_UPSERT, rows)
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)",
                (entries[-1].seq,),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._cache.clear()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ArchiveError(f"{self.path}: cannot write the archive index: {exc}") from exc

    def _current(self, key: str, block: int) -> _Posting | None:
        if block != self._cache_block:
            if block > self._cache_block:
                self._cache = {k: v for k, v in self._cache.items() if k[1] >= block}
            self._cache_block = max(self._cache_block, block)
        cached = self._cache.get((key, block))
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT min_time, max_time, entries FROM postings WHERE key = ? AND block = ?",
            (key, block),
        ).fetchone()
        return _Posting(row[0], row[1], bytearray(row[2])) if row else None

    def lookup(
        self, keys: Sequence[str], *, since: str | None = None, until: str | None = None
    ) -> list[tuple[int, int]]:
        """``(seq, offset)`` of the records under any of *keys*, in record order.

        Blocks whose events all lie outside ``[since, until)`` are skipped (records are
        filtered again by their own time afterwards).
        """
        where = [f"key IN ({', '.join('?' * len(keys))})"]
        params: list[object] = list(keys)
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
                found.update(decode_entries(blob))
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot read the archive index: {exc}") from exc
        return sorted(found)

    def block(self, block: int) -> dict[str, tuple[str, str, bytes]]:
        """Every row of one block: key → (min time, max time, entries)."""
        cursor = self._db.execute(
            "SELECT key, min_time, max_time, entries FROM postings WHERE block = ?", (block,)
        )
        return {key: (lo, hi, bytes(blob)) for key, lo, hi, blob in cursor}

    def blocks(self) -> Iterator[int]:
        """The blocks that have rows, in order."""
        for (block,) in self._db.execute("SELECT DISTINCT block FROM postings ORDER BY block"):
            yield int(block)


def group_by_block(entries: Iterable[Entry]) -> Iterator[tuple[int, list[Entry]]]:
    """Consecutive entries cut into their blocks (for verify and rebuilds)."""
    grouped: dict[int, list[Entry]] = defaultdict(list)
    current = -1
    for entry in entries:
        block = block_of(entry.seq)
        if block != current and current >= 0:
            yield current, grouped.pop(current)
        current = block
        grouped[block].append(entry)
    if current >= 0:
        yield current, grouped.pop(current)
