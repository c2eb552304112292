"""Apply manifests to a cluster with server-side apply (an adapter).

Used by ``kustos demo`` and the integration tests to put the same YAML files in a cluster
that a file scan reads, so that the two indexes can be compared.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, codecs
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from kustos.errors import InputError, KubeError, quote_foreign
from kustos.files import read_text
from kustos.kube.client import FIELD_MANAGER, api_errors
from kustos.kube.documents import load_yaml_all
from kustos.kube.loading import manifest_files

#: Applied first so that the objects inside them can be created.
_FIRST = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "Secret", "ConfigMap")


def apply_manifests(
    client: Client, paths: Iterable[str | Path], *, namespace: str | None = None
) -> list[str]:
    """Server-side apply every object in *paths*; return ``Kind namespace/name`` of each."""
    objects: list[Any] = []
    for path in manifest_files(paths):
        if path is None:
            raise InputError("stdin cannot be applied here; name files or folders")
        # Parsed by Kustos's own YAML loader (alias bombs refused), then typed by lightkube.
        documents = load_yaml_all(read_text(path, what="manifest"), str(path))
        try:
            objects.extend(codecs.from_dict(d) for d in _flatten(documents))
        except (LoadResourceError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: cannot apply: {quote_foreign(str(exc))}") from exc
    objects.sort(key=lambda o: _FIRST.index(o.kind) if o.kind in _FIRST else len(_FIRST))
    applied = []
    for obj in objects:
        meta = obj.metadata
        name = meta.name if meta is not None else "?"
        ns = meta.namespace if meta is not None else None
        if namespace and meta is not None and isinstance(obj, NamespacedResource):
            meta.namespace = ns = namespace
        plural = type(obj)._api_info.plural
        with api_errors(f"apply {obj.kind} {name}", verb="patch", resource=plural):
            client.apply(obj, field_manager=FIELD_MANAGER, force=True)
        applied.append(f"{obj.kind} {ns + '/' if ns else ''}{name}")
    return applied


def _flatten(documents: Iterable[Any]) -> Iterator[Any]:
    """Objects of the documents, with the items of ``*List`` kinds expanded (as lightkube)."""
    for doc in documents:
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
            yield from _flatten(doc["items"])
        else:
            yield doc


def wait_established(client: Client, name: str, *, timeout: float = 30.0) -> None:
    """Wait until the CustomResourceDefinition *name* is Established and served."""
    deadline = time.monotonic() + timeout
    while True:
        with api_errors(
            f"read CustomResourceDefinition {name}",
            verb="get",
            resource="customresourcedefinitions",
        ):
            crd = client.get(CustomResourceDefinition, name)
        conditions = crd.status.conditions if crd.status is not None else None
        if any(c.type == "Established" and c.status == "True" for c in conditions or []):
            break
        if time.monotonic() > deadline:
            raise KubeError(f"CustomResourceDefinition {name} not Established after {timeout:.0f}s")
        time.sleep(0.2)
    # Established is set before every API server handler serves the new resource; a list
    # of it succeeds once it is served.
    spec = crd.spec
    version = next((v.name for v in spec.versions if v.served), spec.versions[0].name)
    make = create_namespaced_resource if spec.scope == "Namespaced" else create_global_resource
    resource = make(spec.group, version, spec.names.kind, spec.names.plural)
    while time.monotonic() < deadline:
        try:
            next(iter(client.list(resource, chunk_size=1)), None)
        except ApiError:
            time.sleep(0.2)
            continue
        return
    raise KubeError(f"CustomResourceDefinition {name} not served after {timeout:.0f}s")
