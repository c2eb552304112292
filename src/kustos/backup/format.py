"""The format inside a backup: cleaned objects, their hashes, the manifest, the tar. Pure.

Decrypted, a backup is a POSIX tar holding two files (``docs/backup-format.md``):

- ``manifest.json``: format, Kustos version, time, source cluster, what was selected, the
  counts by kind, the SHA-256 of ``objects.json`` and one entry per object (kind,
  namespace, name, SHA-256 of its canonical JSON), in the order of ``objects.json``;
- ``objects.json``: a Kubernetes ``v1`` ``List`` of the objects, one per line, each the
  canonical JSON (keys sorted, no spaces) its hash is taken over. ``kubectl`` applies it
  as it is, so the backup stays usable when Kustos is gone.

Objects are cleaned of what the API server sets (uid, resourceVersion, timestamps,
managedFields, owner references by uid); Secrets keep type, data, labels, annotations and
``immutable``. Bodies hold Secret data base64-encoded, as the API does: :class:`Entry`
keeps them out of its ``repr``, and nothing here puts a body in a message.

Pure: bytes in, values out; the tar is built and read in memory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import tarfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from kustos.conventions import API_VERSION, LABEL_MANAGED_SECRET, LABEL_VERSION
from kustos.errors import BackupError, InputError
from kustos.files.state import decode
from kustos.sensitive import Sensitive

FORMAT: Final = "kustos.io/backup/v1"
MANIFEST_FILE: Final = "manifest.json"
OBJECTS_FILE: Final = "objects.json"
#: Kinds a backup holds, in the order they are written and restored.
KINDS: Final = ("Namespace", "ManagedSecret", "Secret")
#: Set by the API server on every namespace; never restored by hand.
_NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"


def canonical(body: Mapping[str, Any]) -> bytes:
    """The one byte form of an object that its hash is taken over: sorted keys, compact."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sha256(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One object of a backup: identity, cleaned body (never shown) and its hash."""

    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any] = field(repr=False, compare=False)
    digest: str = field(repr=False)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Entry:
        """An entry for a cleaned body."""
        meta = body["metadata"]
        return cls(
            str(body["kind"]),
            str(meta.get("namespace") or ""),
            str(meta["name"]),
            body,
            sha256(canonical(body)),
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name)."""
        return (self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


# --------------------------------------------------------------------------- cleaning
def _plain(value: Any) -> Any:
    return value.reveal_text() if isinstance(value, Sensitive) else value


def _clean_meta(meta: Mapping[str, Any], *, namespaced: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": meta["name"]}
    if namespaced:
        out["namespace"] = meta.get("namespace") or "default"
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if not namespaced:
        labels.pop(_NAMESPACE_NAME_LABEL, None)
    if labels:
        out["labels"] = labels
    annotations = {str(k): str(_plain(v)) for k, v in (meta.get("annotations") or {}).items()}
    if annotations:
        out["annotations"] = annotations
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    if finalizers and namespaced:
        out["finalizers"] = finalizers
    return out


def _b64(value: Any) -> str:
    raw = value.reveal() if isinstance(value, Sensitive) else value
    if isinstance(raw, str):  # already base64, as the API sends it
        return raw
    return base64.b64encode(bytes(raw)).decode("ascii")


def clean_secret(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret as a backup holds it: identity, labels, annotations, type, data, immutable.

    Values may arrive wrapped in ``Sensitive`` (decoded bytes, as the object index holds
    them) or as the API's base64 text; they leave as base64 text.
    """
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _clean_meta(body["metadata"], namespaced=True),
        "type": body.get("type") or "Opaque",
    }
    data = body.get("data") or {}
    if data:
        out["data"] = {str(k): _b64(v) for k, v in data.items()}
    if body.get("immutable"):
        out["immutable"] = True
    return out


def clean_managed_secret(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ManagedSecret: identity, labels, annotations, spec, and status (its version list)."""
    out: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ManagedSecret",
        "metadata": _clean_meta(body["metadata"], namespaced=True),
        "spec": body.get("spec") or {},
    }
    status = body.get("status")
    if status:
        out["status"] = status
    return out


def clean_namespace(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Namespace: name, labels (but the one the API server sets) and annotations."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _clean_meta(body["metadata"], namespaced=False),
    }


CLEANERS: Final = {
    "Secret": clean_secret,
    "ManagedSecret": clean_managed_secret,
    "Namespace": clean_namespace,
}


def clean(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The cleaned body of an object of one of :data:`KINDS`."""
    return CLEANERS[kind](body)


# --------------------------------------------------------------------------- manifest
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ObjectRecord(_Model):
    """One object in the manifest."""

    kind: str
    namespace: str = ""
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Cluster(_Model):
    """Where the backup was taken: API server address and the kube-system namespace's uid."""

    server: str = ""
    id: str = ""


class Selection(_Model):
    """What was asked for: namespaces (empty: all) and a label selector."""

    namespaces: list[str] = Field(default_factory=list)
    selector: str = ""


class Manifest(_Model):
    """``manifest.json``."""

    format: str
    kustos_version: str = Field(alias="kustosVersion")
    created: str
    cluster: Cluster
    selection: Selection
    counts: dict[str, int]
    excluded: dict[str, int] = Field(default_factory=dict)
    objects_sha256: str = Field(alias="objectsSha256", pattern=r"^[0-9a-f]{64}$")
    objects: list[ObjectRecord]


def counts_of(entries: Iterable[Entry]) -> dict[str, int]:
    """Objects by kind, plus ``versionSecrets``: Secrets that hold a ManagedSecret version."""
    counter: Counter[str] = Counter()
    for entry in entries:
        counter[entry.kind] += 1
        labels = entry.body["metadata"].get("labels") or {}
        if entry.kind == "Secret" and LABEL_MANAGED_SECRET in labels and LABEL_VERSION in labels:
            counter["versionSecrets"] += 1
    return {kind: counter.get(kind, 0) for kind in (*KINDS, "versionSecrets")}


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup's manifest and its verified entries, in file order."""

    manifest: Manifest
    entries: tuple[Entry, ...]


# --------------------------------------------------------------------------- writing
def objects_document(entries: Sequence[Entry]) -> bytes:
    """``objects.json``: a ``v1`` ``List``, one canonical object per line."""
    lines = b",\n".join(canonical(e.body) for e in entries)
    return b'{"apiVersion":"v1","kind":"List","items":[\n' + lines + b"\n]}\n"


def pack(
    entries: Sequence[Entry],
    *,
    created: dt.datetime,
    kustos_version: str,
    cluster: Cluster,
    selection: Selection,
    excluded: Mapping[str, int],
) -> tuple[bytes, Manifest]:
    """The plaintext of a backup (a tar) and its manifest."""
    ordered = sorted(entries, key=lambda e: (KINDS.index(e.kind), e.namespace, e.name))
    objects = objects_document(ordered)
    manifest = Manifest(
        format=FORMAT,
        kustosVersion=kustos_version,
        created=created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        cluster=cluster,
        selection=selection,
        counts=counts_of(ordered),
        excluded=dict(sorted(excluded.items())),
        objectsSha256=sha256(objects),
        objects=[
            ObjectRecord(kind=e.kind, namespace=e.namespace, name=e.name, sha256=e.digest)
            for e in ordered
        ],
    )
    manifest_bytes = manifest.model_dump_json(by_alias=True, indent=1).encode() + b"\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((MANIFEST_FILE, manifest_bytes), (OBJECTS_FILE, objects)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(created.timestamp())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), manifest


# --------------------------------------------------------------------------- reading
def _members(plaintext: bytes, source: str) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(plaintext), mode="r:") as tar:
            found: dict[str, bytes] = {}
            for info in tar:
                name = info.name.removeprefix("./")
                if info.isdir() and name in ("", "."):
                    continue
                if name not in (MANIFEST_FILE, OBJECTS_FILE) or not info.isfile():
                    raise BackupError(f"{source}: unexpected entry {name[:80]!r} in the backup")
                handle = tar.extractfile(info)
                if handle is None:  # pragma: no cover - regular files always have one
                    raise BackupError(f"{source}: {name} cannot be read")
                found[name] = handle.read()
    except tarfile.TarError as exc:
        raise BackupError(f"{source}: not a Kustos backup (not a tar: {exc})") from None
    for name in (MANIFEST_FILE, OBJECTS_FILE):
        if name not in found:
            raise BackupError(f"{source}: not a Kustos backup ({name} is missing)")
    return found


def _manifest(data: bytes, source: str) -> Manifest:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackupError(f"{source}: {MANIFEST_FILE} is not JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise BackupError(f"{source}: format {str(found)[:40]!r} is not {FORMAT} (a newer Kustos?)")
    try:
        return decode(Manifest, data, source=f"{source}: {MANIFEST_FILE}", what="manifest")
    except InputError as exc:  # inside an authenticated file: it does not verify (exit 1)
        raise BackupError(str(exc)) from None


def _items(data: bytes, source: str) -> list[Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackupError(f"{source}: {OBJECTS_FILE} is not JSON") from None
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise BackupError(f"{source}: {OBJECTS_FILE} is not a List of objects")
    return items


def _entry(item: Any, position: int, source: str) -> Entry:
    try:
        entry = Entry.of(item)
    except (KeyError, TypeError, AttributeError):
        raise BackupError(f"{source}: object #{position} has no kind or metadata.name") from None
    if entry.kind not in KINDS:
        raise BackupError(f"{source}: object #{position} is a {entry.kind[:40]}, not a backup kind")
    return entry


def read(plaintext: bytes, *, source: str) -> Backup:
    """Read and verify a decrypted backup; ``BackupError`` naming the first problem.

    Checked: both files present, the manifest's format and shape, the hash of
    ``objects.json``, each object's identity and hash against its manifest entry, the
    counts by kind.
    """
    members = _members(plaintext, source)
    manifest = _manifest(members[MANIFEST_FILE], source)
    objects = members[OBJECTS_FILE]
    items = _items(objects, source)
    if len(items) != len(manifest.objects):
        raise BackupError(
            f"{source}: {OBJECTS_FILE} holds {len(items)} objects, the manifest lists "
            f"{len(manifest.objects)}"
        )
    entries = []
    for position, (item, record) in enumerate(zip(items, manifest.objects, strict=True), 1):
        entry = _entry(item, position, source)
        if (entry.kind, entry.namespace, entry.name) != (
            record.kind,
            record.namespace,
            record.name,
        ):
            raise BackupError(
                f"{source}: object #{position} is {entry}, the manifest says "
                f"{record.kind} {record.namespace}/{record.name}"
            )
        if entry.digest != record.sha256:
            raise BackupError(f"{source}: {entry}: content does not match its hash")
        entries.append(entry)
    if (
        sha256(objects) != manifest.objects_sha256
        and sha256(objects_document(entries)) != manifest.objects_sha256
    ):
        raise BackupError(f"{source}: {OBJECTS_FILE} does not match the manifest's hash")
    counts = counts_of(entries)
    for kind, count in counts.items():
        if manifest.counts.get(kind, 0) != count:
            raise BackupError(
                f"{source}: {count} {kind} object(s), the manifest counts "
                f"{manifest.counts.get(kind, 0)}"
            )
    seen: set[tuple[str, str, str]] = set()
    for entry in entries:
        if entry.key in seen:
            raise BackupError(f"{source}: {entry} appears twice")
        seen.add(entry.key)
    return Backup(manifest, tuple(entries))
