"""Apply manifests to a cluster with server-side apply (an adapter).

Used by ``kustos demo`` and the integration tests to put the same YAML files in a cluster
that a file scan reads, so that the two indexes can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lightkube import Client, codecs
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource

from kustos.errors import InputError, quote_foreign
from kustos.kube.client import FIELD_MANAGER, api_errors
from kustos.kube.loading import manifest_files

#: Applied first so that the objects inside them can be created.
_FIRST = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "Secret", "ConfigMap")


def apply_manifests(
    client: Client, paths: Iterable[str | Path], *, namespace: str | None = None
) -> list[str]:
    """Server-side apply every object in *paths*; return ``Kind namespace/name`` of each."""
    objects = []
    for path in manifest_files(paths):
        if path is None:
            raise InputError("stdin cannot be applied here; name files or folders")
        try:
            with path.open(encoding="utf-8") as fh:
                objects.extend(codecs.load_all_yaml(fh))
        except (LoadResourceError, ValueError) as exc:
            raise InputError(f"{path}: cannot apply: {quote_foreign(str(exc))}") from exc
    objects.sort(key=lambda o: _FIRST.index(o.kind) if o.kind in _FIRST else len(_FIRST))
    applied = []
    for obj in objects:
        meta = obj.metadata
        name = meta.name if meta is not None else "?"
        ns = meta.namespace if meta is not None else None
        if namespace and meta is not None and isinstance(obj, NamespacedResource):
            meta.namespace = ns = namespace
        with api_errors(f"apply {obj.kind} {name}"):
            client.apply(obj, field_manager=FIELD_MANAGER, force=True)
        applied.append(f"{obj.kind} {ns + '/' if ns else ''}{name}")
    return applied
