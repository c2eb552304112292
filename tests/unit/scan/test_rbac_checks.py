"""RBAC checks KST001-KST012: a positive and a negative fixture for each.

Aspects: cluster-wide reads; broad groups and anonymous; default ServiceAccounts;
namespace list/watch; wildcards (and `*` in a later rule, which Checkov misses);
`secrets/*`; bind/escalate/impersonate; pod and workload creators; exec and attach with
`get`; token requests; nodes/proxy; cluster-admin; bootstrap objects ignored; aggregation.
"""

from __future__ import annotations

import pytest

from tests.unit.manifests import findings, where

RBAC = "rbac.authorization.k8s.io/v1"
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team}\n---\n"


def cluster(rules: str, subjects: str, *, labels: str = "") -> str:
    return (
        f"apiVersion: {RBAC}\nkind: ClusterRole\nmetadata: {{name: r{labels}}}\nrules: {rules}\n---\n"
        f"apiVersion: {RBAC}\nkind: ClusterRoleBinding\nmetadata: {{name: b{labels}}}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}\n"
        f"subjects: {subjects}\n---\n"
    )


def local(rules: str, subjects: str) -> str:
    return (
        f"apiVersion: {RBAC}\nkind: Role\nmetadata: {{name: r, namespace: team}}\nrules: {rules}\n---\n"
        f"apiVersion: {RBAC}\nkind: RoleBinding\nmetadata: {{name: b, namespace: team}}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}}\n"
        f"subjects: {subjects}\n---\n"
    )


def r(verbs: str, resources: str, groups: str = '""', names: str = "") -> str:
    extra = f", resourceNames: [{names}]" if names else ""
    return f"{{apiGroups: [{groups}], resources: ['{resources}'], verbs: ['{verbs}']{extra}}}"


ALICE = "[{kind: User, name: alice}]"
BOT = "[{kind: ServiceAccount, name: bot, namespace: team}]"


@pytest.mark.parametrize(
    ("rule_id", "positive", "negative"),
    [
        ("KST001", cluster(f"[{r('get', 'secrets')}]", ALICE),
         cluster(f"[{r('get', 'configmaps')}]", ALICE)),
        ("KST002", local(f"[{r('list', 'secrets')}]", "[{kind: Group, name: system:authenticated}]"),
         local(f"[{r('list', 'secrets')}]", "[{kind: Group, name: admins}]")),
        ("KST002", cluster(f"[{r('get', 'secrets')}]", "[{kind: User, name: system:anonymous}]"),
         cluster(f"[{r('get', 'secrets', names='one')}]", "[{kind: User, name: someone}]")),
        ("KST003", local(f"[{r('get', 'secrets')}]", "[{kind: ServiceAccount, name: default}]"),
         local(f"[{r('get', 'secrets')}]", BOT)),
        ("KST004", local(f"[{r('watch', 'secrets')}]", BOT), local(f"[{r('get', 'secrets')}]", BOT)),
        ("KST005", local(f"[{r('get', 'pods')}, {r('*', '*')}]", BOT),
         local(f"[{r('*', 'pods')}]", BOT)),
        ("KST006", local(f"[{r('get', 'secrets/*')}]", BOT), local(f"[{r('get', '*/status')}]", BOT)),
        ("KST007", cluster(f"[{r('bind', 'clusterroles', 'rbac.authorization.k8s.io')}]", ALICE),
         cluster(f"[{r('get', 'clusterroles', 'rbac.authorization.k8s.io')}]", ALICE)),
        ("KST007", local(f"[{r('impersonate', 'serviceaccounts')}]", BOT),
         local(f"[{r('get', 'serviceaccounts')}]", BOT)),
        ("KST008", SECRET + local(f"[{r('patch', 'deployments', 'apps')}]", BOT),
         SECRET + local(f"[{r('get', 'deployments', 'apps')}]", BOT)),
        ("KST009", local(f"[{r('get', 'pods/exec')}]", BOT), local(f"[{r('get', 'pods/log')}]", BOT)),
        ("KST010", local(f"[{r('create', 'serviceaccounts/token')}]", BOT),
         local(f"[{r('get', 'serviceaccounts')}]", BOT)),
        ("KST011", cluster(f"[{r('get', 'nodes/proxy')}]", ALICE),
         cluster(f"[{r('get', 'nodes/stats')}]", ALICE)),
    ],
)  # fmt: skip
def test_positive_and_negative(rule_id: str, positive: str, negative: str) -> None:
    assert findings(positive, rule_id), f"{rule_id} missed"
    assert findings(negative, rule_id) == [], f"{rule_id} false positive"


def test_cluster_admin_binding_is_one_finding_per_subject() -> None:
    text = (
        f"apiVersion: {RBAC}\nkind: ClusterRoleBinding\nmetadata: {{name: admins}}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n"
        "subjects: [{kind: User, name: a}, {kind: User, name: b}]\n"
    )
    assert where(findings(text, "KST012")) == [
        ("ClusterRoleBinding admins", "subjects[0]"), ("ClusterRoleBinding admins", "subjects[1]")
    ]  # fmt: skip
    assert findings(text, "KST001") == []  # cluster-admin says it all


def test_finding_names_subject_role_rule_and_field() -> None:
    text = local(f"[{r('get', 'pods')}, {r('list', 'secrets')}]", BOT)
    (f,) = findings(text, "KST004")
    assert f.field == "subjects[0]"
    assert f.message == (
        "ServiceAccount team/bot can list Secrets in namespace team via Role team/r rules[1]"
    )


def test_wildcard_in_a_later_rule_is_found() -> None:
    (f,) = findings(local(f"[{r('get', 'pods')}, {r('get', '*')}]", BOT), "KST005")
    assert f.field == "rules[1]"


def test_bootstrap_roles_are_not_reported() -> None:
    text = cluster(
        f"[{r('get', 'secrets')}]",
        ALICE,
        labels=", labels: {kubernetes.io/bootstrapping: rbac-defaults}",
    )
    assert findings(text, "KST001") == []


def test_aggregated_rules_are_evaluated() -> None:
    text = (
        f"apiVersion: {RBAC}\nkind: ClusterRole\nmetadata: {{name: r}}\n"
        "aggregationRule: {clusterRoleSelectors: [{matchLabels: {x: y}}]}\nrules: []\n---\n"
        f"apiVersion: {RBAC}\nkind: ClusterRole\nmetadata: {{name: part, labels: {{x: y}}}}\n"
        f"rules: [{r('get', 'secrets')}]\n---\n"
        f"apiVersion: {RBAC}\nkind: ClusterRoleBinding\nmetadata: {{name: b}}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}\n"
        f"subjects: {ALICE}\n"
    )
    (f,) = findings(text, "KST001")
    assert "aggregated from ClusterRole part" in f.message
