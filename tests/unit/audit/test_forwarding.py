"""Forwarding: the cursor, batches, retries with backoff, partial bulk failures, resumption.

Aspects covered: everything after the cursor is sent in order and the cursor moves only
after an acknowledgement; a sink that fails and comes back receives every record exactly
once (no duplicates when the failure is a refusal before any write); a forwarder that
stops mid-way and starts again resumes without resending acknowledged batches; only the
items a bulk answer marks as failed are resent, refused items are skipped and logged by
key only; backoff grows by the factor, is capped and jittered; a non-retryable refusal
stops the pass; events and alerts keep separate cursors.

The sender here is a stand-in at our own adapter boundary (``Sender``); the real senders
are tested against real receivers in ``test_sinks.py`` and the integration tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kustos.audit.alerts import Alert, AlertStore, Severity
from kustos.audit.archive import Archive, Fsync
from kustos.audit.forwarding import (
    ArchiveTail,
    BackgroundForwarding,
    Cursor,
    Forwarder,
    backoff,
    cursor_file,
    event_record,
    follow,
)
from kustos.audit.sinks.base import Delivery, Record
from kustos.audit.sinks.settings import RetrySettings, WebhookSink
from kustos.errors import ArchiveError, SinkError
from tests.unit.audit.test_records import event


def seeded(seed: int) -> random.Random:
    """A reproducible generator for backoff jitter (not for secrets)."""
    return random.Random(seed)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Archived:
    seq: int
    event: Mapping[str, Any]


@dataclass
class Events:
    """Archived events as ``Archive.read`` gives them."""

    items: list[Archived] = field(default_factory=list)

    def add(self, count: int) -> None:
        start = len(self.items)
        for i in range(start, start + count):
            self.items.append(
                Archived(
                    i + 1,
                    {
                        "auditID": f"a-{i + 1}",
                        "stage": "ResponseComplete",
                        "stageTimestamp": f"2026-03-02T10:00:{i % 60:02d}.000000Z",
                        "verb": "get",
                    },
                )
            )

    def read(self, after_seq: int = 0) -> Iterator[Archived]:
        return (a for a in self.items if a.seq > after_seq)


@dataclass
class FlakySink:
    """Receives batches; fails while ``down``; may refuse or retry some keys."""

    name: str = "hook"
    down: int = 0
    fatal: bool = False
    retry_once: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    received: list[str] = field(default_factory=list)
    calls: int = 0

    async def send(self, records: Sequence[Record]) -> Delivery:
        self.calls += 1
        if self.fatal:
            raise SinkError("sink hook: HTTP 401: bad token", retryable=False)
        if self.down > 0:
            self.down -= 1
            raise SinkError("sink hook: Connection refused", retryable=True)
        delivered, retry, refused = [], [], []
        for r in records:
            if r.key in self.retry_once:
                self.retry_once.discard(r.key)
                retry.append(r)
            elif r.key in self.refuse:
                refused.append((r, "400 mapper_parsing_exception"))
            else:
                delivered.append(r)
                self.received.append(r.key)
        return Delivery(tuple(delivered), tuple(retry), tuple(refused))

    async def close(self) -> None:
        return None


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def forwarder(
    tmp_path: Path,
    sink: FlakySink,
    events: Events,
    *,
    sleeps: Sleeps | None = None,
    batch_size: int = 10,
    max_attempts: int | None = None,
    send: tuple[str, ...] = ("events", "alerts"),
) -> Forwarder:
    settings = WebhookSink.model_validate(
        {
            "type": "webhook",
            "name": sink.name,
            "url": "http://127.0.0.1:9/",
            "batch_size": batch_size,
            "send": send,
        }
    )
    return Forwarder(
        settings,
        sink,
        archive_dir=tmp_path,
        events=events,
        retry=RetrySettings(initial_seconds=1, max_seconds=8, factor=2, jitter=0),
        sleep=sleeps or Sleeps(),
        rng=seeded(7),
        max_attempts=max_attempts,
    )


def keys(n: int, start: int = 1) -> list[str]:
    return [f"a-{i}:ResponseComplete" for i in range(start, start + n)]


@pytest.mark.asyncio
async def test_everything_after_the_cursor_is_sent_in_order(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(25)
    progress = await forwarder(tmp_path, sink, events).run_once()
    assert sink.received == keys(25)
    assert sink.calls == 3  # batches of 10
    assert (progress.events, progress.alerts) == (25, 0)
    assert cursor_file(tmp_path, "hook").read() == Cursor(events=25, alerts=0)


@pytest.mark.asyncio
async def test_a_sink_that_is_down_and_comes_back_receives_everything_once(
    tmp_path: Path,
) -> None:
    events, sink, sleeps = Events(), FlakySink(down=3), Sleeps()
    events.add(15)
    progress = await forwarder(tmp_path, sink, events, sleeps=sleeps).run_once()
    assert sink.received == keys(15)
    assert len(set(sink.received)) == 15
    assert progress.retries == 3
    assert sleeps.waits == [1, 2, 4]


@pytest.mark.asyncio
async def test_a_restart_resumes_from_the_cursor_without_duplicates(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(20)
    first = forwarder(tmp_path, sink, events, max_attempts=1)
    sink.down = 0
    await first.run_once()
    events.add(12)
    sink.down = 1  # the second batch of the next pass fails, and the process "dies"
    second = forwarder(tmp_path, sink, events, max_attempts=1)
    with pytest.raises(SinkError):
        await second.run_once()
    assert cursor_file(tmp_path, "hook").read().events == 20
    third = forwarder(tmp_path, sink, events)
    await third.run_once()
    assert sink.received == keys(32)


@pytest.mark.asyncio
async def test_only_failed_bulk_items_are_resent(tmp_path: Path) -> None:
    events = Events()
    events.add(10)
    flaky = set(keys(2, start=4))
    sink = FlakySink(retry_once=set(flaky))
    sleeps = Sleeps()
    await forwarder(tmp_path, sink, events, sleeps=sleeps).run_once()
    assert sink.calls == 2
    assert sorted(sink.received) == sorted(keys(10))
    assert sink.received[-2:] == sorted(flaky)
    assert sleeps.waits == [1]


@pytest.mark.asyncio
async def test_refused_items_are_skipped_and_logged_by_key_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    events.add(5)
    bad = keys(1, start=3)[0]
    sink = FlakySink(refuse={bad})
    with caplog.at_level(logging.ERROR):
        progress = await forwarder(tmp_path, sink, events).run_once()
    assert progress.refused == 1
    assert bad not in sink.received
    assert len(sink.received) == 4
    assert bad in caplog.text
    assert "verb" not in caplog.text  # the record itself is not logged


@pytest.mark.asyncio
async def test_a_refusal_for_good_stops_the_pass_and_keeps_the_cursor(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink(fatal=True)
    events.add(3)
    with pytest.raises(SinkError, match="401"):
        await forwarder(tmp_path, sink, events).run_once()
    assert sink.calls == 1
    assert cursor_file(tmp_path, "hook").read_or(Cursor) == Cursor()


@pytest.mark.asyncio
async def test_alerts_have_their_own_cursor(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(2)
    store = AlertStore(tmp_path)
    alert = Alert("bulk_read", Severity.HIGH, "2026-03-02T10:00:00.000000Z", "eve", "many")
    store.append([alert, alert])
    fwd = forwarder(tmp_path, sink, events)
    await fwd.run_once()
    store.append([alert])
    await fwd.run_once()
    assert [k for k in sink.received if k.startswith("alert-")] == [
        "alert-1-none",
        "alert-2-none",
        "alert-3-none",
    ]
    assert cursor_file(tmp_path, "hook").read() == Cursor(events=2, alerts=3)


@pytest.mark.asyncio
async def test_a_sink_can_take_alerts_only(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(4)
    alert = Alert("anonymous", Severity.HIGH, "2026-03-02T10:00:00.000000Z", "x", "m")
    AlertStore(tmp_path).append([alert])
    await forwarder(tmp_path, sink, events, send=("alerts",)).run_once()
    assert sink.received == ["alert-1-none"]


def test_backoff_grows_is_capped_and_jittered() -> None:
    plain = backoff(RetrySettings(initial_seconds=1, max_seconds=10, factor=3, jitter=0), seeded(0))
    assert [next(plain) for _ in range(5)] == [1, 3, 9, 10, 10]
    jittered = backoff(
        RetrySettings(initial_seconds=10, max_seconds=100, factor=2, jitter=0.2),
        seeded(1),
    )
    waits = [next(jittered) for _ in range(3)]
    assert 8 <= waits[0] <= 12
    assert 16 <= waits[1] <= 24
    assert waits[0] != 10  # the jitter moved it


def test_event_records_are_keyed_by_audit_id_and_stage() -> None:
    record = event_record(
        Archived(9, {"auditID": "x", "stage": "ResponseComplete", "stageTimestamp": "bad"})
    )
    assert (record.key, record.seq, record.stream) == ("x:ResponseComplete", 9, "events")
    assert event_record(Archived(3, {})).key == "event-3"


@pytest.mark.asyncio
async def test_follow_keeps_polling_until_stopped(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink(down=1)
    events.add(3)
    stop = asyncio.Event()
    polls: list[float] = []

    async def poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            events.add(2)  # news between two polls
        if len(polls) == 4:
            stop.set()

    await follow([forwarder(tmp_path, sink, events)], poll_seconds=5, sleep=poll, stop=stop)
    assert sink.received == keys(5)
    assert polls == [5, 5, 5, 5]


@pytest.mark.asyncio
async def test_follow_stops_a_sink_that_refuses_for_good(tmp_path: Path) -> None:
    events = Events()
    events.add(1)
    with pytest.raises(SinkError, match="401"):
        await follow([forwarder(tmp_path, FlakySink(fatal=True), events)], poll_seconds=1)


# --------------------------------------------------------------------------- beside serve
def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class RealSleeps(Sleeps):
    """Backoff that really yields to the loop (so a stop can cancel it)."""

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0.01)


def test_background_forwarding_is_woken_by_appends_not_by_the_poll(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(3)
    background = BackgroundForwarding([forwarder(tmp_path, sink, events)], poll_seconds=600)
    background.start()
    try:
        assert _until(lambda: sink.received == keys(3))  # the backlog at start
        events.add(2)
        started = time.monotonic()
        background.wake()  # what the archive hook does after a durable append
        assert _until(lambda: sink.received == keys(5))
        assert time.monotonic() - started < 5  # long before the 600 s poll
    finally:
        background.stop(grace=5)
    assert cursor_file(tmp_path, "hook").read().events == 5


def test_background_forwarding_sends_what_was_stored_before_the_stop(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink()
    events.add(2)
    background = BackgroundForwarding([forwarder(tmp_path, sink, events)], poll_seconds=600)
    background.start()
    assert _until(lambda: sink.received == keys(2))
    events.add(4)  # stored, no wake: only the last pass at stop can send these
    background.stop(grace=5)
    assert sink.received == keys(6)


def test_background_forwarding_stop_with_the_sink_down_keeps_the_cursor(tmp_path: Path) -> None:
    events, sink = Events(), FlakySink(down=10**9)
    events.add(3)
    background = BackgroundForwarding(
        [forwarder(tmp_path, sink, events, sleeps=RealSleeps())], poll_seconds=600
    )
    background.start()
    assert _until(lambda: sink.calls >= 3)
    started = time.monotonic()
    background.stop(grace=0.5)  # retrying forever: cancelled after the grace
    assert time.monotonic() - started < 5
    assert sink.received == []
    assert not cursor_file(tmp_path, "hook").path.exists()  # resent at the next start


class Damaged(Events):
    """An archive whose segments cannot be read any more."""

    def read(self, after_seq: int = 0) -> Iterator[Archived]:
        raise ArchiveError("000000000001.log line 3 is not a record: run `kustos audit verify`")


def test_background_forwarding_on_a_damaged_archive_stops_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    background = BackgroundForwarding(
        [forwarder(tmp_path, FlakySink(), Damaged())], poll_seconds=600
    )
    background.start()
    assert _until(lambda: background.error is not None)
    background.stop(grace=1)
    assert isinstance(background.error, ArchiveError)
    (line,) = [r.getMessage() for r in caplog.records if "forwarding stopped" in r.getMessage()]
    assert "is not a record" in line


# --------------------------------------------------------------------------- the tail
def test_archive_tail_reads_on_across_segments_and_agrees_with_the_archive(
    tmp_path: Path,
) -> None:
    tail = ArchiveTail(tmp_path)
    seen: list[int] = []
    with Archive(tmp_path, fsync=Fsync.NONE, segment_bytes=4096) as archive:
        for start in range(0, 60, 7):
            archive.append([event(n) for n in range(start, start + 7)])
            after = seen[-1] if seen else 0
            seen += [a.seq for a in tail.read(after_seq=after)]  # resumes from its mark
    assert seen == list(range(1, 64))
    assert len(list((tmp_path / "segments").iterdir())) > 3  # it crossed segments
    reference = Archive(tmp_path)
    for after in (0, 1, 17, 40, 62, 63):  # any other cursor: a scan, the same answer
        expected = [(a.seq, a.event) for a in reference.read(after_seq=after)]
        assert [(a.seq, a.event) for a in ArchiveTail(tmp_path).read(after_seq=after)] == expected
        assert [(a.seq, a.event) for a in tail.read(after_seq=after)] == expected


def test_archive_tail_leaves_a_line_being_written_and_names_damage(tmp_path: Path) -> None:
    with Archive(tmp_path, fsync=Fsync.NONE) as archive:
        archive.append([event(1), event(2)])
    segment = next((tmp_path / "segments").iterdir())
    whole = segment.read_bytes()
    with segment.open("ab") as fh:
        fh.write(b"3 " + b"0" * 64 + b' {"half')  # the writer is in the middle of a line
    tail = ArchiveTail(tmp_path)
    assert [a.seq for a in tail.read()] == [1, 2]
    segment.write_bytes(whole.replace(b" ", b"_", 1))
    with pytest.raises(ArchiveError, match="damaged near byte"):
        list(ArchiveTail(tmp_path).read())
