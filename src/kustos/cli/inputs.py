"""Options and loading shared by every command that reads manifests or a live cluster."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from kustos.errors import UsageError
from kustos.kube.index import ObjectIndex
from kustos.kube.loading import ManifestLoader

Paths = Annotated[
    list[str] | None, typer.Argument(help="Files or folders of YAML/JSON; '-' reads stdin.")
]
Cluster = Annotated[
    bool, typer.Option("--cluster", help="Read the live cluster (list calls only).")
]
Kubeconfig = Annotated[
    Path | None, typer.Option("--kubeconfig", help="Kubeconfig file [KUBECONFIG].")
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
Namespaces = Annotated[
    list[str] | None, typer.Option("-n", "--namespace", help="Only these namespaces (repeatable).")
]


def load_index(
    paths: Sequence[str] | None,
    *,
    cluster: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespaces: Sequence[str] | None,
) -> tuple[ObjectIndex, ManifestLoader | None]:
    """Build the object index from files/stdin or from the cluster (exactly one of them)."""
    if cluster and paths:
        raise UsageError("give either PATH arguments or --cluster, not both")
    if not cluster and not paths:
        raise UsageError("nothing to read: give PATH arguments, '-' for stdin, or --cluster")
    if cluster:
        # Imported here: file scans should not pay for loading the Kubernetes client.
        from kustos.kube.client import ClientSettings, make_client  # noqa: PLC0415
        from kustos.kube.listing import list_cluster  # noqa: PLC0415

        with make_client(ClientSettings(kubeconfig=kubeconfig, context=context)) as client:
            return list_cluster(client, namespaces=list(namespaces or ())), None
    loader = ManifestLoader(stdin=sys.stdin)
    index = loader.load(paths or ())
    if namespaces:
        wanted = set(namespaces)
        kept = ObjectIndex.of(o for o in index if not o.namespace or o.namespace in wanted)
        kept.errors.extend(index.errors)
        index = kept
    return index, loader
