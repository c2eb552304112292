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

from collections.abc import Iterable, Iterator, Sequence
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
PAGE_SIZE: Final = 1000


def list_cluster(
    client: Client,
    *,
    namespaces: Sequence[str] = (),
    kinds: Iterable[str] = DEFAULT_KINDS,
    chunk_size: int = PAGE_SIZE,
    index: ObjectIndex | None = None,
) -> ObjectIndex:
    """Load the cluster's objects of *kinds* (namespaced ones only in *namespaces* if given)."""
    index = index if index is not None else ObjectIndex()
    for kind in kinds:
        api_version, resource = RESOURCES[kind]
        plural = resource._api_info.plural
        namespaced = issubclass(resource, NamespacedResource)
        scopes: Sequence[str | None] = (
            namespaces if namespaced and namespaces else ["*" if namespaced else None]
        )
        if kind == "Namespace" and namespaces:
            # Only the namespaces asked for, but through the same paginated list call.
            wanted = set(namespaces)
            with api_errors(f"list {kind}", verb="list", resource=plural):
                for item in _items(client, resource, None, chunk_size):
                    if (item.get("metadata") or {}).get("name") in wanted:
                        index.add(_convert(item, api_version, kind))
            continue
        for scope in scopes:
            where = f" in {scope}" if scope not in (None, "*") else ""
            try:
                with api_errors(f"list {kind}{where}", verb="list", resource=plural):
                    for item in _items(client, resource, scope, chunk_size):
                        index.add(_convert(item, api_version, kind))
            except KubeNotFoundError:
                if kind not in OPTIONAL_KINDS:
                    raise
                break  # the CRD is not installed
    return index


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
    return to_object(item, None)
