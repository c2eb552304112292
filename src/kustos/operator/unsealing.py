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
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from kustos import conventions as c
from kustos.crypto import sops
from kustos.errors import InputError, KubeError, KubeNotFoundError, KustosError
from kustos.kms.keys import SealingKeyStore
from kustos.kube.client import api_errors
from kustos.kube.objects import ObjectRef
from kustos.operator.watching import watch_forever
from kustos.rotation.recording import KubeRecorder
from kustos.rotation.rotating import ManagedSecret
from kustos.rotation.versions import rfc3339
from kustos.sources.reading import SealedSecret
from kustos.sources.sealing import configmap_ref, published_data, unseal

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
        #: SealedSecrets refused last time, tried again when the identities change.
        self.refused: dict[tuple[str, str], dict[str, Any]] = {}

    async def identities_changed(self, identities: sops.Identities | None) -> None:
        """Use *identities* from now on; check again every SealedSecret that was refused."""
        self.identities = identities
        for raw in list(self.refused.values()):
            await self.reconcile(raw)

    async def run(self, leading: asyncio.Event | None) -> None:
        """Watch every scope until cancelled."""
        await asyncio.gather(*(self._watch(ns, leading) for ns in (self.namespaces or (None,))))

    async def _watch(self, namespace: str | None, leading: asyncio.Event | None) -> None:
        async def seen(kind: str, obj: Any) -> None:
            if kind == "DELETED":
                meta = obj.metadata
                self.refused.pop((str(meta.namespace), str(meta.name)), None)
                return  # the child is garbage-collected through its owner reference
            if leading is not None and not leading.is_set():
                return
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

        if self.identities is None or not len(self.identities):
            self.refused[(namespace, name)] = raw
            await status(False, "NoIdentity", "the operator has no unsealing identity")  # noqa: FBT003
            return
        try:
            unseal(raw, self.identities, source=f"SealedSecret {namespace}/{name}")
        except InputError as exc:
            self.refused[(namespace, name)] = raw
            kept = f"{exc}; the Secret keeps its last good value"
            await status(False, "CannotUnseal", kept)  # noqa: FBT003
            await self.recorder.event(ref, reason="CannotUnseal", message=str(exc), warning=True)
            return
        self.refused.pop((namespace, name), None)
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


class SealingKeys:
    """The cluster's sealing identities, read from the key store, and its published recipient.

    The store (the keyring file or the PKCS#11 token) is read at start and every
    ``every`` seconds; a rotation there (``kustos kms sealing-key rotate``) is picked up
    within that time. The public recipients are published in a ConfigMap, where ``kustos
    seal --fetch-recipient`` reads them: ``recipient`` (the current key), ``previous``
    (older keys still unsealing) and ``keyIds``. No identity ever leaves this object except
    as :class:`sops.Identities`, which has no text form.
    """

    def __init__(
        self,
        store: SealingKeyStore,
        client: AsyncClient,
        *,
        configmap: str,
        every: float,
        component: str,
    ) -> None:
        self.store = store
        self.client = client
        self.configmap = configmap_ref(configmap)
        self.every = every
        self.component = component
        self.identities: sops.Identities | None = None
        self.recipients: tuple[str, ...] = ()
        self.key_ids: tuple[str, ...] = ()
        self.published: tuple[str, ...] | None = None

    async def load(self) -> bool:
        """Read the store; True if the set of keys changed since the last read."""
        held = await asyncio.to_thread(self.store.sealing_identities)
        recipients = tuple(key.recipient for key, _ in held)
        if recipients == self.recipients and self.identities is not None:
            return False
        self.identities = sops.Identities.of([secret for _, secret in held], source="key store")
        self.recipients = recipients
        self.key_ids = tuple(key.key_id for key, _ in held)
        if held:
            log.info(
                "sealing keys: current %s, %d older kept for unsealing",
                self.key_ids[0],
                len(held) - 1,
            )
        else:
            log.warning("the key store holds no sealing key: SealedSecrets cannot be opened")
        return True

    async def publish(self) -> None:
        """Create or update the recipient ConfigMap (public keys only)."""
        if not self.recipients or self.published == self.recipients:
            return
        namespace, name = self.configmap
        data = published_data(self.recipients[0], self.recipients[1:], self.key_ids)
        where = f"ConfigMap {namespace}/{name}"
        try:
            with api_errors(f"read {where}", verb="get", resource="configmaps"):
                await self.client.get(ConfigMap, name, namespace=namespace)
            with api_errors(f"update {where}", verb="patch", resource="configmaps"):
                await self.client.patch(
                    ConfigMap, name, {"data": data},
                    namespace=namespace, patch_type=PatchType.MERGE,
                )  # fmt: skip
        except KubeNotFoundError:
            body = ConfigMap(
                metadata=ObjectMeta(
                    name=name,
                    namespace=namespace,
                    labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE},
                ),
                data=data,
            )
            with api_errors(f"create {where}", verb="create", resource="configmaps"):
                await self.client.create(body)
        self.published = self.recipients
        log.info("published sealing recipient %s in %s", self.recipients[0], where)

    async def run(
        self,
        leading: asyncio.Event | None,
        changed: Callable[[sops.Identities | None], Any],
    ) -> None:
        """Re-read the store every ``every`` seconds; publish while leading; until cancelled."""
        while True:
            try:
                if await self.load():
                    done = changed(self.identities)
                    if asyncio.iscoroutine(done):
                        await done
                if leading is None or leading.is_set():
                    await self.publish()
                else:
                    self.published = None  # publish again once leading
            except KustosError as exc:
                log.warning("sealing keys: %s; retrying in %.0fs", exc, self.every)
            await asyncio.sleep(self.every)
