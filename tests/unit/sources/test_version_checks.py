"""Shared store-version checks: one request per distinct path per window, changes reach all.

Aspects: N ManagedSecrets (and several keys of one) reading one path cost one version
request per window, over several windows, and the phase is kept however long a request
takes; distinct paths are checked once each; first checks are spread over the first
window (no burst at a start); concurrent checks of one path share one request; a fresh
observation answers the engine without a request, an untracked path is always asked; a
shorter refresh takes effect at once; an error is one request per window, raised to
every caller, and the next window asks again; an edited source forgets its versions; a
listener's bug does not stop the checks; through the operator: a new version wakes every
reader that is behind and nobody else, a store error wakes the readers once (not those
already failing), and a recovered store wakes the failing ones without their backoff;
a standby replica asks nothing and a new leader spreads its first checks over one
window; a reader whose own rotation read the value is not woken by that read, but a check seen
while it runs brings it back when it ends; the operator hands the engine the watched
object. The budget, value reads included: a value that changes at every window costs one
request per window (a read stands in for the next check), a change right after a read is
seen within two windows, a hundred readers of one version share one read (held one
window at most, dropped when a newer version is seen, never for an untracked path), a
failed read reaches every reader and is not held, a reader tracked again keeps the
skipped check skipped, and a check the engine asks for counts against the budget too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kustos.errors import StoreUnavailableError
from kustos.operator.running import Operator, OperatorSettings
from kustos.sources.checking import Fetch, Observation, PathKey, VersionChecks

PATH: PathKey = ("SecretSource", "team", "vault", "vault", "app/db")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Store:
    """A store path whose version the test moves; counts version requests and value reads."""

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self.requests = 0
        self.reads = 0
        self.down = False
        self.delay = 0.0

    def read(self) -> Callable[[], Awaitable[tuple[str, object]]]:
        async def whole() -> tuple[str, object]:
            self.reads += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                raise StoreUnavailableError("vault GET secret/data/app/db: HTTP 503")
            return self.version, {"password": f"value of version {self.version}"}

        return whole

    def fetch(self) -> Fetch:
        async def ask() -> str:
            self.requests += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                raise StoreUnavailableError("vault GET secret/metadata/app/db: HTTP 503")
            return self.version

        return ask


def _checks(clock: _Clock, seen: list[tuple[PathKey, Observation]] | None = None) -> VersionChecks:
    listener = None if seen is None else (lambda key, obs: seen.append((key, obs)))
    return VersionChecks(clock=clock, rng=random.Random(7), observed=listener)  # noqa: S311 - seeded jitter


async def _windows(checks: VersionChecks, clock: _Clock, count: int, step: float = 1.0) -> None:
    """Let *count* 60-second windows pass, checking what is due every *step* seconds."""
    end = clock.now + 60 * count
    while clock.now < end:
        clock.now += step
        await checks.run_due()


# --------------------------------------------------------------------------- one path
@pytest.mark.asyncio
async def test_many_readers_of_one_path_make_one_request_per_window() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    for i in range(500):
        checks.track(("team", f"ms-{i}"), {PATH: (60.0, store.fetch())})
    await _windows(checks, clock, 5)
    assert store.requests == 5
    assert checks.paths() == 1
    assert len(checks.readers(PATH)) == 500


@pytest.mark.asyncio
async def test_distinct_paths_are_checked_once_each_per_window() -> None:
    clock = _Clock()
    stores = {f"app/{i}": _Store() for i in range(50)}
    checks = _checks(clock)
    for i, (path, store) in enumerate(stores.items()):
        key = ("SecretSource", "team", "vault", "vault", path)
        checks.track(("team", f"ms-{i}"), {key: (60.0, store.fetch())})
        checks.track(("team", f"other-{i}"), {key: (60.0, store.fetch())})
    await _windows(checks, clock, 3)
    assert [s.requests for s in stores.values()] == [3] * 50


def test_first_checks_are_spread_over_the_first_window() -> None:
    clock = _Clock()
    checks = _checks(clock)
    for i in range(1000):
        key = ("SecretSource", "team", "vault", "vault", f"app/{i}")
        checks.track(("team", f"ms-{i}"), {key: (60.0, _Store().fetch())})
    offsets = sorted(p.next_at - clock.now for p in checks._paths.values())
    assert offsets[0] >= 0
    assert offsets[-1] < 60
    per_second = [sum(int(o) == s for o in offsets) for s in range(60)]
    assert max(per_second) < 40, "no burst: about 17 a second, never hundreds"


@pytest.mark.asyncio
async def test_the_phase_is_kept_however_long_a_request_takes() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    first = checks.next_at()
    assert first is not None
    clock.now = first
    store.delay = 0.01
    await checks.run_due()
    assert checks.next_at() == first + 60
    clock.now = first + 59  # the check ran late in its window
    await checks.run_due()
    assert store.requests == 1
    assert checks.next_at() == first + 60


@pytest.mark.asyncio
async def test_concurrent_checks_share_one_request() -> None:
    clock, store = _Clock(), _Store()
    store.delay = 0.05
    checks = _checks(clock)
    answers = await asyncio.gather(*(checks.check(PATH, store.fetch()) for _ in range(100)))
    assert answers == ["1"] * 100
    assert store.requests == 1


@pytest.mark.asyncio
async def test_a_fresh_observation_answers_without_a_request_untracked_paths_are_asked() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    assert await checks.check(PATH, store.fetch()) == "1"
    assert await checks.check(PATH, store.fetch()) == "1"
    assert store.requests == 2, "nobody tracks it: the store is asked every time"

    checks.track("ms", {PATH: (60.0, store.fetch())})
    assert await checks.check(PATH, store.fetch()) == "1"
    store.version = "2"
    clock.now += 30
    assert await checks.check(PATH, store.fetch()) == "1", "fresh within the window"
    assert store.requests == 3
    clock.now += 31
    assert await checks.check(PATH, store.fetch()) == "2"
    assert store.requests == 4


@pytest.mark.asyncio
async def test_a_shorter_refresh_takes_effect_at_once() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("slow", {PATH: (3600.0, store.fetch())})
    clock.now = checks.next_at() or clock.now
    await checks.run_due()
    assert store.requests == 1
    checks.track("fast", {PATH: (60.0, store.fetch())})
    await _windows(checks, clock, 3)
    assert store.requests == 4
    checks.untrack("fast")
    await _windows(checks, clock, 3)
    assert store.requests == 4, "back to the hourly window"
    checks.untrack("slow")
    assert checks.paths() == 0
    assert checks.next_at() is None


# --------------------------------------------------------------------------- the budget
async def _follow(checks: VersionChecks, clock: _Clock, store: _Store, windows: int) -> None:
    """*windows* windows in which the value changes once each and every change seen is read.

    The engine's part, as the operator plays it: a new version observed is read at once.
    """
    known = store.version
    end = clock.now + 60 * windows
    while clock.now < end:
        clock.now += 1
        if int(clock.now) % 60 == 30:
            store.version = str(int(store.version) + 1)
        await checks.run_due()
        seen = checks.fresh(PATH)
        if seen is not None and seen.version != known:
            await checks.read(PATH, store.read())
            known = store.version


@pytest.mark.asyncio
async def test_a_value_changed_at_every_window_costs_one_request_per_window_not_two() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    await _follow(checks, clock, store, 30)
    # Check then read at every window would be 60: each read stands in for the next check.
    assert store.requests + store.reads <= 31, (store.requests, store.reads)
    assert store.reads >= 14, "changes are still taken: one at least every two windows"
    assert checks.skipped == store.reads


@pytest.mark.asyncio
async def test_a_change_right_after_a_read_is_seen_within_two_windows() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    clock.now = checks.next_at() or clock.now
    await checks.run_due()
    await checks.read(PATH, store.read())
    read_at = clock.now
    store.version = "2"  # just after the read: the next check is the skipped one
    while (seen := checks.fresh(PATH)) is None or seen.version != "2":
        clock.now += 1
        await checks.run_due()
    assert 60 < clock.now - read_at <= 120, "the price of the budget: up to two windows"
    assert store.requests == 2
    assert store.reads == 1


@pytest.mark.asyncio
async def test_readers_of_one_path_share_one_value_read_per_version() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    for i in range(100):
        checks.track(f"ms-{i}", {PATH: (60.0, store.fetch())})
    await _windows(checks, clock, 1)
    store.delay = 0.01
    together = await asyncio.gather(*(checks.read(PATH, store.read()) for _ in range(100)))
    one_by_one = [await checks.read(PATH, store.read()) for _ in range(100)]
    assert store.reads == 1, "a hundred readers of one version: one read"
    assert {str(v) for v in [*together, *one_by_one]} == {"{'password': 'value of version 1'}"}

    store.version = "2"
    await _windows(checks, clock, 2)  # the first check was the read's: skipped
    assert store.requests == 2
    assert await checks.read(PATH, store.read()) == {"password": "value of version 2"}
    assert store.reads == 2, "a new version observed: the value held is not used"

    clock.now += 61  # held one window at most, even with no newer version seen
    await checks.read(PATH, store.read())
    assert store.reads == 3

    other: PathKey = (*PATH[:-1], "app/untracked")
    await checks.read(other, store.read())
    await checks.read(other, store.read())
    assert store.reads == 5, "nobody tracks it: read every time, nothing held"


@pytest.mark.asyncio
async def test_a_failed_read_is_raised_to_every_reader_and_not_held() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    for i in range(5):
        checks.track(f"ms-{i}", {PATH: (60.0, store.fetch())})
    await _windows(checks, clock, 1)
    store.down, store.delay = True, 0.01
    results = await asyncio.gather(
        *(checks.read(PATH, store.read()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailableError) for r in results)
    assert store.reads == 1
    store.down = False
    assert await checks.read(PATH, store.read()) == {"password": "value of version 1"}
    assert store.reads == 2


@pytest.mark.asyncio
async def test_a_reader_tracked_again_keeps_the_skipped_check_skipped() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    clock.now = checks.next_at() or clock.now
    await checks.run_due()
    await checks.read(PATH, store.read())
    checks.track("ms", {PATH: (60.0, store.fetch())})  # its status update, watched back
    await _windows(checks, clock, 1)
    assert store.requests == 1, "the read stood in for this window's check"
    await _windows(checks, clock, 1)
    assert store.requests == 2


@pytest.mark.asyncio
async def test_an_engine_check_outside_the_schedule_stands_in_for_the_next_one() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    assert await checks.check(PATH, store.fetch()) == "1"  # a new reader's first version
    await _windows(checks, clock, 4)
    assert store.requests <= 4, "no more than one request per window, the engine's included"


# --------------------------------------------------------------------------- errors
@pytest.mark.asyncio
async def test_an_unreachable_store_is_one_request_per_window_and_every_caller_hears() -> None:
    clock, store = _Clock(), _Store()
    seen: list[tuple[PathKey, Observation]] = []
    checks = _checks(clock, seen)
    for i in range(20):
        checks.track(f"ms-{i}", {PATH: (60.0, store.fetch())})
    store.down = True
    await _windows(checks, clock, 1)
    assert store.requests == 1
    for _ in range(20):  # every reader's engine asks within the window: no new request
        with pytest.raises(StoreUnavailableError, match="503"):
            await checks.check(PATH, store.fetch())
    assert store.requests == 1
    store.down = False
    store.version = "2"
    await _windows(checks, clock, 1)
    assert store.requests == 2
    assert [obs.error is None for _, obs in seen] == [False, True]
    assert seen[-1][1].version == "2"


@pytest.mark.asyncio
async def test_forget_drops_the_versions_of_an_edited_source() -> None:
    clock, store = _Clock(), _Store()
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    await checks.check(PATH, store.fetch())
    checks.forget(lambda key: key[:3] == PATH[:3])
    await checks.check(PATH, store.fetch())
    assert store.requests == 2


@pytest.mark.asyncio
async def test_a_listener_bug_does_not_stop_the_checks(caplog: pytest.LogCaptureFixture) -> None:
    clock, store = _Clock(), _Store()

    def broken(key: PathKey, obs: Observation) -> None:
        raise RuntimeError("listener bug")

    checks = VersionChecks(clock=clock, observed=broken)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    await _windows(checks, clock, 2)
    assert store.requests == 2
    assert "listener failed" in caplog.text


# --------------------------------------------------------------------------- the operator
class _Engine:
    """The engine at our own boundary: records what the operator hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def reconcile(self, namespace: str, name: str, *, observed: Any = None) -> Any:
        self.calls.append((namespace, name, observed))
        return None, None


def _managed(name: str, *, recorded: str | None, ready: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if recorded is not None:
        status["sourceVersions"] = {"password": recorded, "user": recorded}
    if ready is not None:
        status["conditions"] = [{"type": "SourcesReady", "status": ready}]
    return {
        "metadata": {"namespace": "team", "name": name, "resourceVersion": "7", "generation": 1},
        "spec": {
            "secretName": name,
            "data": {
                "password": {"vault": {"source": {"name": "vault"}, "path": "app/db"}},
                "user": {"vault": {"source": {"name": "vault"}, "path": "app/db"}},
            },
            "refresh": "1m",
        },
        "status": status,
    }


def _operator(store: _Store, clock: _Clock) -> tuple[Operator, _Engine]:
    engine = _Engine()
    op = Operator(
        object(),  # type: ignore[arg-type]  # no request is made: the engine is replaced
        OperatorSettings(reload=False, sealed=False),
        engine=engine,  # type: ignore[arg-type]  # our own adapter boundary
    )
    jitter = random.Random(3)  # noqa: S311 - seeded jitter
    op.stores.checks = VersionChecks(clock=clock, rng=jitter, observed=op._observed)
    fetch = store.fetch()
    op.stores._fetch = lambda namespace, gen: fetch  # type: ignore[method-assign]
    return op, engine


def _woken(op: Operator) -> set[str]:
    return {name for _, name in op.soon}


@pytest.mark.asyncio
async def test_a_new_version_wakes_every_reader_that_is_behind_after_one_request() -> None:
    clock, store = _Clock(), _Store("4")
    op, _ = _operator(store, clock)
    for i in range(30):
        op._managed_event("ADDED", _managed(f"ms-{i}", recorded="4"))
    op._managed_event("ADDED", _managed("new", recorded=None))  # its first version is due
    op.soon.clear()
    assert op.stores.checks.paths() == 1
    await _windows(op.stores.checks, clock, 2)
    assert store.requests == 2
    assert _woken(op) == set(), "nothing changed: nobody is looked at"

    store.version = "5"
    await _windows(op.stores.checks, clock, 1)
    assert store.requests == 3
    assert _woken(op) == {f"ms-{i}" for i in range(30)}
    assert all(op.due[("team", f"ms-{i}")] for i in range(30))


@pytest.mark.asyncio
async def test_store_errors_wake_readers_once_and_recovery_skips_the_backoff() -> None:
    clock, store = _Clock(), _Store("4")
    op, _ = _operator(store, clock)
    op._managed_event("ADDED", _managed("ok", recorded="4"))
    op._managed_event("ADDED", _managed("known", recorded="4", ready="False"))
    op.soon.clear()
    store.down = True
    await _windows(op.stores.checks, clock, 1)
    assert _woken(op) == {"ok"}, "the one not yet marked learns it; the marked one waits"

    op.soon.clear()
    op.failures[("team", "ok")] = 3
    await _windows(op.stores.checks, clock, 1)
    assert _woken(op) == set(), "already failing: its backoff decides, not every window"

    store.down = False
    failing = _managed("ok", recorded="4", ready="False")
    op._managed_event("MODIFIED", failing)
    op.soon.clear()
    await _windows(op.stores.checks, clock, 1)
    assert _woken(op) == {"ok", "known"}
    assert ("team", "ok") not in op.failures


@pytest.mark.asyncio
async def test_the_engine_gets_the_watched_object() -> None:
    clock, store = _Clock(), _Store("4")
    op, engine = _operator(store, clock)
    raw = _managed("ms", recorded="4")
    op._managed_event("ADDED", raw)
    await op._reconcile(("team", "ms"), asyncio.Semaphore(1))
    assert engine.calls == [("team", "ms", raw)]


@pytest.mark.asyncio
async def test_stopping_cancels_the_requests_in_flight() -> None:
    clock, store = _Clock(), _Store()
    store.delay = 30
    checks = _checks(clock)
    checks.track("ms", {PATH: (60.0, store.fetch())})
    clock.now = checks.next_at() or clock.now
    runner = asyncio.create_task(checks.run())
    await asyncio.sleep(0.05)
    assert store.requests == 1
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert checks._inflight == {}, "nothing left running after a stop (no client made later)"


@pytest.mark.asyncio
async def test_a_reader_running_when_a_change_is_seen_is_looked_at_again() -> None:
    clock, store = _Clock(), _Store("4")
    op, _ = _operator(store, clock)
    op._managed_event("ADDED", _managed("busy", recorded="4"))
    op._managed_event("ADDED", _managed("idle", recorded="4"))
    op.soon.clear()
    op.running.add(("team", "busy"))
    store.version = "5"
    await op.stores.checks.read(PATH, store.read())  # busy's own rotation reads version 5
    assert _woken(op) == {"idle"}
    op.soon.clear()
    store.version = "6"
    await _windows(op.stores.checks, clock, 2)  # the read stood in for the first check
    assert _woken(op) == {"busy", "idle"}, "busy is looked at again when it ends"


@pytest.mark.asyncio
async def test_a_standby_asks_nothing_and_a_new_leader_spreads_its_first_checks() -> None:
    clock = _Clock()
    checks = _checks(clock)
    fetches = [_Store() for _ in range(200)]
    for i, one in enumerate(fetches):
        key = ("SecretSource", "team", "vault", "vault", f"app/{i}")
        checks.track(f"ms-{i}", {key: (60.0, one.fetch())})
    leading = asyncio.Event()
    runner = asyncio.create_task(checks.run(leading))
    clock.now += 300
    await asyncio.sleep(0.05)
    assert sum(s.requests for s in fetches) == 0, "a standby asks the store nothing"
    leading.set()
    await asyncio.sleep(0.05)
    offsets = [p.next_at - clock.now for p in checks._paths.values()]
    assert min(offsets) >= 0
    assert max(offsets) < 60
    assert sum(s.requests for s in fetches) < 20, "no burst of every overdue path at once"
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
