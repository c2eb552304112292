"""The operator's main loop: watches, due times, bounded rotations, backoff, HTTP endpoints.

Nothing here decides *what* a rotation does (that is :class:`~kustos.rotation.rotating.Engine`)
or *when* one is due (that is :func:`~kustos.rotation.planning.next_rotation`); this module
only keeps the watched objects, asks the planner for each one's next time, and calls the
engine when a time comes, one rotation per object at a time and at most
``max_parallel`` at once. A rotation that fails is retried with exponential backoff and
jitter (visible in ``kustos_retry_backoff_seconds``); its last good value stays live.

Store values with ``refresh`` are not looked at one ManagedSecret at a time: their paths
are tracked in the stores' shared checks (:mod:`kustos.sources.checking`), which ask each
distinct path once per window and tell this module what they saw; only the
ManagedSecrets that are behind (or failing, or newly failing) are reconciled. The engine
is handed the watched object, so a look that changes nothing sends the API server nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from lightkube import AsyncClient
from lightkube.operators import exists
from lightkube.resources import core_v1
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kustos import conventions as c
from kustos.crypto import sops
from kustos.crypto.certificates import CertFacts, certificate_facts
from kustos.durations import parse_duration
from kustos.errors import InputError, KustosError, ServiceError
from kustos.kms.keys import SealingKeyStore
from kustos.kube.objects import ObjectRef
from kustos.operator.leading import LeaderElector, LeaseSettings
from kustos.operator.reloading import Reloader
from kustos.operator.unsealing import SealingKeys, Unsealer
from kustos.operator.watching import watch_forever
from kustos.rotation.planning import next_rotation
from kustos.rotation.recording import KubeRecorder
from kustos.rotation.rotating import Engine, ManagedSecret
from kustos.rotation.spec import ManagedSecretSpec, PostgresRole, SourceKind, parse_spec
from kustos.rotation.versions import Outcome, RotationState, VersionRecord, parse_time
from kustos.sources.checking import Observation, PathKey
from kustos.sources.reading import ClusterSecretSource, SecretSource, StoreReader, sources_of
from kustos.sources.sealing import RECIPIENT_CONFIGMAP

log = logging.getLogger(__name__)
Key = tuple[str, str]
_PEM_CERT: Final = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """What the operator watches and how it behaves (filled from flags and ``KUSTOS_*``)."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    listen: str = "127.0.0.1:8080"
    lease: LeaseSettings | None = None
    max_parallel: int = 4
    retry_base: float = 10.0
    retry_max: float = 600.0
    component: str = "kustos-operator"
    reload: bool = True  # roll opted-in workloads when a Secret they use changes
    #: Identities that open SealedSecrets; ``None``: SealedSecrets are reported, not opened.
    unseal_identities: sops.Identities | None = None
    sealed: bool = True  # watch SealedSecrets (needs their CRD)
    reload_window: float = 5.0
    #: The key store holding the cluster's sealing keys (read at start and every
    #: ``sealing_reload`` seconds; the current recipient is published in a ConfigMap).
    sealing_store: SealingKeyStore | None = None
    sealing_reload: float = 30.0
    recipient_configmap: str = RECIPIENT_CONFIGMAP


@dataclass(slots=True)
class Metrics:
    """The operator's Prometheus metrics, in a registry of their own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    rotations: Counter = field(init=False)
    failures: Counter = field(init=False)
    rollbacks: Counter = field(init=False)
    rollout_seconds: Histogram = field(init=False)
    next_rotation: Gauge = field(init=False)
    backoff: Gauge = field(init=False)
    managed: Gauge = field(init=False)
    leader: Gauge = field(init=False)
    store_paths: Gauge = field(init=False)
    store_versions: Counter = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.rotations = Counter(
            "kustos_rotations", "Rotations finished, by outcome.", ["outcome"], registry=r
        )
        self.failures = Counter(
            "kustos_rotation_failures", "Rotation attempts that raised an error.", registry=r
        )
        self.rollbacks = Counter(
            "kustos_rollbacks", "Rotations whose rollout failed and were rolled back.", registry=r
        )
        self.rollout_seconds = Histogram(
            "kustos_rollout_duration_seconds",
            "Time from restart to every consumer rolled.",
            registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
        )
        self.next_rotation = Gauge(
            "kustos_next_rotation_timestamp_seconds",
            "When each ManagedSecret rotates next (Unix time).",
            ["namespace", "name"],
            registry=r,
        )
        self.backoff = Gauge(
            "kustos_retry_backoff_seconds",
            "Current retry delay after failures.",
            ["namespace", "name"],
            registry=r,
        )
        self.managed = Gauge("kustos_managed_secrets", "ManagedSecrets watched.", registry=r)
        self.leader = Gauge("kustos_leader", "1 while this replica leads.", registry=r)
        self.store_paths = Gauge(
            "kustos_store_paths", "Distinct store paths whose version is checked.", registry=r
        )
        self.store_versions = Counter(
            "kustos_store_versions_observed",
            "Store versions observed (checks and value reads), by outcome.",
            ["outcome"],
            registry=r,
        )


class _Observer:
    """Events through the Kubernetes recorder, counts into the metrics."""

    def __init__(self, recorder: KubeRecorder, metrics: Metrics) -> None:
        self.recorder = recorder
        self.metrics = metrics

    async def event(
        self, obj: ObjectRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        await self.recorder.event(obj, reason=reason, message=message, warning=warning)

    def finished(self, outcome: str, *, duration: float, rollout_seconds: float | None) -> None:
        self.metrics.rotations.labels(outcome=outcome).inc()
        if outcome == "rolled_back":
            self.metrics.rollbacks.inc()
        if rollout_seconds is not None:
            self.metrics.rollout_seconds.observe(rollout_seconds)


def due_time(
    raw: Mapping[str, Any], certs: Mapping[str, CertFacts], now: dt.datetime
) -> dt.datetime | None:
    """When the engine must look at this ManagedSecret (pure; ``now`` if at once)."""
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    if RotationState.from_status(status.get("rotation")) is not None:
        return now  # an unfinished rotation resumes at once
    try:
        spec = parse_spec(raw.get("spec"))
    except InputError:
        # The engine records the condition once per generation, then waits for a fix.
        return now if status.get("observedGeneration") != meta.get("generation") else None
    records = [VersionRecord.from_status(v) for v in status.get("versions") or []]
    current = next((r for r in records if r.state is Outcome.CURRENT), None)
    due = next_rotation(
        spec,
        now=now,
        last_rotation=parse_time(status.get("lastRotation")),
        current_created=parse_time(current.created) if current else None,
        stored_spec_hash=status.get("specHash"),
        certificates=certs,
    )
    return None if due is None else due.at


class Operator:
    """Runs until ``stop`` is set; see the module docstring."""

    def __init__(
        self, client: AsyncClient, settings: OperatorSettings, *, engine: Engine | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.metrics = Metrics()
        observer = _Observer(KubeRecorder(client, settings.component), self.metrics)
        self.stores = StoreReader(client, identities=settings.unseal_identities)
        self.engine = engine or Engine(
            client, observer=observer, database=_database(), stores=self.stores
        )
        self.checked: dict[Key, dt.datetime] = {}  # last sealed-value check per object
        self.soon: set[Key] = set()  # to look at as soon as it is not running
        self.paths: dict[Key, dict[PathKey, tuple[str, ...]]] = {}  # store path -> its keys
        self.stores.checks.observed = self._observed
        self.objects: dict[Key, dict[str, Any]] = {}
        self.certs: dict[Key, dict[str, CertFacts]] = {}  # live Secret → x509 facts
        self.due: dict[Key, dt.datetime] = {}
        self.failures: dict[Key, int] = {}
        self.running: set[Key] = set()
        self.synced: set[str] = set()
        self.wake = asyncio.Event()
        self.elector = LeaderElector(client, settings.lease) if settings.lease else None
        self.reloader = (
            Reloader(
                client,
                settings.namespaces,
                window=settings.reload_window,
                recorder=KubeRecorder(client, settings.component),
            )
            if settings.reload
            else None
        )

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Serve, watch and rotate until *stop*."""
        keys = None
        if self.settings.sealing_store is not None:
            keys = SealingKeys(
                self.settings.sealing_store,
                self.client,
                configmap=self.settings.recipient_configmap,
                every=self.settings.sealing_reload,
                component=self.settings.component,
            )
            await keys.load()  # a key store that cannot be read stops the start
        server = await self._serve_http()
        tasks = [
            asyncio.create_task(self._watch_managed(ns), name=f"watch-ms-{ns or 'all'}")
            for ns in self._scopes()
        ]
        tasks += [
            asyncio.create_task(self._watch_secrets(ns), name=f"watch-secrets-{ns or 'all'}")
            for ns in self._scopes()
        ]
        if self.elector is not None:
            tasks.append(asyncio.create_task(self.elector.run(stop), name="lease"))
        self.stores.watching()
        tasks += [
            asyncio.create_task(self._watch_sources(ns), name=f"watch-sources-{ns or 'all'}")
            for ns in self._scopes()
        ]
        tasks.append(asyncio.create_task(self._watch_cluster_sources(), name="watch-csources"))
        tasks.append(asyncio.create_task(self._schedule(stop), name="schedule"))
        leads = self.elector.leading if self.elector is not None else None
        tasks.append(asyncio.create_task(self.stores.checks.run(leads), name="store-checks"))
        leading = self.elector.leading if self.elector is not None else None
        unsealer = Unsealer(
            self.client,
            self.settings.namespaces,
            self.settings.unseal_identities,
            changed=self._look_now,
            recorder=KubeRecorder(self.client, self.settings.component),
        )
        if keys is not None:

            async def use(found: sops.Identities | None) -> None:
                combined = _combined(self.settings.unseal_identities, found)
                self.stores.identities = combined
                await unsealer.identities_changed(combined)

            combined = _combined(self.settings.unseal_identities, keys.identities)
            self.stores.identities = combined
            unsealer.identities = combined
            tasks.append(asyncio.create_task(keys.run(leading, use), name="sealing-keys"))
        if self.settings.sealed:
            tasks.append(asyncio.create_task(unsealer.run(leading), name="unseal"))
        if self.reloader is not None:
            leading = self.elector.leading if self.elector is not None else None
            tasks.append(asyncio.create_task(self.reloader.run(stop, leading), name="reload"))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            server.close()
            await server.wait_closed()
            await self.stores.close()

    def _scopes(self) -> list[str | None]:
        return list(self.settings.namespaces) or [None]

    @property
    def leading(self) -> bool:
        """True if this replica may rotate."""
        return self.elector is None or self.elector.leading.is_set()

    # ------------------------------------------------------------------ watches
    async def _watch_managed(self, namespace: str | None) -> None:
        await watch_forever(
            self.client,
            ManagedSecret,
            self._managed_event,
            namespace=namespace,
            what="ManagedSecret",
        )

    def _managed_event(self, kind: str, obj: Any) -> None:
        raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.due.pop(key, None)
            self._track(key, None)
            with contextlib.suppress(KeyError):
                self.metrics.next_rotation.remove(*key)
        else:
            self.objects[key] = raw
            self._track(key, raw)
            self._plan(key)
        self.metrics.managed.set(len(self.objects))
        self.synced.add("managedsecrets")

    async def _watch_secrets(self, namespace: str | None) -> None:
        """Keep x509 facts of live managed Secrets (their values are not kept)."""
        await watch_forever(
            self.client,
            core_v1.Secret,
            self._secret_event,
            namespace=namespace,
            what="managed Secret",
            labels={c.LABEL_MANAGED_SECRET: exists()},
        )

    def _secret_event(self, kind: str, secret: Any) -> None:
        meta = secret.metadata
        if meta is None or c.LABEL_VERSION in (meta.labels or {}):
            return
        key = (str(meta.namespace), str(meta.name))
        if kind == "DELETED":
            self.certs.pop(key, None)
            return
        facts = {}
        for data_key, value in (secret.data or {}).items():
            raw = base64.b64decode(value)
            if raw.lstrip().startswith(_PEM_CERT):
                with contextlib.suppress(KustosError):
                    facts[data_key] = certificate_facts(raw)
        self.certs[key] = facts
        owner = (meta.labels or {}).get(c.LABEL_MANAGED_SECRET)
        if owner and (key[0], owner) in self.objects:
            self._plan((key[0], owner))
        self.synced.add("secrets")

    async def _watch_sources(self, namespace: str | None) -> None:
        """Keep SecretSources: an edit is seen at once, and no use re-reads one."""
        await watch_forever(
            self.client,
            SecretSource,
            lambda event, obj: self._source_event(SourceKind.NAMESPACED.value, event, obj),
            namespace=namespace,
            what="SecretSource",
            optional=True,
        )

    async def _watch_cluster_sources(self) -> None:
        await watch_forever(
            self.client,
            ClusterSecretSource,
            lambda event, obj: self._source_event(SourceKind.CLUSTER.value, event, obj),
            namespace=None,
            what="ClusterSecretSource",
            optional=True,
        )

    def _source_event(self, kind: str, event: str, obj: Any) -> None:
        raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        (_, namespace, name), changed = self.stores.source_event(kind, event, raw)
        for key, managed in list(self.objects.items()):
            if namespace and key[0] != namespace:
                continue
            if (kind, name) not in sources_of(managed.get("spec") or {}):
                continue
            if changed or self.failures.get(key):
                # Edited (new endpoint or credentials), or created for a failing object.
                self._look_now(key)

    # ------------------------------------------------------------------ store checks
    def _track(self, key: Key, raw: Mapping[str, Any] | None) -> None:
        """Have the shared checks ask for the store paths *raw* reads, every refresh."""
        spec: ManagedSecretSpec | None = None
        refresh = None
        if raw is not None:
            with contextlib.suppress(InputError):  # the engine reports a bad spec
                spec = parse_spec(raw.get("spec"))
                refresh = _refresh_seconds(raw.get("spec") or {})
        paths = self.stores.track(key, key[0], spec, refresh)
        if paths:
            self.paths[key] = paths
        else:
            self.paths.pop(key, None)
        self.metrics.store_paths.set(self.stores.checks.paths())

    def _observed(self, path: PathKey, seen: Observation) -> None:
        """Wake the readers of *path* that *seen* concerns: behind, failing, or recovered.

        A reader that is running is looked at again when it ends (a check may have seen a
        version newer than the one it compared with), unless its own value read is what
        was seen.
        """
        self.metrics.store_versions.labels(outcome="ok" if seen.error is None else "error").inc()
        for reader in self.stores.checks.readers(path):
            key = cast(Key, reader)  # readers are tracked by their Key (`_track`)
            raw = self.objects.get(key)
            if raw is None or (key in self.running and seen.read):
                continue  # its own rotation read the value, and records that version
            status = raw.get("status") or {}
            ready = next(
                (x.get("status") for x in status.get("conditions") or []
                 if x.get("type") == "SourcesReady"),
                None,
            )  # fmt: skip
            if seen.error is not None:
                if ready != "False" and not self.failures.get(key):
                    self._look_now(key)  # the engine says so on the resource, then backs off
                continue
            recorded = status.get("sourceVersions") or {}
            behind = bool(recorded) and any(
                str(recorded.get(data_key)) != seen.version
                for data_key in self.paths.get(key, {}).get(path, ())
            )
            if ready == "False":
                self.failures.pop(key, None)  # the store is back: no backoff to sit out
            if behind or ready == "False":
                self._look_now(key)

    # ------------------------------------------------------------------ planning
    def _look_now(self, key: Key) -> None:
        """Look at *key* as soon as it is not running (a store or its SealedSecret moved)."""
        self.checked.pop(key, None)
        self.soon.add(key)
        if key in self.objects:
            self._plan(key)

    def _plan(self, key: Key) -> None:
        raw = self.objects.get(key)
        if raw is None or key in self.running:
            return
        spec_raw = raw.get("spec") or {}
        secret_name = str(spec_raw.get("secretName", ""))
        certs = self.certs.get((key[0], secret_name), {})
        needs_certs = any("x509" in (g or {}) for g in (spec_raw.get("data") or {}).values())
        try:
            at = due_time(raw, certs if needs_certs else {}, dt.datetime.now(dt.UTC))
        except KustosError as exc:
            log.warning("%s/%s: %s", *key, exc)
            at = None
        refresh = _refresh_seconds(spec_raw)
        if refresh is not None and _sealed(spec_raw):
            # A SealedSecret's version is its content: look again every `refresh` (at once
            # after a start). Store paths are not looked at here: the shared checks wake
            # the ManagedSecrets a new version concerns (`_observed`).
            last = self.checked.get(key)
            check_at = (last + dt.timedelta(seconds=refresh)) if last else dt.datetime.now(dt.UTC)
            at = check_at if at is None else min(at, check_at)
        if key in self.soon:
            at = dt.datetime.now(dt.UTC)
        retry_at = self.due.get(key) if self.failures.get(key) else None
        if at is not None and retry_at is not None:
            at = max(at, retry_at)  # a failing object waits for its backoff
        if at is None:
            self.due.pop(key, None)
        else:
            self.due[key] = at
            self.metrics.next_rotation.labels(*key).set(at.timestamp())
        self.wake.set()

    async def _schedule(self, stop: asyncio.Event) -> None:
        gate = asyncio.Semaphore(self.settings.max_parallel)
        active: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                self.metrics.leader.set(1 if self.leading else 0)
                if self.elector is not None and not self.leading:
                    waiter = asyncio.create_task(self.elector.leading.wait())
                    await asyncio.wait({waiter}, timeout=1.0)
                    waiter.cancel()
                    continue
                now = dt.datetime.now(dt.UTC)
                ready = sorted(
                    (at, key)
                    for key, at in self.due.items()
                    if at <= now and key not in self.running
                )
                for _, key in ready:
                    self.running.add(key)
                    self.soon.discard(key)
                    self.due.pop(key, None)
                    task = asyncio.create_task(
                        self._reconcile(key, gate), name=f"reconcile-{key[0]}/{key[1]}"
                    )
                    active.add(task)
                    task.add_done_callback(active.discard)
                upcoming = [at for key, at in self.due.items() if key not in self.running]
                wait = (
                    60.0
                    if not upcoming
                    else max(0.05, min((min(upcoming) - now).total_seconds(), 60.0))
                )
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
        finally:
            for task in active:
                task.cancel()
            for task in list(active):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _reconcile(self, key: Key, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                if not self.leading:
                    return
                # The watched copy: no GET; a stale one gets 409 and is read afresh.
                await self.engine.reconcile(*key, observed=self.objects.get(key))
                self.checked[key] = dt.datetime.now(dt.UTC)
                self.failures.pop(key, None)
                self.metrics.backoff.labels(*key).set(0)
            except KustosError as exc:
                self._backoff(key, str(exc))
            except Exception as exc:  # one object's bug must not stop the others
                log.exception("%s/%s: unexpected failure", *key)
                self._backoff(key, type(exc).__name__)
            finally:
                self.running.discard(key)
                self._plan(key)

    def _backoff(self, key: Key, why: str) -> None:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        delay = min(self.settings.retry_base * 2 ** (count - 1), self.settings.retry_max)
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
        self.due[key] = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        self.metrics.failures.inc()
        self.metrics.backoff.labels(*key).set(delay)
        log.warning("%s/%s: %s; retrying in %.0fs", key[0], key[1], why, delay)

    # ------------------------------------------------------------------ HTTP
    async def _serve_http(self) -> asyncio.Server:
        host, _, port = self.settings.listen.rpartition(":")
        try:
            return await asyncio.start_server(self._http, host or "127.0.0.1", int(port))
        except (OSError, ValueError) as exc:
            raise ServiceError(
                f"cannot listen on {self.settings.listen}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            path = request.decode("latin-1").split(" ")[1] if request.count(b" ") >= 2 else "/"
            if path == "/metrics":
                status, body, ctype = (
                    200,
                    generate_latest(self.metrics.registry),
                    "text/plain; version=0.0.4",
                )
            elif path == "/healthz":
                status, body, ctype = 200, b"ok\n", "text/plain"
            elif path == "/readyz":
                ready = len(self.synced) > 0 or not self.objects
                status, body, ctype = (
                    (200, b"ok\n", "text/plain")
                    if ready
                    else (503, b"watches not synced\n", "text/plain")
                )
            else:
                status, body, ctype = 404, b"not found\n", "text/plain"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()


def _combined(
    given: sops.Identities | None, stored: sops.Identities | None
) -> sops.Identities | None:
    """Identity files given on the command line plus the key store's sealing keys."""
    if given is None:
        return stored
    return given if stored is None else given + stored


def _sealed(spec: Mapping[str, Any]) -> bool:
    """True if a ManagedSecret takes a value from a SealedSecret."""
    return any(isinstance(g, Mapping) and "sealed" in g for g in (spec.get("data") or {}).values())


def _refresh_seconds(spec: Mapping[str, Any]) -> float | None:
    text = spec.get("refresh")
    if not isinstance(text, str):
        return None
    try:
        return max(parse_duration(text).total_seconds(), 10.0)
    except InputError:
        return None


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


class _Postgres:
    """The PostgreSQL applier, imported at its first use (psycopg slows every start)."""

    def __init__(self) -> None:
        self._applier: Any = None

    async def set_password(self, config: PostgresRole, **given: Any) -> None:
        """Set a role's password through the real applier (same keywords)."""
        if self._applier is None:
            from kustos.rotation.postgres import PostgresApplier  # noqa: PLC0415

            self._applier = PostgresApplier()
        await self._applier.set_password(config, **given)


def _database() -> _Postgres:
    return _Postgres()
