"""``kustos who-can``: every subject that can do something, with every path.

Two questions share the command: one request (``who-can VERB RESOURCE [NAME]``) and the
matrix of a namespace's Secrets (``who-can --matrix -n NS``). Each is parse, evaluate
(:mod:`kustos.rbac.access`), render (:mod:`kustos.rbac.reporting`); this module only reads
the input and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.table import Table

from kustos.cli.inputs import Cluster, load_index, without_cycle_collection
from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import TableOrJson, print_json, print_table, report_console, report_skipped
from kustos.errors import UsageError
from kustos.kube.index import ObjectIndex
from kustos.kube.references import WORKLOAD_KINDS
from kustos.rbac.access import reader_namespaces, secret_matrix, who_can
from kustos.rbac.matching import request_of
from kustos.rbac.model import RBAC_KINDS, Policy, build_policy
from kustos.rbac.reporting import (
    Question,
    TextReport,
    matrix_doc,
    matrix_text,
    request_doc,
    request_text,
)

if TYPE_CHECKING:
    from lightkube import Client

USAGE = "usage: kustos who-can VERB RESOURCE [NAME] [PATH ... | --cluster]"

#: Reads the index from the PATH arguments (or the cluster, for a namespace), reports what
#: was skipped, and builds its policy.
Load = Callable[[list[str], str], tuple[ObjectIndex, Policy]]
#: What an answer reads besides the RBAC objects of every namespace: the namespace's
#: Secrets (the matrix's rows) and the workloads that use them (exec/attach paths).
_NAMESPACE_KINDS: Final = frozenset({"Secret", *WORKLOAD_KINDS})
_NAMESPACED_RBAC: Final = frozenset({"Role", "RoleBinding"})
#: Above this many readers' namespaces, their Roles and RoleBindings are read by one
#: cluster-wide list of each, kept only in those namespaces, rather than two list calls
#: per namespace. Measured (``bench/whocan_cluster.py``, 125,564 objects, 26,567 Roles
#: and RoleBindings): 4.4 to 7.2 ms per namespace against 1.1 to 1.3 s for the
#: cluster-wide lists; the two crossed near 250 and near 180 namespaces in two runs.
WIDE_AFTER: Final = 200


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
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
    all_subjects: Annotated[
        bool,
        typer.Option(
            "--all-subjects",
            help="Include control-plane identities (kube-system ServiceAccounts, system: users).",
        ),
    ] = False,
) -> int:
    """Every User, Group and ServiceAccount that can do VERB on RESOURCE, and how."""

    def load(paths: list[str], namespace: str) -> tuple[ObjectIndex, Policy]:
        if cluster and not paths:
            index, policy = _list_for(namespace, kubeconfig=kubeconfig, context=context)
        else:
            index, _ = load_index(
                paths or None,
                cluster=cluster,
                kubeconfig=kubeconfig,
                context=context,
                namespaces=None,
            )
            policy = build_policy(index)
        report_skipped(index.errors)
        return index, policy

    words = list(args or [])
    if matrix and not namespace:
        raise UsageError("--matrix needs -n NAMESPACE")
    with without_cycle_collection():
        if matrix:
            return _matrix(words, namespace or "", load, output_format, all_subjects=all_subjects)
        return _single(words, namespace or "", load, output_format, all_subjects=all_subjects)


def _single(
    words: list[str],
    namespace: str,
    load: Load,
    output_format: TableOrJson,
    *,
    all_subjects: bool,
) -> int:
    """VERB RESOURCE [NAME] [PATH ...]: a third word is a NAME unless it exists on disk."""
    if len(words) < 2:
        raise UsageError(USAGE)
    verb, resource, rest = words[0], words[1], words[2:]
    name = ""
    if rest and rest[0] != "-" and not Path(rest[0]).exists():
        name, rest = rest[0], rest[1:]
    index, policy = load(rest, namespace)
    request = request_of(verb, resource, name=name, namespace=namespace)
    subjects = who_can(policy, request, index=index)
    if output_format is TableOrJson.JSON:
        question = Question(verb, resource, namespace, name)
        print_json(request_doc(question, subjects, all_subjects=all_subjects))
    else:
        _print(request_text(request, subjects, all_subjects=all_subjects))
    return 0


def _matrix(
    paths: list[str],
    namespace: str,
    load: Load,
    output_format: TableOrJson,
    *,
    all_subjects: bool,
) -> int:
    """--matrix -n NS [PATH ...]: who can read each Secret of the namespace."""
    index, policy = load(paths, namespace)
    result = secret_matrix(policy, index, namespace)
    del index, policy  # the matrix holds names only; its report is built in the memory freed
    if output_format is TableOrJson.JSON:
        print_json(matrix_doc(result, all_subjects=all_subjects))
    else:
        _print(matrix_text(result, all_subjects=all_subjects))
    return 0


def _list_for(
    namespace: str, *, kubeconfig: Path | None, context: str | None
) -> tuple[ObjectIndex, Policy]:
    # Imported here: who-can on files should not pay for loading the Kubernetes client.
    from kustos.kube.client import ClientSettings, make_client  # noqa: PLC0415

    with make_client(ClientSettings(kubeconfig=kubeconfig, context=context)) as client:
        return list_for_answer(client, namespace)


def list_for_answer(
    client: Client, namespace: str, *, wide_after: int = WIDE_AFTER
) -> tuple[ObjectIndex, Policy]:
    """What an answer about *namespace* reads from the cluster, and nothing more.

    First ClusterRoles and ClusterRoleBindings, the Roles and RoleBindings of *namespace*,
    its Secrets and the workloads that use them: every grant on those Secrets comes from
    there. Then the Roles and RoleBindings of the namespaces whose ServiceAccounts can
    read one of them (:func:`~kustos.rbac.access.reader_namespaces`), where who can mint
    their tokens is decided: two list calls per namespace, or, when there are more than
    *wide_after* of them, one cluster-wide list of each kind whose other namespaces' items
    are dropped unread (the API server's cost per call outweighs the extra items). Other
    namespaces play no part in the answer and are not kept (a large cluster holds
    thousands). A cluster-wide question (no namespace) lists the RBAC objects of every
    namespace. The index orders each kind by identity, so the policy built from it answers
    exactly as one built from a full listing; it comes back beside the index, made with
    what the first round's policy already resolved.
    """
    from kustos.kube.listing import DEFAULT_KINDS, list_cluster  # noqa: PLC0415

    if not namespace:
        rbac = [kind for kind in DEFAULT_KINDS if kind in RBAC_KINDS]
        index = list_cluster(client, kinds=rbac)
        return index, build_policy(index)
    kinds = [kind for kind in DEFAULT_KINDS if kind in RBAC_KINDS | _NAMESPACE_KINDS]
    index = list_cluster(client, kinds=kinds, namespaces=[namespace])
    policy = build_policy(index)
    others = sorted(reader_namespaces(policy, namespace) - {namespace})
    if not others:
        return index, policy
    namespaced_rbac = [kind for kind in DEFAULT_KINDS if kind in _NAMESPACED_RBAC]
    if len(others) > wide_after:
        list_cluster(client, kinds=namespaced_rbac, within=others, index=index)
    else:
        list_cluster(client, kinds=namespaced_rbac, namespaces=others, index=index)
    return index, build_policy(index, earlier=policy)


def _print(report: TextReport) -> None:
    console = report_console()
    for line in report.lines:
        console.print(line, highlight=False)
    if report.grid is not None:
        table = Table(title=report.grid.title)
        key, *others = report.grid.columns
        table.add_column(key, no_wrap=True)
        for column in others:
            table.add_column(column, overflow="fold")
        for row in report.grid.rows:
            table.add_row(*row)
        print_table(table, console)
