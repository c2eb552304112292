"""RBAC on Secrets: who may read them, directly or through an escalation path (KST001-KST019).

Purely data. Grants are evaluated per rule with the API server's own matching
(:mod:`kustos.rbac.matching`): wildcards in verbs, apiGroups and resources, ``*/sub``,
``resourceNames``, RoleBinding→ClusterRole, and aggregated ClusterRoles. Roles and bindings
the API server creates itself (label ``kubernetes.io/bootstrapping``) are not reported:
they are the platform's, not the user's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from kustos.rbac.access import secret_access_of, subject_of_username
from kustos.rbac.matching import (
    Request,
    group_matches,
    resource_matches,
    rule_allows,
    verb_matches,
)
from kustos.rbac.model import RBAC_GROUP, Binding, Policy, PolicyRule, Role, Subject
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.findings import Finding, Rule, Severity

BROAD_GROUPS: Final = frozenset(
    {"system:authenticated", "system:unauthenticated", "system:serviceaccounts"}
)
ANONYMOUS_USER: Final = "system:anonymous"
_DOCS: Final = "https://kubernetes.io/docs/concepts/security/rbac-good-practices/"

CLUSTER_WIDE_READ = Rule(
    id="KST001",
    family="rbac",
    severity=Severity.HIGH,
    title="Secrets readable in every namespace",
    rationale=(
        "A ClusterRoleBinding that allows get, list or watch on Secrets lets its subjects "
        "read every Secret of the cluster; list and watch return the values of all of them "
        "at once."
    ),
    remediation=(
        "Bind a Role in the namespaces that need it, restrict get to named Secrets with "
        "resourceNames, and avoid list/watch on Secrets."
    ),
    references=("CIS 5.1.2", "Kubescape C-0015", "Kubescape C-0186", "Checkov CKV2_K8S_5",
                "Trivy KSV-0041", _DOCS),
)  # fmt: skip
BROAD_GROUP_READ = Rule(
    id="KST002",
    family="rbac",
    severity=Severity.CRITICAL,
    title="Secrets readable by a broad group or anonymous users",
    rationale=(
        "system:authenticated, system:unauthenticated, system:anonymous and "
        "system:serviceaccounts(:ns) include every user or every pod token; a Secret readable "
        "by them is readable by anyone who reaches the API."
    ),
    remediation="Bind Secret access to named users, groups or ServiceAccounts only.",
    references=("CIS 5.1.2", "Kubescape C-0262", "Kubescape C-0265", "Trivy KSV-01011", _DOCS),
)
DEFAULT_SA_READ = Rule(
    id="KST003",
    family="rbac",
    severity=Severity.HIGH,
    title="Secrets readable by a default ServiceAccount",
    rationale=(
        "Every pod that names no ServiceAccount runs as `default`; granting it Secret access "
        "hands the Secrets to every such pod in the namespace."
    ),
    remediation="Create a dedicated ServiceAccount for the workload that needs the access.",
    references=("CIS 5.1.5", "Kubescape C-0189", "Checkov CKV_K8S_42"),
)
NAMESPACE_LIST = Rule(
    id="KST004",
    family="rbac",
    severity=Severity.MEDIUM,
    title="list or watch on Secrets in a namespace",
    rationale=(
        "list and watch return the full content of every Secret in the namespace, not just "
        "names; resourceNames cannot restrict them."
    ),
    remediation="Grant get on the named Secrets (resourceNames) instead of list/watch.",
    references=("CIS 5.1.2", "Kubescape C-0015", "https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources"),
)  # fmt: skip
WILDCARD = Rule(
    id="KST005",
    family="rbac",
    severity=Severity.HIGH,
    title="Wildcard rule that covers Secrets",
    rationale=(
        "`*` in verbs, resources or apiGroups grants Secret access that nobody wrote down, "
        "including for resources and verbs added in the future."
    ),
    remediation="List the verbs, apiGroups and resources the role really needs.",
    references=("CIS 5.1.3", "Kubescape C-0187", "Checkov CKV_K8S_49", "Trivy KSV-0044",
                "Trivy KSV-0045", "Trivy KSV-0046"),
)  # fmt: skip
LITERAL_STAR = Rule(
    id="KST006",
    family="rbac",
    severity=Severity.LOW,
    title="`resource/*` is not a wildcard",
    rationale=(
        "RBAC matches `secrets/*` only against a subresource literally named `*`; the rule "
        "does not do what it seems to (only `*` and `*/sub` are wildcards)."
    ),
    remediation="Name the subresources (`pods/exec`) or use `*/sub` deliberately.",
    references=("https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources",),
)  # fmt: skip
ESCALATION = Rule(
    id="KST007",
    family="rbac",
    severity=Severity.HIGH,
    title="Escalation verbs: bind, escalate or impersonate",
    rationale=(
        "bind and escalate on roles let a subject grant itself any permission, Secret reads "
        "included; impersonate lets it act as any user, group or ServiceAccount it names."
    ),
    remediation="Remove bind/escalate/impersonate, or restrict them with resourceNames.",
    references=("CIS 5.1.8", "Kubescape C-0191", "Kubescape C-0065", "Checkov CKV_K8S_157",
                "Checkov CKV_K8S_158", "Checkov CKV2_K8S_3", _DOCS),
)  # fmt: skip
POD_CREATE = Rule(
    id="KST008",
    family="rbac",
    severity=Severity.MEDIUM,
    title="Can create pods or workloads where Secrets live",
    rationale=(
        "Creating a pod, or creating/updating any workload with a pod template, lets a subject "
        "mount any Secret of the namespace and read it from inside the pod."
    ),
    remediation="Let a deployment pipeline create workloads; keep people and bots read-only.",
    references=("CIS 5.1.4", "Kubescape C-0188", "kube-linter access-to-create-pods", _DOCS),
)
EXEC = Rule(
    id="KST009",
    family="rbac",
    severity=Severity.MEDIUM,
    title="Can exec or attach into pods",
    rationale=(
        "pods/exec and pods/attach give a shell in pods that hold Secrets in env or files; "
        "`get` is enough over websockets, not only `create`."
    ),
    remediation="Remove pods/exec and pods/attach (create and get) from everyday roles.",
    references=("Kubescape C-0002", "Checkov CKV2_K8S_2", "Polaris clusterrolePodExecAttach",
                "Trivy KSV-0053", _DOCS),
)  # fmt: skip
TOKEN_REQUEST = Rule(
    id="KST010",
    family="rbac",
    severity=Severity.HIGH,
    title="Can request ServiceAccount tokens",
    rationale=(
        "create on serviceaccounts/token mints a token for a ServiceAccount, and with it "
        "every permission (Secret reads included) of that ServiceAccount."
    ),
    remediation="Remove create on serviceaccounts/token, or restrict it with resourceNames.",
    references=("CIS 5.1.13", "Kubescape C-0282", _DOCS),
)
NODE_PROXY = Rule(
    id="KST011",
    family="rbac",
    severity=Severity.CRITICAL,
    title="Access to nodes/proxy (the kubelet API)",
    rationale=(
        "get or create on nodes/proxy reaches the kubelet API, which runs commands in every "
        "pod of the node, bypassing audit and admission; get is not read-only."
    ),
    remediation="Remove nodes/proxy from every role that is not a monitoring system's.",
    references=("CIS 5.1.10", "Kubescape C-0279", "Checkov CKV2_K8S_2", "Trivy KSV-0047", _DOCS),
)
CLUSTER_ADMIN = Rule(
    id="KST012",
    family="rbac",
    severity=Severity.HIGH,
    title="cluster-admin bound to a user-defined subject",
    rationale="cluster-admin can do everything, read every Secret and change every policy.",
    remediation="Bind narrower roles; keep cluster-admin for break-glass accounts.",
    references=("CIS 5.1.1", "Kubescape C-0185", "kube-linter cluster-admin-role-binding"),
)

_READ_VERBS: Final = ("get", "list", "watch")
_CREATORS: Final = (
    ("", "pods", "create"), ("apps", "deployments", "create"), ("apps", "statefulsets", "create"),
    ("apps", "daemonsets", "create"), ("apps", "replicasets", "create"),
    ("batch", "jobs", "create"), ("batch", "cronjobs", "create"),
    ("", "replicationcontrollers", "create"), ("apps", "deployments", "update"),
    ("apps", "deployments", "patch"),
)  # fmt: skip


def _user_bindings(scan: ScanInput) -> Iterator[tuple[Policy, Binding]]:
    policy = scan.policy
    for binding in policy.bindings:
        # The API server's own bindings are the platform's; a user's binding to a default
        # role (edit, admin) is the user's and is reported.
        if binding.role is not None and not binding.bootstrap:
            yield policy, binding


def _secret_rules(binding: Binding, verbs: tuple[str, ...]) -> list[tuple[PolicyRule, list[str]]]:
    """Rules of the binding's role that allow some of *verbs* on Secrets (any name)."""
    assert binding.role is not None  # noqa: S101 - filtered by _user_bindings
    found = []
    ns = binding.namespace or "any"  # for the record: rule_allows leaves scope to bindings
    for rule in binding.role.rules:
        allowed = [
            v for v in verbs
            if rule_allows(rule, Request(v, "", "secrets", namespace=ns, name="*"))
            or rule_allows(rule, Request(v, "", "secrets", namespace=ns))
        ]  # fmt: skip
        if allowed:
            found.append((rule, allowed))
    return found


def _subject_field(binding: Binding, subject: Subject) -> str:
    return f"subjects[{binding.subjects.index(subject)}]"


def _where(binding: Binding) -> str:
    return "in every namespace" if binding.cluster_wide else f"in namespace {binding.namespace}"


def _grant_text(verbs: list[str], binding: Binding, rules: list[PolicyRule]) -> str:
    """What follows the subject in a grant's message: the same for a binding's subjects."""
    assert binding.role is not None  # noqa: S101
    vias = []
    for rule in rules:
        via = f"rules[{rule.index}]"
        if rule.origin:
            via += f" (aggregated from ClusterRole {rule.origin})"
        vias.append(via)
    via_text = f"{binding.role} {', '.join(dict.fromkeys(vias))}"
    return f" can {'/'.join(verbs)} Secrets {_where(binding)} via {via_text}"


def _is_cluster_admin(binding: Binding) -> bool:
    return binding.role_kind == "ClusterRole" and binding.role_name == "cluster-admin"


def _is_broad(subject: Subject) -> bool:
    if subject.kind == "Group":
        return subject.name in BROAD_GROUPS or subject.name.startswith("system:serviceaccounts:")
    return subject.kind == "User" and subject.name == ANONYMOUS_USER


def check_secret_reads(scan: ScanInput) -> Iterator[Finding]:
    """KST001-KST004: who can read Secrets, and how broadly.

    One finding per binding and subject: a role that repeats a rule (or grants the same
    read twice) is named once, with every rule that grants it.
    """
    # What a role grants depends on its rules alone (the namespace is the binding's):
    # thousands of bindings share a few distinct rule lists, each judged once.
    # Per rule list: the verbs, the granting rules, their description and whether they
    # list; per binding: the role's name and the rules' text; per subject only its line.
    judged: dict[tuple[PolicyRule, ...], tuple[list[str], list[PolicyRule], str, bool] | None] = {}
    for _, binding in _user_bindings(scan):
        if _is_cluster_admin(binding):
            continue  # KST012 says it all
        assert binding.role is not None  # noqa: S101 - filtered by _user_bindings
        if binding.role.rules in judged:
            answer = judged[binding.role.rules]
        else:
            granted = _secret_rules(binding, _READ_VERBS)
            answer = None
            if granted:
                verbs = [v for v in _READ_VERBS if any(v in allowed for _, allowed in granted)]
                rules = [rule for rule, _ in granted]
                answer = (
                    verbs,
                    rules,
                    "; ".join(dict.fromkeys(r.describe() for r in rules)),
                    bool({"list", "watch"} & set(verbs)),
                )
            judged[binding.role.rules] = answer
        if answer is None:
            continue
        verbs, rules, rule_text, lists = answer
        details = {"role": str(binding.role), "rule": rule_text}
        grant = _grant_text(verbs, binding, rules)
        obj = binding.obj
        for subject in binding.subjects:
            field = _subject_field(binding, subject)
            message = f"{subject}{grant}"
            if _is_broad(subject):
                yield finding(BROAD_GROUP_READ, obj, message, field=field, details=details)
            elif subject.kind == "ServiceAccount" and subject.name == "default":
                yield finding(DEFAULT_SA_READ, obj, message, field=field, details=details)
            elif binding.cluster_wide:
                yield finding(CLUSTER_WIDE_READ, obj, message, field=field, details=details)
            elif lists:
                yield finding(NAMESPACE_LIST, obj, message, field=field, details=details)


def check_role_rules(scan: ScanInput) -> Iterator[Finding]:
    """KST005-KST007: wildcards covering Secrets, literal `x/*`, escalation verbs (per role)."""
    policy = scan.policy
    # What a rule covers depends on the rule alone: equal rules of many roles judged once.
    judged: dict[PolicyRule, tuple[bool, list[str], list[str]]] = {}
    for role in policy.roles.values():
        if role.obj is None or role.bootstrap:
            continue
        for rule in role.rules:
            if rule.origin:
                continue  # reported on the ClusterRole that declares it
            field = f"rules[{rule.index}]"
            answers = judged.get(rule)
            if answers is None:
                answers = judged[rule] = _rule_answers(rule)
            covers_secrets, wild, found = answers
            if covers_secrets and wild:
                yield finding(
                    WILDCARD, role.obj,
                    f"{role} rules[{rule.index}] has `*` in {', '.join(wild)}, covering Secrets",
                    field=field,
                )  # fmt: skip
            literal = sorted(
                r for r in rule.resources if r.endswith("/*") and not r.startswith("*")
            )
            if literal:
                yield finding(
                    LITERAL_STAR, role.obj,
                    f"{role} rules[{rule.index}] lists {', '.join(literal)} (not a wildcard)",
                    field=field,
                )  # fmt: skip
            escalation = found + _named_impersonation(policy, role, rule)
            if escalation:
                yield finding(
                    ESCALATION, role.obj,
                    f"{role} rules[{rule.index}] allows {', '.join(escalation)}",
                    field=field,
                )  # fmt: skip


def _rule_answers(rule: PolicyRule) -> tuple[bool, list[str], list[str]]:
    """Whether *rule* covers Secret reads, its ``*`` parts and its escalation verbs."""
    covers_secrets = any(
        rule_allows(rule, Request(v, "", "secrets", namespace="x")) for v in _READ_VERBS
    )
    wild = sorted(
        part
        for part, values in (("verbs", rule.verbs), ("resources", rule.resources),
                             ("apiGroups", rule.api_groups))
        if "*" in values
    )  # fmt: skip
    return covers_secrets, wild, _escalation(rule)


def _escalation(rule: PolicyRule) -> list[str]:
    found = []
    for verb in ("bind", "escalate"):
        for resource in ("roles", "clusterroles"):
            if rule_allows(rule, Request(verb, RBAC_GROUP, resource, namespace="x", name="x")):
                found.append(f"{verb} {resource}")
    for resource in ("users", "groups", "serviceaccounts"):
        if rule_allows(rule, Request("impersonate", "", resource, namespace="x", name="x")):
            names = (
                f" (only {', '.join(sorted(rule.resource_names))})" if rule.resource_names else ""
            )
            found.append(f"impersonate {resource}{names}")
    # `*` verbs on `*` resources are reported as a wildcard already; keep escalation specific.
    if "*" in rule.verbs and "*" in rule.resources:
        return []
    return found


def _named_impersonation(policy: Policy, role: Role, rule: PolicyRule) -> list[str]:
    """impersonate restricted to named subjects: judged by what those subjects can do.

    Acting as a subject is exactly as dangerous as what the subject may do; a rule that
    names only subjects without Secret access (or escalation) is not reported.
    """
    if not rule.resource_names or not verb_matches(rule, "impersonate"):
        return []
    found = []
    for resource in ("users", "groups", "serviceaccounts"):
        if not (group_matches(rule, "") and resource_matches(rule, resource)):
            continue
        for name in sorted(rule.resource_names):
            for subject in _impersonated(policy, role, resource, name):
                can = secret_access_of(policy, subject)
                if can:
                    more = f" and {len(can) - 2} more" if len(can) > 2 else ""
                    found.append(f"impersonate {subject}, who can {'; '.join(can[:2])}{more}")
    return found


def _impersonated(policy: Policy, role: Role, resource: str, name: str) -> list[Subject]:
    if resource == "users":
        return [subject_of_username(name)]
    if resource == "groups":
        return [Subject("Group", name)]
    # A ServiceAccount name: in the Role's namespace, or any namespace for a ClusterRole.
    return sorted(
        {
            s
            for b in policy.bindings
            for s in b.subjects
            if s.kind == "ServiceAccount"
            and s.name == name
            and (role.kind == "ClusterRole" or s.namespace == role.namespace)
        }
    )


def check_indirect_reads(scan: ScanInput) -> Iterator[Finding]:
    """KST008-KST012: paths to Secret values without read access."""
    namespaces_with_secrets = {s.namespace for s in scan.index.of_kind("Secret")}
    # The paths a role opens depend on its rules alone (rule_allows leaves the namespace to
    # the binding): thousands of bindings share a few distinct rule lists, each judged once.
    judged: dict[tuple[PolicyRule, ...], _Paths] = {}
    for _, binding in _user_bindings(scan):
        assert binding.role is not None  # noqa: S101
        scope = "x" if binding.cluster_wide else binding.namespace
        if _is_cluster_admin(binding):
            for subject in binding.subjects:
                yield finding(
                    CLUSTER_ADMIN, binding.obj,
                    f"{subject} is bound to cluster-admin {_where(binding)}",
                    field=_subject_field(binding, subject),
                )  # fmt: skip
            continue  # everything below is implied; one finding is enough
        checks: list[tuple[Rule, list[str]]] = []
        rules = binding.role.rules
        paths = judged.get(rules)
        if paths is None:
            paths = judged[rules] = _indirect_paths(rules, scope)
        creates, execs, tokens, proxies = paths
        relevant = binding.cluster_wide or binding.namespace in namespaces_with_secrets
        if creates and relevant:
            checks.append((POD_CREATE, creates))
        if execs:
            checks.append((EXEC, execs))
        if tokens:
            checks.append((TOKEN_REQUEST, tokens))
        if binding.cluster_wide and proxies:
            checks.append((NODE_PROXY, proxies))
        for rule_def, what in checks:
            for subject in binding.subjects:
                yield finding(
                    rule_def, binding.obj,
                    f"{subject} can {', '.join(what)} {_where(binding)} via {binding.role}",
                    field=_subject_field(binding, subject),
                    details={"role": str(binding.role)},
                )  # fmt: skip


#: What a role's rules open: creators, exec/attach, token requests, nodes/proxy.
_Paths = tuple[list[str], list[str], list[str], list[str]]


def _indirect_paths(rules: tuple[PolicyRule, ...], scope: str) -> _Paths:
    creates = sorted({
        f"{verb} {resource}" for group, resource, verb in _CREATORS for rule in rules
        if rule_allows(rule, Request(verb, group, resource, namespace=scope))
    })  # fmt: skip
    execs = sorted({
        f"{verb} pods/{sub}" for sub in ("exec", "attach") for verb in ("create", "get")
        for rule in rules
        if rule_allows(rule, Request(verb, "", "pods", sub, namespace=scope, name="x"))
    })  # fmt: skip
    tokens = [
        "create serviceaccounts/token" for rule in rules
        if rule_allows(rule, Request("create", "", "serviceaccounts", "token", scope, "x"))
    ][:1]  # fmt: skip
    proxies = sorted({
        f"{verb} nodes/proxy" for verb in ("get", "create") for rule in rules
        if rule_allows(rule, Request(verb, "", "nodes", "proxy", name="x"))
    })  # fmt: skip
    return creates, execs, tokens, proxies


CHECKS: tuple[Check, ...] = (
    *(Check(r, check_secret_reads, reads_tables=True)
      for r in (CLUSTER_WIDE_READ, BROAD_GROUP_READ, DEFAULT_SA_READ, NAMESPACE_LIST)),
    *(Check(r, check_role_rules, reads_tables=True) for r in (WILDCARD, LITERAL_STAR, ESCALATION)),
    *(Check(r, check_indirect_reads, reads_tables=True)
      for r in (POD_CREATE, EXEC, TOKEN_REQUEST, NODE_PROXY, CLUSTER_ADMIN)),
)  # fmt: skip
