"""Which Secrets an object uses, and exactly where: the one reference parser.

Purely data: functions over ``KubeObject`` values, no I/O.

Covered: the pod template of Pod, PodTemplate, Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob and ReplicationController, with its containers, init containers and
ephemeral containers (``env[].valueFrom.secretKeyRef``, ``envFrom[].secretRef``), its
volumes (``secret``, ``projected.sources[].secret``, ``csi.nodePublishSecretRef`` and the
in-tree volume types that name a Secret) and ``imagePullSecrets``; and a ServiceAccount's
``imagePullSecrets`` and ``secrets``. Every reference carries the field path it was found
at, in the form ``spec.template.spec.containers[0].env[3]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from kustos.kube.objects import KubeObject, ObjectRef


class Via(StrEnum):
    """How a Secret reaches its consumer."""

    ENV = "env"
    ENV_FROM = "envFrom"
    VOLUME = "volume"
    PROJECTED = "projected"
    CSI = "csi"
    STORAGE = "storage"  # in-tree volume plugins' credentials (cephfs, rbd, iscsi, ...)
    IMAGE_PULL = "imagePullSecrets"
    SA_IMAGE_PULL = "serviceAccount.imagePullSecrets"
    SA_SECRET = "serviceAccount.secrets"  # noqa: S105 - a field name, not a password


#: Where the pod spec sits inside each workload kind.
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
WORKLOAD_KINDS: Final = frozenset(POD_SPEC_PATHS)
CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")
#: In-tree volume sources that carry a ``secretRef: {name}`` (names as in the core API).
_STORAGE_SECRET_REF: Final = ("cephfs", "rbd", "flexVolume", "iscsi", "scaleIO", "storageos")


@dataclass(frozen=True, slots=True)
class SecretReference:
    """One use of one Secret by one object."""

    consumer: ObjectRef
    namespace: str
    secret: str
    via: Via
    #: Field path of the reference inside the consumer's manifest.
    field: str
    #: The container using it (env/envFrom/volume mounts); ``None`` for pod-level uses.
    container: str | None = None
    #: The key read (``secretKeyRef.key``), or ``None`` when the whole Secret is used.
    key: str | None = None
    optional: bool = False
    #: For volume uses: the volume's name.
    volume: str | None = None


@dataclass(frozen=True, slots=True)
class PodSpecView:
    """A pod spec found inside an object, with its field path."""

    spec: Mapping[str, Any]
    path: str


def pod_spec_of(obj: KubeObject) -> PodSpecView | None:
    """Return the pod spec of a workload object, or ``None`` for other kinds."""
    steps = POD_SPEC_PATHS.get(obj.kind)
    if steps is None:
        return None
    node: Any = obj.body
    for step in steps:
        node = node.get(step) if isinstance(node, Mapping) else None
        if node is None:
            return None
    return PodSpecView(node, ".".join(steps)) if isinstance(node, Mapping) else None


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container of a pod spec, with the field path that leads to it."""

    container: Mapping[str, Any]
    name: str
    #: ``spec.template.spec.initContainers[0]``
    path: str


def containers(view: PodSpecView) -> Iterator[ContainerView]:
    """Every init, regular and ephemeral container of a pod spec, in that order."""
    for list_name in CONTAINER_LISTS:
        for ci, container in items(view.spec.get(list_name)):
            yield ContainerView(
                container, _str(container.get("name")), f"{view.path}.{list_name}[{ci}]"
            )


def items(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index, mapping) for each mapping in a list; anything else yields nothing."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def service_account_name(spec: Mapping[str, Any]) -> str:
    """The ServiceAccount a pod spec runs as (``serviceAccountName``, then the old field)."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    return name if isinstance(name, str) and name else "default"


def secret_references(obj: KubeObject) -> tuple[SecretReference, ...]:
    """Every Secret *obj* uses, in document order."""
    if obj.kind == "ServiceAccount" and obj.api_version == "v1":
        return tuple(_service_account_refs(obj))
    view = pod_spec_of(obj)
    if view is None:
        return ()
    return tuple(_pod_spec_refs(obj, view))


def _service_account_refs(obj: KubeObject) -> Iterator[SecretReference]:
    for i, item in items(obj.body.get("imagePullSecrets")):
        name = _str(item.get("name"))
        if name:
            yield SecretReference(
                obj.ref, obj.namespace, name, Via.SA_IMAGE_PULL, f"imagePullSecrets[{i}]"
            )
    for i, item in items(obj.body.get("secrets")):
        name = _str(item.get("name"))
        if name and (item.get("namespace") in (None, "", obj.namespace)):
            yield SecretReference(obj.ref, obj.namespace, name, Via.SA_SECRET, f"secrets[{i}]")


def _pod_spec_refs(obj: KubeObject, view: PodSpecView) -> Iterator[SecretReference]:
    spec, base = view.spec, view.path
    ns, ref = obj.namespace, obj.ref
    for cview in containers(view):
        container, cname, cpath = cview.container, cview.name, cview.path
        for ei, env in items(container.get("env")):
            value_from = env.get("valueFrom")
            key_ref = value_from.get("secretKeyRef") if isinstance(value_from, Mapping) else None
            if isinstance(key_ref, Mapping) and _str(key_ref.get("name")):
                yield SecretReference(
                    ref,
                    ns,
                    _str(key_ref.get("name")),
                    Via.ENV,
                    f"{cpath}.env[{ei}].valueFrom.secretKeyRef",
                    container=cname,
                    key=_str(key_ref.get("key")) or None,
                    optional=key_ref.get("optional") is True,
                )
        for fi, env_from in items(container.get("envFrom")):
            secret_ref = env_from.get("secretRef")
            if isinstance(secret_ref, Mapping) and _str(secret_ref.get("name")):
                yield SecretReference(
                    ref,
                    ns,
                    _str(secret_ref.get("name")),
                    Via.ENV_FROM,
                    f"{cpath}.envFrom[{fi}].secretRef",
                    container=cname,
                    optional=secret_ref.get("optional") is True,
                )
    for vi, volume in items(spec.get("volumes")):
        yield from _volume_refs(ref, ns, volume, f"{base}.volumes[{vi}]")
    for pi, pull in items(spec.get("imagePullSecrets")):
        name = _str(pull.get("name"))
        if name:
            yield SecretReference(ref, ns, name, Via.IMAGE_PULL, f"{base}.imagePullSecrets[{pi}]")


def _volume_refs(
    ref: ObjectRef, ns: str, volume: Mapping[str, Any], vpath: str
) -> Iterator[SecretReference]:
    vname = _str(volume.get("name")) or None
    secret = volume.get("secret")
    if isinstance(secret, Mapping) and _str(secret.get("secretName")):
        yield SecretReference(
            ref,
            ns,
            _str(secret.get("secretName")),
            Via.VOLUME,
            f"{vpath}.secret",
            optional=secret.get("optional") is True,
            volume=vname,
        )
    projected = volume.get("projected")
    if isinstance(projected, Mapping):
        for si, source in items(projected.get("sources")):
            psecret = source.get("secret")
            if isinstance(psecret, Mapping) and _str(psecret.get("name")):
                yield SecretReference(
                    ref,
                    ns,
                    _str(psecret.get("name")),
                    Via.PROJECTED,
                    f"{vpath}.projected.sources[{si}].secret",
                    optional=psecret.get("optional") is True,
                    volume=vname,
                )
    csi = volume.get("csi")
    if isinstance(csi, Mapping):
        node_ref = csi.get("nodePublishSecretRef")
        if isinstance(node_ref, Mapping) and _str(node_ref.get("name")):
            yield SecretReference(
                ref,
                ns,
                _str(node_ref.get("name")),
                Via.CSI,
                f"{vpath}.csi.nodePublishSecretRef",
                volume=vname,
            )
    for plugin in _STORAGE_SECRET_REF:
        plugin_source = volume.get(plugin)
        secret_ref = plugin_source.get("secretRef") if isinstance(plugin_source, Mapping) else None
        if isinstance(secret_ref, Mapping) and _str(secret_ref.get("name")):
            yield SecretReference(
                ref,
                ns,
                _str(secret_ref.get("name")),
                Via.STORAGE,
                f"{vpath}.{plugin}.secretRef",
                volume=vname,
            )
    azure = volume.get("azureFile")
    if isinstance(azure, Mapping) and _str(azure.get("secretName")):
        yield SecretReference(
            ref,
            ns,
            _str(azure.get("secretName")),
            Via.STORAGE,
            f"{vpath}.azureFile.secretName",
            volume=vname,
        )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
