"""The webhook receiver: 200 only when durable, 400 for malformed batches, 429/503 retryable.

The receiver runs for real on a loopback port (aiohttp), driven by an HTTP client as the
API server's webhook backend would:

- an EventList is stored and answered 200; sent again (a retry) it is stored once;
- malformed bodies (not JSON, not an EventList, one bad item among good ones) get 400 and
  nothing of them is stored;
- a full disk answers 503 with Retry-After and stores nothing; too many batches waiting
  answer 429 with Retry-After;
- batches that wait for the writer together are stored with one append (group commit),
  each answered with its own count, a malformed one among them alone refused;
- a Secret value in a RequestResponse event reaches neither the archive nor the logs;
- small batches are indexed together, and once the receiver is idle for a second a query
  sees them while it runs;
- on the native core a batch is answered once durable, before the hooks see it; while the
  hooks are stuck, at most one stored group waits for them and the next batch waits
  unanswered (memory stays bounded); released, every hook sees every event, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
import pytest_asyncio

from kustos.audit.archive import Archive, Durable
from kustos.audit.indexing import Index
from kustos.audit.querying import EventQuery, run_query
from kustos.audit.receiving import BatchError, Receiver, ReceiverSettings, parse_batch, serve
from kustos.audit.records import ArchivedEvent, Prepared
from kustos.errors import ArchiveFullError
from tests.unit.audit.test_records import CANARY, event, leaking_event

if TYPE_CHECKING:
    from kustos._native import Batch


def _batch(events: Sequence[object]) -> bytes:
    return orjson.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events}
    )


class _Running:
    def __init__(self, url: str, archive: Archive) -> None:
        self.url = url
        self.archive = archive


async def _start(
    archive: Archive, **settings: Any
) -> tuple[asyncio.Task[Receiver], asyncio.Event, str]:
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            archive,
            ReceiverSettings(host="127.0.0.1", port=0, **settings),
            stop=stop,
            started=bound.set_result,
        )
    )
    port = await asyncio.wait_for(bound, 10)
    return task, stop, f"http://127.0.0.1:{port}/audit"


@pytest_asyncio.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[_Running]:
    archive = Archive(tmp_path / "archive")
    task, stop, url = await _start(archive)
    try:
        yield _Running(url, archive)
    finally:
        stop.set()
        await task


def _stored(directory: Path) -> list[str]:
    return [str(e.event["auditID"]) for e in Archive(directory).read()]


@pytest.mark.asyncio
async def test_batch_stored_then_acknowledged(receiver: _Running) -> None:
    async with httpx.AsyncClient() as client:
        first = await client.post(receiver.url, content=_batch([event(1), event(2)]))
        again = await client.post(receiver.url, content=_batch([event(2), event(3)]))
        empty = await client.post(receiver.url, content=_batch([]))
        health = await client.get(receiver.url.replace("/audit", "/healthz"))
    assert first.status_code == 200
    assert again.status_code == 200
    assert empty.status_code == 200
    assert health.status_code == 200
    assert len(_stored(receiver.archive.directory)) == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        orjson.dumps({"kind": "PodList", "apiVersion": "v1", "items": []}),
        orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}),
        _batch([event(10), {"kind": "Event", "stage": "ResponseComplete"}]),
        _batch([event(11), "a string"]),
    ],
)
async def test_malformed_batch_is_refused_whole(receiver: _Running, body: bytes) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(receiver.url, content=body)
    assert response.status_code == 400
    assert _stored(receiver.archive.directory) == []


@pytest.mark.asyncio
async def test_oversized_batch_is_refused(tmp_path: Path) -> None:
    task, stop, url = await _start(Archive(tmp_path / "archive"), max_body=2048)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(url, content=_batch([event(n) for n in range(5)]))
    finally:
        stop.set()
        await task
    assert response.status_code == 413
    assert _stored(tmp_path / "archive") == []


def test_parse_batch_names_the_bad_item() -> None:
    with pytest.raises(BatchError, match=r"items\[1\]"):
        parse_batch(_batch([event(1), {"kind": "Event"}]))


class _FullArchive(Archive):
    """The archive's adapter boundary: a disk that is full."""

    def append_groups(self, groups: Sequence[Sequence[Prepared]]) -> list[list[ArchivedEvent]]:
        raise ArchiveFullError("no space left for the batch")

    def store_batches(self, batches: Sequence[Batch]) -> Durable:  # the native path
        raise ArchiveFullError("no space left for the batch")


@pytest.mark.asyncio
async def test_full_disk_is_retryable(tmp_path: Path) -> None:
    task, stop, url = await _start(_FullArchive(tmp_path / "archive"))
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(url, content=_batch([event(1)]))
    finally:
        stop.set()
        await task
    assert response.status_code == 503
    assert response.headers["Retry-After"]


class _SlowArchive(Archive):
    """An archive whose disk is slow: appends wait until released; counts batches per append."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []

    def append_groups(self, groups: Sequence[Sequence[Prepared]]) -> list[list[ArchivedEvent]]:
        self.sizes.append(len(groups))
        self.entered.set()
        self.release.wait(30)
        return super().append_groups(groups)

    def store_batches(self, batches: Sequence[Batch]) -> Durable:  # the native path
        self.sizes.append(len(batches))
        self.entered.set()
        self.release.wait(30)
        return super().store_batches(batches)


@contextlib.asynccontextmanager
async def _first_batch_at_disk(
    archive: _SlowArchive, *, max_waiting: int
) -> AsyncIterator[tuple[httpx.AsyncClient, str, asyncio.Task[httpx.Response]]]:
    """A receiver over *archive* whose first batch (event 1) is being written, held there.

    Yields the client, the receiver's URL and the first batch's pending answer; on the way
    out the disk is released and the receiver stopped.
    """
    task, stop, url = await _start(archive, max_waiting=max_waiting)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.create_task(client.post(url, content=_batch([event(1)])))
            await asyncio.to_thread(archive.entered.wait, 30)
            yield client, url, first
    finally:
        archive.release.set()
        stop.set()
        await task


@pytest.mark.asyncio
async def test_overload_is_retryable_and_bounded(tmp_path: Path) -> None:
    archive = _SlowArchive(tmp_path / "archive")
    async with _first_batch_at_disk(archive, max_waiting=2) as (client, url, first):
        # One batch is at the disk; of the next two, one may wait and one is refused.
        others = [asyncio.create_task(client.post(url, content=_batch([event(n)]))) for n in (2, 3)]
        done, _ = await asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED)
        refused = next(iter(done)).result()
        archive.release.set()
        answers = await asyncio.gather(first, *others)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert sorted(r.status_code for r in answers) == [200, 200, 429]
    assert len(_stored(tmp_path / "archive")) == 2


@pytest.mark.asyncio
async def test_batches_waiting_together_share_one_append(tmp_path: Path) -> None:
    archive = _SlowArchive(tmp_path / "archive")
    async with _first_batch_at_disk(archive, max_waiting=8) as (client, url, first):
        bodies = [
            _batch([event(2), event(3)]),
            _batch([event(4), {"kind": "Pod"}]),
            _batch([event(5), event(1)]),  # event 1 again: a retry's repeat
        ]
        others = [asyncio.create_task(client.post(url, content=b)) for b in bodies]
        await asyncio.sleep(0.5)  # all three wait for the writer
        archive.release.set()
        answers = await asyncio.gather(first, *others)
    assert [r.status_code for r in answers] == [200, 200, 400, 200]
    assert [r.text.strip() for r in answers[:2]] == ["stored 1 of 1", "stored 2 of 2"]
    assert answers[3].text.strip() == "stored 1 of 2"
    assert archive.sizes == [1, 2]
    assert len(_stored(tmp_path / "archive")) == 4


@pytest.mark.asyncio
async def test_canary_not_in_archive_nor_logs(
    receiver: _Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as client:
        ok = await client.post(receiver.url, content=_batch([leaking_event(1)]))
        bad = await client.post(receiver.url, content=_batch([leaking_event(2), {"x": CANARY}]))
    assert (ok.status_code, bad.status_code) == (200, 400)
    assert CANARY not in bad.text
    assert CANARY not in caplog.text
    for path in receiver.archive.directory.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.mark.asyncio
async def test_an_idle_receiver_indexes_what_waits(tmp_path: Path) -> None:
    """Small batches are indexed together; once none comes for a second, they are indexed
    (a query sees them while the receiver runs)."""
    task, stop, url = await _start(Archive(tmp_path / "archive"))
    try:
        async with httpx.AsyncClient() as client:
            for n in range(3):
                assert (await client.post(url, content=_batch([event(n)]))).status_code == 200
            await asyncio.sleep(2.5)
            index = Index(tmp_path / "archive" / "index.sqlite")
            indexed = index.last_seq()
            index.close()
            found = run_query(tmp_path / "archive", EventQuery(secret=("payments", "db-creds")))
    finally:
        stop.set()
        await task
    assert indexed == 3
    assert len(found) == 3


@pytest.mark.asyncio
async def test_answered_before_the_hooks_and_bounded_while_they_are_stuck(
    tmp_path: Path,
) -> None:
    archive = Archive(tmp_path / "archive")
    if not archive.native:
        pytest.skip("the native core is not built: hooks run before the answer")
    release = threading.Event()
    seen: list[int] = []

    def stuck(stored: Sequence[ArchivedEvent]) -> None:
        release.wait(30)
        seen.extend(e.seq for e in stored)

    archive.hooks.append(stuck)
    task, stop, url = await _start(archive)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # The first group in the hook, the writer waiting with the second (answered)
            # for the indexer: the third is neither stored nor answered.
            answers = [
                (await client.post(url, content=_batch([event(n)]))).status_code for n in range(2)
            ]
            assert answers == [200, 200]
            third = asyncio.create_task(client.post(url, content=_batch([event(2)])))
            await asyncio.sleep(0.5)
            assert not third.done()
            assert len(_stored(tmp_path / "archive")) == 2
            assert not seen
            release.set()
            assert (await third).status_code == 200
    finally:
        release.set()
        stop.set()
        await task
    assert seen == [1, 2, 3]
    assert len(_stored(tmp_path / "archive")) == 3
