"""``ObjectIndex``: the one in-memory structure a folder of YAML and a live cluster load into.

Purely data: no I/O. :mod:`kustos.kube.loading` fills it from files and stdin,
:mod:`kustos.kube.listing` from a live cluster; every capability reads it the same way.
Lookups by kind, by namespace and by identity are dictionary reads; the Secret references
of every object are parsed once, on first use, and kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from kustos.errors import DocumentError, UnreadableInputError
from kustos.kube.objects import KubeObject, ObjectRef, api_group
from kustos.kube.references import (
    CERT_MANAGER_GROUP,
    CONSUMER_KINDS,
    WORKLOAD_KINDS,
    SecretReference,
    certificate_secret_name,
    secret_references,
)

#: Controllers whose pods (or ReplicaSets/Jobs) are managed copies of their own template.
_CONTROLLER_KINDS = frozenset(
    {
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
    }
)


def _identity(obj: KubeObject) -> tuple[str, str, str, str]:
    return (api_group(obj.api_version), obj.kind, obj.namespace, obj.name)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Two documents that declare the same object; the later one is kept."""

    ref: ObjectRef
    first: KubeObject
    second: KubeObject


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What a scan read and what it left out, by reason, for the end of every report."""

    files: int
    documents: int
    objects: int
    #: Documents that are not objects, by reason (``kustos.kube.documents.SKIP_*``).
    skipped_documents: tuple[tuple[str, int], ...]
    #: Files not read, by reason (another extension, unreadable).
    skipped_files: tuple[tuple[str, int], ...]
    #: Malformed documents (each also reported on stderr with its file and line).
    malformed: int
    #: Objects declared more than once (the same group, kind, namespace and name), with
    #: where each declaration is (``file:line``); the last one is the one checked.
    duplicates: tuple[tuple[ObjectRef, tuple[str, ...]], ...]


#: Reasons a file is not read (keys of ``ObjectIndex.skipped_files``).
SKIP_OTHER_EXTENSION = "other extension"
SKIP_UNREADABLE = "unreadable"


@dataclass(slots=True)
class ObjectIndex:
    """Objects by identity, kind and namespace, plus problems met while loading them."""

    _objects: list[KubeObject] = field(default_factory=list)
    _by_ref: dict[ObjectRef, KubeObject] = field(default_factory=dict)
    _by_kind: dict[str, list[KubeObject]] = field(default_factory=lambda: defaultdict(list))
    errors: list[DocumentError] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    #: Documents read that were not Kubernetes objects (values files, plain data, ...).
    skipped_documents: int = 0
    #: The same, by reason (``kustos.kube.documents.SKIP_*``).
    skipped_by: dict[str, int] = field(default_factory=dict)
    #: Files met in folders but not read, by reason (``SKIP_OTHER_EXTENSION``...).
    skipped_files: dict[str, int] = field(default_factory=dict)
    #: Files (and stdin) read, and the documents they held.
    files_read: int = 0
    documents_read: int = 0
    _refs: dict[int, tuple[SecretReference, ...]] | None = None
    _consumers: dict[tuple[str, str], list[SecretReference]] | None = None
    #: :meth:`is_owned`'s answers, kept: four checks ask it of every workload.
    _owned: dict[ObjectRef, bool] = field(default_factory=dict)
    _sorted: dict[tuple[tuple[str, ...], str | None], list[KubeObject]] = field(
        default_factory=dict
    )

    @classmethod
    def of(cls, objects: Iterable[KubeObject]) -> ObjectIndex:
        """Build an index from objects."""
        index = cls()
        index.add_all(objects)
        return index

    # ----------------------------------------------------------------- filling
    def add(self, obj: KubeObject) -> None:
        """Add one object.

        A second object with the same identity (common when a folder holds several
        unrelated apps) is kept and recorded in ``duplicates``; ``get`` returns the later.
        """
        ref = obj.ref
        previous = self._by_ref.get(ref)
        if previous is not None:
            self.duplicates.append(Duplicate(ref, previous, obj))
        self._objects.append(obj)
        self._by_ref[ref] = obj
        self._by_kind[obj.kind].append(obj)
        self._refs = None
        self._consumers = None
        self._owned.clear()
        self._sorted.clear()

    def add_all(self, objects: Iterable[KubeObject]) -> None:
        """Add many objects."""
        for obj in objects:
            self.add(obj)

    def only(self, keep: Callable[[KubeObject], bool]) -> ObjectIndex:
        """A new index of the objects *keep* accepts, with this one's errors and read counts."""
        kept = ObjectIndex.of(obj for obj in self._objects if keep(obj))
        kept.errors.extend(self.errors)
        kept.skipped_documents = self.skipped_documents
        kept.skipped_by = dict(self.skipped_by)
        kept.skipped_files = dict(self.skipped_files)
        kept.files_read = self.files_read
        kept.documents_read = self.documents_read
        return kept

    def count_skipped(self, reasons: Mapping[str, int], *, files: bool = False) -> None:
        """Add documents (or, with *files*, files) left out, by reason."""
        into = self.skipped_files if files else self.skipped_by
        for reason, count in reasons.items():
            into[reason] = into.get(reason, 0) + count
        if not files:
            self.skipped_documents += sum(reasons.values())

    def read_summary(self) -> ReadSummary:
        """What was read and what was left out, by reason; duplicates with their places."""
        places: dict[ObjectRef, list[str]] = {}
        for dup in self.duplicates:
            seen = places.setdefault(dup.ref, [])
            for obj in (dup.first, dup.second):
                where = str(obj.source) if obj.source is not None else "cluster"
                if where not in seen:
                    seen.append(where)
        unreadable = sum(1 for e in self.errors if isinstance(e, UnreadableInputError))
        files = dict(self.skipped_files)
        if unreadable:
            files[SKIP_UNREADABLE] = files.get(SKIP_UNREADABLE, 0) + unreadable
        return ReadSummary(
            files=self.files_read,
            documents=self.documents_read,
            objects=len(self._objects),
            skipped_documents=tuple(sorted(self.skipped_by.items())),
            skipped_files=tuple(sorted(files.items())),
            malformed=len(self.errors) - unreadable,
            duplicates=tuple((ref, tuple(where)) for ref, where in places.items()),
        )

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[KubeObject]:
        return iter(self._objects)

    def __contains__(self, ref: object) -> bool:
        return ref in self._by_ref

    def get(self, ref: ObjectRef) -> KubeObject | None:
        """The object with this identity, or ``None``."""
        return self._by_ref.get(ref)

    def refs(self) -> frozenset[ObjectRef]:
        """Every identity in the index."""
        return frozenset(self._by_ref)

    def kinds(self) -> frozenset[str]:
        """Every kind present."""
        return frozenset(k for k, objs in self._by_kind.items() if objs)

    def of_kind(self, *kinds: str, namespace: str | None = None) -> list[KubeObject]:
        """Objects of the given kinds, optionally in one namespace, sorted by identity."""
        key = (kinds, namespace)
        cached = self._sorted.get(key)
        if cached is None:
            cached = [
                obj
                for kind in kinds
                for obj in self._by_kind.get(kind, ())
                if namespace is None or obj.namespace == namespace
            ]
            cached.sort(key=_identity)
            self._sorted[key] = cached
        return list(cached)

    def namespaces(self) -> frozenset[str]:
        """Namespaces that hold at least one object or are declared as Namespace objects."""
        names = {obj.namespace for obj in self._objects if obj.namespace}
        names.update(obj.name for obj in self._by_kind.get("Namespace", ()))
        return frozenset(names)

    def secret(self, namespace: str, name: str) -> KubeObject | None:
        """The Secret ``namespace/name``, or ``None``."""
        return self._by_ref.get(ObjectRef("", "Secret", namespace, name))

    def workloads(self, namespace: str | None = None) -> list[KubeObject]:
        """Objects that carry a pod template (or are Pods)."""
        return self.of_kind(*sorted(WORKLOAD_KINDS), namespace=namespace)

    # ----------------------------------------------------------------- references
    def references_of(self, obj: KubeObject) -> tuple[SecretReference, ...]:
        """The Secret references found in one object."""
        return self._all_refs().get(id(obj), ())

    def secret_references(self) -> list[SecretReference]:
        """Every Secret reference in the index, in load order of their consumers."""
        refs = self._all_refs()
        return [r for obj in self._objects for r in refs.get(id(obj), ())]

    def consumers_of(self, namespace: str, name: str) -> list[SecretReference]:
        """Every reference to the Secret ``namespace/name``, from any object."""
        if self._consumers is None:
            consumers: dict[tuple[str, str], list[SecretReference]] = defaultdict(list)
            for ref in self.secret_references():
                consumers[(ref.namespace, ref.secret)].append(ref)
            self._consumers = dict(consumers)
        return list(self._consumers.get((namespace, name), ()))

    def top_level_consumers(self, namespace: str, name: str) -> list[SecretReference]:
        """References from objects no controller in the index owns.

        In a live cluster a Deployment's ReplicaSets and Pods repeat its template; rolling
        or reporting should address the Deployment, so owned copies are left out.
        """
        return [r for r in self.consumers_of(namespace, name) if not self.is_owned(r.consumer)]

    def is_owned(self, ref: ObjectRef) -> bool:
        """Tell whether a controller present in the index owns the object *ref*."""
        owned = self._owned.get(ref)
        if owned is None:
            obj = self._by_ref.get(ref)
            owned = self._owned[ref] = obj is not None and any(
                owner.kind in _CONTROLLER_KINDS and owner in self._by_ref
                for owner in obj.owner_refs
            )
        return owned

    def _certificate_secret(self, namespace: str, name: str) -> str | None:
        """The Secret of the Certificate *namespace/name* in the index (``inject-ca-from``)."""
        obj = self._by_ref.get(ObjectRef(CERT_MANAGER_GROUP, "Certificate", namespace, name))
        return certificate_secret_name(obj) if obj is not None else None

    def _all_refs(self) -> dict[int, tuple[SecretReference, ...]]:
        # Keyed by object identity (id): duplicates of one ObjectRef keep their own refs.
        if self._refs is None:
            refs: dict[int, tuple[SecretReference, ...]] = {}
            for kind in CONSUMER_KINDS:
                for obj in self._by_kind.get(kind, ()):
                    found = secret_references(obj, certificate_secret=self._certificate_secret)
                    if found:
                        refs[id(obj)] = found
            self._refs = refs
        return self._refs
