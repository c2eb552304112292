"""Reloads for workloads that opt in (an adapter of :mod:`kustos.rotation.reloading`).

Lists the Secrets in scope once (fingerprints only: values are hashed and dropped), then
watches Secrets and Deployments/StatefulSets/DaemonSets. A Secret change marks the
workloads that watch it; each marked workload is judged ``window`` seconds after its first
mark, so several changes close together give one restart. The judgement and the patch are
pure functions of the rotation package; this module only moves data and writes patches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
from collections import defaultdict
from typing import Any

from lightkube import AsyncClient
from lightkube.resources import core_v1
from lightkube.types import PatchType

from kustos import conventions as c
from kustos.errors import KubeError
from kustos.kube.client import api_errors
from kustos.kube.documents import to_object
from kustos.kube.objects import ObjectRef, Source
from kustos.operator.watching import watch_forever
from kustos.rotation.recording import KubeRecorder
from kustos.rotation.reloading import decide, restart_patch, watched_secrets
from kustos.rotation.rotating import ROLLABLE
from kustos.rotation.versions import content_hash, rfc3339
from kustos.sensitive import Sensitive

log = logging.getLogger(__name__)
SecretKey = tuple[str, str]
WorkloadKey = tuple[str, str, str]  # kind, namespace, name


def fingerprint(data: dict[str, str] | None) -> str:
    """The content fingerprint of a Secret's base64 ``data``."""
    return content_hash({k: Sensitive(base64.b64decode(v)) for k, v in (data or {}).items()})


class Reloader:
    """Rolls opted-in workloads when a Secret they use changes."""

    def __init__(
        self,
        client: AsyncClient,
        namespaces: tuple[str, ...],
        *,
        window: float = 5.0,
        recorder: KubeRecorder | None = None,
    ) -> None:
        self.client = client
        self.namespaces = namespaces
        self.window = window
        self.recorder = recorder
        self.hashes: dict[SecretKey, str] = {}
        self.workloads: dict[WorkloadKey, tuple[frozenset[str], str | None]] = {}
        self.users: dict[SecretKey, set[WorkloadKey]] = defaultdict(set)
        self.marked: dict[WorkloadKey, float] = {}
        self.restarts = 0
        self.wake = asyncio.Event()
        self.ready = asyncio.Event()

    def _scopes(self) -> list[str | None]:
        return list(self.namespaces) or [None]

    async def run(self, stop: asyncio.Event, leading: asyncio.Event | None = None) -> None:
        """Load fingerprints, then watch and judge until *stop*."""
        delay = 1.0
        while not self.ready.is_set():
            try:
                await self._load()
            except KubeError as exc:
                log.warning("reload: %s; retrying in %.0fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                delay = min(delay * 2, 60)
        tasks = [asyncio.create_task(self._watch_secrets(ns)) for ns in self._scopes()]
        tasks += [
            asyncio.create_task(self._watch_workloads(kind, ns))
            for kind in ROLLABLE
            for ns in self._scopes()
        ]
        tasks.append(asyncio.create_task(self._judge(stop, leading)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _load(self) -> None:
        for ns in self._scopes():
            with api_errors(f"list Secrets in {ns or 'all namespaces'}"):
                async for secret in self.client.list(
                    core_v1.Secret, namespace=ns or "*", chunk_size=500
                ):
                    self._secret_seen("ADDED", secret)
        self.ready.set()

    def _secret_seen(self, kind: str, secret: Any) -> None:
        meta = secret.metadata
        if meta is None:
            return
        key = (str(meta.namespace), str(meta.name))
        if c.LABEL_MANAGED_SECRET in (meta.labels or {}):
            return  # the rotation engine rolls the consumers of managed Secrets
        if kind == "DELETED":
            self.hashes.pop(key, None)
            return
        new = fingerprint(secret.data)
        old = self.hashes.get(key)
        self.hashes[key] = new
        if old is not None and old != new:
            loop = asyncio.get_running_loop()
            for workload in self.users.get(key, ()):
                self.marked.setdefault(workload, loop.time() + self.window)
            self.wake.set()

    async def _watch_secrets(self, ns: str | None) -> None:
        await watch_forever(
            self.client, core_v1.Secret, self._secret_seen, namespace=ns, what="Secret"
        )

    async def _watch_workloads(self, kind: str, ns: str | None) -> None:
        def seen(event: str, obj: Any) -> None:
            self._workload_seen(kind, event, obj.to_dict())

        await watch_forever(self.client, ROLLABLE[kind], seen, namespace=ns, what=kind)

    def _workload_seen(self, kind: str, event: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        before = self.workloads.pop(key, None)
        if before is not None:
            for name in before[0]:
                self.users[(key[1], name)].discard(key)
        if event == "DELETED":
            self.marked.pop(key, None)
            return
        body.setdefault("apiVersion", "apps/v1")
        body.setdefault("kind", kind)
        watched = watched_secrets(to_object(body, Source("cluster", 0)))
        if watched is None:
            return
        recorded = (meta.get("annotations") or {}).get(c.ANNOTATION_SECRET_HASHES)
        self.workloads[key] = (watched, recorded)
        for name in watched:
            self.users[(key[1], name)].add(key)
        if recorded is None or before is None or before[0] != watched:
            # First sight (or the opt-in changed): judge now; it records, never restarts.
            self.marked.setdefault(key, asyncio.get_running_loop().time())
            self.wake.set()

    async def _judge(self, stop: asyncio.Event, leading: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            now = loop.time()
            due = [k for k, at in self.marked.items() if at <= now]
            if due and (leading is None or leading.is_set()):
                for key in due:
                    self.marked.pop(key, None)
                    await self._apply(key)
            pending = list(self.marked.values())
            timeout = 30.0 if not pending else max(0.05, min(pending) - now)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _apply(self, key: WorkloadKey) -> None:
        entry = self.workloads.get(key)
        if entry is None:
            return
        kind, ns, name = key
        watched, recorded = entry
        current = {n: self.hashes.get((ns, n)) for n in watched}
        decision = decide(recorded, watched, current)
        if decision.record is None:
            return
        reason = "reload: " + ",".join(decision.changed) if decision.changed else ""
        patch = restart_patch(
            decision.record, reason, rfc3339(dt.datetime.now(dt.UTC)), restart=decision.restart
        )
        try:
            with api_errors(f"patch {kind} {ns}/{name}"):
                await self.client.patch(
                    ROLLABLE[kind], name, patch, namespace=ns, patch_type=PatchType.MERGE
                )
        except KubeError as exc:
            log.warning("reload of %s %s/%s: %s", kind, ns, name, exc)
            self.marked.setdefault(key, asyncio.get_running_loop().time() + self.window)
            return
        self.workloads[key] = (watched, decision.record)
        if decision.restart:
            self.restarts += 1
            log.info(
                "restarted %s %s/%s: Secret %s changed", kind, ns, name, ", ".join(decision.changed)
            )
            if self.recorder is not None:
                await self.recorder.event(
                    ObjectRef("apps", kind, ns, name),
                    reason="Reloaded",
                    message=f"Secret {', '.join(decision.changed)} changed",
                )
