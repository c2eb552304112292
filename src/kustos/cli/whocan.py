"""``kustos who-can``: every subject that can do something, with every path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from kustos.cli.inputs import Cluster, Context, Kubeconfig, load_index
from kustos.errors import UsageError
from kustos.rbac.access import SubjectPaths, is_platform_subject, secret_matrix, who_can
from kustos.rbac.matching import CLUSTER_SCOPED_RESOURCES, Request, parse_resource
from kustos.rbac.model import build_policy


def _subjects_json(subjects: list[SubjectPaths]) -> list[dict[str, Any]]:
    return [
        {
            "kind": sp.subject.kind,
            "namespace": sp.subject.namespace,
            "name": sp.subject.name,
            "paths": [
                {"type": p.type, "via": p.via, "binding": p.binding, "role": p.role, "rule": p.rule}
                for p in sp.paths
            ],
        }
        for sp in subjects
    ]


def _visible(subjects: list[SubjectPaths], *, all_subjects: bool) -> list[SubjectPaths]:
    if all_subjects:
        return subjects
    return [sp for sp in subjects if not is_platform_subject(sp.subject)]


def _split(args: list[str], *, matrix: bool) -> tuple[str, str, str, list[str]]:
    """VERB RESOURCE [NAME] [PATH ...]: a third word is a NAME unless it exists on disk."""
    if matrix:
        return "get", "secrets", "", args
    if len(args) < 2:
        raise UsageError("usage: kustos who-can VERB RESOURCE [NAME] [PATH ... | --cluster]")
    verb, resource, rest = args[0], args[1], args[2:]
    name = ""
    if rest and rest[0] != "-" and not Path(rest[0]).exists():
        name, rest = rest[0], rest[1:]
    return verb, resource, name, rest


def who_can_command(
    args: Annotated[
        list[str] | None, typer.Argument(help="VERB RESOURCE [NAME] [PATH ...]", show_default=False)
    ] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Namespace.")] = None,
    cluster: Cluster = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    matrix: Annotated[
        bool, typer.Option("--matrix", help="For each Secret in -n NS: who can read it.")
    ] = False,
    output_format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    all_subjects: Annotated[
        bool,
        typer.Option(
            "--all-subjects",
            help="Include control-plane identities (kube-system ServiceAccounts, system: users).",
        ),
    ] = False,
) -> int:
    """Every User, Group and ServiceAccount that can do VERB on RESOURCE, and how."""
    if output_format not in ("table", "json"):
        raise UsageError(f"unknown format {output_format!r} (table or json)")
    verb, resource, name, paths = _split(list(args or []), matrix=matrix)
    if matrix and not namespace:
        raise UsageError("--matrix needs -n NAMESPACE")
    index, _ = load_index(
        paths or None, cluster=cluster, kubeconfig=kubeconfig, context=context, namespaces=None
    )
    for err in index.errors:
        typer.echo(f"kustos: skipped {err}", err=True)
    policy = build_policy(index)
    if matrix:
        assert namespace is not None  # noqa: S101 - checked above
        result = secret_matrix(policy, index, namespace)
        common = _visible(result.common, all_subjects=all_subjects)
        in_use = _visible(result.in_use, all_subjects=all_subjects)
        extra = {n: _visible(e, all_subjects=all_subjects) for n, e in sorted(result.extra.items())}
        if output_format == "json":
            doc = {
                "namespace": namespace,
                "all_secrets": {"subjects": _subjects_json(common)},
                "secrets_used_by_pods": {"subjects": _subjects_json(in_use)},
                "become_any_serviceaccount_in": {
                    ns: {"subjects": _subjects_json(_visible(sps, all_subjects=all_subjects))}
                    for ns, sps in result.become_any.items()
                },
                "secrets": [
                    {
                        "name": name,
                        "used_by_pods": name in result.used_by_pods,
                        "subjects": _subjects_json(subjects),
                    }
                    for name, subjects in extra.items()
                ],
            }
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        console = Console()
        console.print(
            f"[bold]Every Secret in {namespace} ({len(extra)}) can be read by {len(common)} "
            "subjects:[/]",
            highlight=False,
        )
        for sp in common:
            kinds = sorted({p.type for p in sp.paths})
            console.print(f"  {sp.subject} [dim]({', '.join(kinds)})[/]", highlight=False)
        if in_use:
            console.print(
                f"[bold]and every Secret a pod uses ({len(result.used_by_pods)}) by "
                f"{len(in_use)} more (exec/attach):[/]",
                highlight=False,
            )
            for sp in in_use:
                console.print(f"  {sp.subject}", highlight=False)
        grid = Table(title="Beyond those, per Secret")
        grid.add_column("Secret", no_wrap=True)
        grid.add_column("Direct", overflow="fold")
        grid.add_column("Indirect", overflow="fold")
        for secret, subjects in extra.items():
            direct = [str(s.subject) for s in subjects if any(p.type == "direct" for p in s.paths)]
            indirect = [
                str(s.subject) for s in subjects if all(p.type == "indirect" for p in s.paths)
            ]
            grid.add_row(secret, "\n".join(direct) or "-", "\n".join(indirect) or "-")
        console.print(grid)
        return 0
    group, res, sub = parse_resource(resource)
    # RoleBindings never grant cluster-scoped resources: ignore -n for them.
    scope = "" if res in CLUSTER_SCOPED_RESOURCES else namespace or ""
    request = Request(verb, group, res, sub, scope, name)
    subjects = _visible(who_can(policy, request, index=index), all_subjects=all_subjects)
    if output_format == "json":
        doc = {
            "verb": verb, "resource": resource, "namespace": namespace or "", "name": name,
            "subjects": _subjects_json(subjects),
        }  # fmt: skip
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    console = Console()
    console.print(f"[bold]Who can {request}[/]", highlight=False)
    for sp in subjects:
        console.print(f"[bold]{sp.subject}[/]", highlight=False)
        for p in sp.paths:
            colour = "red" if p.type == "direct" else "yellow"
            line = f"  [{colour}]{p.type}[/] {p.via}"
            if p.binding:
                line += f" [dim]({p.binding} → {p.role}: {p.rule})[/]"
            console.print(line, highlight=False)
    return 0
