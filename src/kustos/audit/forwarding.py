"""Forwarding: archived audit events and alerts to each sink, at least once, from a cursor.

Each sink has a cursor file, ``DIR/watch/cursors/<sink>.json``, holding the sequence
number of the last event and of the last alert it acknowledged. A pass reads what comes
after the cursor (events from the archive, alerts from the alert file), sends it in
batches and moves the cursor only after the sink said yes, so a crash or an outage at any
point resends from the last acknowledged batch and loses nothing; a sink that was down
receives everything once it is back. Failures are retried with exponential backoff and
jitter (:func:`backoff`); when the bulk API accepts part of a batch, only the failed items
are sent again; items it refuses for good are logged by key and skipped, so one
unindexable document cannot stop the stream.

The records come from the archive already stripped of values; what is logged here is
keys, counts and sink names, never a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from kustos.audit.alerts import AlertStore, Severity, StoredAlert, watch_folder
from kustos.audit.archive import segment_files
from kustos.audit.detecting import ArchivedLike, event_time, parse_time
from kustos.audit.hashing import parse_line
from kustos.audit.records import ArchivedEvent
from kustos.audit.sinks.base import Delivery, Record, Sender
from kustos.audit.sinks.settings import RetrySettings, SinkSettings, Stream
from kustos.errors import ArchiveError, KustosError, SinkError
from kustos.files.state import StateFile, StateModel

log = logging.getLogger(__name__)

CURSORS: Final = "cursors"
Sleep = Callable[[float], Awaitable[None]]


class EventSource(Protocol):
    """Where archived events are read from (``kustos.audit.archive.Archive``)."""

    def read(self, after_seq: int = 0) -> Iterator[ArchivedLike]: ...


class Cursor(StateModel):
    """The last event and alert a sink acknowledged."""

    events: int = 0
    alerts: int = 0


class ArchiveTail:
    """Archived events after a sequence number, read on from where the last read stopped.

    A forwarder beside the receiver reads what follows its cursor after every append;
    scanning the current segment (up to 64 MiB) from its start each time would cost more
    than the forwarding itself, on the receiver's CPU. This reader remembers the segment
    and byte offset after the last record it gave, and starts there when asked for what
    follows that record; any other request (the first, a cursor that did not move because
    a delivery failed) scans from the segment that holds it, as ``Archive.read`` does.
    Only complete lines are read (the writer may be in the middle of one).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: (last seq given, first seq of its segment, offset after its line)
        self._mark: tuple[int, int, int] | None = None

    def read(self, after_seq: int = 0) -> Iterator[ArchivedEvent]:
        """Every complete archived event after *after_seq*, in order."""
        mark = self._mark if self._mark is not None and self._mark[0] == after_seq else None
        segments = segment_files(self.directory)
        for i, (first, path) in enumerate(segments):
            if mark is not None:
                if first < mark[1]:
                    continue
                offset = mark[2] if first == mark[1] else 0
            else:
                following = segments[i + 1][0] if i + 1 < len(segments) else None
                if following is not None and following <= after_seq + 1:
                    continue
                offset = 0
            yield from self._segment(path, first, offset, after_seq)

    def _segment(
        self, path: Path, first: int, offset: int, after_seq: int
    ) -> Iterator[ArchivedEvent]:
        with path.open("rb") as fh:
            fh.seek(offset)
            for line in fh:
                if not line.endswith(b"\n"):
                    return  # being written: read at the next pass
                offset += len(line)
                try:
                    record = parse_line(line)
                    if record.seq <= after_seq:
                        continue
                    event = orjson.loads(record.data)
                except ValueError:  # RecordFormatError, JSONDecodeError: damaged
                    raise ArchiveError(
                        f"{path} is damaged near byte {offset}: run `kustos audit verify`"
                    ) from None
                self._mark = (record.seq, first, offset)
                yield ArchivedEvent(record.seq, event)


def cursor_file(archive_dir: Path, sink: str) -> StateFile[Cursor]:
    """The cursor state file of *sink* in the archive folder."""
    folder = watch_folder(archive_dir) / CURSORS
    return StateFile(folder / f"{sink}.json", Cursor, what=f"forwarding cursor of {sink}")


def backoff(retry: RetrySettings, rng: random.Random) -> Iterator[float]:
    """Waits between attempts: initial, times factor each time, capped, ± jitter."""
    delay = retry.initial_seconds
    while True:
        spread = delay * retry.jitter
        yield max(0.0, min(retry.max_seconds, delay + rng.uniform(-spread, spread)))
        delay = min(retry.max_seconds, delay * retry.factor)


# --------------------------------------------------------------------------- records
def event_record(archived: ArchivedLike) -> Record:
    """The record of an archived event: key ``auditID:stage`` (or its position)."""
    event = archived.event
    audit_id, stage = event.get("auditID"), event.get("stage")
    key = f"{audit_id}:{stage}" if audit_id and stage else f"event-{archived.seq}"
    return Record(
        stream="events",
        seq=archived.seq,
        key=str(key),
        time=event_time(event) or dt.datetime.fromtimestamp(0, dt.UTC),
        severity=Severity.INFO,
        doc=event,
    )


def alert_record(stored: StoredAlert) -> Record:
    """The record of a stored alert: key ``alert-<seq>-<first audit id>``."""
    alert = stored.alert
    first = alert.audit_ids[0] if alert.audit_ids else "none"
    try:
        when = parse_time(alert.time)
    except ValueError:
        when = dt.datetime.fromtimestamp(0, dt.UTC)
    return Record(
        stream="alerts",
        seq=stored.seq,
        key=f"alert-{stored.seq}-{first}",
        time=when,
        severity=alert.severity,
        doc=alert.to_json(),
    )


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- delivery
@dataclass
class Progress:
    """What one pass of one sink did (for the command's summary)."""

    sink: str
    events: int = 0
    alerts: int = 0
    refused: int = 0
    retries: int = 0


class Forwarder:
    """Deliver one sink's backlog, batch by batch, moving its cursor after each ack."""

    def __init__(
        self,
        settings: SinkSettings,
        sender: Sender,
        *,
        archive_dir: Path,
        events: EventSource,
        retry: RetrySettings | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        max_attempts: int | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.events = events
        self.alerts = AlertStore(archive_dir)
        self.cursor = cursor_file(archive_dir, settings.name)
        self.retry = retry or RetrySettings()
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.max_attempts = max_attempts

    def position(self) -> Cursor:
        """The sink's cursor (zero when it never received anything)."""
        return self.cursor.read_or(Cursor)

    async def run_once(self) -> Progress:
        """Send everything after the cursor; return counts. ``SinkError`` when it gives up."""
        progress = Progress(self.settings.name)
        streams: tuple[Stream, ...] = ("events", "alerts")
        for stream in streams:
            if stream in self.settings.send:
                await self._drain(stream, progress)
        return progress

    def _pending(self, stream: Stream, after: int) -> Iterator[Record]:
        if stream == "events":
            return (event_record(a) for a in self.events.read(after_seq=after))
        return (alert_record(s) for s in self.alerts.read(after_seq=after))

    async def _drain(self, stream: Stream, progress: Progress) -> None:
        after = getattr(self.position(), stream)
        for batch in _batches(self._pending(stream, after), self.settings.batch_size):
            await self._deliver(batch, progress)
            last = batch[-1].seq
            self.cursor.path.parent.mkdir(parents=True, exist_ok=True)
            self.cursor.write(self.position().model_copy(update={stream: last}))
            if stream == "events":
                progress.events += len(batch)
            else:
                progress.alerts += len(batch)

    async def _deliver(self, batch: Sequence[Record], progress: Progress) -> None:
        """Deliver *batch* completely (retrying failed items) or raise ``SinkError``."""
        waits = backoff(self.retry, self.rng)
        pending: Sequence[Record] = batch
        attempts = 0
        while pending:
            attempts += 1
            try:
                delivery = await self.sender.send(pending)
            except SinkError as exc:
                if not exc.retryable or self._exhausted(attempts):
                    raise
                delay = next(waits)
                log.warning("%s; retrying in %.1fs", exc, delay)
                progress.retries += 1
                await self.sleep(delay)
                continue
            self._log_refused(delivery, progress)
            pending = delivery.retry
            if pending:
                if self._exhausted(attempts):
                    raise SinkError(
                        f"sink {self.settings.name}: {len(pending)} records still failing"
                        f" after {attempts} attempts",
                        retryable=True,
                    )
                delay = next(waits)
                log.warning(
                    "sink %s: %d of %d records to retry in %.1fs",
                    self.settings.name,
                    len(pending),
                    len(batch),
                    delay,
                )
                progress.retries += 1
                await self.sleep(delay)

    def _exhausted(self, attempts: int) -> bool:
        return self.max_attempts is not None and attempts >= self.max_attempts

    def _log_refused(self, delivery: Delivery, progress: Progress) -> None:
        for record, reason in delivery.refused:
            progress.refused += 1
            log.error(
                "sink %s refused %s %s for good (%s); skipped",
                self.settings.name,
                record.stream[:-1],
                record.key,
                reason,
            )


async def follow(
    forwarders: Sequence[Forwarder],
    *,
    poll_seconds: float,
    sleep: Sleep = asyncio.sleep,
    stop: asyncio.Event | None = None,
) -> None:
    """Forward until *stop* is set: each sink in its own task, polling for new records.

    A sink that cannot be reached is tried again at the next poll; one that refuses for
    good (credentials, a bad URL) is logged and left, the others go on. When every sink
    has stopped that way, the first refusal is raised.
    """
    refused: list[KustosError] = []

    async def one(forwarder: Forwarder) -> None:
        while stop is None or not stop.is_set():
            try:
                await forwarder.run_once()
            except SinkError as exc:
                if not exc.retryable:
                    log.error("%s; this sink is stopped", exc)  # noqa: TRY400 - one line
                    refused.append(exc)
                    return
                log.warning("%s; trying again later", exc)
            except KustosError as exc:  # the archive cannot be read: repair it first
                log.error("%s; sink %s is stopped", exc, forwarder.settings.name)  # noqa: TRY400
                refused.append(exc)
                return
            await sleep(poll_seconds)

    async with asyncio.TaskGroup() as group:
        for forwarder in forwarders:
            group.create_task(one(forwarder))
    if refused and len(refused) == len(forwarders):
        raise refused[0]


class BackgroundForwarding:
    """Forward beside a receiver: :func:`follow` in its own thread and event loop.

    ``kustos audit serve`` appends in its writer thread and answers the API server from
    its event loop; forwarding reads segments, encodes records and waits on sinks, so it
    runs in a thread of its own with its own loop and never delays an acknowledgement.
    :meth:`wake` (cheap, callable from any thread: the archive calls it after each durable
    append) starts a pass at once instead of at the next poll. :meth:`stop` lets a last
    pass send what the receiver stored before it closed, for at most *grace* seconds, then
    cancels: cursors move only after acknowledgements, so what is cut short is resent at
    the next start (at least once).
    """

    def __init__(self, forwarders: Sequence[Forwarder], *, poll_seconds: float) -> None:
        self.forwarders = list(forwarders)
        self.poll_seconds = poll_seconds
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._news: asyncio.Event | None = None
        self._generation = 0
        self._seen: dict[asyncio.Task[Any] | None, int] = {}
        self.error: KustosError | None = None

    def start(self) -> None:
        """Start the thread; return once its loop runs."""
        self._thread = threading.Thread(target=self._run, name="audit-forwarding", daemon=True)
        self._thread.start()
        self._ready.wait()

    def wake(self, *_: object) -> None:
        """New records are in the archive: forward them now (thread-safe; an archive hook)."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._notify)

    def stop(self, grace: float = 10.0) -> None:
        """Forward what is stored (for at most *grace* seconds), then stop the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish)
        thread.join(grace)
        if thread.is_alive():
            log.warning("forwarding stopped after %.0fs; the rest is sent at the next start", grace)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel)
            thread.join(10)

    # ------------------------------------------------------------------ in the thread
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._news = asyncio.Event()
        self._task = asyncio.current_task()
        self._ready.set()
        try:
            await follow(self.forwarders, poll_seconds=self.poll_seconds, sleep=self._sleep,
                         stop=self._stop)  # fmt: skip
            for forwarder in self.forwarders:  # the last records, stored before the stop
                try:
                    await forwarder.run_once()
                except SinkError as exc:
                    log.warning("%s; the rest is sent at the next start", exc)
        except SinkError as exc:
            self.error = exc
        except KustosError as exc:  # the archive cannot be read (damaged): receiving goes on
            log.error("forwarding stopped: %s", exc)  # noqa: TRY400 - one line, no traceback
            self.error = exc
        except asyncio.CancelledError:
            pass
        finally:
            for forwarder in self.forwarders:
                with contextlib.suppress(SinkError, OSError):
                    await forwarder.sender.close()

    def _notify(self) -> None:
        self._generation += 1
        if self._news is not None:
            self._news.set()
            self._news = asyncio.Event()

    def _finish(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self._notify()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sleep(self, seconds: float) -> None:
        """Wait for new records (:meth:`wake`), the stop, or *seconds*, whichever first."""
        task = asyncio.current_task()
        stopping = self._stop is not None and self._stop.is_set()
        if self._seen.get(task) == self._generation and not stopping and self._news is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), seconds)
        self._seen[task] = self._generation  # the records of this generation: next pass
