"""Policies read from objects, and who can read a Secret.

Aspects: RoleBinding → Role and → ClusterRole (scoped to the binding's namespace);
ClusterRoleBinding (every namespace); aggregated ClusterRoles computed from selectors
(matchLabels and matchExpressions); built-in default roles for file scans; missing roles;
who-can direct paths with binding, role and rule; indirect paths (pod creators, exec on
pods that use the Secret, token requests and impersonation of readers, bind/escalate,
nodes/proxy); system:masters; the per-Secret matrix with resourceNames; the namespaces
whose ServiceAccounts can read a namespace's Secrets (what a live answer lists); a policy
built with an earlier one of part of the index is the policy built afresh, re-resolving
what the rest of the index changes.
"""

from __future__ import annotations

from kustos.kube.index import ObjectIndex
from kustos.rbac.access import (
    SUPERUSER_GROUP,
    is_platform_subject,
    reader_namespaces,
    secret_matrix,
    who_can,
)
from kustos.rbac.matching import Request
from kustos.rbac.model import Subject, build_policy
from tests.unit.manifests import index_of

RBAC = "rbac.authorization.k8s.io/v1"


def role(kind: str, name: str, rules: str, ns: str = "", extra: str = "") -> str:
    meta = f"{{name: {name}{', namespace: ' + ns if ns else ''}{extra}}}"
    return f"apiVersion: {RBAC}\nkind: {kind}\nmetadata: {meta}\nrules: {rules}\n---\n"


def binding(
    kind: str, name: str, role_kind: str, role_name: str, subjects: str, *, ns: str = ""
) -> str:
    meta = f"{{name: {name}{', namespace: ' + ns if ns else ''}}}"
    return (
        f"apiVersion: {RBAC}\nkind: {kind}\nmetadata: {meta}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {role_kind}, name: {role_name}}}\n"
        f"subjects: {subjects}\n---\n"
    )


READ = '[{apiGroups: [""], resources: [secrets], verbs: [get]}]'
ALICE = "[{kind: User, name: alice}]"


def subjects_of(text: str, request: Request) -> dict[str, list[str]]:
    index = index_of(text)
    return {
        str(sp.subject): [f"{p.type}:{p.via}" for p in sp.paths]
        for sp in who_can(build_policy(index), request, index=index)
    }


def test_rolebinding_to_clusterrole_is_scoped_to_its_namespace() -> None:
    text = role("ClusterRole", "reader", READ) + binding(
        "RoleBinding", "b", "ClusterRole", "reader", ALICE, ns="team"
    )
    inside = subjects_of(text, Request("get", "", "secrets", namespace="team", name="x"))
    outside = subjects_of(text, Request("get", "", "secrets", namespace="other", name="x"))
    assert inside["User alice"] == ["direct:RBAC"]
    assert "User alice" not in outside
    assert set(outside) == {str(SUPERUSER_GROUP)}


def test_clusterrolebinding_grants_everywhere_with_binding_role_and_rule() -> None:
    text = role("ClusterRole", "reader", READ) + binding(
        "ClusterRoleBinding", "b", "ClusterRole", "reader", ALICE
    )
    index = index_of(text)
    (alice,) = [
        sp for sp in who_can(build_policy(index), Request("get", "", "secrets", "", "any", "x"))
        if sp.subject == Subject("User", "alice")
    ]  # fmt: skip
    (path,) = alice.paths
    assert (path.binding, path.role, path.rule) == (
        "ClusterRoleBinding b", "ClusterRole reader", 'get secrets [""]'
    )  # fmt: skip


def test_aggregated_clusterrole_gets_matching_roles_rules() -> None:
    text = (
        role("ClusterRole", "agg", "[]", extra="") .replace(
            "rules: []",
            "aggregationRule: {clusterRoleSelectors: [{matchLabels: {agg: 'yes'}},"
            " {matchExpressions: [{key: tier, operator: In, values: [gold]}]}]}\nrules: []",
        )
        + role("ClusterRole", "part-a", READ, extra=", labels: {agg: 'yes'}")
        + role("ClusterRole", "part-b", '[{apiGroups: [""], resources: [pods/exec], verbs: [create]}]',
               extra=", labels: {tier: gold}")
        + role("ClusterRole", "unrelated", '[{apiGroups: [""], resources: [nodes], verbs: [get]}]',
               extra=", labels: {agg: 'no'}")
    )  # fmt: skip
    policy = build_policy(index_of(text))
    agg = policy.role("ClusterRole", "", "agg")
    assert agg is not None
    assert sorted((r.origin, sorted(r.resources)[0]) for r in agg.rules) == [
        ("part-a", "secrets"), ("part-b", "pods/exec")
    ]  # fmt: skip


def test_builtin_roles_fill_in_for_file_scans_and_missing_roles_grant_nothing() -> None:
    text = binding("RoleBinding", "edit", "ClusterRole", "edit", ALICE, ns="team") + binding(
        "RoleBinding", "ghost", "Role", "does-not-exist", "[{kind: User, name: bob}]", ns="team"
    )
    got = subjects_of(text, Request("get", "", "secrets", namespace="team", name="x"))
    assert got["User alice"][0] == "direct:RBAC"
    assert "User bob" not in got


def test_indirect_paths() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: team}\nspec:\n"
        "  containers: [{name: c, envFrom: [{secretRef: {name: db}}]}]\n---\n"
        + role("Role", "creator", '[{apiGroups: [apps], resources: [deployments], verbs: [create]}]', ns="team")
        + binding("RoleBinding", "b1", "Role", "creator", "[{kind: User, name: carol}]", ns="team")
        + role("Role", "exec", '[{apiGroups: [""], resources: [pods/exec], verbs: [get]}]', ns="team")
        + binding("RoleBinding", "b2", "Role", "exec", "[{kind: Group, name: oncall}]", ns="team")
        + role("Role", "reader", READ, ns="team")
        + binding("RoleBinding", "b3", "Role", "reader", "[{kind: ServiceAccount, name: app, namespace: team}]", ns="team")
        + role("Role", "minter", '[{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create], resourceNames: [app]}]', ns="team")
        + binding("RoleBinding", "b4", "Role", "minter", "[{kind: User, name: dave}]", ns="team")
        + role("ClusterRole", "proxy", '[{apiGroups: [""], resources: [nodes/proxy], verbs: [get]}]')
        + binding("ClusterRoleBinding", "b5", "ClusterRole", "proxy", "[{kind: User, name: erin}]")
        + role("ClusterRole", "binder", f'[{{apiGroups: [{RBAC.split("/", maxsplit=1)[0]}], resources: [clusterroles], verbs: [bind]}}]')
        + binding("ClusterRoleBinding", "b6", "ClusterRole", "binder", "[{kind: User, name: frank}]")
        + role("ClusterRole", "imp", '[{apiGroups: [""], resources: [serviceaccounts], verbs: [impersonate]}]')
        + binding("ClusterRoleBinding", "b7", "ClusterRole", "imp", "[{kind: User, name: gina}]")
    )  # fmt: skip
    got = subjects_of(text, Request("get", "", "secrets", namespace="team", name="db"))
    assert got["ServiceAccount team/app"] == ["direct:RBAC"]
    assert got["User carol"] == ["indirect:create deployments (mounts any Secret)"]
    assert got["Group oncall"] == ["indirect:get pods/exec on pods using it"]
    assert got["User dave"] == ["indirect:create a token for ServiceAccount team/app"]
    assert got["User erin"] == ["indirect:get nodes/proxy (kubelet API)"]
    assert got["User frank"] == ["indirect:bind clusterroles (grant itself access)"]
    assert got["User gina"] == [
        "indirect:impersonate any ServiceAccount in team (1 ServiceAccount of them can read it)"
    ]
    assert got[str(SUPERUSER_GROUP)] == ["direct:system:masters bypasses authorization"]
    # No pod uses "unused": exec gives nothing there.
    got = subjects_of(text, Request("get", "", "secrets", namespace="team", name="unused"))
    assert "Group oncall" not in got


def test_matrix_honours_resource_names() -> None:
    text = (
        "".join(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {n}, namespace: team}}\n---\n"
            for n in ("a", "b")
        )
        + role("Role", "only-a", '[{apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [a]}]', ns="team")
        + binding("RoleBinding", "b", "Role", "only-a", ALICE, ns="team")
    )  # fmt: skip
    index = index_of(text)
    matrix = secret_matrix(build_policy(index), index, "team")
    assert [str(sp.subject) for sp in matrix.common] == ["Group system:masters"]
    names = {k: [str(sp.subject) for sp in matrix.for_secret(k)] for k in ("a", "b")}
    assert names == {"a": ["Group system:masters", "User alice"], "b": ["Group system:masters"]}
    assert [str(sp.subject) for sp in matrix.extra["a"]] == ["User alice"]
    assert matrix.extra["b"] == []


def test_platform_subjects_are_recognised() -> None:
    assert is_platform_subject(Subject("ServiceAccount", "job-controller", "kube-system"))
    assert is_platform_subject(Subject("User", "system:kube-controller-manager"))
    assert not is_platform_subject(SUPERUSER_GROUP)
    assert not is_platform_subject(Subject("Group", "system:authenticated"))
    assert not is_platform_subject(Subject("Group", "system:serviceaccounts:team"))
    assert not is_platform_subject(Subject("ServiceAccount", "default", "team"))


def test_reader_namespaces_are_those_of_serviceaccounts_granted_on_the_secrets() -> None:
    sa = "[{kind: ServiceAccount, name: robot, namespace: ci}, {kind: ServiceAccount, name: me}]"
    pods = '[{apiGroups: [""], resources: [pods], verbs: [get]}]'
    named = '[{apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [db]}]'
    apps = '[{apiGroups: [apps], resources: ["*"], verbs: ["*"]}]'
    text = (
        role("Role", "named", named, ns="team")
        + binding("RoleBinding", "b1", "Role", "named", sa, ns="team")
        + role("ClusterRole", "pods", pods)
        + binding("ClusterRoleBinding", "b2", "ClusterRole", "pods",
                  "[{kind: ServiceAccount, name: x, namespace: podsonly}]")
        + role("ClusterRole", "apps", apps)
        + binding("ClusterRoleBinding", "b3", "ClusterRole", "apps",
                  "[{kind: ServiceAccount, name: x, namespace: appsonly}]")
        + role("ClusterRole", "reader", READ)
        + binding("ClusterRoleBinding", "b4", "ClusterRole", "reader",
                  "[{kind: ServiceAccount, name: x, namespace: everywhere}]")
        + binding("RoleBinding", "b5", "ClusterRole", "reader",
                  "[{kind: ServiceAccount, name: x, namespace: elsewhere}]", ns="other")
    )  # fmt: skip
    policy = build_policy(index_of(text))
    # Not the namespaces of subjects granted other resources, of another API group or in
    # another namespace only.
    assert reader_namespaces(policy, "team") == {"ci", "team", "everywhere"}
    assert reader_namespaces(policy, "other") == {"everywhere", "elsewhere"}


def test_a_policy_built_with_an_earlier_one_is_the_policy_built_afresh() -> None:
    first = (
        role("ClusterRole", "reader", READ, extra=", labels: {agg: 'yes'}")
        + f"apiVersion: {RBAC}\nkind: ClusterRole\nmetadata: {{name: all}}\n"
        "aggregationRule: {clusterRoleSelectors: [{matchLabels: {agg: 'yes'}}]}\n---\n"
        + role("Role", "local", READ, ns="team")
        + binding("ClusterRoleBinding", "c", "ClusterRole", "all", ALICE)
        + binding("RoleBinding", "r", "Role", "local", ALICE, ns="team")
        + binding("RoleBinding", "late", "Role", "later", ALICE, ns="team")
        + binding("RoleBinding", "v", "ClusterRole", "view", ALICE, ns="team")
    )
    rest = role("Role", "later", READ, ns="team") + binding(
        "RoleBinding", "o", "ClusterRole", "reader", ALICE, ns="other"
    )
    part = index_of(first)
    index = ObjectIndex.of([*part, *index_of(rest)])
    earlier = build_policy(ObjectIndex.of(list(part)))
    lent, fresh = build_policy(index, earlier=earlier), build_policy(index)
    assert lent.roles == fresh.roles
    assert list(lent.roles) == list(fresh.roles)
    assert lent.bindings == fresh.bindings
    assert lent.roles[("ClusterRole", "", "all")] is earlier.roles[("ClusterRole", "", "all")]
    by_name = {b.name: b for b in lent.bindings}
    assert by_name["c"] is next(b for b in earlier.bindings if b.name == "c")  # lent
    assert by_name["late"].role is not None  # its Role came with the rest: resolved again
    builtin = by_name["v"].role
    assert builtin is not None
    assert builtin.builtin

    more = role("ClusterRole", "writer", READ, extra=", labels: {agg: 'yes'}")
    grown = ObjectIndex.of([*part, *index_of(more)])
    changed = build_policy(grown, earlier=earlier)
    assert changed.roles == build_policy(grown).roles  # another ClusterRole: aggregated anew
    assert changed.bindings == build_policy(grown).bindings
