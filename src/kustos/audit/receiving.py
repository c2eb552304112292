"""``kustos audit serve``: the receiver of the API server's audit webhook (asyncio, aiohttp).

The webhook backend POSTs ``EventList`` batches (up to 400 events by default) and retries
any failure with back-off. The receiver answers:

- **200** once every event of the batch is durably in the archive (see
  :class:`~kustos.audit.archive.Fsync`), never before;
- **400** for a body that is not an ``audit.k8s.io`` EventList of Events: nothing of it is
  stored (a retry would fail the same way, so the API server's retries are wasted, not
  harmful); **413** for a body over ``max_body``;
- **429** with ``Retry-After`` when ``max_waiting`` batches already wait for the writer
  (memory stays bounded by ``max_waiting * max_body`` under any load); **503** with
  ``Retry-After`` when the disk is full or the archive cannot be written. The API server
  retries both, so nothing is silently dropped here.

Batches are parsed and appended in one writer thread, so the event loop keeps accepting
connections while the disk works; batches that wait together are stored with one write and
one fsync (group commit) and each is answered once all are durable. On the native core,
bodies are read in two reader threads, and what follows durability (the index, checkpoints,
hooks) runs in an indexer thread while the writer stores the next group. Logs carry counts
and addresses, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from aiohttp import web

from kustos.audit import native
from kustos.audit.archive import INDEX_SECONDS, Archive, Durable
from kustos.audit.records import Prepared, prepare
from kustos.errors import ArchiveError, ArchiveFullError, ServiceError

if TYPE_CHECKING:
    from kustos._native import Batch

log = logging.getLogger(__name__)

#: The largest batch the API server sends with truncation on (10 MiB), plus headroom.
MAX_BODY: Final = 12 * 1024 * 1024
MAX_WAITING: Final = 16
#: Durable groups handed to the indexer thread and not finished before the writer waits.
_AFTER_WAITING: Final = 1
_RETRY_AFTER_BUSY: Final = "1"
_RETRY_AFTER_FULL: Final = "10"


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """Where to listen and how; TLS files are PEM paths (``client_ca`` requires client certs)."""

    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    max_body: int = MAX_BODY
    max_waiting: int = MAX_WAITING


class BatchError(ValueError):
    """The body is not an EventList of Events (the message names the problem, not content)."""


class _EventList(msgspec.Struct, gc=False):
    """An ``EventList`` body, its items left as JSON text (each is read by ``prepare``)."""

    kind: str = ""
    apiVersion: str = ""  # noqa: N815 - the JSON field's name
    items: list[msgspec.Raw] | None = None


_BATCH: Final = msgspec.json.Decoder(_EventList)


def parse_batch(body: bytes) -> list[Prepared]:
    """The Events of an ``EventList`` body, ready for the archive; ``BatchError`` if
    anything in it is not one (then nothing of it is stored)."""
    try:
        doc = _BATCH.decode(body)
    except msgspec.ValidationError as exc:
        raise BatchError("the body is not an EventList") from exc
    except msgspec.DecodeError as exc:
        raise BatchError("the body is not JSON") from exc
    if doc.kind != "EventList":
        raise BatchError("the body is not an EventList")
    if not doc.apiVersion.startswith("audit.k8s.io/"):
        raise BatchError("the EventList is not of audit.k8s.io")
    prepared = []
    for number, item in enumerate(doc.items or ()):
        ready = prepare(bytes(item))
        if ready is None:
            raise BatchError(f"items[{number}] is not an audit Event")
        prepared.append(ready)
    return prepared


def read_batch(body: bytes, archive: Archive) -> Batch:
    """:func:`parse_batch` on the native core: the same events, or the same ``BatchError``.

    A body the native reader is unsure about is read by :func:`parse_batch` (the reference).
    """
    batch = native.core.read_event_list(body)
    if batch is None:
        return archive.batch_of(parse_batch(body))
    missing = archive.settle(batch)
    if missing:
        raise BatchError(f"items[{missing[0]}] is not an audit Event")
    return batch


def tls_context(settings: ReceiverSettings) -> ssl.SSLContext | None:
    """The server's TLS context, or ``None`` for plain HTTP (only sensible on loopback)."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.client_ca is not None:
            raise ServiceError("--client-ca needs --tls-cert and --tls-key")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ServiceError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.client_ca is not None:
            context.load_verify_locations(cafile=settings.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ServiceError(f"cannot load the TLS files: {exc}") from exc
    return context


class Receiver:
    """The webhook endpoint over one archive (the archive's hooks run after each batch)."""

    def __init__(self, archive: Archive, settings: ReceiverSettings) -> None:
        self.archive = archive
        self.settings = settings
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        #: On the native core, bodies are read here, beside the writer (it reads without the
        #: GIL), so that reading one batch overlaps storing the one before.
        self._readers = (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="audit-reader")
            if archive.native
            else None
        )
        #: On the native core, the writer answers once a group is durable and hands the rest
        #: (index, checkpoint, hooks) to this thread, in order, so that storing the next
        #: group overlaps it. At most ``_AFTER_WAITING`` groups are handed to it and not
        #: finished; then the writer waits, holding the next (answered) one: memory stays
        #: bounded, and one group ahead is enough for the two threads to overlap.
        self._after = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-indexer")
            if archive.native
            else None
        )
        self._after_slots = threading.BoundedSemaphore(_AFTER_WAITING)
        #: Batches read and waiting for the writer, with the futures their requests await.
        self._queue: list[tuple[bytes | Batch, asyncio.Future[tuple[int, int]]]] = []
        self._lock = threading.Lock()
        self._flushing = False
        self._waiting = 0
        self.accepted = 0
        self.refused = 0

    def app(self) -> web.Application:
        """The aiohttp application: POST anywhere is a batch; GET /healthz."""
        app = web.Application(client_max_size=self.settings.max_body)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/{tail:.*}", self._batch)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _batch(self, request: web.Request) -> web.Response:
        if self._waiting >= self.settings.max_waiting:
            self.refused += 1
            return _text(429, "busy: retry later", retry_after=_RETRY_AFTER_BUSY)
        self._waiting += 1
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _text(413, f"batch larger than {self.settings.max_body} bytes")
            try:
                item: bytes | Batch = body
                if self._readers is not None:
                    loop = asyncio.get_running_loop()
                    item = await loop.run_in_executor(self._readers, read_batch, body, self.archive)
                stored, total = await self._store(item)
            except BatchError as exc:
                log.warning("refused a batch from %s: %s", request.remote, exc)
                return _text(400, str(exc))
            except ArchiveFullError as exc:
                log.error("batch of %d bytes not stored: %s", len(body), exc)  # noqa: TRY400
                return _text(503, "archive full: retry later", retry_after=_RETRY_AFTER_FULL)
            except ArchiveError as exc:
                log.error("batch of %d bytes not stored: %s", len(body), exc)  # noqa: TRY400
                return _text(503, "archive unavailable: retry later", retry_after=_RETRY_AFTER_FULL)
            self.accepted += stored
            return _text(200, f"stored {stored} of {total}")
        finally:
            self._waiting -= 1

    def _store(self, body: bytes | Batch) -> asyncio.Future[tuple[int, int]]:
        """Queue a batch for the writer: (events stored, events in the batch) once durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()
        with self._lock:
            self._queue.append((body, future))
            start = not self._flushing
            self._flushing = True
        if start:
            self._writer.submit(self._flush, loop)
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer's thread: parse what waits, store it with one write and one fsync.

        Batches that arrive together share the fsync (group commit); each is answered only
        once all of them are durable, a bad one alone with 400.
        """
        while True:
            with self._lock:
                work, self._queue = self._queue, []
                if not work:
                    self._flushing = False
                    return
            self._write(work, loop)

    def _write(
        self,
        work: list[tuple[bytes | Batch, asyncio.Future[tuple[int, int]]]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        native_path = self.archive.native
        groups: list[list[Prepared]] = []
        batches: list[Batch] = []
        futures = []
        for body, future in work:
            try:
                if not isinstance(body, bytes):  # read already
                    batches.append(body)
                elif native_path:
                    batches.append(read_batch(body, self.archive))
                else:
                    groups.append(parse_batch(body))
            except Exception as exc:  # noqa: BLE001 - BatchError: 400; anything else: 500
                loop.call_soon_threadsafe(_settle, future, exc)
            else:
                futures.append(future)
        durable = None
        try:
            if native_path:
                durable = self.archive.store_batches(batches)
                kept = durable.stored
                totals = [batch.events for batch in batches]
            else:
                kept = [len(stored) for stored in self.archive.append_groups(groups)]
                totals = [len(group) for group in groups]
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
            for future in futures:
                loop.call_soon_threadsafe(_settle, future, exc)
            return
        for future, stored, total in zip(futures, kept, totals, strict=True):
            loop.call_soon_threadsafe(_settle, future, (stored, total))
        if durable is not None and self._after is not None:
            self._after_slots.acquire()  # the writer waits while the indexer is behind
            self._after.submit(self._finish, durable)

    def _finish(self, durable: Durable) -> None:
        """The indexer's thread: the rest of an append whose batches were answered."""
        try:
            self.archive.finish(durable)
        except ArchiveError as exc:  # derived data: the next start catches the index up
            log.error("records from %d stored, not indexed: %s", durable.first, exc)  # noqa: TRY400
        except Exception as exc:  # noqa: BLE001 - the type only: a message could quote an event
            log.error("records from %d stored, not indexed: %s", durable.first,  # noqa: TRY400
                      type(exc).__name__)  # fmt: skip
        finally:
            self._after_slots.release()

    async def index_when_idle(self) -> None:
        """Have the writer index what waits once no batch came for a while (the archive
        indexes busy writers' batches itself, at most :data:`INDEX_SECONDS` late)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(INDEX_SECONDS)
            if self.archive.index_waiting and not self._flushing:
                try:
                    await loop.run_in_executor(self._after or self._writer, self.archive.index_now)
                except ArchiveError as exc:
                    log.error("the archive index was not written: %s", exc)  # noqa: TRY400

    def close(self) -> None:
        """Wait for the writer thread, then close the archive (last checkpoint)."""
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        if self._after is not None:
            self._after.shutdown(wait=True)
        self.archive.close()


def _settle(future: asyncio.Future[tuple[int, int]], outcome: object) -> None:
    """Give a waiting request its outcome (unless its client went away meanwhile)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)  # type: ignore[arg-type] # (stored, total)


def _text(status: int, text: str, *, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after else None
    return web.Response(status=status, text=text + "\n", headers=headers)


async def serve(
    archive: Archive,
    settings: ReceiverSettings,
    *,
    stop: asyncio.Event,
    started: Callable[[int], Awaitable[None] | None] | None = None,
) -> Receiver:
    """Receive batches until *stop* is set; *started* gets the bound port."""
    context = tls_context(settings)
    archive.open_writer()
    receiver = Receiver(archive, settings)
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
    try:
        try:
            await site.start()
        except OSError as exc:
            raise ServiceError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
            ) from exc
        port = _bound_port(runner, settings.port)
        log.warning("audit receiver listening on %s:%d", settings.host, port)
        if started is not None:
            result = started(port)
            if result is not None:
                await result
        indexing = asyncio.create_task(receiver.index_when_idle())
        try:
            await stop.wait()
        finally:
            indexing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await indexing
    finally:
        await runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, receiver.close)
    return receiver


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
