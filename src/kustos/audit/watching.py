"""Watch wiring: the config file, persisted baselines, the ingest hook and the forwarders.

The Watch config file is YAML with three optional sections::

    detectors: {...}     # kustos.audit.detecting.DetectorsConfig
    sinks: [...]         # kustos.audit.sinks.settings (syslog, webhook, splunk, ...)
    retry: {...}         # backoff between failed deliveries
    poll_seconds: 2      # how often `kustos audit forward --follow` looks for news

:func:`hooks_for` gives the archive's ingest pipeline (``audit serve``, ``audit ingest``)
the detector hook: after each durable append it runs the detectors over the new events,
appends their alerts durably to ``DIR/watch/alerts.jsonl`` and saves the baselines to
``DIR/watch/baseline.json`` (at most once a second, less often when saving is slow, and
when ingest stops). The baseline file records the last event processed; when the hook
starts it first catches up from there through the archive, so a restart neither learns
again nor misses what was archived while detection was down, and alerts already stored for
the replayed events are not stored twice (which is why the baseline need not be saved
with every batch of alerts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import queue
import signal
import struct
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kustos.audit import native
from kustos.audit.alerts import Alert, AlertStore, watch_folder
from kustos.audit.detecting import ArchivedLike, Detector, DetectorsConfig, WatchState
from kustos.audit.forwarding import EventSource, Forwarder
from kustos.audit.records import ArchivedEvent, EventView, text_view, view_of
from kustos.audit.sinks.base import Sender
from kustos.audit.sinks.settings import RetrySettings, SinkSettings, SyslogSink
from kustos.errors import ConfigError, first_problem
from kustos.files import read_text, write_atomic
from kustos.files.state import StateFile, StateModel, encode

log = logging.getLogger(__name__)

BASELINE_FILE: Final = "baseline.json"
_READY: Final = b"ready"
_STOP: Final = b"stop"
#: What a batch message carries after its first record's number: event views (MessagePack)
#: or the events' texts as one JSON array.
_VIEWS: Final = b"v"
_TEXTS: Final = b"j"
_START_SECONDS: Final = 60
#: Batches waiting for the pipe (each up to a segment append: 16,384 events); the writer
#: waits beyond, so memory stays bounded.
_QUEUED: Final = 2
_STOP_SECONDS: Final = 300
#: A routine baseline save waits at least this many times as long as the last one took.
_SAVE_SHARE: Final = 20
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
Hook = Callable[[Sequence[ArchivedLike]], None]
_DECODE_TEXTS: Final = msgspec.json.Decoder(list[EventView]).decode
_RAW_TEXTS: Final = msgspec.json.Decoder(list[msgspec.Raw]).decode


class WatchConfig(BaseModel):
    """The whole Watch config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detectors: DetectorsConfig = DetectorsConfig()
    sinks: tuple[SinkSettings, ...] = ()
    retry: RetrySettings = RetrySettings()
    poll_seconds: float = Field(default=2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _unique(self) -> WatchConfig:
        names = [s.name for s in self.sinks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two sinks are named {name!r} (the name keys its cursor)")
        return self


def load_config(path: Path | None) -> WatchConfig:
    """Read the config file (defaults when *path* is None); one ``ConfigError`` line if bad."""
    if path is None:
        return WatchConfig()
    text = read_text(path, what="watch config", limit=1 << 20)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(
            f"{where}: not YAML ({getattr(exc, 'problem', 'syntax error')})"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the watch config is a mapping (detectors, sinks, retry)")
    try:
        return WatchConfig.model_validate(raw)
    except ValidationError as exc:
        where, why = first_problem(exc)
        raise ConfigError(f"{path}: {where or 'document'}: {why}") from None


# --------------------------------------------------------------------------- baselines
Entry = tuple[float, str, str]


class BaselineDoc(StateModel):
    """The detectors' state as stored in ``DIR/watch/baseline.json``."""

    version: int = 1
    started: str | None = None
    last_seq: int = 0
    secret_readers: tuple[tuple[str, str, str], ...] = ()
    addresses: dict[str, list[str]] = Field(default_factory=dict)
    windows: dict[str, dict[str, list[Entry]]] = Field(default_factory=dict)
    distinct: dict[str, dict[str, dict[str, tuple[float, str]]]] = Field(default_factory=dict)
    sessions: dict[str, tuple[float, str, str, str]] = Field(default_factory=dict)
    cooldowns: dict[str, float] = Field(default_factory=dict)
    recent_ids: tuple[str, ...] = ()


def state_to_doc(state: WatchState) -> BaselineDoc:
    """The storable form of *state* (built without validation: the state is well-typed)."""
    return BaselineDoc.model_construct(
        started=state.started.isoformat() if state.started is not None else None,
        last_seq=state.last_seq,
        secret_readers=tuple(sorted(state.secret_readers)),
        addresses=state.addresses,
        windows={d: {u: list(q) for u, q in per.items() if q} for d, per in state.windows.items()},
        # A plain dict in recency order: pydantic writes an OrderedDict in the order its
        # keys were first inserted, not in move_to_end's order, and the expiry after a
        # restart reads the oldest first.
        distinct={
            d: {u: dict(k) for u, k in per.items() if k} for d, per in state.distinct.items()
        },
        sessions=state.sessions,
        cooldowns=state.cooldowns,
        recent_ids=tuple(state.recent_ids),
    )


def doc_to_state(doc: BaselineDoc) -> WatchState:
    """The live form of a stored baseline."""
    return WatchState(
        started=dt.datetime.fromisoformat(doc.started) if doc.started is not None else None,
        last_seq=doc.last_seq,
        secret_readers=set(doc.secret_readers),
        addresses={u: list(a) for u, a in doc.addresses.items()},
        windows={d: {u: deque(q) for u, q in per.items()} for d, per in doc.windows.items()},
        distinct={
            d: {u: OrderedDict(k) for u, k in per.items()} for d, per in doc.distinct.items()
        },
        sessions=dict(doc.sessions),
        cooldowns=dict(doc.cooldowns),
        recent_ids=OrderedDict.fromkeys(doc.recent_ids),
    )


def _core_args(state: WatchState, thresholds: tuple[int, int]) -> tuple[Any, ...]:
    """*state* as the native core's ``Detector.load`` takes it (mappings as pairs, in order)."""
    started = (state.started - _EPOCH) // _MICROSECOND if state.started is not None else None
    return (
        started,
        state.last_seq,
        list(state.secret_readers),
        list(state.addresses.items()),
        [(d, [(u, list(q)) for u, q in per.items()]) for d, per in state.windows.items()],
        [
            (d, [(u, [(k, t, i) for k, (t, i) in seen.items()]) for u, seen in per.items()])
            for d, per in state.distinct.items()
        ],
        list(state.sessions.items()),
        list(state.cooldowns.items()),
        list(state.recent_ids),
        *thresholds,
    )


def _begun(micros: int | None, started: dt.datetime | None) -> dt.datetime | None:
    """The start of the learning period the core holds (µs), as *started* (the start the
    core was given) when it is the same instant, so that it is written as it was read."""
    if micros is None:
        return None
    if started is not None and (started - _EPOCH) // _MICROSECOND == micros:
        return started
    return _EPOCH + micros * _MICROSECOND


def _state_of(exported: tuple[Any, ...], started: dt.datetime | None) -> WatchState:
    """The live state from the native core's ``Detector.export`` (*started*: see
    :func:`_begun`)."""
    micros, last_seq, readers, addresses, windows, distinct, sessions, cooldowns = exported[:8]
    recent = exported[8]
    begun = _begun(micros, started)
    return WatchState(
        started=begun,
        last_seq=last_seq,
        secret_readers={tuple(r) for r in readers},
        addresses=addresses,
        windows={d: {u: deque(q) for u, q in per.items()} for d, per in windows.items()},
        distinct={
            d: {u: OrderedDict((k, (t, i)) for k, t, i in seen) for u, seen in per.items()}
            for d, per in distinct.items()
        },
        sessions=sessions,
        cooldowns=cooldowns,
        recent_ids=OrderedDict.fromkeys(recent),
    )


def _exported_doc(exported: tuple[Any, ...], started: dt.datetime | None) -> BaselineDoc:
    """``state_to_doc(_state_of(exported, started))``, without the live state in between."""
    micros, last_seq, readers, addresses, windows, distinct, sessions, cooldowns = exported[:8]
    begun = _begun(micros, started)
    return BaselineDoc.model_construct(
        started=begun.isoformat() if begun is not None else None,
        last_seq=last_seq,
        secret_readers=tuple(readers),  # sorted by the core
        addresses=addresses,
        windows={d: {u: q for u, q in per.items() if q} for d, per in windows.items()},
        distinct={
            d: {u: {k: (t, i) for k, t, i in seen} for u, seen in per.items() if seen}
            for d, per in distinct.items()
        },
        sessions=sessions,
        cooldowns=cooldowns,
        recent_ids=tuple(exported[8]),
    )


def baseline_file(archive_dir: Path) -> StateFile[BaselineDoc]:
    """Where the detectors' state of *archive_dir* is kept."""
    return StateFile(watch_folder(archive_dir) / BASELINE_FILE, BaselineDoc, what="watch baseline")


class DetectorHook:
    """The ingest hook: detectors over each appended batch, alerts stored durably."""

    def __init__(
        self,
        archive_dir: Path,
        config: DetectorsConfig,
        *,
        save_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = AlertStore(archive_dir)
        self.baseline = baseline_file(archive_dir)
        self.detector = Detector(config, doc_to_state(self.baseline.read_or(BaselineDoc)))
        self.save_every = save_every
        self._clock = clock
        self._saved_at = clock()
        #: Seconds between routine saves: ``save_every``, or more when a save is slow (the
        #: baselines grow with the cluster), so that saving costs at most 1/_SAVE_SHARE of
        #: the time. Safe: a restart replays the events after the saved ``last_seq``.
        self._interval = save_every
        self._replaying: set[tuple[str, tuple[str, ...], str]] | None = None
        #: The native core's detector (made on first use), and whether it holds the state
        #: now (else ``self.detector.state`` does): the state moves only when the other
        #: side must run, which on one archive's ingest path is never or rarely.
        self._core: Any = None
        self._core_owns = False
        self._core_started: dt.datetime | None = None

    def catch_up(self, events: EventSource) -> int:
        """Process what the archive holds past the baseline; return the alerts stored."""
        start = self.detector.state.last_seq
        self._replaying = {
            (s.alert.detector, s.alert.audit_ids, s.alert.time) for s in self.store.read()
        }
        try:
            stored = 0
            batch: list[ArchivedLike] = []
            for archived in events.read(after_seq=start):
                batch.append(archived)
                if len(batch) >= 1000:
                    stored += self._handle(batch)
                    batch = []
            stored += self._handle(batch)
        finally:
            self._replaying = None
        self.save()
        return stored

    def __call__(self, events: Sequence[ArchivedLike]) -> None:
        """Run the detectors over a batch that was just archived."""
        self._handle(events)

    def handle_texts(self, first_seq: int, texts: bytes, offset: int = 0) -> int:
        """Run the detectors over stored events given as one JSON array (from byte
        *offset* of *texts*; the first event is record *first_seq*); the alerts stored.

        The native core runs them when it is built; an event it is not sure about is
        read by :func:`~kustos.audit.records.text_view` and given to the reference.
        """
        if not native.enabled() or self._replaying is not None:  # replays compare alerts
            payload = texts[offset:]
            try:
                views = _DECODE_TEXTS(payload)
            except msgspec.DecodeError:  # an odd event: each read as the archive reads it
                views = [text_view(bytes(raw)) for raw in _RAW_TEXTS(payload)]
            return self._handle([ArchivedEvent(first_seq + i, view=v) for i, v in enumerate(views)])
        at = offset

        def run(index: int) -> tuple[bytes, int, tuple[int, int, int] | None]:
            nonlocal at
            answer: tuple[bytes, int, tuple[int, int, int] | None]
            answer = self._take_core().process(texts, first_seq, at, index)
            if answer[2] is not None:
                at = answer[2][2]  # the array goes on after the item stopped at
            return answer

        return self._run_core(first_seq, run, texts)

    def handle_commit(self, first_seq: int, commit: native.core.Commit) -> int:
        """Run the detectors over a batch the native core stored (its ``Commit``, the
        first event being record *first_seq*); the alerts stored.

        The core takes each event's view from the commit, made by the archive's reader as
        it read the event, instead of reading the stored text again; an event it is not
        sure about is read by :func:`~kustos.audit.records.text_view` and given to the
        reference, as in :meth:`handle_texts`.
        """
        if self._replaying is not None:  # replays compare alerts: the reference runs
            return self.handle_texts(first_seq, commit.json_array())

        def run(index: int) -> tuple[bytes, int, tuple[int, int, int] | None]:
            answer: tuple[bytes, int, tuple[int, int, int] | None]
            answer = self._take_core().process_commit(commit, first_seq, index)
            return answer

        return self._run_core(first_seq, run, commit.blob)

    def _run_core(
        self,
        first_seq: int,
        run: Callable[[int], tuple[bytes, int, tuple[int, int, int] | None]],
        texts: bytes,
    ) -> int:
        """Batches through the native core (*run* from an event's index), each event it
        stops at (``(index, start, end)`` of its text in *texts*) through the reference."""
        stored = 0
        index = 0
        while True:
            lines, count, stop = run(index)
            stored += self.store.append_lines(lines, count)
            if stop is None:
                break
            index, start, end = stop
            self._give_back()
            view = text_view(texts[start:end])
            stored += self._store(
                self.detector.process([ArchivedEvent(first_seq + index, view=view)])
            )
            index += 1
        self._save_when_due()
        return stored

    def _take_core(self) -> Any:
        """The native core's detector, holding the state."""
        if self._core is None:
            self._core = native.core.Detector(
                self.detector.ignore_bits, self.detector.zone_offset,
                **self.detector.native_settings(),
            )  # fmt: skip
        if not self._core_owns:
            state = self.detector.state
            self._core.load(*_core_args(state, self.detector.prune_thresholds))
            self._core_started = state.started
            self._core_owns = True
        return self._core

    def _give_back(self) -> None:
        """Move the state from the native core to the Python detector, if it is there."""
        if self._core_owns:
            exported = self._core.export()
            self.detector.state = _state_of(exported, self._core_started)
            self.detector.prune_thresholds = exported[9], exported[10]
            self._core_owns = False

    @property
    def state(self) -> WatchState:
        """The detectors' state now (a copy when the native core holds it)."""
        if self._core_owns:
            return _state_of(self._core.export(), self._core_started)
        return self.detector.state

    def _handle(self, events: Sequence[ArchivedLike]) -> int:
        self._give_back()
        return self._store(self.detector.process(events))

    def _store(self, alerts: list[Alert]) -> int:
        if self._replaying is not None:
            alerts = [a for a in alerts if self._key(a) not in self._replaying]
        if alerts:
            # Alerts now, the baseline when due: a crash in between replays these events
            # at the next start, and the replay recognises the alerts already stored.
            self.store.append(alerts)
        self._save_when_due()
        return len(alerts)

    def _save_when_due(self) -> None:
        if self._clock() - self._saved_at >= self._interval:
            self.save()

    @staticmethod
    def _key(alert: Alert) -> tuple[str, tuple[str, ...], str]:
        return alert.detector, alert.audit_ids, alert.time

    def close(self) -> None:
        """Save the baselines (the archive calls this when it closes)."""
        self.save()

    def save(self) -> None:
        """Write the baselines now."""
        started = self._clock()
        self.baseline.path.parent.mkdir(parents=True, exist_ok=True)
        if self._core_owns:
            # The core writes the file's bytes itself (no Python object per entry): the
            # bytes ``encode(_exported_doc(...))`` gives, or ``None`` for a time it leaves
            # to that path.
            begun = _begun(self._core.started, self._core_started)
            data = self._core.export_json(begun.isoformat() if begun is not None else None)
            if data is None:
                data = encode(_exported_doc(self._core.export(), self._core_started))
        else:
            data = encode(state_to_doc(self.detector.state))
        write_atomic(self.baseline.path, data, what=self.baseline.what, mode=self.baseline.mode)
        self._saved_at = self._clock()
        self._interval = max(self.save_every, _SAVE_SHARE * (self._saved_at - started))


def hooks_for(archive_dir: Path, config: Path | None, *, in_process: bool = False) -> list[Hook]:
    """The hooks the ingest pipeline calls after each durable append (detection).

    The detectors first catch up with the archive here; then, with the native core, they
    run on a thread of the writer's process (:class:`DetectorThread`: the core works
    without the GIL, so ingest and detection use two cores without copying a batch to
    another process); on the Python path in a process of their own
    (:class:`DetectorProcess`), so that the two do not share one interpreter. With
    *in_process* the hook runs in line, in the writer's thread.
    """
    settings = load_config(config)
    hook = DetectorHook(archive_dir, settings.detectors)
    from kustos.audit.archive import Archive  # noqa: PLC0415 - the archive's own module

    hook.catch_up(Archive(archive_dir))
    if in_process:
        return [hook]
    if native.enabled():
        return [DetectorThread(hook)]
    return [DetectorProcess(archive_dir, settings.detectors)]


class DetectorThread:
    """The detector hook on a thread of the writer's process (the native core's mode).

    The writer hands over each durable batch as it is (nothing is encoded or copied to
    another process); the thread runs :meth:`DetectorHook.handle_commit` over the native
    core's commit (the views its reader made of the events as it read them), whose core releases
    the GIL for the whole batch (the ignore-list and time-zone callbacks take it back),
    so the writer goes on meanwhile. When :data:`_QUEUED` batches wait, the writer waits
    too: memory stays bounded. Alerts and baselines are stored exactly as the hook stores
    them. If detection fails, ingest goes on and says so once; the baseline is then not
    saved again, and the next start catches up from the last one
    (:meth:`DetectorHook.catch_up`, which does not store an alert twice). :meth:`close`
    (called by the archive's ``close``) waits until every batch handed over was processed
    and the baseline saved. Dropped unclosed (a command that fails before it closes the
    archive), the thread finishes what waits and saves.
    """

    def __init__(self, hook: DetectorHook) -> None:
        self._queue: queue.Queue[Sequence[ArchivedLike] | None] = queue.Queue(_QUEUED)
        self._failed = threading.Event()
        # The thread holds the hook and the queue, not this object, so that dropping it
        # runs the finaliser: the thread then finishes what waits and saves.
        self._thread = threading.Thread(
            target=_detect_batches,
            args=(hook, self._queue, self._failed),
            name="kustos-detectors",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, self._queue.put, None)

    def __call__(self, events: Sequence[ArchivedLike]) -> None:
        """Hand a stored batch (consecutive sequence numbers) to the detector thread."""
        if events and not self._failed.is_set():
            self._queue.put(events)

    def close(self) -> None:
        """Wait until every batch handed over was processed and the baseline saved."""
        if self._finalizer.detach() is not None:
            self._queue.put(None)  # after the batches still waiting
        self._thread.join()


def _detect_batches(
    hook: DetectorHook,
    waiting: queue.Queue[Sequence[ArchivedLike] | None],
    failed: threading.Event,
) -> None:
    """The thread of a :class:`DetectorThread`: batches through *hook* until ``None``."""
    while (events := waiting.get()) is not None:
        if failed.is_set():
            continue  # drained, so that the writer never waits on a dead thread
        first = events[0].seq
        try:
            commit = getattr(events, "commit", None)
            if commit is not None:
                hook.handle_commit(first, commit)
            else:
                hook(events)
        except Exception as exc:  # noqa: BLE001 - ingest goes on; the next start catches up
            failed.set()
            # The type only: a message could quote an event.
            log.error(  # noqa: TRY400
                "detection stopped at record %d (%s); it resumes from its baseline at the "
                "next start",
                first,
                type(exc).__name__,
            )
    if failed.is_set():
        return
    try:
        hook.save()
    except Exception as exc:  # noqa: BLE001 - the next start catches up from the last one
        log.error(  # noqa: TRY400 - the type only, as above
            "the watch baseline was not saved (%s); the next start catches up",
            type(exc).__name__,
        )


class DetectorProcess:
    """The detector hook run in a child process, fed each durable batch's events.

    The archive's writer hands over the texts of a batch its native core stored (one JSON
    array), or else encodes the batch's views (MessagePack); a thread sends them down a
    pipe, so that the writer goes on with the next batch meanwhile (when :data:`_QUEUED`
    batches wait, the writer waits too: memory stays bounded). The child runs a
    :class:`DetectorHook` over them, stores the alerts and saves the baselines. If the
    child dies, ingest goes on and says so once: the baseline names the last event the
    detectors saw, and the next start catches up from there
    (:meth:`DetectorHook.catch_up`). :meth:`close` (called by the archive's ``close``)
    waits until every batch sent was processed.
    """

    def __init__(self, archive_dir: Path, config: DetectorsConfig) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded service
        self._pipe, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=run_detector_process,
            args=(str(archive_dir), config.model_dump(mode="json"), child),
            name="kustos-detectors",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._encode = msgspec.msgpack.Encoder().encode
        self._alive = self._wait_ready()
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUED)
        # A daemon holding this object weakly: a command that fails before it closes the
        # archive drops it, its pipe closes, the child sees the end and saves; what was
        # not sent is caught up from the baseline at the next start.
        self._sender = threading.Thread(
            target=_send_batches,
            args=(weakref.ref(self), self._queue),
            name="kustos-detectors-send",
            daemon=True,
        )
        self._sender.start()

    def _wait_ready(self) -> bool:
        try:
            if self._pipe.poll(_START_SECONDS) and self._pipe.recv_bytes() == _READY:
                return True
        except (EOFError, OSError):
            pass
        log.error("the detector process did not start; detection resumes at the next start")
        return False

    def __call__(self, events: Sequence[ArchivedLike]) -> None:
        """Send a stored batch (consecutive sequence numbers) to the detectors."""
        if not self._alive or not events:
            return
        # A batch the archive's native core stored hands over its texts in one piece; the
        # child reads the views (the writer makes no Python object per event).
        first = events[0].seq.to_bytes(8, "big")
        texts = getattr(events, "json_array", None)
        if callable(texts):
            self._queue.put(b"".join((first, _TEXTS, texts())))
        else:
            views = [e.view if isinstance(e, ArchivedEvent) else view_of(e.event) for e in events]
            self._queue.put(b"".join((first, _VIEWS, self._encode(views))))

    def send(self, message: bytes) -> None:
        """Send one batch down the pipe (the sender thread's work)."""
        if not self._alive:
            return  # the child is gone: the next start catches up
        try:
            self._pipe.send_bytes(message)
        except OSError:
            self._alive = False
            log.error(  # noqa: TRY400 - the reason is the child's exit, logged by it
                "the detector process stopped at record %d; detection resumes from its "
                "baseline at the next start",
                int.from_bytes(message[:8], "big"),
            )

    def close(self) -> None:
        """Tell the child that no more batches come and wait until it has saved."""
        if self._pipe.closed:
            return
        self._queue.put(None)  # after the batches still waiting
        self._sender.join()
        self._alive = False
        with contextlib.suppress(OSError):
            self._pipe.send_bytes(_STOP)
        self._process.join(_STOP_SECONDS)
        if self._process.is_alive():
            log.error("the detector process did not stop in %d s; ended", _STOP_SECONDS)
            self._process.kill()
            self._process.join()
        self._pipe.close()


def _send_batches(owner: weakref.ref[DetectorProcess], waiting: queue.Queue[bytes | None]) -> None:
    """The sender thread of a :class:`DetectorProcess`: batches down its pipe until ``None``."""
    while (message := waiting.get()) is not None:
        process = owner()
        if process is None:
            return
        process.send(message)
        del process  # no strong reference while waiting


def run_detector_process(archive_dir: str, config: dict[str, Any], pipe: Connection) -> None:
    """The child of :class:`DetectorProcess`: batches of views in, alerts and baselines out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hook = DetectorHook(Path(archive_dir), DetectorsConfig.model_validate(config))
    decode = msgspec.msgpack.Decoder(list[EventView]).decode
    pipe.send_bytes(_READY)
    try:
        while True:
            try:
                message = _receive(pipe.fileno())
            except EOFError:  # the parent died: keep what was seen
                break
            if message == _STOP:
                break
            first = int.from_bytes(message[:8], "big")
            if message[8:9] == _VIEWS:
                views = decode(message[9:])
                hook([ArchivedEvent(first + i, view=v) for i, v in enumerate(views)])
            else:
                hook.handle_texts(first, message, 9)
    finally:
        hook.save()
        pipe.close()


def _receive(fd: int) -> bytes:
    """One message the parent sent with ``Connection.send_bytes`` (its framing: a signed
    32-bit big-endian length, or -1 and a 64-bit one), read straight into one buffer:
    ``recv_bytes`` reads a batch of megabytes in pipe-sized pieces, each into a buffer
    of the whole size, then copies them twice. ``EOFError`` when the parent is gone."""
    (size,) = struct.unpack("!i", _read_exact(fd, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", _read_exact(fd, 8))
    return _read_exact(fd, size)


def _read_exact(fd: int, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError
        got += n
    return bytes(buffer)


# --------------------------------------------------------------------------- forwarding
def sender_for(settings: SinkSettings) -> Sender:
    """The sender of one configured sink."""
    if isinstance(settings, SyslogSink):
        from kustos.audit.sinks.syslog import SyslogSender  # noqa: PLC0415

        return SyslogSender(settings)
    from kustos.audit.sinks.http import HttpSender  # noqa: PLC0415

    return HttpSender(settings)


def forwarders_for(
    archive_dir: Path,
    config: WatchConfig,
    *,
    only: Iterable[str] = (),
    **options: Any,
) -> list[Forwarder]:
    """One forwarder per configured sink (or per sink named in *only*)."""
    from kustos.audit.archive import Archive  # noqa: PLC0415

    wanted = set(only)
    unknown = wanted - {s.name for s in config.sinks}
    if unknown:
        raise ConfigError(f"no sink named {sorted(unknown)[0]!r} in the watch config")
    events = Archive(archive_dir)
    return [
        Forwarder(
            s, sender_for(s), archive_dir=archive_dir, events=events, retry=config.retry, **options
        )
        for s in config.sinks
        if not wanted or s.name in wanted
    ]
