"""``kustos refs``: which workloads and ServiceAccounts use which Secrets, and where."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from kustos.cli.inputs import Cluster, Namespaces, Paths, load_index
from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import TableOrJson, print_json, print_table, report_skipped
from kustos.kube.index import ObjectIndex
from kustos.kube.references import SecretReference


def refs(
    paths: Paths = None,
    cluster: Cluster = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespaces = None,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
    all_consumers: Annotated[
        bool, typer.Option("--all", help="Include pods and ReplicaSets owned by controllers.")
    ] = False,
) -> int:
    """List every Secret reference: Secret, consumer, how (env, volume, ...) and field path."""
    index, _ = load_index(
        paths, cluster=cluster, kubeconfig=kubeconfig, context=context, namespaces=namespace
    )
    found = index.secret_references()
    if not all_consumers:
        found = [r for r in found if not index.is_owned(r.consumer)]
    rows = sorted(found, key=lambda r: (r.namespace, r.secret, str(r.consumer), r.field))
    secrets = {(s.namespace, s.name) for s in index.of_kind("Secret")}
    if output_format is TableOrJson.JSON:
        print_json(_document(rows, secrets, index))
    else:
        print_table(_table(rows, secrets, index))
    report_skipped(index.errors)
    return 0


def _document(
    rows: Sequence[SecretReference], secrets: set[tuple[str, str]], index: ObjectIndex
) -> dict[str, Any]:
    return {
        "references": [
            {
                "namespace": r.namespace,
                "secret": r.secret,
                "secret_exists": (r.namespace, r.secret) in secrets,
                "consumer": {
                    "kind": r.consumer.kind,
                    "namespace": r.consumer.namespace,
                    "name": r.consumer.name,
                },
                "via": r.via.value,
                "field": r.field,
                "container": r.container,
                "key": r.key,
                "optional": r.optional,
            }
            for r in rows
        ],
        "summary": {
            "objects": len(index),
            "secrets": len(secrets),
            "references": len(rows),
            "errors": len(index.errors),
        },
    }


def _table(
    rows: Sequence[SecretReference], secrets: set[tuple[str, str]], index: ObjectIndex
) -> Table:
    table = Table(title=f"Secret references ({len(rows)} in {len(index)} objects)")
    for col in ("Secret", "Consumer", "Via"):
        table.add_column(col, no_wrap=True)
    table.add_column("Field", overflow="fold")
    for r in rows:
        missing = "" if (r.namespace, r.secret) in secrets or r.optional else " [red](missing)[/]"
        table.add_row(
            f"{r.namespace}/{r.secret}{missing}",
            f"{r.consumer.kind}/{r.consumer.name}",
            r.via.value + (f" {r.key}" if r.key else ""),
            r.field,
        )
    return table
