"""Who can do something: direct grants and indirect paths, for ``kustos who-can``.

Purely data. ``direct_grants`` finds every (subject, binding, role, rule) that allows a
request, exactly as RBAC would. ``who_can`` adds, for reads of Secrets, the indirect paths
through which a subject can obtain a Secret's value without being allowed to read it:
creating pods or pod-creating workloads in the namespace, exec/attach into pods that use
the Secret, requesting a token for (or impersonating) someone who can read it,
bind/escalate on roles, and the kubelet API through ``nodes/proxy``. Members of the group
``system:masters`` bypass authorization altogether and are always listed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

from kustos.kube.index import ObjectIndex
from kustos.rbac.matching import CLUSTER_SCOPED_RESOURCES, Request, rule_allows
from kustos.rbac.model import RBAC_GROUP, Binding, Policy, PolicyRule, Role, Subject

SUPERUSER_GROUP: Final = Subject("Group", "system:masters")
READ_VERBS: Final = frozenset({"get", "list", "watch"})
#: Workload kinds whose creation (or template update) lets a subject mount any Secret.
POD_CREATORS: Final = (
    ("", "pods", ("create",)),
    ("", "replicationcontrollers", ("create", "update", "patch")),
    ("apps", "deployments", ("create", "update", "patch")),
    ("apps", "replicasets", ("create", "update", "patch")),
    ("apps", "statefulsets", ("create", "update", "patch")),
    ("apps", "daemonsets", ("create", "update", "patch")),
    ("batch", "jobs", ("create", "update", "patch")),
    ("batch", "cronjobs", ("create", "update", "patch")),
)


@dataclass(frozen=True, slots=True)
class Path:
    """One way a subject gets the access asked about."""

    type: str  # "direct" or "indirect"
    via: str
    binding: str = ""
    role: str = ""
    rule: str = ""
    rule_index: int | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """A subject allowed a request by one rule of one role through one binding."""

    subject: Subject
    binding: Binding
    role: Role
    rule: PolicyRule

    def path(self, kind: str, via: str) -> Path:
        """This grant as a path of *kind* described by *via*."""
        return Path(
            kind, via, str(self.binding), str(self.role), self.rule.describe(), self.rule.index
        )


def _applies(binding: Binding, request: Request) -> bool:
    if binding.role is None:
        return False
    if binding.cluster_wide:
        return True
    # A RoleBinding grants only inside its namespace, never on cluster-scoped resources.
    return bool(request.namespace) and binding.namespace == request.namespace


def direct_grants(policy: Policy, request: Request) -> list[Grant]:
    """Every grant that allows *request*, in binding order."""
    found: list[Grant] = []
    for binding in policy.bindings:
        role = binding.role
        if role is None or not _applies(binding, request):
            continue
        for rule in role.rules:
            if rule_allows(rule, request):
                found.extend(Grant(s, binding, role, rule) for s in binding.subjects)
    return found


@dataclass(frozen=True, slots=True)
class SubjectPaths:
    """A subject and every path it has."""

    subject: Subject
    paths: tuple[Path, ...]


def _grants_any(policy: Policy, requests: Iterable[Request]) -> Iterator[tuple[Request, Grant]]:
    for request in requests:
        for grant in direct_grants(policy, request):
            yield request, grant


def who_can(
    policy: Policy, request: Request, *, index: ObjectIndex | None = None
) -> list[SubjectPaths]:
    """Every subject that can do *request*: direct paths, and indirect ones for Secret reads."""
    paths: dict[Subject, list[Path]] = defaultdict(list)
    paths[SUPERUSER_GROUP].append(Path("direct", "system:masters bypasses authorization"))
    direct = direct_grants(policy, request)
    for grant in direct:
        paths[grant.subject].append(grant.path("direct", "RBAC"))
    if request.resource == "secrets" and request.group == "" and request.verb in READ_VERBS:
        for subject, path in _indirect_secret_paths(policy, request, direct, index):
            paths[subject].append(path)
    return [SubjectPaths(s, tuple(dict.fromkeys(p))) for s, p in sorted(paths.items())]


def _indirect_secret_paths(
    policy: Policy, request: Request, direct: list[Grant], index: ObjectIndex | None
) -> Iterator[tuple[Subject, Path]]:
    ns = request.namespace
    # 1. Create pods, or create/update workloads whose pods can mount any Secret here.
    if ns:
        creators = [
            Request(verb, group, resource, namespace=ns)
            for group, resource, verbs in POD_CREATORS
            for verb in verbs
        ]
        for req, grant in _grants_any(policy, creators):
            yield (
                grant.subject,
                grant.path("indirect", f"{req.verb} {req.combined} (mounts any Secret)"),
            )
    # 2. exec/attach into pods that use the Secret, or add an ephemeral container to them.
    if ns and _has_consumers(index, ns, request.name):
        entry = [
            Request(v, "", "pods", sub, namespace=ns)
            for sub in ("exec", "attach")
            for v in ("create", "get")
        ] + [
            Request(v, "", "pods", "ephemeralcontainers", namespace=ns) for v in ("update", "patch")
        ]
        for req, grant in _grants_any(policy, entry):
            yield (
                grant.subject,
                grant.path("indirect", f"{req.verb} {req.combined} on pods using it"),
            )
    # 3. Become someone who can read it: request their token, or impersonate them.
    readers = {g.subject for g in direct}
    for reader in sorted(readers):
        asks: list[tuple[Request, str]] = []
        if reader.kind == "ServiceAccount":
            ns, name = reader.namespace, reader.name
            token = Request("create", "", "serviceaccounts", "token", ns, name)
            asks.append((token, f"create a token for {reader}"))
            as_sa = Request("impersonate", "", "serviceaccounts", "", ns, name)
            asks.append((as_sa, f"impersonate {reader}"))
        elif reader.kind == "User":
            asks.append(
                (Request("impersonate", "", "users", name=reader.name), f"impersonate {reader}")
            )
        else:
            asks.append(
                (Request("impersonate", "", "groups", name=reader.name), f"impersonate {reader}")
            )
        for req, via in asks:
            for grant in direct_grants(policy, req):
                if grant.subject != reader:
                    yield grant.subject, grant.path("indirect", via)
    # 4. Impersonating system:masters, or any user or group at all.
    for req in (Request("impersonate", "", "groups", name="system:masters"),):
        for grant in direct_grants(policy, req):
            yield grant.subject, grant.path("indirect", "impersonate Group system:masters")
    # 5. bind/escalate: grant themselves a role that reads it.
    scopes = [("roles", ns), ("clusterroles", "")] if ns else [("clusterroles", "")]
    for resource, scope in scopes:
        for verb in ("bind", "escalate"):
            req = Request(verb, RBAC_GROUP, resource, namespace=scope)
            for grant in direct_grants(policy, req):
                if resource == "clusterroles" and not grant.binding.cluster_wide and not ns:
                    continue
                yield (
                    grant.subject,
                    grant.path("indirect", f"{verb} {resource} (grant itself access)"),
                )
    # 6. The kubelet API: exec into any pod on a node.
    for verb in ("get", "create"):
        for grant in direct_grants(policy, Request(verb, "", "nodes", "proxy")):
            yield grant.subject, grant.path("indirect", f"{verb} nodes/proxy (kubelet API)")


#: Groups that stand for "everyone" of some kind: always worth showing.
_BROAD_GROUPS: Final = frozenset(
    {"system:authenticated", "system:unauthenticated", "system:serviceaccounts"}
)


def is_platform_subject(subject: Subject) -> bool:
    """Control-plane identities: ServiceAccounts in kube-system and ``system:`` users/groups.

    They can read Secrets by design; ``who-can`` hides them unless asked
    (``--all-subjects``). ``system:masters`` and the broad groups are never hidden.
    """
    if subject.kind == "ServiceAccount":
        return subject.namespace == "kube-system"
    if subject == SUPERUSER_GROUP or subject.name in _BROAD_GROUPS:
        return False
    return subject.name.startswith("system:") and not subject.name.startswith(
        "system:serviceaccounts:"
    )


def _has_consumers(index: ObjectIndex | None, namespace: str, name: str) -> bool:
    if index is None:
        return True  # unknown workloads: assume some pod uses it
    if name:
        return bool(index.consumers_of(namespace, name))
    return any(r.namespace == namespace for r in index.secret_references())


def is_cluster_scoped(resource: str) -> bool:
    """Resources that live outside namespaces (``nodes``, ``clusterroles``, ...)."""
    return resource in CLUSTER_SCOPED_RESOURCES


def secret_matrix(
    policy: Policy, index: ObjectIndex, namespace: str, *, verb: str = "get"
) -> dict[str, list[SubjectPaths]]:
    """For every Secret in *namespace*: who can read it (``get`` by default).

    Computed per Secret, but the name-independent grants are found once: with thousands of
    bindings and Secrets the cost is one pass over the bindings plus a small step per Secret.
    """
    base = Request(verb, "", "secrets", namespace=namespace)
    result: dict[str, list[SubjectPaths]] = {}
    cache: dict[tuple[frozenset[Grant], bool], list[SubjectPaths]] = {}
    named: dict[str, list[Grant]] = defaultdict(list)
    unnamed: list[Grant] = []
    for binding in policy.bindings:
        if not _applies(binding, base) or binding.role is None:
            continue
        for rule in binding.role.rules:
            if not rule_allows(replace(rule, resource_names=frozenset()), base):
                continue
            grants = [Grant(s, binding, binding.role, rule) for s in binding.subjects]
            if rule.resource_names:
                for name in rule.resource_names:
                    named[name].extend(grants)
            else:
                unnamed.extend(grants)
    for secret in index.of_kind("Secret", namespace=namespace):
        grants = unnamed + named.get(secret.name, [])
        consumers = bool(index.consumers_of(namespace, secret.name))
        # The answer depends only on the grants and on whether pods use the Secret.
        key = (frozenset(grants), consumers)
        if key not in cache:
            cache[key] = who_can(policy, replace(base, name=secret.name), index=index)
        result[secret.name] = cache[key]
    return result
