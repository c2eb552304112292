"""``kustos audit query``: who did what, when, from where, answered from index and segments.

The index narrows the search to the records under the most selective key of the query
(the Secret, else the user, else the namespace); each candidate record is then read from
its segment and every filter applied to the event itself, so a stale index can make a
query slower, never wrong about what a record says. Without any of those keys, the
segments are read in full.

``--secret NS/NAME`` answers "who read this Secret": the requests that name it, and the
``list`` and ``watch`` requests on Secrets of its namespace or of all namespaces, which
returned it too (the API server logs no name for those).

A long-running request (a ``watch``) is logged twice, at ``ResponseStarted`` and again at
``ResponseComplete``: a query shows one row per audit ID, the ``ResponseComplete`` one
(whose code is final), else the last stage the archive holds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import orjson

from kustos.audit.archive import Archive, segment_files
from kustos.audit.hashing import RecordFormatError, parse_line
from kustos.audit.indexing import Index
from kustos.audit.records import REQUEST_RECEIVED, EventSummary, summary_of
from kustos.errors import ArchiveError

_LISTING: Final = frozenset({"list", "watch"})
#: The stage whose status code is final; another stage of the same request gives way to it.
_FINAL_STAGE: Final = "ResponseComplete"


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

    def keys(self) -> list[str] | None:
        """The index keys to look up, or ``None`` when the whole archive must be read."""
        if self.secret is not None:
            ns, name = self.secret
            return [f"obj:secrets/{ns}/{name}", f"col:secrets/{ns}", "col:secrets/"]
        if self.user is not None:
            return [f"user:{self.user}"]
        if self.namespace is not None:
            return [f"ns:{self.namespace}"]
        return None

    def matches(self, s: EventSummary) -> bool:
        """Whether one event's summary passes every filter."""
        if s.stage == REQUEST_RECEIVED:
            return False
        if self.secret is not None:
            ns, name = self.secret
            if s.resource != "secrets" or s.subresource:
                return False
            named = s.namespace == ns and s.name == name
            listed = not s.name and s.namespace in (ns, "") and s.verb in _LISTING
            if not (named or listed):
                return False
        return (
            (self.namespace is None or s.namespace == self.namespace)
            and (self.user is None or s.user == self.user)
            and (self.verb is None or s.verb == self.verb)
            and (self.resource is None or s.resource == self.resource)
            and (self.since is None or s.time >= self.since)
            and (self.until is None or s.time < self.until)
        )


class _Segments:
    """Reads single records by (seq, offset), keeping segment files open."""

    def __init__(self, directory: Path) -> None:
        found = segment_files(directory)
        self._firsts = [first for first, _ in found]
        self._paths = [path for _, path in found]
        self._open: dict[int, IO[bytes]] = {}

    def record(self, seq: int, offset: int) -> bytes:
        at = bisect.bisect_right(self._firsts, seq) - 1
        if at < 0:
            raise ArchiveError(f"record {seq} is in no segment: run `kustos audit verify`")
        fh = self._open.get(at)
        if fh is None:
            fh = self._open[at] = self._paths[at].open("rb")
        fh.seek(offset)
        try:
            record = parse_line(fh.readline())
        except RecordFormatError:
            record = None
        if record is None or record.seq != seq:
            raise ArchiveError(
                f"the index points record {seq} at a wrong place: run `kustos audit reindex`"
            )
        return record.data

    def close(self) -> None:
        for fh in self._open.values():
            fh.close()


def _candidates(directory: Path, query: EventQuery) -> Iterator[EventSummary]:
    keys = query.keys()
    if keys is None:
        for archived in Archive(directory).read():
            yield summary_of(archived.event)
        return
    index = Index(directory / "index.sqlite")
    segments = _Segments(directory)
    try:
        for seq, offset in index.lookup(keys, since=query.since, until=query.until):
            yield summary_of(orjson.loads(segments.record(seq, offset)))
    finally:
        segments.close()
        index.close()


def _one_per_request(events: Iterable[EventSummary]) -> list[EventSummary]:
    """*events* (in record order) with one per audit ID: ``ResponseComplete``, else the last.

    An event without an audit ID stands for itself.
    """
    kept: dict[object, EventSummary] = {}
    for s in events:
        key: object = s.audit_id or object()
        held = kept.get(key)
        if held is None or held.stage != _FINAL_STAGE or s.stage == _FINAL_STAGE:
            kept[key] = s
    return list(kept.values())


def run_query(directory: Path, query: EventQuery) -> list[EventSummary]:
    """The events matching *query*, oldest first, one per request (see the module doc)."""
    if not (directory / "index.sqlite").exists():
        raise ArchiveError(f"{directory}: no archive index here (run `kustos audit reindex`)")
    found = _one_per_request(s for s in _candidates(directory, query) if query.matches(s))
    found.sort(key=lambda s: s.time)
    return found if query.limit is None else found[: query.limit]
