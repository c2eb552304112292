"""A live cluster → ``ObjectIndex``, through paginated list calls only (an adapter).

Every kind is read with ``LIST`` in pages of ``chunk_size`` (the API server's ``limit`` and
``continue``), never one ``GET`` per object, so loading a cluster costs one request per
page. A refused, failed or unanswered call is the ``KubeError`` that
:func:`kustos.kube.client.api_errors` makes of it. Objects come out exactly as
:func:`kustos.kube.documents.to_object` makes them from files: the same index, the same
Secret values wrapped in ``Sensitive``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from lightkube import Client
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources import apps_v1, batch_v1, core_v1, networking_v1, rbac_authorization_v1

from kustos.conventions import API_VERSION, GROUP
from kustos.errors import KubeNotFoundError
from kustos.kube.client import api_errors
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


def list_cluster(
    client: Client,
    *,
    namespaces: Sequence[str] = (),
    kinds: Iterable[str] = DEFAULT_KINDS,
    chunk_size: int = 500,
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
                for obj in client.list(resource, chunk_size=chunk_size):
                    if obj.metadata is not None and obj.metadata.name in wanted:
                        index.add(_convert(obj, api_version, kind))
            continue
        for scope in scopes:
            where = f" in {scope}" if scope not in (None, "*") else ""
            try:
                with api_errors(f"list {kind}{where}", verb="list", resource=plural):
                    items = (
                        client.list(resource, namespace=scope, chunk_size=chunk_size)
                        if scope is not None
                        else client.list(resource, chunk_size=chunk_size)
                    )
                    for obj in items:
                        index.add(_convert(obj, api_version, kind))
            except KubeNotFoundError:
                if kind not in OPTIONAL_KINDS:
                    raise
                break  # the CRD is not installed
    return index


def _convert(obj: Any, api_version: str, kind: str) -> Any:
    body = obj.to_dict()
    body["apiVersion"] = api_version
    body["kind"] = kind
    return to_object(body, None)
