"""``who-can`` reports: the question asked, JSON for programs, text for people.

Aspects: ``-n`` is dropped for cluster-scoped resources and kept for namespaced ones, and
``resource.group`` and ``resource/sub`` are read; control-plane identities are hidden from
both reports unless ``all_subjects``; the single-request JSON echoes the question as typed
and lists every path with its binding, role and rule; the text report colours direct and
indirect paths and names the binding and role, one line per binding and rule with its
verbs and resources grouped; the matrix JSON and text factor out what
every Secret shares and list per Secret only what it adds, direct and indirect apart.
"""

from __future__ import annotations

import pytest

from kustos.kube.index import ObjectIndex
from kustos.rbac.access import secret_matrix, who_can
from kustos.rbac.matching import Request, request_of
from kustos.rbac.model import build_policy
from kustos.rbac.reporting import Question, matrix_doc, matrix_text, request_doc, request_text
from tests.unit.manifests import index_of

RBAC = "rbac.authorization.k8s.io/v1"
TEXT = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: team}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tls, namespace: team}}
---
apiVersion: {RBAC}
kind: Role
metadata: {{name: reader, namespace: team}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get]}}]
---
apiVersion: {RBAC}
kind: Role
metadata: {{name: db-only, namespace: team}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [db]}}]
---
apiVersion: {RBAC}
kind: Role
metadata: {{name: deployer, namespace: team}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [create]}}]
---
apiVersion: {RBAC}
kind: RoleBinding
metadata: {{name: readers, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects:
- {{kind: User, name: alice}}
- {{kind: ServiceAccount, name: job-controller, namespace: kube-system}}
---
apiVersion: {RBAC}
kind: RoleBinding
metadata: {{name: db-readers, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: db-only}}
subjects: [{{kind: User, name: bob}}]
---
apiVersion: {RBAC}
kind: RoleBinding
metadata: {{name: deployers, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}
subjects: [{{kind: User, name: carol}}]
"""
PLATFORM = "ServiceAccount kube-system/job-controller"


@pytest.fixture(scope="module")
def index() -> ObjectIndex:
    return index_of(TEXT)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("get", "secrets", "team"), Request("get", "", "secrets", "", "team")),
        (("get", "nodes", "team"), Request("get", "", "nodes", "", "")),
        (("create", "pods/exec", "team"), Request("create", "", "pods", "exec", "team")),
        (("patch", "deployments.apps", ""), Request("patch", "apps", "deployments", "", "")),
        (
            ("get", "clusterroles", "team"),
            Request("get", "rbac.authorization.k8s.io", "clusterroles"),
        ),
    ],
)
def test_the_question_becomes_a_request(words: tuple[str, str, str], expected: Request) -> None:
    verb, resource, namespace = words
    assert request_of(verb, resource, namespace=namespace) == expected


def test_single_request_json_echoes_the_question_and_hides_the_platform(
    index: ObjectIndex,
) -> None:
    request = request_of("get", "secrets", name="db", namespace="team")
    subjects = who_can(build_policy(index), request, index=index)
    doc = request_doc(Question("get", "secrets", "team", "db"), subjects, all_subjects=False)
    assert (doc["verb"], doc["resource"], doc["namespace"], doc["name"]) == (
        "get", "secrets", "team", "db",
    )  # fmt: skip
    listed = {(s["kind"], s["name"]) for s in doc["subjects"]}
    assert {("User", "alice"), ("User", "bob"), ("User", "carol")} <= listed
    assert ("ServiceAccount", "job-controller") not in listed
    alice = next(s for s in doc["subjects"] if s["name"] == "alice")
    assert alice["paths"] == [
        {"type": "direct", "via": "RBAC", "binding": "RoleBinding team/readers",
         "role": "Role team/reader", "rule": alice["paths"][0]["rule"]},
    ]  # fmt: skip
    everyone = request_doc(Question("get", "secrets", "team", "db"), subjects, all_subjects=True)
    assert ("ServiceAccount", "job-controller") in {
        (s["kind"], s["name"]) for s in everyone["subjects"]
    }


def test_single_request_text_names_paths_bindings_and_roles(index: ObjectIndex) -> None:
    request = request_of("get", "secrets", name="db", namespace="team")
    subjects = who_can(build_policy(index), request, index=index)
    report = request_text(request, subjects, all_subjects=False)
    assert report.lines[0] == "[bold]Who can get secrets db in team[/]"
    assert report.grid is None
    at = report.lines.index("[bold]User alice[/]")
    assert report.lines[at + 1].startswith(
        "  [red]direct[/] RBAC [dim](RoleBinding team/readers → Role team/reader: "
    )
    at = report.lines.index("[bold]User carol[/]")
    assert report.lines[at + 1].startswith("  [yellow]indirect[/] ")
    assert f"[bold]{PLATFORM}[/]" not in report.lines
    assert f"[bold]{PLATFORM}[/]" in request_text(request, subjects, all_subjects=True).lines


def test_matrix_json_lists_what_each_secret_adds(index: ObjectIndex) -> None:
    matrix = secret_matrix(build_policy(index), index, "team")
    doc = matrix_doc(matrix, all_subjects=False)
    assert doc["namespace"] == "team"
    common = {s["name"] for s in doc["all_secrets"]["subjects"]}
    assert {"alice", "carol", "system:masters"} <= common
    assert "job-controller" not in common
    assert [(s["name"], [x["name"] for x in s["subjects"]]) for s in doc["secrets"]] == [
        ("db", ["bob"]),
        ("tls", []),
    ]
    assert "job-controller" in {
        s["name"] for s in matrix_doc(matrix, all_subjects=True)["all_secrets"]["subjects"]
    }


def test_matrix_text_counts_and_grids(index: ObjectIndex) -> None:
    matrix = secret_matrix(build_policy(index), index, "team")
    report = matrix_text(matrix, all_subjects=False)
    shown = len(matrix_doc(matrix, all_subjects=False)["all_secrets"]["subjects"])
    assert report.lines[0] == f"[bold]Every Secret in team (2) can be read by {shown} subjects:[/]"
    assert "  User carol [dim](indirect)[/]" in report.lines
    assert "  User alice [dim](direct)[/]" in report.lines
    assert report.grid is not None
    assert report.grid.columns == ("Secret", "Direct", "Indirect")
    assert report.grid.rows == (("db", "User bob", "-"), ("tls", "-", "-"))


WORKLOADS = f"""\
apiVersion: {RBAC}
kind: Role
metadata: {{name: ci, namespace: team}}
rules:
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  verbs: [create, update, patch]
- {{apiGroups: [""], resources: [pods], verbs: [create]}}
---
apiVersion: {RBAC}
kind: RoleBinding
metadata: {{name: ci, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: ci}}
subjects: [{{kind: User, name: dave}}]
"""


def test_one_line_per_binding_and_rule_with_verbs_and_resources_grouped() -> None:
    index = index_of(WORKLOADS)
    request = request_of("get", "secrets", name="db", namespace="team")
    subjects = who_can(build_policy(index), request, index=index)
    lines = request_text(request, subjects, all_subjects=False).lines
    dave = list(lines[lines.index("[bold]User dave[/]") + 1 :])
    # Was 13 lines: one per verb and resource.
    pods = (
        "  [yellow]indirect[/] create pods (mounts any Secret) [dim](RoleBinding team/ci → "
        'Role team/ci: create pods [""])[/]'
    )
    controllers = (
        "  [yellow]indirect[/] create, patch, update deployments, replicasets, statefulsets, "
        "daemonsets (mounts any Secret) [dim](RoleBinding team/ci → Role team/ci: "
        'create,patch,update daemonsets,deployments,replicasets,statefulsets ["apps"])[/]'
    )
    assert dave == [pods, controllers]
