"""``kustos rbac suggest``: least-privilege Roles from the audit archive, and what is unused.

Reads what each ServiceAccount did from the archive, asks :mod:`kustos.audit.suggesting`
for the minimal Roles and bindings, and prints them as YAML (ready for ``kubectl apply``);
with ``--compare PATH`` or ``--cluster`` it reports instead the rules the ServiceAccounts
are granted but never used, read with the same RBAC model as ``kustos who-can``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.inputs import Cluster, load_index
from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import print_json, report_skipped
from kustos.errors import UsageError

app = typer.Typer(help="RBAC from real use: least-privilege suggestions.", no_args_is_help=True)


class SuggestFormat(StrEnum):
    """``--format`` of ``rbac suggest``: YAML manifests, JSON, or a table (with --compare)."""

    YAML = "yaml"
    JSON = "json"
    TABLE = "table"


@app.command("suggest")
def suggest(
    archive: Annotated[Path, typer.Option("--archive", help="The audit archive folder.")],
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Only ServiceAccounts of NS.")
    ] = None,
    service_account: Annotated[
        str | None, typer.Option("--service-account", help="Only this one: NS/NAME.")
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option("--compare", help="Manifests (files, folders) with the current RBAC."),
    ] = None,
    cluster: Cluster = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    output_format: Annotated[
        SuggestFormat | None,
        typer.Option("--format", help="yaml (default) or json; with --compare table or json."),
    ] = None,
) -> int:
    """Minimal Roles and RoleBindings (with resourceNames) from what ServiceAccounts did."""
    import yaml  # noqa: PLC0415

    from kustos.audit.archive import Archive  # noqa: PLC0415
    from kustos.audit.suggesting import collect, suggest, unused_grants  # noqa: PLC0415
    from kustos.rbac.model import Subject, build_policy  # noqa: PLC0415

    account = None
    if service_account is not None:
        ns, sep, name = service_account.partition("/")
        if not sep or not ns or not name or "/" in name:
            raise UsageError(f"--service-account {service_account!r}: use NAMESPACE/NAME")
        account = Subject("ServiceAccount", name, ns)
    from kustos.cli.auditalerts import require_folder  # noqa: PLC0415

    require_folder(archive)
    activity = collect(
        (a.event for a in Archive(archive).read()), namespace=namespace, account=account
    )

    if not compare and not cluster:
        objects = suggest(activity)
        if output_format is SuggestFormat.JSON:
            print_json({"apiVersion": "v1", "kind": "List", "items": objects})
        elif output_format is SuggestFormat.TABLE:
            raise UsageError("--format table goes with --compare; suggestions are yaml or json")
        elif not objects:
            typer.echo("# no ServiceAccount requests in the archive", err=True)
        else:
            typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
        return 0

    index, _ = load_index(
        compare or None, cluster=cluster, kubeconfig=kubeconfig, context=context, namespaces=None
    )
    report_skipped(index.errors)
    policy = build_policy(index)
    if account is not None:
        accounts = [account]
    else:
        bound = {s for b in policy.bindings for s in b.subjects if s.kind == "ServiceAccount"}
        accounts = [
            s for s in bound | set(activity.uses) if namespace is None or s.namespace == namespace
        ]
    unused = unused_grants(policy, activity, accounts)
    if output_format is SuggestFormat.JSON:
        print_json({"unused": [u.to_json() for u in unused]})
        return 0
    if output_format is SuggestFormat.YAML:
        raise UsageError("--compare prints a report: --format table or json")
    if not unused:
        typer.echo("every granted permission was used")
        return 0
    for item in unused:
        what = "never used" if item.whole_rule else f"never used: {', '.join(item.unused)}"
        typer.echo(
            f"ServiceAccount {item.subject.namespace}/{item.subject.name}: {item.binding} -> "
            f"{item.role} rule {item.rule_index} ({item.rule}): {what}"
        )
    return 0
