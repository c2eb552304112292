"""``KubeObject`` and ``ObjectRef``: Kubernetes objects as plain, immutable-by-convention values.

Purely data: no I/O. The body of an object is the JSON-like tree it was read from, with one
change made on the way in (see :mod:`kustos.kube.documents`): every Secret value is wrapped
in :class:`~kustos.sensitive.Sensitive`, so an object can be printed, logged or put in an
exception without showing a value. Bodies are shared, not copied: treat them as read-only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

Body = Mapping[str, Any]


def is_map(value: Any) -> TypeGuard[Mapping[Any, Any]]:
    """``isinstance(value, Mapping)``, the plain ``dict`` of the YAML and JSON loaders first.

    The check against the ``Mapping`` ABC costs several times a type comparison, and the
    reference tables and checks of a large index ask it millions of times (most answers
    are a ``dict`` or ``None``); any other mapping still gets the ABC's answer.
    """
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


#: A Kubernetes object name (DNS-1123 subdomain); a namespace is one label of it.
DNS1123_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

#: Kinds that are not namespaced. Unknown kinds are namespaced unless named ``Cluster*``.
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


def is_namespaced(kind: str) -> bool:
    """Tell whether objects of *kind* live in a namespace (best knowledge without discovery)."""
    return kind not in CLUSTER_SCOPED_KINDS and not kind.startswith("Cluster")


def api_group(api_version: str) -> str:
    """Return the group of an ``apiVersion``: ``apps/v1`` → ``apps``, ``v1`` → ``""``."""
    group, sep, _ = api_version.rpartition("/")
    return group if sep else ""


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """Identity of an object: group, kind, namespace (``""`` if cluster-scoped) and name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        qualified = f"{self.kind}.{self.group}" if self.group else self.kind
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{qualified} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an object was read from: file (or ``<stdin>``), 1-based line, path inside."""

    file: str
    line: int
    document: int = 0
    #: For an item of a ``List`` document: its path inside the document (``items[3]``).
    path_prefix: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class KubeObject:
    """One Kubernetes object: its identity, its body and where it came from."""

    api_version: str
    kind: str
    namespace: str
    name: str
    body: Body = field(repr=False, compare=False)
    source: Source | None = field(default=None, compare=False)
    #: ``ref``, made on first use: the index and the checks ask it of the same objects
    #: hundreds of thousands of times in a large scan. Derived, so not part of equality.
    _ref: ObjectRef | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ref(self) -> ObjectRef:
        """This object's identity."""
        ref = self._ref
        if ref is None:
            ref = ObjectRef(api_group(self.api_version), self.kind, self.namespace, self.name)
            # Frozen: the one derived field is set through object.__setattr__, once.
            object.__setattr__(self, "_ref", ref)
        return ref

    @property
    def metadata(self) -> Body:
        """``metadata``, or an empty mapping."""
        meta = self.body.get("metadata")
        return meta if is_map(meta) else {}

    @property
    def labels(self) -> Mapping[str, str]:
        """``metadata.labels``, or an empty mapping."""
        labels = self.metadata.get("labels")
        return labels if is_map(labels) else {}

    @property
    def annotations(self) -> Mapping[str, Any]:
        """``metadata.annotations``, or an empty mapping (values are ``Sensitive`` in Secrets)."""
        annotations = self.metadata.get("annotations")
        return annotations if is_map(annotations) else {}

    @property
    def owner_refs(self) -> tuple[ObjectRef, ...]:
        """Controllers and owners named in ``metadata.ownerReferences`` (same namespace)."""
        owners = self.metadata.get("ownerReferences")
        if not isinstance(owners, list):
            return ()
        refs = []
        for owner in owners:
            if is_map(owner) and owner.get("kind") and owner.get("name"):
                group = api_group(str(owner.get("apiVersion", "")))
                refs.append(
                    ObjectRef(group, str(owner["kind"]), self.namespace, str(owner["name"]))
                )
        return tuple(refs)

    def __str__(self) -> str:
        return str(self.ref)
