"""The rotation engine: one ManagedSecret rotation, step by step, on a cluster (an adapter).

``kustos rotate``, ``kustos rollback`` and the operator all call :class:`Engine`; there is
no second implementation. A rotation follows the persisted state machine of
:mod:`kustos.rotation.versions` (``status.rotation`` is written before each step's effect),
so a process that dies at any point resumes where it stopped: the version Secret is
created once (``create``; a retry finds it), the live Secret and the database get that same
value, and a workload already carrying the restart annotation for the version is not
restarted again.

Consumers roll through a pod-template annotation (``kustos.io/restarted-at`` and
``kustos.io/restart-reason``) and are watched to completion with kubectl's rules
(:func:`kustos.kube.rollout.rollout_progress`); on failure or timeout the previous value is
put back, consumers roll again, and the ``RolledBack`` condition says why.

Values never leave ``Sensitive`` except to be base64-encoded into a Secret body or handed
to the database adapter; no message, event or status field carries one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar, cast

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources import apps_v1, core_v1
from lightkube.types import PatchType

from kustos import conventions as c
from kustos.crypto.certificates import CaMaterial
from kustos.durations import parse_duration
from kustos.errors import (
    InputError,
    InvalidSpecError,
    KubeConflictError,
    KubeError,
    KubeNotFoundError,
    KustosError,
    RolloutError,
    StoreError,
)
from kustos.kube.client import api_errors
from kustos.kube.documents import to_object
from kustos.kube.objects import ObjectRef, Source
from kustos.kube.references import secret_references
from kustos.kube.rollout import rollout_progress
from kustos.rotation.generators import RandomSource, generate
from kustos.rotation.planning import Reason, data_spec_hash, next_rotation
from kustos.rotation.recording import KubeRecorder
from kustos.rotation.spec import (
    KIND,
    PLURAL,
    X509,
    Generator,
    ManagedSecretSpec,
    PostgresRole,
    Push,
    RolloutStrategy,
    VaultValue,
    parse_spec,
)
from kustos.rotation.versions import (
    Outcome,
    RotationState,
    Step,
    VersionRecord,
    content_hash,
    finish,
    mark_failed,
    next_number,
    parse_time,
    rfc3339,
    version_secret_name,
)
from kustos.sensitive import Sensitive

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ManagedSecret: Any = create_namespaced_resource(c.GROUP, "v1alpha1", KIND, PLURAL)
ROLLABLE: Final[dict[str, Any]] = {
    "Deployment": apps_v1.Deployment,
    "StatefulSet": apps_v1.StatefulSet,
    "DaemonSet": apps_v1.DaemonSet,
}
CONDITIONS: Final = (
    "Ready",
    "Rotating",
    "RolloutProgressing",
    "RolloutFailed",
    "RolledBack",
    "SourcesReady",
)
#: Attempts of one reconcile when the object moved on under it (HTTP 409 on a write).
CONFLICT_ATTEMPTS: Final = 3


class Clock(Protocol):
    """Where the engine reads the time (injected: tests move it)."""

    def now(self) -> dt.datetime:
        """The current time, aware, UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        """The current time in UTC."""
        return dt.datetime.now(dt.UTC)


class SourcedValue(Protocol):
    """A value read from a store, with the store's version it came from."""

    @property
    def value(self) -> Sensitive:
        """The value."""
        ...

    @property
    def version(self) -> str:
        """The store's own version of it."""
        ...


class Stores(Protocol):
    """Secrets managers (``kustos.sources.reading.StoreReader`` implements it)."""

    async def version(self, namespace: str, key: str, gen: Generator) -> str:
        """The store's current version of a ``vault``/``awsSecretsManager`` value."""
        ...

    async def read(self, namespace: str, key: str, gen: Generator) -> SourcedValue:
        """The value and its store version."""
        ...

    async def push(self, namespace: str, push: Push, values: Mapping[str, Sensitive]) -> str:
        """Write generated values to a store; its new version."""
        ...


class DatabaseApplier(Protocol):
    """Sets a database role's password (the PostgreSQL adapter implements it)."""

    async def set_password(
        self,
        config: PostgresRole,
        *,
        admin: Mapping[str, Sensitive],
        role: str,
        password: Sensitive,
    ) -> None:
        """Make *role* log in with *password*, creating the role if needed; idempotent."""
        ...


class Observer(Protocol):
    """Told about each rotation's outcome (metrics, events); every method must not raise."""

    def event(
        self, obj: ObjectRef, *, reason: str, message: str, warning: bool = False
    ) -> Awaitable[None]:
        """Record a Kubernetes Event on *obj*."""
        ...

    def finished(self, outcome: str, *, duration: float, rollout_seconds: float | None) -> None:
        """A rotation ended: ``rotated``, ``rolled_back``, ``failed``."""
        ...


class NullObserver:
    """Records nothing (the CLI uses the Kubernetes recorder instead; tests use this)."""

    async def event(
        self, obj: ObjectRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Do nothing."""

    def finished(self, outcome: str, *, duration: float, rollout_seconds: float | None) -> None:
        """Do nothing."""


@dataclass(frozen=True, slots=True)
class Result:
    """What one call of the engine did."""

    namespace: str
    name: str
    version: int | None
    outcome: str  # rotated, rolled_back, rollout_failed, unchanged
    message: str
    restarted: tuple[str, ...] = ()


@dataclass(slots=True)
class _Context:
    namespace: str
    name: str
    uid: str
    spec: ManagedSecretSpec
    status: dict[str, Any]
    records: list[VersionRecord] = field(default_factory=list)
    #: The object's version that status writes require (optimistic concurrency): the one
    #: read, then the one each write returned. A write against a moved object gets 409.
    resource_version: str | None = None
    generation: int = 0

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(c.GROUP, KIND, self.namespace, self.name)

    @property
    def secret_name(self) -> str:
        return self.spec.secret_name


def _source_versions(annotations: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The store versions a version Secret records (``kustos.io/source-versions``)."""
    try:
        doc = json.loads(annotations.get(c.ANNOTATION_SOURCE_VERSIONS) or "{}")
    except ValueError:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in doc.items())) if isinstance(doc, dict) else ()


def _meta(obj: Any) -> ObjectMeta:
    meta = getattr(obj, "metadata", None)
    return meta if isinstance(meta, ObjectMeta) else ObjectMeta()


def _annotations(obj: Any) -> dict[str, str]:
    return dict(_meta(obj).annotations or {})


def _b64(value: Sensitive) -> str:
    return base64.b64encode(value.reveal()).decode()


def _unb64(data: Mapping[str, str] | None) -> dict[str, Sensitive]:
    return {k: Sensitive(base64.b64decode(v)) for k, v in (data or {}).items()}


def condition(
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
    generation: int,
) -> dict[str, Any]:
    """One status condition in the Kubernetes shape."""
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message[:512],
        "lastTransitionTime": rfc3339(now),
        "observedGeneration": generation,
    }


def merge_conditions(
    old: Sequence[Mapping[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping ``lastTransitionTime`` when the status is unchanged."""
    by_type = {str(x.get("type")): dict(x) for x in old}
    for cond in new:
        before = by_type.get(cond["type"])
        if before is not None and before.get("status") == cond["status"]:
            cond = {  # noqa: PLW2901 - keep the original transition time
                **cond,
                "lastTransitionTime": before.get("lastTransitionTime", cond["lastTransitionTime"]),
            }
        by_type[cond["type"]] = cond
    return [by_type[t] for t in CONDITIONS if t in by_type] + [
        v for k, v in by_type.items() if k not in CONDITIONS
    ]


class Engine:
    """Rotates, rolls back and resumes ManagedSecrets through one Kubernetes client."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        database: DatabaseApplier | None = None,
        stores: Stores | None = None,
        observer: Observer | None = None,
        poll: float = 0.5,
    ) -> None:
        import secrets  # noqa: PLC0415 - the default randomness, never a test's

        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.rng: RandomSource = rng or secrets
        self.database = database
        self.stores = stores
        self.observer: Observer = observer or KubeRecorder(client, "kustos")
        self.poll = poll

    # ------------------------------------------------------------------ reading
    async def _load(
        self, namespace: str, name: str, observed: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], _Context]:
        """The object as *observed* (a watch's copy: no request) or read now."""
        if observed is None:
            with api_errors(f"read ManagedSecret {namespace}/{name}"):
                obj = await self.client.get(ManagedSecret, name, namespace=namespace)
            raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        else:
            raw = dict(observed)
        meta = raw.get("metadata") or {}
        status = dict(raw.get("status") or {})
        version = str(meta.get("resourceVersion") or "") or None
        try:
            spec = parse_spec(raw.get("spec"))
        except InvalidSpecError as exc:
            await self._patch_status(
                namespace,
                name,
                {
                    "conditions": merge_conditions(
                        status.get("conditions") or [],
                        [
                            condition(
                                "Ready",
                                False,  # noqa: FBT003 - the condition's status
                                "InvalidSpec",
                                str(exc),
                                now=self.clock.now(),
                                generation=int(meta.get("generation") or 0),
                            )
                        ],
                    ),
                    "observedGeneration": int(meta.get("generation") or 0),
                },
                version=version,
            )
            raise
        ctx = _Context(namespace, name, str(meta.get("uid", "")), spec, status)
        ctx.resource_version = version
        ctx.generation = int(meta.get("generation") or 0)
        ctx.records = [VersionRecord.from_status(v) for v in status.get("versions") or []]
        return raw, ctx

    async def _version_numbers(self, ctx: _Context) -> list[int]:
        selector: dict[str, Any] = {c.LABEL_MANAGED_SECRET: ctx.name}
        numbers = []
        with api_errors(f"list versions of {ctx.namespace}/{ctx.name}"):
            async for secret in self.client.list(
                core_v1.Secret, namespace=ctx.namespace, labels=selector
            ):
                label = (_meta(secret).labels or {}).get(c.LABEL_VERSION, "")
                if label.isdigit():
                    numbers.append(int(label))
        return numbers

    async def _get_secret(self, namespace: str, name: str) -> core_v1.Secret | None:
        try:
            with api_errors(f"read Secret {namespace}/{name}"):
                return await self.client.get(core_v1.Secret, name, namespace=namespace)
        except KubeNotFoundError:
            return None

    # ------------------------------------------------------------------ status
    async def _patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, version: str | None
    ) -> Any:
        """Merge *status* in, only into *version* of the object if given (else 409)."""
        body: dict[str, Any] = {"status": dict(status)}
        if version:
            body["metadata"] = {"resourceVersion": version}
        with api_errors(f"update status of ManagedSecret {namespace}/{name}"):
            return await self.client.patch(
                ManagedSecret.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
            )

    async def _write_status(self, ctx: _Context, patch: Mapping[str, Any]) -> None:
        """Write *patch* into the version of the object *ctx* holds; hold the new one."""
        written = await self._patch_status(
            ctx.namespace, ctx.name, patch, version=ctx.resource_version
        )
        meta = getattr(written, "metadata", None)
        if isinstance(meta, ObjectMeta) and meta.resourceVersion:
            ctx.resource_version = meta.resourceVersion
            ctx.generation = int(meta.generation or ctx.generation)

    async def _save(self, ctx: _Context, state: RotationState | None, **extra: Any) -> None:
        patch: dict[str, Any] = {"rotation": state.to_status() if state else None, **extra}
        await self._write_status(ctx, patch)
        ctx.status.update(patch)

    async def _attempts(
        self,
        namespace: str,
        name: str,
        observed: Mapping[str, Any] | None,
        work: Callable[[dict[str, Any], _Context], Awaitable[_T]],
    ) -> _T:
        """Run *work* on the object; when it moved on under a write (409), read it again.

        Every step is written to ``status.rotation`` before its effect and is idempotent,
        so starting over from the fresh object finishes what the first attempt began.
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            raw, ctx = await self._load(namespace, name, observed)
            try:
                return await work(raw, ctx)
            except KubeConflictError as exc:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                log.debug("%s/%s moved on (%s); reading it again", namespace, name, exc)
                observed = None
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ public API
    async def rotate(
        self, namespace: str, name: str, *, reason: str = Reason.MANUAL.value
    ) -> Result:
        """Rotate now (or finish the rotation already under way), whatever the schedule."""

        async def work(_: dict[str, Any], ctx: _Context) -> Result:
            state = RotationState.from_status(ctx.status.get("rotation"))
            if state is None:
                state = await self._begin(ctx, reason)
            return await self._run(ctx, state)

        return await self._attempts(namespace, name, None, work)

    async def rollback(self, namespace: str, name: str, *, to: int) -> Result:
        """Make a new version holding the value of version *to* and roll it out."""
        _, ctx = await self._load(namespace, name)
        if RotationState.from_status(ctx.status.get("rotation")) is not None:
            raise KubeError(
                f"{namespace}/{name}: a rotation is under way; "
                "wait for it or run `kustos rotate` to finish it"
            )
        if await self._get_secret(namespace, version_secret_name(ctx.secret_name, to)) is None:
            raise KubeNotFoundError(
                f"{namespace}/{name}: version {to} does not exist (pruned?); "
                "`kustos versions` lists them"
            )
        state = await self._begin(ctx, f"{Reason.ROLLBACK.value} to v{to}", source=to)
        try:
            return await self._run(ctx, state)
        except KubeConflictError:
            # Begun: a conflict resumes this rollback from the fresh object, never a second.
            resumed = await self.resume_if_needed(namespace, name)
            if resumed is None:
                raise
            return resumed

    async def resume_if_needed(self, namespace: str, name: str) -> Result | None:
        """Finish a rotation a dead process left half done; ``None`` if there is none."""
        return await self._attempts(namespace, name, None, lambda _, ctx: self._resume(ctx))

    async def _resume(self, ctx: _Context) -> Result | None:
        state = RotationState.from_status(ctx.status.get("rotation"))
        return None if state is None else await self._run(ctx, state)

    async def reconcile(
        self, namespace: str, name: str, *, observed: Mapping[str, Any] | None = None
    ) -> tuple[Result | None, dt.datetime | None]:
        """Resume, or rotate if due; return what was done and when to look again.

        *observed* is the object as the operator's watch holds it: no request reads it
        again. Every status write requires the ``resourceVersion`` it carries, so a stale
        copy cannot overwrite a newer status: the write gets 409, and the object is read
        afresh and looked at again (:meth:`_attempts`).
        """
        return await self._attempts(namespace, name, observed, self._reconcile)

    async def _reconcile(
        self, raw: dict[str, Any], ctx: _Context
    ) -> tuple[Result | None, dt.datetime | None]:
        state = RotationState.from_status(ctx.status.get("rotation"))
        result = None
        if state is not None:
            result = await self._run(ctx, state)
        else:
            due = await self._due(ctx)
            now = self.clock.now()
            changed = await self._sources_changed(ctx) if ctx.spec.refresh else []
            if changed:
                detail = ", ".join(f"{key} (store version {new})" for key, new in changed)
                state = await self._begin(ctx, f"{Reason.SOURCE_CHANGED.value}: {detail}")
                result = await self._run(ctx, state)
            elif due is not None and due.is_due(now):
                state = await self._begin(
                    ctx, due.reason.value + (f": {due.detail}" if due.detail else "")
                )
                result = await self._run(ctx, state)
            else:
                generation = int((raw.get("metadata") or {}).get("generation") or 0)
                if ctx.status.get("observedGeneration") != generation:
                    await self._save(
                        ctx,
                        None,
                        observedGeneration=generation,
                        nextRotation=rfc3339(due.at) if due else None,
                    )
                return None, due.at if due else None
        due = await self._due(ctx)
        return result, due.at if due else None

    async def _sources_changed(self, ctx: _Context) -> list[tuple[str, str]]:
        """Store-sourced keys whose store version moved since the current Kustos version."""
        recorded = ctx.status.get("sourceVersions") or {}
        if self.stores is None or not recorded:
            return []  # no version yet: the planner's Initial rotation reads them
        changed = []
        try:
            for key, gen in ctx.spec.sources.items():
                if isinstance(gen.config, VaultValue) and gen.config.version is not None:
                    continue  # pinned
                version = await self.stores.version(ctx.namespace, key, gen)
                if str(recorded.get(key)) != version:
                    changed.append((key, version))
        except StoreError as exc:
            await self._sources_condition(ctx, ok=False, why=str(exc))
            raise
        await self._sources_condition(ctx, ok=True, why="every store answered")
        return changed

    async def _sources_condition(self, ctx: _Context, *, ok: bool, why: str) -> None:
        before = next(
            (x for x in ctx.status.get("conditions") or [] if x.get("type") == "SourcesReady"), None
        )
        if before is not None and before.get("status") == ("True" if ok else "False") and ok:
            return  # nothing new to say: no write while all is well
        reason = "StoresReachable" if ok else "StoreUnavailable"
        conditions = self._conditions(
            ctx, sources=(ok, reason, why if ok else f"{why}; the last good value stays live")
        )
        with contextlib.suppress(KustosError):
            await self._write_status(ctx, {"conditions": conditions})
            ctx.status["conditions"] = conditions

    async def _due(self, ctx: _Context) -> Any:
        current = next((r for r in ctx.records if r.state is Outcome.CURRENT), None)
        certs = (
            await self._certificates(ctx)
            if any(isinstance(g.config, X509) for g in ctx.spec.data.values())
            else {}
        )
        return next_rotation(
            ctx.spec,
            now=self.clock.now(),
            last_rotation=parse_time(ctx.status.get("lastRotation")),
            current_created=parse_time(current.created) if current else None,
            stored_spec_hash=ctx.status.get("specHash"),
            certificates=certs,
        )

    async def _certificates(self, ctx: _Context) -> dict[str, Any]:
        from kustos.crypto.certificates import certificate_facts  # noqa: PLC0415

        live = await self._get_secret(ctx.namespace, ctx.secret_name)
        data = _unb64(live.data) if live is not None else {}
        out = {}
        for key, gen in ctx.spec.data.items():
            if isinstance(gen.config, X509) and key in data:
                with contextlib.suppress(InputError):  # unreadable: due (planning)
                    out[key] = certificate_facts(data[key].reveal())
        return out

    # ------------------------------------------------------------------ steps
    async def _begin(
        self, ctx: _Context, reason: str, *, source: int | None = None
    ) -> RotationState:
        existing = await self._version_numbers(ctx)
        number = next_number(ctx.records, existing)
        current = ctx.status.get("currentVersion")
        state = RotationState(
            version=number,
            previous=int(current) if current else None,
            step=Step.PENDING,
            reason=reason,
            started=rfc3339(self.clock.now()),
            rollback=source is not None,
            source_version=source,
        )
        await self._save(
            ctx,
            state,
            conditions=self._conditions(
                ctx, rotating=(True, "Rotating", f"making version {number}: {reason}")
            ),
        )
        await self.observer.event(
            ctx.ref, reason="RotationStarted", message=f"version {number}: {reason}"
        )
        return state

    def _conditions(self, ctx: _Context, **changes: tuple[bool, str, str]) -> list[dict[str, Any]]:
        names = {
            "ready": "Ready",
            "rotating": "Rotating",
            "progressing": "RolloutProgressing",
            "failed": "RolloutFailed",
            "rolled_back": "RolledBack",
            "sources": "SourcesReady",
        }
        now = self.clock.now()
        generation = int(ctx.status.get("observedGeneration") or 0)
        new = [condition(names[k], *v, now=now, generation=generation) for k, v in changes.items()]
        return merge_conditions(ctx.status.get("conditions") or [], new)

    async def _run(self, ctx: _Context, state: RotationState) -> Result:
        """Run the steps; on an error, say on the resource why it is blocked, then raise."""
        try:
            return await self._steps(ctx, state)
        except KubeConflictError:
            raise  # not blocked: the object moved on, and the caller reads it again
        except KustosError as exc:
            await self._blocked(ctx, exc)
            raise

    async def _blocked(self, ctx: _Context, exc: KustosError) -> None:
        recorded = RotationState.from_status(ctx.status.get("rotation"))
        step = recorded.step.value if recorded else "start"
        why = f"blocked at step {step}: {exc}"
        current = ctx.status.get("currentVersion")
        if current:
            ready = (True, "Rotated", f"version {current} is live; the next rotation is {why}")
        else:
            ready = (False, "RotationFailed", why)
        retrying = why + "; retrying (the last good value stays live)"
        conditions = self._conditions(ctx, rotating=(True, "Blocked", retrying), ready=ready)
        with contextlib.suppress(KustosError):  # recording must not hide the cause
            await self._write_status(ctx, {"conditions": conditions})
            ctx.status["conditions"] = conditions
        await self.observer.event(ctx.ref, reason="RotationBlocked", message=why, warning=True)

    async def _steps(self, ctx: _Context, state: RotationState) -> Result:
        started = asyncio.get_running_loop().time()
        if state.step is Step.PENDING:
            await self._create_version(ctx, state)
            state = state.at(Step.CREATED)
            await self._save(ctx, state)
        if state.step is Step.CREATED:
            await self._apply(ctx, state.version)
            state = state.at(Step.APPLIED)
            await self._save(ctx, state)
        targets: list[ObjectRef] = []
        if state.step in (Step.APPLIED, Step.ROLLING_OUT):
            targets = await self._consumers(ctx)
            if state.step is Step.APPLIED:
                state = state.at(Step.ROLLING_OUT)
                await self._save(
                    ctx,
                    state,
                    conditions=self._conditions(
                        ctx,
                        progressing=(
                            True,
                            "RolloutStarted",
                            f"{len(targets)} workload(s) rolling to version {state.version}",
                        ),
                    ),
                )
            rollout_started = asyncio.get_running_loop().time()
            failure = await self._roll(ctx, targets, f"{ctx.secret_name}-v{state.version}")
            rollout_seconds = asyncio.get_running_loop().time() - rollout_started
            if failure is None:
                return await self._finish(ctx, state, targets, started, rollout_seconds)
            if not ctx.spec.rollout.rollback_on_failure or state.previous is None:
                return await self._finish(
                    ctx, state, targets, started, rollout_seconds, failure=failure
                )
            state = state.at(Step.ROLLING_BACK, failure=failure)
            await self._save(ctx, state)
        if state.step is Step.ROLLING_BACK:
            return await self._roll_back(ctx, state, started)
        raise KubeError(f"{ctx.namespace}/{ctx.name}: unknown rotation step {state.step}")

    async def _create_version(self, ctx: _Context, state: RotationState) -> None:
        name = version_secret_name(ctx.secret_name, state.version)
        if await self._get_secret(ctx.namespace, name) is not None:
            return  # made before a crash: keep that value, never generate twice
        if state.rollback and state.source_version is not None:
            source = await self._get_secret(
                ctx.namespace, version_secret_name(ctx.secret_name, state.source_version)
            )
            if source is None:
                raise KubeNotFoundError(
                    f"{ctx.namespace}/{ctx.name}: version {state.source_version} is gone"
                )
            values = _unb64(source.data)
            sourced: dict[str, str] = {}
            origin = f"rollback of v{state.source_version}"
            role = _annotations(source).get(c.ANNOTATION_DB_ROLE)
        else:
            values, role, sourced = await self._generate(ctx)
            origin = "generated"
            if sourced:
                origin = "store " + ", ".join(f"{k}@{v}" for k, v in sorted(sourced.items()))
                if len(origin) > 256:
                    origin = origin[:255] + "…"
        annotations = {
            c.ANNOTATION_CONTENT_HASH: content_hash(values),
            c.ANNOTATION_ROTATION_REASON: state.reason[:256],
            c.ANNOTATION_ROTATED_AT: rfc3339(self.clock.now()),
            c.ANNOTATION_ORIGIN: origin,
        }
        if role:
            annotations[c.ANNOTATION_DB_ROLE] = role
        if not state.rollback and sourced:
            annotations[c.ANNOTATION_SOURCE_VERSIONS] = json.dumps(sourced, sort_keys=True)
        secret = core_v1.Secret(
            metadata=ObjectMeta(
                name=name,
                namespace=ctx.namespace,
                labels={
                    c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
                    c.LABEL_MANAGED_SECRET: ctx.name,
                    c.LABEL_VERSION: str(state.version),
                },
                annotations=annotations,
                ownerReferences=[
                    OwnerReference(apiVersion=c.API_VERSION, kind=KIND, name=ctx.name, uid=ctx.uid)
                ],
            ),
            type=ctx.spec.type.value,
            immutable=True,
            data={k: _b64(v) for k, v in values.items()},
        )
        try:
            with api_errors(f"create Secret {ctx.namespace}/{name}"):
                await self.client.create(secret)
        except KubeError as exc:
            if "409" not in str(exc) and "AlreadyExists" not in str(exc):
                raise

    async def _generate(
        self, ctx: _Context
    ) -> tuple[dict[str, Sensitive], str | None, dict[str, str]]:
        sourced: dict[str, Sensitive] = {}
        versions: dict[str, str] = {}
        for key, gen in ctx.spec.sources.items():
            if self.stores is None:
                raise StoreError(
                    f"{ctx.namespace}/{ctx.name}: spec.data.{key} needs a store client"
                )
            got = await self.stores.read(ctx.namespace, key, gen)
            sourced[key], versions[key] = got.value, got.version
        cas: dict[str, CaMaterial] = {}
        users: dict[str, str] = {}
        role: str | None = None
        for key, gen in ctx.spec.data.items():
            config = gen.config
            if isinstance(config, X509) and config.issuer.name not in cas:
                ca = await self._get_secret(ctx.namespace, config.issuer.name)
                if ca is None:
                    raise KubeNotFoundError(
                        f"{ctx.namespace}/{ctx.name}: CA Secret {config.issuer.name} "
                        f"not found (spec.data.{key}.x509.issuer)"
                    )
                data = _unb64(ca.data)
                if "tls.crt" not in data or "tls.key" not in data:
                    raise InvalidSpecError(
                        f"CA Secret {ctx.namespace}/{config.issuer.name} lacks tls.crt or tls.key"
                    )
                cas[config.issuer.name] = CaMaterial(data["tls.crt"].reveal(), data["tls.key"])
            if isinstance(config, PostgresRole):
                role = await self._next_role(ctx, config)
                users[key] = role
        # Key generation (RSA above all) takes CPU seconds: keep the event loop free.
        values = await asyncio.to_thread(
            functools.partial(
                generate,
                ctx.spec,
                rng=self.rng,
                now=self.clock.now(),
                ca=cas,
                postgres_users=users,
                sourced=sourced,
            )
        )
        return values, role, versions

    async def _next_role(self, ctx: _Context, config: PostgresRole) -> str:
        roles = config.roles()
        current = ctx.status.get("currentVersion")
        if len(roles) == 1 or not current:
            return roles[0]
        live = await self._get_secret(
            ctx.namespace, version_secret_name(ctx.secret_name, int(current))
        )
        active = _annotations(live).get(c.ANNOTATION_DB_ROLE) if live else None
        return roles[1] if active == roles[0] else roles[0]

    async def _apply(self, ctx: _Context, number: int) -> None:
        source = await self._get_secret(ctx.namespace, version_secret_name(ctx.secret_name, number))
        if source is None:
            raise KubeNotFoundError(
                f"{ctx.namespace}/{ctx.name}: version {number} vanished before it was applied"
            )
        data = _unb64(source.data)
        if ctx.spec.push is not None:
            # Store first, then the cluster: applications outside Kubernetes read the same.
            if self.stores is None:
                raise StoreError(f"{ctx.namespace}/{ctx.name}: spec.push needs a store client")
            stored = set(ctx.spec.sources)
            generated = {k: v for k, v in data.items() if k not in stored}
            await self.stores.push(ctx.namespace, ctx.spec.push, generated)
        await self._apply_database(ctx, data)
        annotations = {
            c.ANNOTATION_VERSION: str(number),
            c.ANNOTATION_CONTENT_HASH: content_hash(data),
            c.ANNOTATION_ROTATED_AT: rfc3339(self.clock.now()),
        }
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": ctx.secret_name,
                "namespace": ctx.namespace,
                "labels": {
                    c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
                    c.LABEL_MANAGED_SECRET: ctx.name,
                },
                "annotations": annotations,
                "ownerReferences": [
                    {"apiVersion": c.API_VERSION, "kind": KIND, "name": ctx.name, "uid": ctx.uid}
                ],
            },
            "type": ctx.spec.type.value,
            "data": {k: _b64(v) for k, v in data.items()},
        }
        live = await self._get_secret(ctx.namespace, ctx.secret_name)
        if live is not None and (live.type or "Opaque") != ctx.spec.type.value:
            # The API server refuses to change a Secret's type: replace the object.
            with api_errors(f"replace Secret {ctx.namespace}/{ctx.secret_name} (type change)"):
                await self.client.delete(core_v1.Secret, ctx.secret_name, namespace=ctx.namespace)
            live = None
        if live is None:
            with api_errors(f"create Secret {ctx.namespace}/{ctx.secret_name}"):
                await self.client.create(cast(core_v1.Secret, core_v1.Secret.from_dict(body)))
            return
        if live.immutable:
            raise KubeError(
                f"Secret {ctx.namespace}/{ctx.secret_name} is immutable; "
                "Kustos keeps the live Secret mutable (delete it once)"
            )
        body["metadata"]["resourceVersion"] = _meta(live).resourceVersion
        # Keys the spec no longer produces are dropped: replace, not merge.
        with api_errors(f"update Secret {ctx.namespace}/{ctx.secret_name}"):
            await self.client.replace(cast(core_v1.Secret, core_v1.Secret.from_dict(body)))

    async def _apply_database(self, ctx: _Context, data: Mapping[str, Sensitive]) -> None:
        for key, gen in ctx.spec.data.items():
            config = gen.config
            if not isinstance(config, PostgresRole):
                continue
            if self.database is None:
                raise KubeError(
                    f"{ctx.namespace}/{ctx.name}: spec.data.{key} "
                    "needs PostgreSQL access, not available here"
                )
            admin_secret = await self._get_secret(ctx.namespace, config.admin_secret.name)
            if admin_secret is None:
                raise KubeNotFoundError(
                    f"{ctx.namespace}/{ctx.name}: admin Secret {config.admin_secret.name} "
                    f"not found (spec.data.{key}.postgresRole.adminSecret)"
                )
            role = data[config.username_key].reveal_text()
            await self.database.set_password(
                config, admin=_unb64(admin_secret.data), role=role, password=data[key]
            )

    # ------------------------------------------------------------------ rollouts
    async def _consumers(self, ctx: _Context) -> list[ObjectRef]:
        rollout = ctx.spec.rollout
        if rollout.strategy is RolloutStrategy.NONE:
            return []
        if rollout.strategy is RolloutStrategy.TARGETS:
            return [ObjectRef("apps", t.kind, ctx.namespace, t.name) for t in rollout.targets]
        found: set[ObjectRef] = set()
        for kind, resource in ROLLABLE.items():
            with api_errors(f"list {kind}s in {ctx.namespace}"):
                async for obj in self.client.list(resource, namespace=ctx.namespace):
                    body = obj.to_dict()
                    body.setdefault("apiVersion", "apps/v1")
                    body.setdefault("kind", kind)
                    kube_obj = to_object(body, Source("cluster", 0))
                    if any(r.secret == ctx.secret_name for r in secret_references(kube_obj)):
                        found.add(ObjectRef("apps", kind, ctx.namespace, _meta(obj).name or ""))
        return sorted(found)

    async def _roll(self, ctx: _Context, targets: Sequence[ObjectRef], tag: str) -> str | None:
        """Restart and watch every target (bounded concurrency); the first failure, or None."""
        if not targets:
            return None
        timeout = parse_duration(ctx.spec.rollout.timeout).total_seconds()
        gate = asyncio.Semaphore(ctx.spec.rollout.max_concurrent)

        async def one(ref: ObjectRef) -> str | None:
            async with gate:
                try:
                    await self._restart(ref, tag)
                    await self._wait(ref, timeout)
                except (RolloutError, KubeError) as exc:
                    await self.observer.event(
                        ref, reason="RolloutFailed", message=str(exc), warning=True
                    )
                    return str(exc)
                await self.observer.event(ref, reason="RolloutComplete", message=f"rolled to {tag}")
                return None

        failures = [f for f in await asyncio.gather(*(one(t) for t in targets)) if f]
        return failures[0] if failures else None

    async def _restart(self, ref: ObjectRef, tag: str) -> None:
        resource = ROLLABLE[ref.kind]
        try:
            with api_errors(f"read {ref.kind} {ref.namespace}/{ref.name}"):
                obj = await self.client.get(resource, ref.name, namespace=ref.namespace)
        except KubeNotFoundError:
            return  # a target that is gone has nothing to restart
        template = obj.spec.template.metadata
        current = (template.annotations or {}) if template is not None else {}
        if current.get(c.ANNOTATION_RESTART_REASON) == tag:
            return  # restarted for this version before a crash: not twice
        if getattr(obj.spec, "paused", False):
            raise RolloutError(
                f"{ref.kind} {ref.namespace}/{ref.name} is paused; resume it to roll"
            )
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            c.ANNOTATION_RESTARTED_AT: rfc3339(self.clock.now()),
                            c.ANNOTATION_RESTART_REASON: tag,
                        }
                    }
                }
            }
        }
        with api_errors(f"restart {ref.kind} {ref.namespace}/{ref.name}"):
            await self.client.patch(
                resource, ref.name, patch, namespace=ref.namespace, patch_type=PatchType.MERGE
            )
        await self.observer.event(ref, reason="RolloutRestarted", message=f"restarted for {tag}")

    async def _wait(self, ref: ObjectRef, timeout: float) -> None:  # noqa: ASYNC109 - message says how far it got
        resource = ROLLABLE[ref.kind]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        message = "not observed yet"
        while True:
            try:
                with api_errors(f"read {ref.kind} {ref.namespace}/{ref.name}"):
                    obj = await self.client.get(resource, ref.name, namespace=ref.namespace)
            except KubeNotFoundError:
                return
            progress = rollout_progress(ref.kind, obj.to_dict())
            if progress.failed:
                raise RolloutError(f"{ref.kind} {ref.namespace}/{ref.name}: {progress.message}")
            if progress.done:
                return
            message = progress.message
            if loop.time() >= deadline:
                raise RolloutError(
                    f"{ref.kind} {ref.namespace}/{ref.name}: "
                    f"not complete after {timeout:.0f}s: {message}"
                )
            await asyncio.sleep(self.poll)

    # ------------------------------------------------------------------ endings
    async def _record_of(self, ctx: _Context, state: RotationState) -> VersionRecord:
        secret = await self._get_secret(
            ctx.namespace, version_secret_name(ctx.secret_name, state.version)
        )
        annotations = _annotations(secret) if secret is not None else {}
        return VersionRecord(
            number=state.version,
            created=annotations.get(c.ANNOTATION_ROTATED_AT, rfc3339(self.clock.now())),
            content_hash=annotations.get(c.ANNOTATION_CONTENT_HASH, ""),
            reason=state.reason[:256],
            state=Outcome.CURRENT,
            origin=annotations.get(c.ANNOTATION_ORIGIN, ""),
            sources=_source_versions(annotations),
        )

    async def _finish(
        self,
        ctx: _Context,
        state: RotationState,
        targets: Sequence[ObjectRef],
        started: float,
        rollout_seconds: float,
        *,
        failure: str | None = None,
    ) -> Result:
        record = await self._record_of(ctx, state)
        kept, pruned = finish(ctx.records, record, keep=ctx.spec.history.keep)
        ctx.records = kept
        now = self.clock.now()
        # The generation its writes were accepted into: an edit meanwhile made one fail
        # (409) and the rotation resumed from the edited object.
        generation = ctx.generation
        ctx.status["observedGeneration"] = generation
        conditions = {
            "ready": (True, "Rotated", f"version {state.version} is live"),
            "rotating": (False, "Idle", "no rotation under way"),
            "progressing": (
                False,
                "RolloutComplete" if failure is None else "RolloutFailed",
                f"{len(targets)} workload(s) rolled" if failure is None else failure,
            ),
            "failed": (
                failure is not None,
                "RolloutFailed" if failure else "RolloutSucceeded",
                failure or "every rollout completed",
            ),
        }
        ctx.status.update(
            currentVersion=state.version,
            lastRotation=rfc3339(now),
            specHash=data_spec_hash(ctx.spec),
        )
        due = await self._due(ctx)
        await self._save(
            ctx,
            None,
            currentVersion=state.version,
            versions=[r.to_status() for r in kept],
            lastRotation=rfc3339(now),
            nextRotation=rfc3339(due.at) if due else None,
            specHash=data_spec_hash(ctx.spec),
            sourceVersions=dict(record.sources) or None,
            observedGeneration=generation,
            conditions=self._conditions(ctx, **conditions),
        )
        await self._prune(ctx, pruned)
        outcome = "rotated" if failure is None else "rollout_failed"
        await self.observer.event(
            ctx.ref,
            reason="Rotated" if failure is None else "RolloutFailed",
            message=f"version {state.version} is live"
            + (f"; rollout failed: {failure}" if failure else ""),
            warning=failure is not None,
        )
        self.observer.finished(
            outcome,
            duration=asyncio.get_running_loop().time() - started,
            rollout_seconds=rollout_seconds,
        )
        return Result(
            ctx.namespace,
            ctx.name,
            state.version,
            outcome,
            failure or f"version {state.version} is live",
            tuple(str(t) for t in targets),
        )

    async def _roll_back(self, ctx: _Context, state: RotationState, started: float) -> Result:
        assert state.previous is not None  # noqa: S101 - _run only rolls back with a previous
        await self._apply(ctx, state.previous)
        targets = await self._consumers(ctx)
        again = await self._roll(ctx, targets, f"{ctx.secret_name}-v{state.previous}-restored")
        failed_record = await self._record_of(ctx, state)
        records = [r for r in ctx.records if r.number != state.version]
        records = mark_failed(
            sorted([failed_record, *records], key=lambda r: -r.number), state.version, state.failure
        )
        records = [
            r if r.number != state.previous else dataclasses.replace(r, state=Outcome.CURRENT)
            for r in records
        ]
        ctx.records = records[: max(ctx.spec.history.keep, 2) + 1]
        why = f"version {state.version} rolled back to {state.previous}: {state.failure}"
        if again:
            why += f"; the rollback's own rollout also failed: {again}"
        generation = ctx.generation
        await self._save(
            ctx,
            None,
            currentVersion=state.previous,
            versions=[r.to_status() for r in ctx.records],
            observedGeneration=generation,
            conditions=self._conditions(
                ctx,
                ready=(again is None, "RolledBack" if again is None else "RollbackFailed", why),
                rotating=(False, "Idle", "no rotation under way"),
                progressing=(False, "RolloutFailed", state.failure),
                failed=(True, "RolloutFailed", state.failure),
                rolled_back=(True, "RolloutFailed", why),
            ),
        )
        await self.observer.event(ctx.ref, reason="RolledBack", message=why, warning=True)
        self.observer.finished(
            "rolled_back",
            duration=asyncio.get_running_loop().time() - started,
            rollout_seconds=None,
        )
        return Result(
            ctx.namespace,
            ctx.name,
            state.previous,
            "rolled_back",
            why,
            tuple(str(t) for t in targets),
        )

    async def _prune(self, ctx: _Context, numbers: Sequence[int]) -> None:
        for number in numbers:
            name = version_secret_name(ctx.secret_name, number)
            try:
                with api_errors(f"delete Secret {ctx.namespace}/{name}"):
                    await self.client.delete(core_v1.Secret, name, namespace=ctx.namespace)
            except KubeNotFoundError:
                continue


async def list_versions(
    client: AsyncClient, namespace: str, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ManagedSecret's status and its version Secrets' metadata (no values)."""
    with api_errors(f"read ManagedSecret {namespace}/{name}"):
        obj = await client.get(ManagedSecret, name, namespace=namespace)
    raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    out = []
    with api_errors(f"list versions of {namespace}/{name}"):
        async for secret in client.list(
            core_v1.Secret, namespace=namespace, labels={c.LABEL_MANAGED_SECRET: name}
        ):
            labels = _meta(secret).labels or {}
            if c.LABEL_VERSION not in labels:
                continue
            ann = _annotations(secret)
            out.append(
                {
                    "number": int(labels[c.LABEL_VERSION]),
                    "secret": _meta(secret).name,
                    "created": ann.get(c.ANNOTATION_ROTATED_AT, ""),
                    "contentHash": ann.get(c.ANNOTATION_CONTENT_HASH, ""),
                    "reason": ann.get(c.ANNOTATION_ROTATION_REASON, ""),
                    "origin": ann.get(c.ANNOTATION_ORIGIN, ""),
                }
            )
    return dict(raw.get("status") or {}), sorted(out, key=lambda v: -int(v["number"]))
