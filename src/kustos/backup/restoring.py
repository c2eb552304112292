"""Carry out a restore plan on a live cluster (an adapter).

The cluster is read once, through the same paginated listing a backup uses, to build the
plan (:mod:`kustos.backup.planning`); then the plan is carried out in three phases:
namespaces (waiting for one being deleted to be gone), ManagedSecrets (created, then
their status put back through the status subresource, so the operator sees the history
it had and does not start a rotation), and Secrets. A Secret labelled as a ManagedSecret's
own gets an owner reference to that ManagedSecret's new uid: uids do not survive a
restore, and a stale one would let the garbage collector delete the restored Secret.

Writes go through an asyncio client, a few at a time, so a restore is bounded by the API
server rather than by one round trip after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from lightkube import AsyncClient, Client
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

from kustos.backup.format import clean
from kustos.backup.planning import Action, Live, Plan, Verb
from kustos.conventions import API_VERSION, LABEL_MANAGED_SECRET
from kustos.errors import KubeError, KubeNotFoundError
from kustos.kube.client import api_errors
from kustos.kube.index import ObjectIndex
from kustos.kube.listing import RESOURCES, list_cluster

Progress = Callable[[str], None]
ManagedSecret: Any = RESOURCES["ManagedSecret"][1]
#: Writes in flight at once: enough to hide round trips, few enough for a small API server.
CONCURRENCY: Final = 16
#: Past this many target namespaces, one cluster-wide list is cheaper than one per namespace.
PER_NAMESPACE_LISTS: Final = 50
#: How long a restore waits for a namespace being deleted to be gone.
NAMESPACE_GONE_TIMEOUT: Final = 300.0


@dataclass(frozen=True, slots=True)
class LiveState:
    """The cluster's objects the plan is made against, and the ManagedSecrets' uids."""

    objects: Mapping[tuple[str, str, str], Live]
    versions: Mapping[tuple[str, str], tuple[str, str]]  # ManagedSecret -> (uid, resourceVersion)


def read_live(client: Client, namespaces: Iterable[str]) -> LiveState:
    """What the cluster holds in *namespaces* (cleaned as a backup cleans it)."""
    wanted = sorted(set(namespaces))
    scope = wanted if len(wanted) <= PER_NAMESPACE_LISTS else []
    index = ObjectIndex()
    kinds = ("Namespace", "ManagedSecret", "Secret")
    list_cluster(client, namespaces=scope or wanted, kinds=kinds[:1], index=index)
    list_cluster(client, namespaces=scope, kinds=kinds[1:], index=index)
    objects: dict[tuple[str, str, str], Live] = {}
    versions: dict[tuple[str, str], tuple[str, str]] = {}
    for obj in index:
        terminating = obj.kind == "Namespace" and (
            (obj.body.get("status") or {}).get("phase") == "Terminating"
            or bool(obj.metadata.get("deletionTimestamp"))
        )
        objects[(obj.kind, obj.namespace, obj.name)] = Live(clean(obj.kind, obj.body), terminating)
        if obj.kind == "ManagedSecret":
            meta = obj.metadata
            versions[(obj.namespace, obj.name)] = (
                str(meta.get("uid") or ""),
                str(meta.get("resourceVersion") or ""),
            )
    return LiveState(objects, versions)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one action: done, or the one-line error that stopped it."""

    action: Action
    error: KubeError | None = None


class Restorer:
    """Carries out one plan with an asyncio client."""

    def __init__(self, client: AsyncClient, live: LiveState, progress: Progress) -> None:
        self.client = client
        self.owners = {key: uid for key, (uid, _) in live.versions.items()}
        self.resource_versions = {key: rv for key, (_, rv) in live.versions.items()}
        self.progress = progress
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._done = 0

    async def run(self, plan: Plan) -> list[Outcome]:
        """Carry out every action that writes, phase by phase; stop after a failed phase."""
        outcomes: list[Outcome] = []
        phases = (
            ("Namespace", self._namespace),
            ("ManagedSecret", self._managed_secret),
            ("Secret", self._secret),
        )
        total = sum(1 for a in plan.actions if a.verb.writes)
        for kind, step in phases:
            actions = [a for a in plan.actions if a.kind == kind and a.verb.writes]
            results = await asyncio.gather(*(self._one(step, a, total) for a in actions))
            outcomes.extend(results)
            if any(o.error is not None for o in results):
                break
        return outcomes

    async def _one(self, step: Callable[[Action], Any], action: Action, total: int) -> Outcome:
        async with self._gate:
            try:
                await step(action)
            except KubeError as exc:
                return Outcome(action, exc)
        self._done += 1
        if self._done % 500 == 0 or self._done == total:
            self.progress(f"restored {self._done}/{total}")
        return Outcome(action)

    # ----------------------------------------------------------------- phases
    async def _namespace(self, action: Action) -> None:
        name = action.name
        deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT
        while True:
            try:
                with api_errors(f"read Namespace {name}", verb="get", resource="namespaces"):
                    await self.client.get(Namespace, name)
            except KubeNotFoundError:
                break
            if time.monotonic() > deadline:
                raise KubeError(f"Namespace {name} is still being deleted; restore again later")
            await asyncio.sleep(0.5)
        with api_errors(f"create Namespace {name}", verb="create", resource="namespaces"):
            await self.client.create(cast(Namespace, Namespace.from_dict(dict(action.body))))

    async def _managed_secret(self, action: Action) -> None:
        body = dict(action.body)
        status = body.pop("status", None)
        key = (action.namespace, action.name)
        what = f"{action.verb.value} ManagedSecret {action.namespace}/{action.name}"
        try:
            with api_errors(what, resource="managedsecrets"):
                if action.verb is Verb.CREATE:
                    made = await self.client.create(ManagedSecret.from_dict(body))
                else:
                    meta = {**body["metadata"], "resourceVersion": self.resource_versions.get(key)}
                    made = await self.client.replace(
                        ManagedSecret.from_dict({**body, "metadata": meta})
                    )
        except KubeNotFoundError as exc:
            if action.verb is not Verb.CREATE:
                raise
            raise KubeNotFoundError(
                f"{what}: the cluster does not serve ManagedSecrets; install "
                "deploy/rotation/crd-managedsecret.yaml first (or restore with --only)"
            ) from exc
        self.owners[key] = made.metadata.uid if made.metadata is not None else ""
        if status:
            with api_errors(f"restore status of ManagedSecret {action.namespace}/{action.name}"):
                await self.client.patch(
                    ManagedSecret.Status,
                    action.name,
                    {"status": status},
                    namespace=action.namespace,
                    patch_type=PatchType.MERGE,
                )

    def _with_owner(self, action: Action) -> dict[str, Any]:
        body = dict(action.body)
        owner = (body["metadata"].get("labels") or {}).get(LABEL_MANAGED_SECRET)
        uid = self.owners.get((action.namespace, owner)) if owner else None
        if uid:
            body["metadata"] = {
                **body["metadata"],
                "ownerReferences": [
                    {"apiVersion": API_VERSION, "kind": "ManagedSecret", "name": owner, "uid": uid}
                ],
            }
        return body

    async def _secret(self, action: Action) -> None:
        secret = cast(Secret, Secret.from_dict(self._with_owner(action)))
        ns, name = action.namespace, action.name
        what = f"{action.verb.value} Secret {ns}/{name}"
        with api_errors(what, resource="secrets"):
            if action.verb is Verb.OVERWRITE:
                await self.client.replace(secret)
                return
            if action.verb is Verb.REPLACE:
                # An immutable Secret (or one changing type) cannot be updated: replace it.
                with (
                    contextlib.suppress(KubeNotFoundError),
                    api_errors(f"delete Secret {ns}/{name}", resource="secrets"),
                ):
                    await self.client.delete(Secret, name, namespace=ns)
            await self.client.create(secret)


def restore(
    make_client: Callable[[], AsyncClient], plan: Plan, live: LiveState, progress: Progress
) -> list[Outcome]:
    """Carry out *plan*; the outcome of every action that writes, in plan order."""

    async def main() -> list[Outcome]:
        client = make_client()
        try:
            return await Restorer(client, live, progress).run(plan)
        finally:
            await client.close()

    return asyncio.run(main())


def first_error(outcomes: Sequence[Outcome]) -> KubeError | None:
    """The first failure, if any."""
    return next((o.error for o in outcomes if o.error is not None), None)
