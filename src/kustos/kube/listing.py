"""A live cluster → ``ObjectIndex``, through paginated list calls only (an adapter).

Every kind is read with ``LIST`` in pages of ``chunk_size`` (the API server's ``limit`` and
``continue``), never one ``GET`` per object, so loading a cluster costs one request per
page. A refused, failed or unanswered call is the ``KubeError`` that
:func:`kustos.kube.client.api_errors` makes of it. Objects come out exactly as
:func:`kustos.kube.documents.to_object` makes them from files: the same index, the same
Secret values wrapped in ``Sensitive``.

Each page is decoded once, by orjson, into the plain mappings the index keeps: lightkube
builds the requests (URL, authentication, TLS) but its typed models are not made, since a
model per object and its ``to_dict`` cost more than the API server takes to answer. The
default page size, :data:`PAGE_SIZE`, was chosen by measurement (``bench/scan_cluster.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import orjson
from lightkube import Client
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources import apps_v1, batch_v1, core_v1, networking_v1, rbac_authorization_v1

from kustos.conventions import API_VERSION, GROUP
from kustos.errors import KubeNotFoundError
from kustos.kube.client import api_errors, raise_for_status
from kustos.kube.documents import to_object
from kustos.kube.index import ObjectIndex

#: kind → (apiVersion, lightkube resource) for everything a secrets review needs.
RESOURCES: Final[dict[str, tuple[str, Any]]] = {
    "Namespace": ("v1", core_v1.Namespace),
    "Secret": ("v1", core_v1.Secret),
    "ConfigMap": ("v1", core_v1.ConfigMap),
    "ServiceAccount": ("v1", core_v1.ServiceAccount),
    "Pod": ("v1", core_v1.Pod),
    "ReplicationController": ("v1", core_v1.ReplicationController),
    "Deployment": ("apps/v1", apps_v1.Deployment),
    "ReplicaSet": ("apps/v1", apps_v1.ReplicaSet),
    "StatefulSet": ("apps/v1", apps_v1.StatefulSet),
    "DaemonSet": ("apps/v1", apps_v1.DaemonSet),
    "Job": ("batch/v1", batch_v1.Job),
    "CronJob": ("batch/v1", batch_v1.CronJob),
    "Role": ("rbac.authorization.k8s.io/v1", rbac_authorization_v1.Role),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", rbac_authorization_v1.ClusterRole),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", rbac_authorization_v1.RoleBinding),
    "ClusterRoleBinding": (
        "rbac.authorization.k8s.io/v1",
        rbac_authorization_v1.ClusterRoleBinding,
    ),
    "NetworkPolicy": ("networking.k8s.io/v1", networking_v1.NetworkPolicy),
    "ManagedSecret": (
        API_VERSION,
        create_namespaced_resource(GROUP, "v1alpha1", "ManagedSecret", "managedsecrets"),
    ),
}
DEFAULT_KINDS: Final = tuple(RESOURCES)
#: Kinds of custom resources: a cluster without their CRD simply has none (404 on list).
OPTIONAL_KINDS: Final = frozenset({"ManagedSecret"})


#: Objects per LIST page: fewer pages cost more round trips, larger ones more memory at once
#: and longer API server latency; see ``bench/README.md`` ("scan --cluster").
PAGE_SIZE: Final = 2000


#: Lists in flight at once: the API server answers one while this process converts another.
FETCHERS: Final = 4


@dataclass(frozen=True, slots=True)
class _Call:
    """One paginated LIST: a kind in one scope (a namespace, ``*`` for all, ``None``)."""

    kind: str
    api_version: str
    resource: Any
    scope: str | None
    #: For Namespaces asked by name: the names to keep.
    only: frozenset[str] | None = None
    #: For a namespaced kind listed in every namespace: the namespaces whose items to keep.
    within: frozenset[str] | None = None

    @property
    def what(self) -> str:
        where = f" in {self.scope}" if self.scope not in (None, "*") else ""
        return f"list {self.kind}{where}"

    def keeps(self, item: dict[str, Any]) -> bool:
        """The item is one asked for (the API server cannot filter by a set of names)."""
        if self.only is not None:
            return (item.get("metadata") or {}).get("name") in self.only
        if self.within is not None:
            return (item.get("metadata") or {}).get("namespace") in self.within
        return True


def _calls(
    kinds: Iterable[str], namespaces: Sequence[str], within: frozenset[str] | None
) -> list[_Call]:
    calls: list[_Call] = []
    for kind in kinds:
        api_version, resource = RESOURCES[kind]
        namespaced = issubclass(resource, NamespacedResource)
        if kind == "Namespace" and (namespaces or within is not None):
            # Only the namespaces asked for, but through the same paginated list call.
            names = frozenset(namespaces) if within is None else within
            calls.append(_Call(kind, api_version, resource, None, only=names))
            continue
        if namespaced and within is not None:
            calls.append(_Call(kind, api_version, resource, "*", within=within))
            continue
        scopes: Sequence[str | None] = (
            namespaces if namespaced and namespaces else ["*" if namespaced else None]
        )
        calls += [_Call(kind, api_version, resource, scope) for scope in scopes]
    return calls


def list_cluster(
    client: Client,
    *,
    namespaces: Sequence[str] = (),
    kinds: Iterable[str] = DEFAULT_KINDS,
    chunk_size: int = PAGE_SIZE,
    index: ObjectIndex | None = None,
    within: Collection[str] | None = None,
) -> ObjectIndex:
    """Load the cluster's objects of *kinds* (namespaced ones only in *namespaces* if given).

    *within* asks for the same objects as *namespaces* in fewer calls: each namespaced
    kind is listed once in every namespace and only the items of those namespaces are
    kept (converted and indexed), which beats one list call per namespace when they are
    many. Give one or the other.

    Up to :data:`FETCHERS` lists are fetched at once by threads; objects are added in the
    order of *kinds* and scopes, so the index is the same as listing one after the other.
    """
    if within is not None and namespaces:
        raise ValueError("list_cluster: namespaces or within, not both")
    index = index if index is not None else ObjectIndex()
    calls = _calls(kinds, namespaces, None if within is None else frozenset(within))
    missing: set[str] = set()  # optional kinds whose CRD is not installed
    pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix="kustos-list")
    try:
        pending = [pool.submit(_fetch, client, call, chunk_size) for call in calls]
        for call, future in zip(calls, pending, strict=True):
            if call.kind in missing:
                continue
            plural = call.resource._api_info.plural
            try:
                with api_errors(call.what, verb="list", resource=plural):
                    items = future.result()
            except KubeNotFoundError:
                if call.kind not in OPTIONAL_KINDS:
                    raise
                missing.add(call.kind)
                continue
            for item in items:
                index.add(_convert(item, call.api_version, call.kind))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return index


def _fetch(client: Client, call: _Call, chunk_size: int) -> list[dict[str, Any]]:
    """Every item of one list that *call* keeps (in a fetching thread, page by page)."""
    return [i for i in _items(client, call.resource, call.scope, chunk_size) if call.keeps(i)]


def _items(
    client: Client, resource: Any, namespace: str | None, chunk_size: int
) -> Iterator[dict[str, Any]]:
    """Every item of a paginated LIST, each page's JSON decoded once."""
    # lightkube's request builder (URL, authentication, TLS); its typed decoding is skipped.
    generic = client._client
    request = generic.prepare_request(
        "list", resource, namespace=namespace, params={"limit": chunk_size}
    )
    while True:
        response = generic.send(generic.build_adapter_request(request))
        raise_for_status(response)  # translated by api_errors
        page = orjson.loads(response.content)
        yield from page.get("items") or ()
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        request.params["continue"] = token


def _convert(item: dict[str, Any], api_version: str, kind: str) -> Any:
    # List items carry no apiVersion and kind of their own.
    item["apiVersion"] = api_version
    item["kind"] = kind
    metadata = item.get("metadata")
    if isinstance(metadata, dict):
        # The API server's bookkeeping of who set which field: no check reads it, and it is
        # a large part of every object (memory at 100k objects), absent from manifests.
        metadata.pop("managedFields", None)
    return to_object(item, None)
