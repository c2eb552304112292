"""Shared store-version checks: one request per distinct store path per refresh window.

Many ManagedSecrets, and many keys of one, may read the same store path: the same KV v2
secret through the same SecretSource, the same AWS secret at the same stage. Asking the
store once per ManagedSecret per refresh makes the request count grow with the number of
readers; :class:`VersionChecks` keeps one schedule per distinct path instead:

- a path is checked once per window, the shortest ``refresh`` of the ManagedSecrets that
  read it, at a phase drawn at random when it is first tracked (so a thousand paths spread
  over the window instead of arriving together) and kept from then on (checks do not
  drift later by the time each one takes);
- every observation (scheduled, or asked for by the engine when none is fresh) is handed
  to ``observed``: the operator compares it with the version each reader recorded and
  wakes exactly the readers that are behind, so a change reaches all of them after one
  request;
- an observation younger than its window answers :meth:`VersionChecks.check` without a
  request, and concurrent checks of one path share one request. Paths nobody tracks are
  never cached: ``kustos rotate`` and direct calls always ask the store.

The budget is one request per tracked path per window, value reads included:

- a request outside the schedule (a value read, or a check the engine asked for because
  no observation was fresh) takes the place of the path's next scheduled check, which is
  skipped (at most one: a change is still seen within two windows of the last request);
- the value a read returned is held for the path's other readers (:meth:`VersionChecks.read`)
  while it is the version last observed, and for one window at most: a change that
  reaches a hundred ManagedSecrets on one path costs one read, not a hundred.

So a path whose value changes at every window costs one request per window, not two
(check, then read); the price is latency: a second change right after a read waits for
the check after the skipped one (up to two windows). ``docs/decisions.md`` has the reasons.

Vault 1.21 Community Edition has no event subscription for KV v2 (``sys/events/subscribe``
is an Enterprise handler; CE answers 404), so polling is the only way to see a change;
``docs/decisions.md`` has the reasoning.

No I/O here: a path's check is a coroutine function handed in by the adapter
(:class:`~kustos.sources.reading.StoreReader`); the clock and randomness are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from kustos.errors import KustosError

log = logging.getLogger(__name__)

#: A distinct store path: ``(source kind, source namespace or "", source name, store, ...)``.
PathKey = tuple[str, ...]
Fetch = Callable[[], Awaitable[str]]
T = TypeVar("T")
#: Checks in flight at once, across every path (the store sees no burst above this).
PARALLEL: Final = 8
#: The loop wakes at least this often (a registration change also wakes it).
IDLE: Final = 60.0


@dataclass(frozen=True, slots=True)
class Observation:
    """A path's version as the store answered at ``at``, or the error it answered with."""

    version: str | None
    error: KustosError | None
    at: float
    #: Learnt from a value read (a reader's own rotation), not from a check.
    read: bool = False

    def result(self) -> str:
        """The version, or the store's error raised again."""
        if self.error is not None:
            raise self.error
        assert self.version is not None  # noqa: S101 - one of the two is always set
        return self.version


@dataclass(frozen=True, slots=True)
class _Held:
    """The value a read returned (an adapter's object), shared with the path's readers."""

    version: str
    value: object
    at: float


@dataclass(slots=True)
class _Path:
    fetch: Fetch
    next_at: float
    readers: dict[Hashable, float] = field(default_factory=dict)  # reader -> its refresh
    observed: Observation | None = None
    #: A request outside the schedule took the place of the check at ``next_at``.
    skip: bool = False
    held: _Held | None = None

    @property
    def interval(self) -> float:
        return min(self.readers.values())


class VersionChecks:
    """One check per distinct store path per window; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        parallel: int = PARALLEL,
        observed: Callable[[PathKey, Observation], None] | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._gate = asyncio.Semaphore(parallel)
        self.observed = observed
        self._paths: dict[PathKey, _Path] = {}
        self._by_reader: dict[Hashable, set[PathKey]] = {}
        self._inflight: dict[PathKey, asyncio.Task[Observation]] = {}
        self._reading: dict[PathKey, asyncio.Task[object]] = {}
        self._wake = asyncio.Event()
        self.requests = 0  # store requests made through this object (a metric)
        self.skipped = 0  # scheduled checks a read or an on-demand check stood in for

    # ------------------------------------------------------------------ who reads what
    def track(self, reader: Hashable, wanted: Mapping[PathKey, tuple[float, Fetch]]) -> None:
        """Make *reader* read exactly the paths in *wanted* (path → (refresh s, fetch))."""
        now = self._clock()
        before = self._by_reader.get(reader, set())
        for key in before - set(wanted):
            self._leave(reader, key)
        for key, (refresh, fetch) in wanted.items():
            path = self._paths.get(key)
            if path is None:
                # A random phase within the first window: no burst at a start.
                path = _Path(fetch, now + self._rng.uniform(0, refresh))
                self._paths[key] = path
            path.fetch = fetch
            longest = path.interval if path.readers else refresh
            path.readers[reader] = refresh
            if path.interval < longest:
                # A shorter refresh takes effect now, not after the old, longer window.
                # (Only then: a reader tracked again with the same refresh, after each of
                # its status updates, must not undo a skipped check.)
                last = path.observed.at if path.observed is not None else now
                path.next_at = min(path.next_at, max(now, last + path.interval))
        if wanted:
            self._by_reader[reader] = set(wanted)
        else:
            self._by_reader.pop(reader, None)
        self._wake.set()

    def untrack(self, reader: Hashable) -> None:
        """*reader* reads nothing any more (deleted, or its spec has no refresh)."""
        self.track(reader, {})

    def _leave(self, reader: Hashable, key: PathKey) -> None:
        path = self._paths.get(key)
        if path is None:
            return
        path.readers.pop(reader, None)
        if not path.readers:
            del self._paths[key]
        elif path.observed is not None:  # a longer window now: no check before it ends
            path.next_at = max(path.next_at, path.observed.at + path.interval)

    def readers(self, key: PathKey) -> frozenset[Hashable]:
        """Who reads *key*."""
        path = self._paths.get(key)
        return frozenset(path.readers) if path is not None else frozenset()

    def paths(self) -> int:
        """How many distinct paths are checked."""
        return len(self._paths)

    def forget(self, matches: Callable[[PathKey], bool]) -> None:
        """Drop the observations of matching paths (their source was edited or deleted)."""
        for key, path in self._paths.items():
            if matches(key):
                path.observed = None
                path.held = None

    # ------------------------------------------------------------------ checking
    def fresh(self, key: PathKey) -> Observation | None:
        """The observation of a tracked *key* made within its window, if any."""
        path = self._paths.get(key)
        if path is None or path.observed is None:
            return None
        return path.observed if self._clock() - path.observed.at < path.interval else None

    async def check(self, key: PathKey, fetch: Fetch) -> str:
        """*key*'s version: a fresh observation, the request in flight, or a new request."""
        seen = self.fresh(key)
        if seen is None:
            seen = await self._observe(key, fetch)
        return seen.result()

    async def read(self, key: PathKey, fetch: Callable[[], Awaitable[tuple[str, T]]]) -> T:
        """*key*'s value, read by *fetch* (which returns ``(version, value)``).

        For a tracked path, the value is read once and held for its other readers while
        its version is the one last observed, for one window at most; concurrent reads
        share one request, and a request made takes the place of the next scheduled check
        (its version is an observation like any other). An untracked path is always read
        and nothing is kept. Errors are raised to every caller and not held.
        """
        path = self._paths.get(key)
        if path is None:
            return (await fetch())[1]
        held, seen = path.held, self.fresh(key)
        if (
            held is not None
            and seen is not None
            and seen.version == held.version
            and self._clock() - held.at < path.interval
        ):
            return cast(T, held.value)
        task = self._reading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(key, fetch))
            self._reading[key] = task
            task.add_done_callback(lambda _: self._reading.pop(key, None))
        return cast(T, await asyncio.shield(task))

    async def _read(self, key: PathKey, fetch: Callable[[], Awaitable[tuple[str, T]]]) -> object:
        began = self._clock()  # the version was current at least from here
        self.requests += 1
        path = self._paths.get(key)
        if path is not None:
            self._unscheduled(path)  # a failed read was a request too
        version, value = await fetch()
        path = self._paths.get(key)
        if path is not None:
            path.held = _Held(version, value, began)
        self._record(key, Observation(version, None, began, read=True))
        return value

    def _unscheduled(self, path: _Path) -> None:
        """A request made outside the schedule stands in for the next scheduled check."""
        if not path.skip:
            path.skip = True
            self.skipped += 1

    async def _observe(self, key: PathKey, fetch: Fetch, *, scheduled: bool = False) -> Observation:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._request(key, fetch, scheduled))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # A cancelled caller must not cancel the request the others wait for.
        return await asyncio.shield(task)

    async def _request(self, key: PathKey, fetch: Fetch, scheduled: bool) -> Observation:
        async with self._gate:
            began = self._clock()  # the version was current at least from here
            self.requests += 1
            path = self._paths.get(key)
            if path is not None and not scheduled:
                self._unscheduled(path)
            try:
                seen = Observation(await fetch(), None, began)
            except KustosError as exc:
                seen = Observation(None, exc, began)
        self._record(key, seen)
        return seen

    def _record(self, key: PathKey, seen: Observation) -> None:
        path = self._paths.get(key)
        if path is None:
            return  # nobody tracks it: nothing kept, nobody to tell
        path.observed = seen
        if path.held is not None and seen.version != path.held.version:
            path.held = None  # another version (or an error): the value held is stale
        if self.observed is not None:
            try:
                self.observed(key, seen)
            except Exception:  # a listener's bug must not stop the checks
                log.exception("store version listener failed for %s", "/".join(key))

    # ------------------------------------------------------------------ the schedule
    def due(self) -> list[tuple[PathKey, Fetch]]:
        """The paths whose window has come, each moved on by one window (phase kept).

        A path whose check a read (or an on-demand check) stood in for is moved on
        without a request, once.
        """
        now = self._clock()
        ready = []
        for key, path in self._paths.items():
            if path.next_at > now:
                continue
            path.next_at += path.interval
            if path.next_at <= now:  # the loop stalled for a whole window: start afresh
                path.next_at = now + path.interval
            if path.skip:
                path.skip = False
                continue
            ready.append((key, path.fetch))
        return ready

    def next_at(self) -> float | None:
        """When the next path is due (the clock's time), if any is tracked."""
        return min((p.next_at for p in self._paths.values()), default=None)

    async def run_due(self) -> None:
        """Check every due path (bounded concurrency) and wait for the answers."""
        await asyncio.gather(
            *(self._observe(key, fetch, scheduled=True) for key, fetch in self.due())
        )

    def _spread(self) -> None:
        """Give every path a new random phase within its window (no burst on taking over)."""
        now = self._clock()
        for path in self._paths.values():
            path.next_at = now + self._rng.uniform(0, path.interval)
            path.skip = False

    async def run(self, leading: asyncio.Event | None = None) -> None:
        """Check due paths until cancelled, sleeping until the next one.

        With *leading* (the operator's Lease), only while it is set: a standby replica
        asks the store nothing, and the one that takes over spreads its first checks
        over one window.
        """
        active: set[asyncio.Task[None]] = set()
        try:
            while True:
                if leading is not None and not leading.is_set():
                    await leading.wait()
                    self._spread()
                for key, fetch in self.due():
                    task = asyncio.create_task(self._checked(key, fetch))
                    active.add(task)
                    task.add_done_callback(active.discard)
                upcoming = self.next_at()
                wait = IDLE if upcoming is None else upcoming - self._clock()
                wait = wait if leading is None else min(wait, 1.0)  # notice a lost Lease
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(max(wait, 0.01), IDLE))
        finally:
            for task in active:
                task.cancel()
            await asyncio.gather(*active, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Cancel the requests in flight (shielded from their callers, not from a stop)."""
        tasks: list[asyncio.Task[Any]] = [*self._inflight.values(), *self._reading.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _checked(self, key: PathKey, fetch: Fetch) -> None:
        try:
            await self._observe(key, fetch, scheduled=True)
        except Exception:  # only a bug gets here: KustosError is an observation
            log.exception("store version check failed for %s", "/".join(key))
