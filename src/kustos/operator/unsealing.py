"""SealedSecrets into versioned Secrets (an adapter of :mod:`kustos.sources.sealing`).

For each SealedSecret the operator keeps a ManagedSecret of the same name, owned by it,
whose keys are ``sealed`` values of that SealedSecret. The rotation engine does the rest:
a new version when the sealed file changes (its SOPS MAC moves), the live Secret, a watched
rollout, rollback. Before that, every change is opened once here to check it: a file that
does not open (moved or renamed copy, tampered value, wrong MAC, no matching identity) is
refused with ``Ready=False`` on the SealedSecret and a Warning Event, and the Secret keeps
its last good value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from lightkube import AsyncClient
from lightkube.types import PatchType

from kustos import conventions as c
from kustos.crypto import sops
from kustos.errors import InputError, KubeError, KubeNotFoundError
from kustos.kube.client import api_errors
from kustos.kube.objects import ObjectRef
from kustos.operator.watching import watch_forever
from kustos.rotation.recording import KubeRecorder
from kustos.rotation.rotating import ManagedSecret
from kustos.rotation.versions import rfc3339
from kustos.sources.reading import SealedSecret
from kustos.sources.sealing import unseal

log = logging.getLogger(__name__)
#: Stores are asked again at this pace too; a watch event makes the check immediate.
CHILD_REFRESH: Final = "1m"


def child_spec(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ManagedSecret spec that unseals *raw* (key names are readable; values are not)."""
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    keys = sorted({*(spec.get("data") or {}), *(spec.get("stringData") or {})})
    template = spec.get("template") or {}
    name = str(meta.get("name", ""))
    return {
        "secretName": name,
        "type": template.get("type") or "Opaque",
        "data": {key: {"sealed": {"name": name, "key": key}} for key in keys},
        "refresh": CHILD_REFRESH,
    }


class Unsealer:
    """Watches SealedSecrets; keeps their ManagedSecrets; reports files that do not open."""

    def __init__(
        self,
        client: AsyncClient,
        namespaces: tuple[str, ...],
        identities: sops.Identities | None,
        *,
        changed: Callable[[tuple[str, str]], None],
        recorder: KubeRecorder,
    ) -> None:
        self.client = client
        self.namespaces = namespaces
        self.identities = identities
        self.changed = changed  # tells the scheduler to look at a ManagedSecret now
        self.recorder = recorder

    async def run(self, leading: asyncio.Event | None) -> None:
        """Watch every scope until cancelled."""
        await asyncio.gather(*(self._watch(ns, leading) for ns in (self.namespaces or (None,))))

    async def _watch(self, namespace: str | None, leading: asyncio.Event | None) -> None:
        async def seen(kind: str, obj: Any) -> None:
            if kind == "DELETED" or (leading is not None and not leading.is_set()):
                return  # the child is garbage-collected through its owner reference
            await self.reconcile(dict(obj.to_dict()))

        await watch_forever(
            self.client, SealedSecret, seen, namespace=namespace, what="SealedSecret", optional=True
        )

    async def reconcile(self, raw: dict[str, Any]) -> None:
        """Check that *raw* opens, then make its ManagedSecret match it."""
        meta = raw.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        ref = ObjectRef(c.GROUP, "SealedSecret", namespace, name)
        generation = int(meta.get("generation") or 0)

        async def status(ok: bool, reason: str, message: str) -> None:
            await self._status(namespace, name, (ok, reason, message), generation)

        if self.identities is None:
            await status(False, "NoIdentity", "the operator has no unsealing identity")  # noqa: FBT003
            return
        try:
            unseal(raw, self.identities, source=f"SealedSecret {namespace}/{name}")
        except InputError as exc:
            kept = f"{exc}; the Secret keeps its last good value"
            await status(False, "CannotUnseal", kept)  # noqa: FBT003
            await self.recorder.event(ref, reason="CannotUnseal", message=str(exc), warning=True)
            return
        try:
            await self._ensure_child(namespace, name, raw)
        except KubeError as exc:
            await status(False, "ChildFailed", str(exc))  # noqa: FBT003
            return
        done = f"opens; its values reach Secret {name} through ManagedSecret {name}"
        await status(True, "Unsealed", done)  # noqa: FBT003
        self.changed((namespace, name))

    async def _ensure_child(self, namespace: str, name: str, raw: Mapping[str, Any]) -> None:
        meta = raw.get("metadata") or {}
        owner = {
            "apiVersion": c.API_VERSION,
            "kind": "SealedSecret",
            "name": name,
            "uid": meta.get("uid"),
            "controller": True,
        }
        spec = child_spec(raw)
        where = f"ManagedSecret {namespace}/{name}"
        try:
            with api_errors(f"read {where}", verb="get", resource="managedsecrets"):
                existing = await self.client.get(ManagedSecret, name, namespace=namespace)
        except KubeNotFoundError:
            body = ManagedSecret(
                apiVersion=c.API_VERSION,
                kind="ManagedSecret",
                metadata={
                    "name": name,
                    "namespace": namespace,
                    "ownerReferences": [owner],
                    "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE},
                },
                spec=spec,
            )
            with api_errors(f"create {where}", verb="create", resource="managedsecrets"):
                await self.client.create(body)
            return
        current = existing.to_dict() if hasattr(existing, "to_dict") else dict(existing)
        owners = (current.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == meta.get("uid") for o in owners):
            raise KubeError(f"{where} exists and is not this SealedSecret's; rename one of them")
        if current.get("spec") != spec:
            with api_errors(f"update {where}", verb="patch", resource="managedsecrets"):
                await self.client.patch(
                    ManagedSecret, name, {"spec": spec},
                    namespace=namespace, patch_type=PatchType.MERGE,
                )  # fmt: skip

    async def _status(
        self, namespace: str, name: str, result: tuple[bool, str, str], generation: int
    ) -> None:
        ok, reason, message = result
        condition = {
            "type": "Ready",
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message[:512],
            "lastTransitionTime": rfc3339(dt.datetime.now(dt.UTC)),
            "observedGeneration": generation,
        }
        body = {"status": {"conditions": [condition], "observedGeneration": generation}}
        what = f"update status of SealedSecret {namespace}/{name}"
        try:
            with api_errors(what, verb="patch", resource="sealedsecrets/status"):
                await self.client.patch(
                    SealedSecret.Status, name, body,
                    namespace=namespace, patch_type=PatchType.MERGE,
                )  # fmt: skip
        except KubeError as exc:
            log.warning("SealedSecret %s/%s: status not written: %s", namespace, name, exc)
