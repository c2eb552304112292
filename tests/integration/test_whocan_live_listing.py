"""``kustos who-can --cluster`` lists only what its answer reads, and answers the same.

Aspects: for a namespace, who-can lists ClusterRoles, ClusterRoleBindings, the namespace's
Roles, RoleBindings, Secrets and workloads, and then the Roles and RoleBindings of the
namespaces whose ServiceAccounts can read one of its Secrets, and nothing of any other
namespace; the matrix and a single request it prints are the very documents computed from
a listing of the whole cluster (byte for byte once rendered), including a path that exists
only through a Role and a RoleBinding in *another* namespace (who can mint tokens for a
reader's ServiceAccount there) and a Secret used by a pod; the readers' namespaces read by
one cluster-wide list per kind (when they are many) give the very same index and answer as
one list per namespace.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from kustos.cli.main import main
from kustos.cli.output import json_text
from kustos.cli.whocan import list_for_answer
from kustos.kube.applying import apply_manifests
from kustos.kube.listing import list_cluster
from kustos.rbac.access import secret_matrix, who_can
from kustos.rbac.matching import request_of
from kustos.rbac.model import build_policy
from kustos.rbac.reporting import Question, matrix_doc, request_doc
from kustos.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration

CANARY = "canary-whocan-Zq8v"
MANIFESTS = """\
apiVersion: v1
kind: Secret
metadata: {name: app-db, namespace: NS}
stringData: {password: canary-whocan-Zq8v}
---
apiVersion: v1
kind: Secret
metadata: {name: app-api, namespace: NS}
stringData: {token: canary-whocan-Zq8v}
---
apiVersion: v1
kind: Secret
metadata: {name: elsewhere-only, namespace: OTHER}
stringData: {token: canary-whocan-Zq8v}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
        env:
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: app-db, key: password}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-api, namespace: NS}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [app-api]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: robot-reads-api, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-api}
subjects:
- {kind: ServiceAccount, name: robot, namespace: OTHER}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-all, namespace: NS}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-all}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: batch, namespace: OTHER}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: exec, namespace: NS}
rules:
- {apiGroups: [""], resources: [pods/exec], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: eve-execs, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: exec}
subjects:
- {kind: User, name: eve, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: mint-robot, namespace: OTHER}
rules:
- {apiGroups: [""], resources: [serviceaccounts/token], verbs: [create], resourceNames: [robot]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: mallory-mints, namespace: OTHER}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: mint-robot}
subjects:
- {kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: mint-any, namespace: OTHER}
rules:
- {apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: trent-mints, namespace: OTHER}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: mint-any}
subjects:
- {kind: User, name: trent, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: mint-any, namespace: THIRD}
rules:
- {apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: oscar-mints, namespace: THIRD}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: mint-any}
subjects:
- {kind: User, name: oscar, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: batch, namespace: OTHER}
"""


@pytest.fixture
def other(kube: Client, namespace: str) -> Iterator[str]:
    """A second namespace, where the readers' ServiceAccounts and their minters live."""
    name = f"{namespace[:50]}-b"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        kube.delete(Namespace, name)


@pytest.fixture
def third(kube: Client, namespace: str) -> Iterator[str]:
    """A namespace no reader's ServiceAccount lives in: its RBAC cannot change the answer."""
    name = f"{namespace[:50]}-c"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        kube.delete(Namespace, name)


def _apply(kube: Client, namespace: str, other: str, third: str, folder: Path) -> None:
    path = folder / "whocan.yaml"
    text = MANIFESTS.replace("OTHER", other).replace("THIRD", third).replace("NS", namespace)
    path.write_text(text)
    apply_manifests(kube, [path])


def _no_canary(text: str) -> None:
    """The Secrets' values appear nowhere in an answer, in clear or as the API stores them."""
    assert CANARY not in text
    assert base64.b64encode(CANARY.encode()).decode() not in text


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_matrix_from_a_partial_listing_equals_the_full_one(
    control_plane: ControlPlane, kube: Client, namespace: str, other: str, third: str,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _apply(kube, namespace, other, third, tmp_path)
    printed = _cli(
        ["who-can", "--matrix", "-n", namespace, "--cluster", "--all-subjects",
         "--kubeconfig", str(control_plane.kubeconfig), "--format", "json"],
        capsys,
    )  # fmt: skip
    full = list_cluster(kube)
    expected = matrix_doc(secret_matrix(build_policy(full), full, namespace), all_subjects=True)
    assert printed == json_text(expected)

    doc = json.loads(printed)
    secrets = {s["name"]: s for s in doc["secrets"]}
    assert set(secrets) == {"app-db", "app-api"}  # not the other namespace's Secret
    assert secrets["app-db"]["used_by_pods"]
    assert not secrets["app-api"]["used_by_pods"]
    api_readers = {s["name"]: s["paths"] for s in secrets["app-api"]["subjects"]}
    # Only the Role and RoleBinding in the other namespace make this path.
    assert any(f"create a token for ServiceAccount {other}/robot" in p["via"]
               for p in api_readers["mallory"])  # fmt: skip
    in_use = {s["name"] for s in doc["secrets_used_by_pods"]["subjects"]}
    assert "eve" in in_use
    assert other in doc["become_any_serviceaccount_in"]
    minters = doc["become_any_serviceaccount_in"][other]["subjects"]
    assert {s["name"] for s in minters} >= {"trent"}
    assert third not in doc["become_any_serviceaccount_in"]
    _no_canary(printed)


def test_lists_rbac_only_where_a_reader_lives(
    kube: Client, namespace: str, other: str, third: str, tmp_path: Path
) -> None:
    _apply(kube, namespace, other, third, tmp_path)
    index, _ = list_for_answer(kube, namespace)
    where = {(o.kind, o.namespace) for o in index if o.namespace}
    # The readers' namespaces' Roles and RoleBindings (here and kube-system's, whose
    # controllers read every Secret), nothing of the third's, and nothing else elsewhere.
    assert {("RoleBinding", other), ("Role", other)} <= where
    assert third not in {ns for _, ns in where}
    assert {kind for kind, ns in where if ns != namespace} == {"Role", "RoleBinding"}
    assert index.of_kind("ClusterRoleBinding")  # cluster-wide grants are always read
    assert {o.name for o in index.of_kind("Secret")} == {"app-db", "app-api"}


def test_single_request_from_a_partial_listing_equals_the_full_one(
    control_plane: ControlPlane, kube: Client, namespace: str, other: str, third: str,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _apply(kube, namespace, other, third, tmp_path)
    config = ["--kubeconfig", str(control_plane.kubeconfig), "--format", "json"]
    full = list_cluster(kube)
    policy = build_policy(full)
    for ns, name in ((namespace, "app-db"), (namespace, "app-api"), ("", "")):
        words = ["get", "secrets", *([name] if name else [])]
        printed = _cli(["who-can", *words, *(["-n", ns] if ns else []), "--cluster", *config],
                       capsys)  # fmt: skip
        request = request_of("get", "secrets", name=name, namespace=ns)
        subjects = who_can(policy, request, index=full)
        expected = request_doc(Question("get", "secrets", ns, name), subjects, all_subjects=False)
        assert printed == json_text(expected), (ns, name)
        _no_canary(printed)
    assert "mallory" in _cli(
        ["who-can", "get", "secrets", "app-api", "-n", namespace, "--cluster", *config], capsys
    )


def test_cluster_wide_lists_of_the_readers_rbac_equal_lists_per_namespace(
    kube: Client, namespace: str, other: str, third: str, tmp_path: Path
) -> None:
    _apply(kube, namespace, other, third, tmp_path)
    per_namespace = list_for_answer(kube, namespace, wide_after=1_000_000)
    wide = list_for_answer(kube, namespace, wide_after=0)
    refs = [sorted(str(o.ref) for o in index) for index, _ in (wide, per_namespace)]
    assert refs[0] == refs[1]
    assert ("RoleBinding", other) in {(o.kind, o.namespace) for o in wide[0]}
    assert third not in {o.namespace for o in wide[0]}  # listed, but dropped unread
    full = list_cluster(kube)
    expected = json_text(
        matrix_doc(secret_matrix(build_policy(full), full, namespace), all_subjects=True)
    )
    for index, policy in (wide, per_namespace):
        answer = matrix_doc(secret_matrix(policy, index, namespace), all_subjects=True)
        assert json_text(answer) == expected
