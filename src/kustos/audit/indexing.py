"""The archive's index: SQLite (WAL) rows of :class:`~kustos.audit.records.EventSummary`.

Derived data. Every row is computed from a record of the segments, so the file can be
deleted and rebuilt (``kustos audit reindex``) and ``kustos audit verify`` compares it row by
row with the segments. It is written without waiting for the disk (``synchronous=OFF``):
after a crash the archive re-indexes what the index misses when it next opens, and a
torn index is rebuilt. Queries read the index only, never the segments.

``--secret NS/NAME`` answers "who read this Secret": the requests on it by name, and the
``list``/``watch`` requests on Secrets of its namespace or of every namespace, which
returned it too (the API server logs no name for those).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kustos.audit.records import REQUEST_RECEIVED, EventSummary
from kustos.errors import ArchiveError

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, audit_id TEXT NOT NULL, stage TEXT NOT NULL,
    user TEXT NOT NULL, groups TEXT NOT NULL, verb TEXT NOT NULL, resource TEXT NOT NULL,
    subresource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    source_ip TEXT NOT NULL, user_agent TEXT NOT NULL, code INTEGER
);
CREATE INDEX IF NOT EXISTS by_object ON events (namespace, name, time);
CREATE INDEX IF NOT EXISTS by_user ON events (user, time);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS: Final = (
    "seq, time, audit_id, stage, user, groups, verb, resource, subresource, namespace, name, "
    "source_ip, user_agent, code"
)
_INSERT: Final = f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 14)})"  # noqa: S608
#: Groups are joined with a character no group name holds.
_GROUP_SEP: Final = "\x1f"
#: Verbs that return Secrets without naming them in the audit event.
_LISTING: Final = ("list", "watch")

Row = tuple[int, str, str, str, str, str, str, str, str, str, str, str, str, int | None]


def row_of(seq: int, s: EventSummary) -> Row:
    """The index row of record *seq*."""
    return (
        seq, s.time, s.audit_id, s.stage, s.user, _GROUP_SEP.join(s.groups), s.verb, s.resource,
        s.subresource, s.namespace, s.name, s.source_ip, s.user_agent, s.code,
    )  # fmt: skip


def _summary(row: Row) -> EventSummary:
    return EventSummary(
        time=row[1], audit_id=row[2], stage=row[3], user=row[4],
        groups=tuple(row[5].split(_GROUP_SEP)) if row[5] else (), verb=row[6], resource=row[7],
        subresource=row[8], namespace=row[9], name=row[10], source_ip=row[11],
        user_agent=row[12], code=row[13],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``kustos audit query``; ``None`` means "any". Times are MicroTime text."""

    secret: tuple[str, str] | None = None
    namespace: str | None = None
    user: str | None = None
    verb: str | None = None
    resource: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None


class Index:
    """One index file; opened (and created) on construction, closed with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        row = self._db.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def count(self) -> int:
        """How many rows the index holds."""
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def add(self, rows: Iterable[Row]) -> None:
        """Add rows in one transaction."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ArchiveError(f"{self.path}: cannot write the archive index: {exc}") from exc

    def rows(self) -> Iterator[Row]:
        """Every row, in record order."""
        cursor = self._db.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq")  # noqa: S608
        while batch := cursor.fetchmany(4096):
            yield from batch

    def query(self, query: EventQuery) -> list[EventSummary]:
        """The events matching *query*, oldest first (``RequestReceived`` duplicates left out)."""
        where = ["stage != ?"]
        params: list[object] = [REQUEST_RECEIVED]
        for column, value in (
            ("user", query.user),
            ("verb", query.verb),
            ("resource", query.resource),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("time >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("time < ?")
            params.append(query.until)
        branches: list[tuple[str, list[object]]] = []
        if query.secret is not None:
            ns, name = query.secret
            listing = f"verb IN ({', '.join('?' * len(_LISTING))})"
            branches = [
                ("namespace = ? AND name = ? AND resource = 'secrets'", [ns, name]),
                (f"namespace = ? AND name = '' AND resource = 'secrets' AND {listing}",
                 [ns, *_LISTING]),
                (f"namespace = '' AND name = '' AND resource = 'secrets' AND {listing}",
                 [*_LISTING]),
            ]  # fmt: skip
        elif query.namespace is not None:
            branches = [("namespace = ?", [query.namespace])]
        else:
            branches = [("1", [])]
        sql = " UNION ALL ".join(
            f"SELECT {_COLUMNS} FROM events WHERE {cond} AND {' AND '.join(where)}"  # noqa: S608
            for cond, _ in branches
        )
        sql += " ORDER BY time, seq"
        args: list[object] = []
        for _, own in branches:
            args += [*own, *params]
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit)
        try:
            return [_summary(r) for r in self._db.execute(sql, args)]
        except sqlite3.Error as exc:
            raise ArchiveError(f"{self.path}: cannot read the archive index: {exc}") from exc
