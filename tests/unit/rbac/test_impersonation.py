"""What an impersonated subject can do: the judgement behind named ``impersonate`` rules.

Aspects: a user name of the form ``system:serviceaccount:NS:NAME`` is that ServiceAccount;
a ServiceAccount holds the grants of its groups (``system:serviceaccounts``,
``system:serviceaccounts:NS``, ``system:authenticated``); reads, workload creation,
exec, token requests, bind/escalate and ``nodes/proxy`` are named with their scope;
``system:masters`` can do everything; a subject bound to nothing can do nothing.
"""

from __future__ import annotations

import pytest

from kustos.rbac.access import SUPERUSER_GROUP, secret_access_of, subject_of_username
from kustos.rbac.model import Subject, build_policy
from tests.unit.manifests import index_of

RBAC = "rbac.authorization.k8s.io/v1"
POLICY = f"""\
apiVersion: {RBAC}
kind: ClusterRole
metadata: {{name: reader}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get, list]}}]
---
apiVersion: {RBAC}
kind: ClusterRole
metadata: {{name: operator}}
rules:
- {{apiGroups: [apps], resources: [deployments], verbs: [patch]}}
- {{apiGroups: [""], resources: [pods/exec], verbs: [create]}}
- {{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create]}}
- {{apiGroups: [""], resources: [nodes/proxy], verbs: [get]}}
- {{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind]}}
---
apiVersion: {RBAC}
kind: RoleBinding
metadata: {{name: team-readers, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}}
subjects: [{{kind: Group, name: "system:serviceaccounts:team"}}]
---
apiVersion: {RBAC}
kind: ClusterRoleBinding
metadata: {{name: ops}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: operator}}
subjects: [{{kind: User, name: ops-bot}}]
"""


@pytest.mark.parametrize(
    ("username", "subject"),
    [
        ("system:serviceaccount:team:builder", Subject("ServiceAccount", "builder", "team")),
        ("alice", Subject("User", "alice")),
        ("system:serviceaccount:team", Subject("User", "system:serviceaccount:team")),
    ],
)
def test_user_names_of_service_accounts(username: str, subject: Subject) -> None:
    assert subject_of_username(username) == subject


def test_a_service_account_holds_the_grants_of_its_groups() -> None:
    policy = build_policy(index_of(POLICY))
    can = secret_access_of(policy, Subject("ServiceAccount", "builder", "team"))
    assert can == ["get/list Secrets in namespace team"]
    assert secret_access_of(policy, Subject("ServiceAccount", "builder", "other")) == []


def test_every_path_to_secret_values_is_named_with_its_scope() -> None:
    policy = build_policy(index_of(POLICY))
    assert secret_access_of(policy, Subject("User", "ops-bot")) == [
        "create or change deployments in every namespace",
        "exec into pods in every namespace",
        "create ServiceAccount tokens in every namespace",
        "use the kubelet API (nodes/proxy)",
        "bind roles in every namespace",
    ]


def test_masters_can_do_everything_and_strangers_nothing() -> None:
    policy = build_policy(index_of(POLICY))
    assert secret_access_of(policy, SUPERUSER_GROUP)
    assert secret_access_of(policy, Subject("User", "bob")) == []
