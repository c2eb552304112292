"""The tamper-evident audit archive: append-only segments, hash chain, signed checkpoints.

Layout of an archive folder (``docs/audit.md``, decisions in ``docs/decisions.md``)::

    segments/<first seq, 12 digits>.log   records, one line each (kustos.audit.hashing)
    checkpoints.jsonl                     Ed25519-signed (size, head hash), appended
    checkpoint.pub                        the first public key: the chain's anchor
    checkpoint-keys.jsonl                 key rotations, each certified (kustos.audit.signing)
    keys/checkpoint.key                   the signing key, 0600 (unless --signing-key: another
                                          file, or a PKCS#11 token)
    index.sqlite                          derived: rebuilt by ``kustos audit reindex``

One writer at a time holds ``.writer.lock``; readers (``verify``, ``query``, the detectors)
need no lock and stop at a line still being written. An append is durable when
:meth:`Archive.append` returns (with ``fsync=always``, on disk; with ``none``, in the
operating system's cache: safe if the receiver dies, not if the machine does). Values are
stripped before a byte is written (:func:`kustos.audit.records.strip_values`); events seen
already (same ``auditID`` and stage, as a retried webhook batch repeats them) are skipped.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import fcntl
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self, overload

import orjson

from kustos.audit import native
from kustos.audit.hashing import (
    GENESIS,
    Checkpoint,
    RecordFormatError,
    checkpoint_note,
    key_id,
    parse_line,
)
from kustos.audit.indexing import BLOCK, BUCKETS, Entry, Index, KeyHasher
from kustos.audit.records import (
    ArchivedEvent,
    Prepared,
    format_time,
    prepare,
    prepare_event,
    text_view,
)
from kustos.audit.signing import (
    DEFAULT_KEY,
    PUBLIC_KEY,  # noqa: F401 - re-exported: part of the archive's layout
    KeyLocation,
    Signer,
    close_signer,
    open_signer,
    read_public_key,  # noqa: F401 - re-exported for readers of the layout
    rotate,
)
from kustos.errors import ArchiveError, ArchiveFullError

if TYPE_CHECKING:
    from kustos._native import Batch, Commit, Window

log = logging.getLogger(__name__)

#: Called with each batch once it is durable (detectors and forwarding plug in here). A
#: hook with a ``close()`` method has it called when the archive closes.
Hook = Callable[[Sequence[ArchivedEvent]], None]

SEGMENTS: Final = "segments"
CHECKPOINTS: Final = "checkpoints.jsonl"
INDEX: Final = "index.sqlite"
_LOCK: Final = ".writer.lock"
#: A new segment starts once the current one is this large.
SEGMENT_BYTES: Final = 64 * 1024 * 1024
#: Recent event identities remembered to skip repeats (a retried batch holds at most 400).
DEDUPE_WINDOW: Final = 100_000
#: The index is written once this many records wait, or the oldest waited this long (or
#: when the archive closes, or when :meth:`Archive.index_now` is called by an idle writer):
#: rewriting its rows for every small batch cost more than everything else together.
INDEX_RECORDS: Final = BLOCK
INDEX_SECONDS: Final = 1.0


class Fsync(StrEnum):
    """When an append reaches the disk before it is acknowledged."""

    ALWAYS = "always"  # fsync before every acknowledgement
    NONE = "none"  # written to the OS: survives the receiver's crash, not the machine's


def _marked(groups: Sequence[Sequence[Prepared]]) -> Iterator[Iterable[Prepared | None]]:
    """Each group followed by ``None``, which marks its end."""
    for group in groups:
        yield group
        yield (None,)


class RecentKeys:
    """The identities of the latest records, oldest first (the Python path's window;
    the native core has the same one, :class:`kustos._native.Window`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: dict[tuple[str, str], None] = {}  # dicts keep insertion order

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def remember(self, keys: Sequence[tuple[str, str]]) -> None:
        """Remember *keys*; past twice the size, keep the newest (trimmed in bulk: O(1)
        per event)."""
        self._keys.update(dict.fromkeys(keys))
        if len(self._keys) > 2 * self.size:
            self._keys = dict.fromkeys(list(self._keys)[-self.size :])


@dataclass(frozen=True, slots=True)
class Durable:
    """Batches stored by :meth:`Archive.store_batches`, for :meth:`Archive.finish`."""

    #: Events stored of each batch.
    stored: list[int]
    #: The first record's number.
    first: int
    #: What was written (``None``: nothing, every event was a repeat).
    commit: Commit | None


class StoredEvents(Sequence[ArchivedEvent]):
    """The events of a batch the native core stored, made when read (hooks read them)."""

    __slots__ = ("_blob", "_done", "_first", "_spans")

    def __init__(self, first_seq: int, done: Commit) -> None:
        self._first = first_seq
        self._done = done
        self._blob = done.blob
        self._spans = memoryview(done.spans).cast("I")

    @property
    def commit(self) -> Commit:
        """The native core's commit of these events (the detector thread reads their views
        from it: see :meth:`kustos.audit.watching.DetectorHook.handle_commit`)."""
        return self._done

    def json_array(self) -> bytes:
        """The events' texts as one JSON array, in order (the detector process reads it)."""
        return self._done.json_array()

    def __len__(self) -> int:
        return len(self._spans) // 2

    @overload
    def __getitem__(self, index: int) -> ArchivedEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[ArchivedEvent]: ...
    def __getitem__(self, index: int | slice) -> ArchivedEvent | list[ArchivedEvent]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("no such stored event")
        spans = self._spans
        return ArchivedEvent(
            self._first + index, data=self._blob[spans[2 * index] : spans[2 * index + 1]]
        )


def _name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__qualname__


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record is *first_seq*."""
    return f"{first_seq:012d}.log"


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """The segments of an archive as ``(first seq, path)``, in order."""
    folder = directory / SEGMENTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        stem = path.name.removesuffix(".log")
        if path.name.endswith(".log") and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def complete_lines(path: Path) -> Iterator[bytes]:
    """The complete (newline-terminated) lines of a segment; a line being written is left."""
    with path.open("rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                yield line


def scan(directory: Path, after_seq: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """``(seq, offset in its segment, event JSON)`` of every complete record after
    *after_seq*, in file order, unverified (``kustos audit verify`` checks)."""
    segments = segment_files(directory)
    for i, (_, path) in enumerate(segments):
        following = segments[i + 1][0] if i + 1 < len(segments) else None
        if following is not None and following <= after_seq + 1:
            continue
        offset = 0
        for number, line in enumerate(complete_lines(path), start=1):
            at = offset
            offset += len(line)
            try:
                seq = int(line[: line.index(b" ")])
                data = parse_line(line).data if seq > after_seq else b""
            except ValueError:  # RecordFormatError too: a damaged archive, one line
                raise ArchiveError(
                    f"{path} line {number} is not a record: run `kustos audit verify`"
                ) from None
            if seq > after_seq:
                yield seq, at, data


def read_checkpoints(directory: Path) -> list[Checkpoint]:
    """Every checkpoint of the archive, oldest first (a torn last line is left out)."""
    path = directory / CHECKPOINTS
    if not path.exists():
        return []
    found = []
    for line in complete_lines(path):
        try:
            raw = orjson.loads(line)
            found.append(
                Checkpoint(
                    size=int(raw["size"]),
                    head=bytes.fromhex(raw["head"]),
                    time=str(raw["time"]),
                    key_id=str(raw["key_id"]),
                    signature=base64.b64decode(raw["signature"]),
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{path}: a checkpoint line is not a checkpoint") from exc
    return found


class Archive:
    """An archive folder. Reading needs nothing; the first append takes the writer's lock.

    *signing_key* is where the checkpoint key lives (created 0600 when absent; default
    ``keys/checkpoint.key`` inside the archive). *hooks* are called after every durable
    append with the events it stored.
    """

    def __init__(
        self,
        directory: Path,
        *,
        signing_key: KeyLocation | None = None,
        fsync: Fsync = Fsync.ALWAYS,
        hooks: Sequence[Hook] = (),
        checkpoint_every: int = 10_000,
        checkpoint_seconds: float = 5.0,
        segment_bytes: int = SEGMENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.directory = directory
        self.signing_key = signing_key or directory / DEFAULT_KEY
        self.fsync = fsync
        self.hooks: list[Hook] = list(hooks)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.segment_bytes = segment_bytes
        self._clock = clock
        self._now = now
        self._open = False
        self._lock_fd = -1
        self._fd = -1
        self._segment_size = 0
        self._seq = 0
        self._head = GENESIS
        self._key: Signer | None = None
        self._index: Index | None = None
        self._hasher = KeyHasher()
        #: Whether the native core does the per-event work (:mod:`kustos.audit.native`).
        self.native = native.enabled()
        #: Identities of the latest records, oldest first.
        self._recent: RecentKeys | Window = (
            native.core.Window(DEDUPE_WINDOW) if self.native else RecentKeys(DEDUPE_WINDOW)
        )
        self._checkpointed = 0
        self._checkpoint_at = 0.0
        self._indexed_at = 0.0
        #: Events whose bodies were removed since the archive was opened (for the report).
        self.stripped = 0
        #: Events skipped because they were archived already.
        self.repeated = 0

    # ------------------------------------------------------------------ reading
    def read(self, after_seq: int = 0) -> Iterator[ArchivedEvent]:
        """Every archived event after *after_seq*, in order (no verification: see verify)."""
        for seq, _, data in scan(self.directory, after_seq):
            yield ArchivedEvent(seq, data=data)

    @property
    def size(self) -> int:
        """Records in the archive (as the writer knows it; opens the writer)."""
        self.open_writer()
        return self._seq

    @property
    def index_path(self) -> Path:
        """The index file."""
        return self.directory / INDEX

    # ------------------------------------------------------------------ writing
    def __enter__(self) -> Self:
        self.open_writer()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, events: Sequence[Mapping[str, Any]]) -> list[ArchivedEvent]:
        """Store decoded *events* (values stripped, repeats skipped); durable on return."""
        return self.append_prepared([prepare_event(event) for event in events])

    def append_prepared(self, prepared: Sequence[Prepared]) -> list[ArchivedEvent]:
        """Store events made ready by :func:`~kustos.audit.records.prepare` (the ingest
        paths: their text is kept as it came when it carries no body), as :meth:`append`."""
        return self.append_groups([prepared])[0]

    def append_groups(self, groups: Sequence[Sequence[Prepared]]) -> list[list[ArchivedEvent]]:
        """Store several batches with one write and one fsync (group commit); the events
        stored of each batch, in order. All or nothing, as :meth:`append`."""
        self.open_writer()
        if self._segment_size >= self.segment_bytes:
            self._new_segment(self._seq + 1)
        chunks = []
        stored: list[ArchivedEvent] = []
        bounds = []
        entries: list[Entry] = []
        seq, head, offset = self._seq, self._head, self._segment_size
        keys = []
        batch_keys: set[tuple[str, str]] = set()
        recent = self._recent
        hasher = self._hasher
        stripped = 0
        for item in itertools.chain.from_iterable(_marked(groups)):
            if item is None:  # the end of a group
                bounds.append(len(stored))
                continue
            # The hot loop of every ingest path: event_key, link and record_line inlined.
            view, data = item.view, item.data
            if view.auditID:
                key = (view.auditID, view.stage)
                if key in recent or key in batch_keys:
                    self.repeated += 1
                    continue
                batch_keys.add(key)
                keys.append(key)
            seq += 1
            digest = sha256(head)
            digest.update(seq.to_bytes(8, "big"))
            digest.update(data)
            head = digest.digest()
            line = b"%d %s %s\n" % (seq, head.hex().encode(), data)
            chunks.append(line)
            stored.append(ArchivedEvent(seq, item.event, data=data, view=view))
            hashes, time = hasher(view)
            entries.append((seq, offset, hashes, time))
            offset += len(line)
            stripped += item.stripped
        if not stored:
            return [[] for _ in groups]
        self._write(b"".join(chunks))
        self.stripped += stripped
        self._seq, self._head = seq, head
        self._recent.remember(keys)
        assert self._index is not None  # noqa: S101 - set by _ensure_open
        self._index.add(entries)
        self._maybe_index()
        self._maybe_checkpoint()
        self._run_hooks(stored)
        return [stored[a:b] for a, b in itertools.pairwise([0, *bounds])]

    # ------------------------------------------------------------------ the native path
    def settle(self, batch: Batch) -> list[int]:
        """Have the reference (:func:`~kustos.audit.records.prepare`) read the events the
        native reader left to it; the positions of those that are no Event."""
        missing = []
        for position, text in batch.unsure():
            item = prepare(text)
            if item is None:
                batch.resolve(position, None)
                missing.append(position)
            else:
                self._resolve(batch, position, item)
        return missing

    def batch_of(self, prepared: Sequence[Prepared]) -> Batch:
        """Events the reference read (:func:`~kustos.audit.records.prepare`) as a batch."""
        batch = native.core.Batch.pending(len(prepared))
        for position, item in enumerate(prepared):
            self._resolve(batch, position, item)
        return batch

    def _resolve(self, batch: Batch, position: int, item: Prepared) -> None:
        view = item.view
        hashes, time = self._hasher(view)
        batch.resolve(position, (item.data, view.auditID, view.stage, hashes, time, item.stripped))

    def append_batches(self, batches: Sequence[Batch]) -> list[int]:
        """Store batches read by the native core (every event settled: :meth:`settle`)
        with one write and one fsync; the number of events stored of each. Byte for byte
        what :meth:`append_groups` stores of the same events."""
        durable = self.store_batches(batches)
        self.finish(durable)
        return durable.stored

    def store_batches(self, batches: Sequence[Batch]) -> Durable:
        """The first half of :meth:`append_batches`: the batches written (and synced, with
        ``fsync=always``), nothing else. :meth:`finish` must follow for each, in order, from
        one thread at a time (it may run beside the next ``store_batches``): the receiver
        answers once this returns and indexes on another thread."""
        self.open_writer()
        if self._segment_size >= self.segment_bytes:
            self._new_segment(self._seq + 1)
        window = self._recent
        assert not isinstance(window, RecentKeys)  # noqa: S101 - self.native
        done = native.core.commit(
            batches, window, self._seq, self._head, self._segment_size,
            block=BLOCK, buckets=BUCKETS,
        )  # fmt: skip
        self.repeated += done.repeated
        if done.seq == self._seq:
            return Durable(done.stored, self._seq + 1, None)
        first = self._seq + 1
        self._write(done.blob)
        self.stripped += done.stripped
        self._seq, self._head = done.seq, done.head
        window.remember_commit(done)
        return Durable(done.stored, first, done)

    def finish(self, durable: Durable) -> None:
        """The second half of :meth:`append_batches`: index, checkpoint, hooks."""
        done = durable.commit
        if done is None:
            return
        assert self._index is not None  # noqa: S101 - set by _ensure_open
        self._index.add_rows(done.rows(), done.seq, done.seq - durable.first + 1)
        self._maybe_index()
        self._maybe_checkpoint(done.seq, done.head)
        if self.hooks:
            self._run_hooks(StoredEvents(durable.first, done))

    def _run_hooks(self, stored: Sequence[ArchivedEvent]) -> None:
        for hook in self.hooks:
            try:
                hook(stored)
            except Exception as exc:  # noqa: BLE001 - the batch is stored; a hook must not undo that
                # The type only: a hook's message could quote an event.
                log.error("hook %s failed on records %d-%d: %s", _name(hook),  # noqa: TRY400
                          stored[0].seq, stored[-1].seq, type(exc).__name__)  # fmt: skip

    def _write(self, blob: bytes) -> None:
        try:
            written = 0
            while written < len(blob):
                written += os.write(self._fd, blob[written:])
            if self.fsync is Fsync.ALWAYS:
                os.fsync(self._fd)
        except OSError as exc:
            # Nothing of a batch that failed stays: a retry must not find half of it.
            os.ftruncate(self._fd, self._segment_size)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ArchiveFullError(f"{self.directory}: no space left for the batch") from exc
            raise ArchiveError(f"{self.directory}: cannot write a segment: {exc}") from exc
        self._segment_size += len(blob)

    # ------------------------------------------------------------------ index
    def _maybe_index(self) -> None:
        assert self._index is not None  # noqa: S101 - set by _ensure_open
        if self._index.pending >= INDEX_RECORDS:
            self._index.flush()
        elif self._clock() - self._indexed_at >= INDEX_SECONDS:
            self.index_now()

    def index_now(self) -> None:
        """Write the index entries still waiting (a writer calls this when idle)."""
        if self._index is not None:
            self._index.flush()
        self._indexed_at = self._clock()

    @property
    def index_waiting(self) -> bool:
        """Whether records wait to be indexed."""
        return self._index is not None and self._index.pending > 0

    # ------------------------------------------------------------------ checkpoints
    def _maybe_checkpoint(self, seq: int | None = None, head: bytes | None = None) -> None:
        """Sign (*seq*, *head*), the archive's tip by default, when due."""
        if seq is None or head is None:
            seq, head = self._seq, self._head
        due = seq - self._checkpointed >= self.checkpoint_every
        late = self._clock() - self._checkpoint_at >= self.checkpoint_seconds
        if seq > self._checkpointed and (due or late):
            self._sign(seq, head)

    def checkpoint(self) -> None:
        """Sign the current size and head now (nothing to do when nothing changed)."""
        self.open_writer()
        self._sign(self._seq, self._head)

    def _sign(self, seq: int, head: bytes) -> None:
        """Sign the records up to *seq*, whose chain hash is *head*: given, not read from
        the archive's tip, because :meth:`finish` signs while the next batch is stored."""
        if seq <= self._checkpointed:
            return
        assert self._key is not None  # noqa: S101 - set by open_writer
        signed = Checkpoint(
            seq,
            head,
            format_time(self._now()),
            key_id(self._key.public_key()),
            self._key.sign(checkpoint_note(seq, head)),
        )
        line = orjson.dumps(
            {
                "size": signed.size,
                "head": signed.head.hex(),
                "time": signed.time,
                "key_id": signed.key_id,
                "signature": base64.b64encode(signed.signature).decode(),
            }
        )
        path = self.directory / CHECKPOINTS
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line + b"\n")
                if self.fsync is Fsync.ALWAYS:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ArchiveError(f"{path}: cannot write a checkpoint: {exc}") from exc
        self._checkpointed = seq
        self._checkpoint_at = self._clock()

    # ------------------------------------------------------------------ open / close
    def _ensure_open(self, *, rebuild_index: bool = False) -> None:
        if self._open:
            return
        try:
            (self.directory / SEGMENTS).mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ArchiveError(f"{self.directory}: cannot open the archive: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ArchiveError(
                f"{self.directory}: another process is writing this archive"
            ) from exc
        try:
            self._recover_tail()
            if rebuild_index:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
            self._index = Index(self.index_path)
            self._catch_up_index()
        except BaseException:
            self._release()
            raise
        checkpoints = read_checkpoints(self.directory)
        self._checkpointed = checkpoints[-1].size if checkpoints else -1
        self._checkpoint_at = self._indexed_at = self._clock()
        self._open = True

    def open_writer(self) -> None:
        """Take the writer's lock, recover the tail, catch the index up, load the key.

        Called by the first append; services call it at start to fail before listening.
        """
        self._ensure_open()
        if self._key is None:
            try:
                self._key = self._load_key()
            except BaseException:
                self._release()
                raise

    def reindex(self) -> int:
        """Rebuild the index from the segments; return the number of records indexed."""
        if self._open:
            raise ArchiveError(f"{self.directory}: rebuild the index before opening the writer")
        self._ensure_open(rebuild_index=True)
        try:
            return self._seq
        finally:
            self._release()

    def _load_key(self) -> Signer:
        return open_signer(self.directory, self.signing_key)

    def rotate_signing_key(self) -> str:
        """Sign what is archived with the current key, then hand signing to a new key.

        Returns the new key's id. Old checkpoints keep verifying: the new public key is
        certified by the old one in the archive's key chain (:mod:`kustos.audit.signing`).
        """
        self.open_writer()
        self.checkpoint()
        assert self._key is not None  # noqa: S101 - set by open_writer
        self._key = rotate(self.directory, self.signing_key, self._key, size=self._seq)
        return key_id(self._key.public_key())

    def _recover_tail(self) -> None:
        """Find the last record; cut a line left half-written by a crash (never acked)."""
        segments = segment_files(self.directory)
        if not segments:
            self._new_segment(1)
            return
        first, path = segments[-1]
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with path.open("r+b") as fh:
                fh.truncate(end)
        last_line = data[data.rfind(b"\n", 0, end - 1) + 1 : end] if end else b""
        if last_line:
            try:
                record = parse_line(last_line)
            except RecordFormatError as exc:
                raise ArchiveError(
                    f"{path}: the last record is damaged; run `kustos audit verify`"
                ) from exc
            self._seq, self._head = record.seq, record.digest
        elif len(segments) > 1:
            previous = segments[-2][1].read_bytes()
            record = parse_line(previous[previous.rfind(b"\n", 0, len(previous) - 1) + 1 :])
            self._seq, self._head = record.seq, record.digest
        # Remember the identities of the latest records, to skip a batch sent again.
        # Read as the ingest paths read events: a number orjson refuses (``1e999``) is
        # stored as it came and must not stop the archive from opening.
        for line in data[:end].splitlines()[-DEDUPE_WINDOW:]:
            try:
                view = text_view(parse_line(line).data)
            except ValueError:
                continue
            if view.auditID:
                self._recent.remember([(view.auditID, view.stage)])
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._segment_size = end
        del first

    def _new_segment(self, first_seq: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        folder = self.directory / SEGMENTS
        path = folder / segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._segment_size = 0
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _catch_up_index(self) -> None:
        assert self._index is not None  # noqa: S101
        indexed = self._index.last_seq()
        if indexed >= self._seq:
            return
        batch = []
        for seq, offset, data in scan(self.directory, after_seq=indexed):
            hashes, time = self._hasher(text_view(data))
            batch.append((seq, offset, hashes, time))
            if len(batch) >= 20_000:
                self._index.add(batch)
                self._index.flush()
                batch = []
        self._index.add(batch)
        self._index.flush()

    def close(self) -> None:
        """Write a last checkpoint (when records came since the last one) and unlock."""
        if not self._open:
            return
        try:
            self.index_now()
            if self._key is not None:
                self.checkpoint()
        finally:
            self._release()
            for hook in self.hooks:  # a hook that works in the background finishes now
                close = getattr(hook, "close", None)
                if callable(close):
                    close()

    def _release(self) -> None:
        self._open = False
        close_signer(self._key)
        self._key = None
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = -1
