"""Which Secrets an object uses, and exactly where: the one reference parser.

Purely data: functions over ``KubeObject`` values, no I/O.

Covered: the pod template of Pod, PodTemplate, Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob and ReplicationController, with its containers, init containers and
ephemeral containers (``env[].valueFrom.secretKeyRef``, ``envFrom[].secretRef``), its
volumes (``secret``, ``projected.sources[].secret``, ``csi.nodePublishSecretRef`` and the
in-tree volume types that name a Secret) and ``imagePullSecrets``; a ServiceAccount's
``imagePullSecrets`` and ``secrets``; and the consumers outside pods:

- StorageClass ``parameters``: ``csi.storage.k8s.io/<op>-secret-name`` with its
  ``-secret-namespace`` and the in-tree ``*secretName``/``*SecretName`` parameters with their
  namespace parameter (templated names such as ``${pvc.name}`` are not references);
- PersistentVolume ``spec.csi.*SecretRef`` and the in-tree sources' ``secretRef``;
- Ingress ``spec.tls[].secretName``; Gateway API ``spec.listeners[].tls.certificateRefs``;
- cert-manager Issuer, ClusterIssuer (Secrets in the cluster resource namespace,
  ``cert-manager`` by default) and Certificate (``spec.secretName``, ``*SecretRef``);
- external-secrets SecretStore and ClusterSecretStore auth references (``*SecretRef``,
  ``secretRef``, ``caProvider`` of type Secret) and an ExternalSecret's target;
- ServiceAccount token Secrets (``kubernetes.io/service-account-token`` naming their
  ServiceAccount: the reference's consumer is that ServiceAccount, its field is in the
  Secret);
- webhook configurations, APIServices and CustomResourceDefinitions whose CA bundle is
  injected from a Secret (``cert-manager.io/inject-ca-from-secret``) or from a
  Certificate (``cert-manager.io/inject-ca-from: NS/CERTIFICATE``): that names no Secret
  itself, so it becomes a reference to the Certificate's ``spec.secretName`` only when the
  caller can look the Certificate up (:class:`~kustos.kube.index.ObjectIndex` does, from
  the Certificates it holds); otherwise nothing is guessed.

Every reference carries the field path it was found at, in the form
``spec.template.spec.containers[0].env[3]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from kustos.kube.objects import KubeObject, ObjectRef, api_group, is_map


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
    SA_TOKEN = "serviceAccount.token"  # noqa: S105 - a token Secret naming its ServiceAccount
    STORAGE_CLASS = "storageClass.parameters"
    PERSISTENT_VOLUME = "persistentVolume"
    INGRESS_TLS = "ingress.tls"
    GATEWAY_TLS = "gateway.certificateRefs"
    CERT_MANAGER = "cert-manager"
    SECRET_STORE = "secretStore.auth"  # noqa: S105 - a field name, not a password
    EXTERNAL_SECRET = "externalSecret.target"  # noqa: S105 - a field name, not a password
    CA_INJECTION = "caBundle.injection"


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
_POD_SPEC_PATH_TEXT: Final = {kind: ".".join(steps) for kind, steps in POD_SPEC_PATHS.items()}
CERT_MANAGER_GROUP: Final = "cert-manager.io"
EXTERNAL_SECRETS_GROUP: Final = "external-secrets.io"
GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
#: Where cert-manager reads a ClusterIssuer's Secrets unless told otherwise.
CLUSTER_RESOURCE_NAMESPACE: Final = "cert-manager"
SA_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"  # noqa: S105 - a type name
SA_NAME_ANNOTATION: Final = "kubernetes.io/service-account.name"
INJECT_CA_FROM_SECRET: Final = "cert-manager.io/inject-ca-from-secret"  # noqa: S105
INJECT_CA_FROM: Final = "cert-manager.io/inject-ca-from"
#: ``(namespace, Certificate name)`` → that Certificate's ``spec.secretName``, if known.
CertificateSecrets = Callable[[str, str], str | None]
_CA_INJECTED_KINDS: Final = frozenset(
    {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService",
     "CustomResourceDefinition"}
)  # fmt: skip
#: Every kind that may reference a Secret: the index asks only these.
CONSUMER_KINDS: Final = frozenset(
    {*WORKLOAD_KINDS, "ServiceAccount", "Secret", "StorageClass", "PersistentVolume",
     "Ingress", "Gateway", "Issuer", "ClusterIssuer", "Certificate", "SecretStore",
     "ClusterSecretStore", "ExternalSecret", *_CA_INJECTED_KINDS}
)  # fmt: skip
CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")
#: In-tree volume sources that carry a ``secretRef: {name}`` (names as in the core API).
_STORAGE_SECRET_REF: Final = ("cephfs", "rbd", "flexVolume", "iscsi", "scaleIO", "storageos")
_STORAGE_KEYS: Final = frozenset(_STORAGE_SECRET_REF)


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
        node = node.get(step) if is_map(node) else None
        if node is None:
            return None
    return PodSpecView(node, _POD_SPEC_PATH_TEXT[obj.kind]) if is_map(node) else None


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
            if is_map(item):
                yield i, item


def service_account_name(spec: Mapping[str, Any]) -> str:
    """The ServiceAccount a pod spec runs as (``serviceAccountName``, then the old field)."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    return name if isinstance(name, str) and name else "default"


def secret_references(
    obj: KubeObject, *, certificate_secret: CertificateSecrets | None = None
) -> tuple[SecretReference, ...]:
    """Every Secret *obj* uses, in document order.

    *certificate_secret* resolves a cert-manager Certificate to the Secret it writes, for
    ``cert-manager.io/inject-ca-from``; without it (or when it knows no such Certificate)
    that annotation yields no reference.
    """
    if obj.kind not in CONSUMER_KINDS:
        return ()
    if obj.kind == "Secret":
        # A quarter of a large index: only a token Secret of the core group names anything.
        if obj.body.get("type") != SA_TOKEN_TYPE or api_group(obj.api_version):
            return ()
        return tuple(_token_secret_refs(obj))
    if obj.kind == "ServiceAccount" and obj.api_version == "v1":
        return tuple(_service_account_refs(obj))
    view = pod_spec_of(obj)
    if view is not None:
        return tuple(_pod_spec_refs(obj, view))
    return tuple(_other_refs(obj, certificate_secret))


def certificate_secret_name(obj: KubeObject) -> str | None:
    """The Secret a cert-manager Certificate writes (``spec.secretName``), or ``None``."""
    if obj.kind != "Certificate" or api_group(obj.api_version) != CERT_MANAGER_GROUP:
        return None
    return _str(_get(obj.body, "spec", "secretName")) or None


def _other_refs(
    obj: KubeObject, certificate_secret: CertificateSecrets | None
) -> Iterator[SecretReference]:
    """Consumers outside pods, by kind and API group."""
    group, kind, body = api_group(obj.api_version), obj.kind, obj.body
    if kind == "Secret" and group == "":
        yield from _token_secret_refs(obj)
    elif kind == "StorageClass" and group == "storage.k8s.io":
        yield from _storage_class_refs(obj)
    elif kind == "PersistentVolume" and group == "":
        yield from _persistent_volume_refs(obj)
    elif kind == "Ingress":
        for i, tls in items(_get(body, "spec", "tls")):
            name = _str(tls.get("secretName"))
            if name:
                yield _ref(obj, obj.namespace, name, Via.INGRESS_TLS, f"spec.tls[{i}].secretName")
    elif kind == "Gateway" and group == GATEWAY_GROUP:
        yield from _gateway_refs(obj)
    elif group == CERT_MANAGER_GROUP and kind in ("Issuer", "ClusterIssuer", "Certificate"):
        ns = CLUSTER_RESOURCE_NAMESPACE if kind == "ClusterIssuer" else obj.namespace
        yield from _walk_refs(obj, _get(body, "spec"), "spec", ns, Via.CERT_MANAGER)
    elif group == EXTERNAL_SECRETS_GROUP and kind in ("SecretStore", "ClusterSecretStore"):
        ns = "" if kind == "ClusterSecretStore" else obj.namespace
        yield from _walk_refs(obj, _get(body, "spec"), "spec", ns, Via.SECRET_STORE)
    elif group == EXTERNAL_SECRETS_GROUP and kind == "ExternalSecret":
        target = _get(body, "spec", "target")
        name = _str(target.get("name")) if is_map(target) else ""
        if name:
            yield _ref(obj, obj.namespace, name, Via.EXTERNAL_SECRET, "spec.target.name")
    if kind in _CA_INJECTED_KINDS:
        yield from _ca_injection_refs(obj, certificate_secret)


def _ca_injection_refs(
    obj: KubeObject, certificate_secret: CertificateSecrets | None
) -> Iterator[SecretReference]:
    """cainjector's sources: a Secret named directly, or a Certificate's Secret."""
    field = f'metadata.annotations["{INJECT_CA_FROM_SECRET}"]'
    ns, _, name = _str(obj.annotations.get(INJECT_CA_FROM_SECRET)).partition("/")
    if ns and name:
        yield _ref(obj, ns, name, Via.CA_INJECTION, field)
    ns, _, certificate = _str(obj.annotations.get(INJECT_CA_FROM)).partition("/")
    if ns and certificate and certificate_secret is not None:
        secret = certificate_secret(ns, certificate)
        if secret:
            yield _ref(
                obj, ns, secret, Via.CA_INJECTION, f'metadata.annotations["{INJECT_CA_FROM}"]'
            )


def _ref(obj: KubeObject, ns: str, name: str, via: Via, field: str) -> SecretReference:
    return SecretReference(obj.ref, ns, name, via, field)


def _token_secret_refs(obj: KubeObject) -> Iterator[SecretReference]:
    """A ServiceAccount token Secret: used by (and for) the ServiceAccount it names."""
    if _str(obj.body.get("type")) != SA_TOKEN_TYPE:
        return
    account = _str(obj.annotations.get(SA_NAME_ANNOTATION))
    if account:
        consumer = ObjectRef("", "ServiceAccount", obj.namespace, account)
        yield SecretReference(
            consumer,
            obj.namespace,
            obj.name,
            Via.SA_TOKEN,
            f'metadata.annotations["{SA_NAME_ANNOTATION}"]',
        )


_CSI_PARAMETER: Final = re.compile(r"^csi\.storage\.k8s\.io/(?P<op>[a-z-]+)-secret-name$")
_IN_TREE_PARAMETER: Final = re.compile(r"^(?P<prefix>.*)(?P<s>[sS])ecretName$")


def _storage_class_refs(obj: KubeObject) -> Iterator[SecretReference]:
    params = obj.body.get("parameters")
    if not is_map(params):
        return
    for key, value in params.items():
        name = _str(value)
        if not isinstance(key, str) or not name or "${" in name:
            continue
        csi = _CSI_PARAMETER.match(key)
        in_tree = _IN_TREE_PARAMETER.match(key)
        if csi:
            ns_key = f"csi.storage.k8s.io/{csi.group('op')}-secret-namespace"
        elif in_tree:
            ns_key = f"{in_tree.group('prefix')}{in_tree.group('s')}ecretNamespace"
        else:
            continue
        ns = _str(params.get(ns_key))
        if ns and "${" not in ns:
            yield _ref(obj, ns, name, Via.STORAGE_CLASS, f'parameters["{key}"]')


def _persistent_volume_refs(obj: KubeObject) -> Iterator[SecretReference]:
    spec = obj.body.get("spec")
    if not is_map(spec):
        return
    csi = spec.get("csi")
    if is_map(csi):
        for key, value in csi.items():
            if isinstance(key, str) and key.endswith("SecretRef") and is_map(value):
                name, ns = _str(value.get("name")), _str(value.get("namespace"))
                if name and ns:
                    yield _ref(obj, ns, name, Via.PERSISTENT_VOLUME, f"spec.csi.{key}")
    for plugin in _STORAGE_SECRET_REF:
        source = spec.get(plugin)
        secret_ref = source.get("secretRef") if is_map(source) else None
        if is_map(secret_ref) and _str(secret_ref.get("name")):
            ns = _str(secret_ref.get("namespace")) or "default"
            yield _ref(
                obj, ns, _str(secret_ref.get("name")), Via.PERSISTENT_VOLUME,
                f"spec.{plugin}.secretRef",
            )  # fmt: skip
    azure = spec.get("azureFile")
    if is_map(azure) and _str(azure.get("secretName")):
        ns = _str(azure.get("secretNamespace")) or "default"
        yield _ref(
            obj, ns, _str(azure.get("secretName")), Via.PERSISTENT_VOLUME,
            "spec.azureFile.secretName",
        )  # fmt: skip


def _gateway_refs(obj: KubeObject) -> Iterator[SecretReference]:
    for li, listener in items(_get(obj.body, "spec", "listeners")):
        tls = listener.get("tls")
        refs = tls.get("certificateRefs") if is_map(tls) else None
        for ci, cert in items(refs):
            if _str(cert.get("kind")) not in ("", "Secret") or _str(cert.get("group")):
                continue
            name = _str(cert.get("name"))
            if name:
                ns = _str(cert.get("namespace")) or obj.namespace
                field = f"spec.listeners[{li}].tls.certificateRefs[{ci}]"
                yield _ref(obj, ns, name, Via.GATEWAY_TLS, field)


def _walk_refs(
    obj: KubeObject, node: Any, path: str, ns: str, via: Via, *, in_ref: bool = False
) -> Iterator[SecretReference]:
    """Secret selectors anywhere under a custom resource's spec (cert-manager, external-secrets).

    A selector is a mapping with a ``name`` under a key ending in ``SecretRef``/``secretRef``
    (or ``credentialsRef``), or any child of such a key (external-secrets groups
    ``accessKeyIDSecretRef`` and friends under ``secretRef``); ``secretName`` strings and a
    ``caProvider`` of type Secret count too. A selector's own ``namespace`` wins over *ns*;
    a reference with no namespace at all (a ClusterSecretStore's without one) is dropped.
    """
    if is_map(node):
        for key, value in node.items():
            if not isinstance(key, str):
                continue
            here = f"{path}.{key}"
            selector = in_ref or key.lower().endswith("secretref") or key == "credentialsRef"
            if key == "secretName" and _str(value) and ns:
                yield _ref(obj, ns, _str(value), via, here)
            elif is_map(value) and (
                selector or (key == "caProvider" and _str(value.get("type")) == "Secret")
            ):
                name = _str(value.get("name"))
                target_ns = _str(value.get("namespace")) or ns
                if name and target_ns:
                    yield _ref(obj, target_ns, name, via, here)
                elif not name:
                    yield from _walk_refs(obj, value, here, ns, via, in_ref=selector)
            elif is_map(value) or isinstance(value, list):
                yield from _walk_refs(obj, value, here, ns, via)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_refs(obj, item, f"{path}[{i}]", ns, via)


def _get(body: Mapping[str, Any], *path: str) -> Any:
    node: Any = body
    for step in path:
        node = node.get(step) if is_map(node) else None
    return node


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


def _pod_spec_refs(obj: KubeObject, view: PodSpecView) -> list[SecretReference]:
    """The references of one pod spec, in document order, in one pass over its lists.

    The table of every object's references walks about 13,000 pod specs at 100k objects:
    this is the walk of :func:`containers`, :func:`items` and :func:`is_map` written out
    inline (the same tests in the same order; a ``dict`` answers first, any other mapping
    gets the ABC), paths made only for what is found.
    """
    spec, base = view.spec, view.path
    ns, ref = obj.namespace, obj.ref
    out: list[SecretReference] = []
    append = out.append
    for list_name in CONTAINER_LISTS:
        listed = spec.get(list_name)
        if not isinstance(listed, list):
            continue
        for ci, container in enumerate(listed):
            if type(container) is not dict and not isinstance(container, Mapping):
                continue
            envs, env_froms = container.get("env"), container.get("envFrom")
            if not (isinstance(envs, list) or isinstance(env_froms, list)):
                continue
            cname = container.get("name")
            if not isinstance(cname, str):
                cname = ""
            cpath = f"{base}.{list_name}[{ci}]"
            for ei, env in enumerate(envs if isinstance(envs, list) else ()):
                if type(env) is not dict and not isinstance(env, Mapping):
                    continue
                value_from = env.get("valueFrom")
                if value_from is None:
                    continue  # a literal value: most entries
                key_ref = value_from.get("secretKeyRef") if is_map(value_from) else None
                if not is_map(key_ref):
                    continue
                name = key_ref.get("name")
                if isinstance(name, str) and name:
                    key = key_ref.get("key")
                    append(
                        SecretReference(
                            ref, ns, name, Via.ENV, f"{cpath}.env[{ei}].valueFrom.secretKeyRef",
                            cname, key if isinstance(key, str) and key else None,
                            key_ref.get("optional") is True,
                        )
                    )  # fmt: skip
            for fi, env_from in enumerate(env_froms if isinstance(env_froms, list) else ()):
                if type(env_from) is not dict and not isinstance(env_from, Mapping):
                    continue
                secret_ref = env_from.get("secretRef")
                if not is_map(secret_ref):
                    continue
                name = secret_ref.get("name")
                if isinstance(name, str) and name:
                    append(
                        SecretReference(
                            ref, ns, name, Via.ENV_FROM, f"{cpath}.envFrom[{fi}].secretRef",
                            cname, None, secret_ref.get("optional") is True,
                        )
                    )  # fmt: skip
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for vi, volume in enumerate(volumes):
            if type(volume) is dict or isinstance(volume, Mapping):
                _volume_refs(out, ref, ns, volume, base=base, vi=vi)
    pulls = spec.get("imagePullSecrets")
    if isinstance(pulls, list):
        for pi, pull in enumerate(pulls):
            if type(pull) is not dict and not isinstance(pull, Mapping):
                continue
            name = pull.get("name")
            if isinstance(name, str) and name:
                append(
                    SecretReference(ref, ns, name, Via.IMAGE_PULL, f"{base}.imagePullSecrets[{pi}]")
                )
    return out


def _volume_refs(
    out: list[SecretReference],
    ref: ObjectRef,
    ns: str,
    volume: Mapping[str, Any],
    *,
    base: str,
    vi: int,
) -> None:
    """Add the references of ``volumes[vi]`` to *out*: secret, projected, CSI, in-tree."""
    secret = volume.get("secret")
    projected = volume.get("projected")
    csi = volume.get("csi")
    azure = volume.get("azureFile")
    plugins = not _STORAGE_KEYS.isdisjoint(volume)
    if secret is None and projected is None and csi is None and azure is None and not plugins:
        return  # a configMap, emptyDir, hostPath... volume: most of them
    vpath = f"{base}.volumes[{vi}]"
    vname = _str(volume.get("name")) or None
    if is_map(secret) and _str(secret.get("secretName")):
        out.append(
            SecretReference(
                ref, ns, _str(secret.get("secretName")), Via.VOLUME, f"{vpath}.secret",
                None, None, secret.get("optional") is True, vname,
            )
        )  # fmt: skip
    if is_map(projected):
        for si, source in items(projected.get("sources")):
            psecret = source.get("secret")
            if is_map(psecret) and _str(psecret.get("name")):
                out.append(
                    SecretReference(
                        ref, ns, _str(psecret.get("name")), Via.PROJECTED,
                        f"{vpath}.projected.sources[{si}].secret",
                        None, None, psecret.get("optional") is True, vname,
                    )
                )  # fmt: skip
    if is_map(csi):
        node_ref = csi.get("nodePublishSecretRef")
        if is_map(node_ref) and _str(node_ref.get("name")):
            out.append(
                SecretReference(
                    ref, ns, _str(node_ref.get("name")), Via.CSI,
                    f"{vpath}.csi.nodePublishSecretRef", volume=vname,
                )
            )  # fmt: skip
    # Most volumes name none of the in-tree plugins: one pass over their few keys.
    for plugin in _STORAGE_SECRET_REF if plugins else ():
        plugin_source = volume.get(plugin)
        secret_ref = plugin_source.get("secretRef") if is_map(plugin_source) else None
        if is_map(secret_ref) and _str(secret_ref.get("name")):
            out.append(
                SecretReference(
                    ref, ns, _str(secret_ref.get("name")), Via.STORAGE,
                    f"{vpath}.{plugin}.secretRef", volume=vname,
                )
            )  # fmt: skip
    if is_map(azure) and _str(azure.get("secretName")):
        out.append(
            SecretReference(
                ref, ns, _str(azure.get("secretName")), Via.STORAGE,
                f"{vpath}.azureFile.secretName", volume=vname,
            )
        )  # fmt: skip


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
