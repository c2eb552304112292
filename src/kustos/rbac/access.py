"""Who can do something: direct grants and indirect paths, for ``kustos who-can``.

Purely data. ``direct_grants`` finds every (subject, binding, role, rule) that allows a
request, exactly as RBAC would. ``who_can`` adds, for reads of Secrets, the indirect paths
through which a subject can obtain a Secret's value without being allowed to read it:
creating pods or pod-creating workloads in the namespace, exec/attach into pods that use
the Secret, requesting a token for (or impersonating) someone who can read it,
bind/escalate on roles, and the kubelet API through ``nodes/proxy``. Members of the group
``system:masters`` bypass authorization altogether and are always listed.

Rules are looked up by the resource they name (``Policy.rules_for``), so a question costs
a pass over the few rules that could answer it, not over every binding. Being able to
impersonate, or mint tokens for, *any* ServiceAccount (or user, or group) is one path,
not one path per reader: with hundreds of readers the answer stays readable and small.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from kustos.kube.index import ObjectIndex
from kustos.kube.references import WORKLOAD_KINDS
from kustos.rbac.matching import (
    Request,
    group_matches,
    name_matches,
    rule_allows,
    verb_matches,
)
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
#: A name no object can have: a request naming it matches only rules without resourceNames.
_ANY: Final = "\x00any"


@dataclass(frozen=True, slots=True)
class Path:
    """One way a subject gets the access asked about."""

    type: str  # "direct" or "indirect"
    via: str
    binding: str = ""
    role: str = ""
    rule: str = ""
    rule_index: int | None = None


#: A matrix renders the same few hundred rules hundreds of thousands of times.
_describe: Final = lru_cache(maxsize=4096)(PolicyRule.describe)


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
            kind, via, str(self.binding), str(self.role), _describe(self.rule), self.rule.index
        )


@dataclass(frozen=True, slots=True)
class SubjectPaths:
    """A subject and every path it has."""

    subject: Subject
    paths: tuple[Path, ...]


def direct_grants(policy: Policy, request: Request, *, named_only: bool = False) -> list[Grant]:
    """Every grant that allows *request*, in binding order.

    *named_only*: only grants whose rule lists ``resourceNames`` (the others are not built).
    """
    found: list[Grant] = []
    scoped = (
        policy.rules_naming(request.resource, request.subresource, request.namespace, request.name)
        if named_only
        else policy.rules_in_scope(request.resource, request.subresource, request.namespace)
    )
    for binding, rule in scoped:
        if (
            verb_matches(rule, request.verb)
            and group_matches(rule, request.group)
            and name_matches(rule, request.name)
        ):
            assert binding.role is not None  # noqa: S101 - rules_in_scope checked it
            found.extend(Grant(s, binding, binding.role, rule) for s in binding.subjects)
    return found


# ---------------------------------------------------------------------------- indirect paths
Pair = tuple[Subject, Path]


def _pairs(grants: Iterable[Grant], kind: str, via: str) -> list[Pair]:
    """Each grant's subject with its path of *kind* described by *via*.

    The grants of one binding and rule come one after the other (one per subject) and
    share one ``Path``: a matrix makes tens of thousands of them.
    """
    pairs: list[Pair] = []
    last: Grant | None = None
    path: Path | None = None
    for grant in grants:
        if (
            path is None
            or last is None
            or grant.binding is not last.binding
            or (grant.rule is not last.rule)
        ):
            path = grant.path(kind, via)
        last = grant
        pairs.append((grant.subject, path))
    return pairs


def namespace_paths(policy: Policy, namespace: str) -> list[Pair]:
    """Indirect paths to *every* Secret of a namespace (and, for ``""``, cluster-wide ones)."""
    pairs: list[Pair] = []
    if namespace:
        creators = [
            Request(verb, group, resource, namespace=namespace)
            for group, resource, verbs in POD_CREATORS
            for verb in verbs
        ]
        for req in creators:
            via = f"{req.verb} {req.combined} (mounts any Secret)"
            pairs += _pairs(direct_grants(policy, req), "indirect", via)
    scopes = [("roles", namespace), ("clusterroles", "")] if namespace else [("clusterroles", "")]
    for resource, scope in scopes:
        for verb in ("bind", "escalate"):
            grants = direct_grants(policy, Request(verb, RBAC_GROUP, resource, namespace=scope))
            pairs += _pairs(grants, "indirect", f"{verb} {resource} (grant itself access)")
    masters = direct_grants(policy, Request("impersonate", "", "groups", name="system:masters"))
    pairs += _pairs(masters, "indirect", "impersonate Group system:masters")
    for verb in ("get", "create"):
        grants = direct_grants(policy, Request(verb, "", "nodes", "proxy"))
        pairs += _pairs(grants, "indirect", f"{verb} nodes/proxy (kubelet API)")
    return pairs


def exec_paths(policy: Policy, namespace: str) -> list[Pair]:
    """exec/attach into pods of the namespace, or adding ephemeral containers to them."""
    entry = [
        Request(v, "", "pods", sub, namespace=namespace)
        for sub in ("exec", "attach")
        for v in ("create", "get")
    ] + [
        Request(v, "", "pods", "ephemeralcontainers", namespace=namespace)
        for v in ("update", "patch")
    ]
    pairs: list[Pair] = []
    for req in entry:
        via = f"{req.verb} {req.combined} on pods using it"
        pairs += _pairs(direct_grants(policy, req), "indirect", via)
    return pairs


@dataclass(slots=True)
class _Becoming:
    """Paths to *become* a reader: impersonation and token requests, memoised."""

    policy: Policy
    _generic: dict[tuple[str, str], list[Grant]]
    _named: dict[Subject, list[Pair]]

    @classmethod
    def of(cls, policy: Policy) -> _Becoming:
        return cls(policy, {}, {})

    def named(self, reader: Subject) -> list[Pair]:
        """Grants restricted by resourceNames that let someone else become *reader*."""
        cached = self._named.get(reader)
        if cached is None:
            cached = []
            for request, via in self._asks(reader):
                grants = direct_grants(self.policy, request, named_only=True)
                others = [grant for grant in grants if grant.subject != reader]
                cached += _pairs(others, "indirect", via)
            self._named[reader] = cached
        return cached

    def generic_grants(self, verb: str, resource: str, sub: str, namespace: str) -> list[Grant]:
        key = (f"{verb} {resource}/{sub}", namespace)
        if key not in self._generic:
            request = Request(verb, "", resource, sub, namespace, _ANY)
            self._generic[key] = direct_grants(self.policy, request)
        return self._generic[key]

    def paths(self, readers: Iterable[Subject], *, generic: bool = True) -> list[Pair]:
        """Become-paths for these readers: named grants per reader, generic ones per group.

        With ``generic=False`` only grants restricted by ``resourceNames`` are followed (the
        matrix reports "any ServiceAccount in namespace X" grants once, not per Secret).
        """
        pairs: list[Pair] = []
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for reader in readers:
            if reader == SUPERUSER_GROUP:
                continue
            kind = reader.kind
            counts[(kind, reader.namespace if kind == "ServiceAccount" else "")] += 1
            pairs += self.named(reader)
        for (kind, namespace), count in sorted(counts.items()) if generic else ():
            readers_text = f"{count} {kind}{'s' if count != 1 else ''} of them can read it"
            if kind == "ServiceAccount":
                for verb, sub, what in (
                    ("create", "token", "create a token for"),
                    ("impersonate", "", "impersonate"),
                ):
                    grants = self.generic_grants(verb, "serviceaccounts", sub, namespace)
                    via = f"{what} any ServiceAccount in {namespace} ({readers_text})"
                    pairs += _pairs(grants, "indirect", via)
            else:
                resource = "users" if kind == "User" else "groups"
                grants = self.generic_grants("impersonate", resource, "", "")
                pairs += _pairs(grants, "indirect", f"impersonate any {kind} ({readers_text})")
        return pairs

    @staticmethod
    def _asks(reader: Subject) -> list[tuple[Request, str]]:
        if reader.kind == "ServiceAccount":
            ns, name = reader.namespace, reader.name
            return [
                (
                    Request("create", "", "serviceaccounts", "token", ns, name),
                    f"create a token for {reader}",
                ),
                (
                    Request("impersonate", "", "serviceaccounts", "", ns, name),
                    f"impersonate {reader}",
                ),
            ]
        resource = "users" if reader.kind == "User" else "groups"
        return [(Request("impersonate", "", resource, name=reader.name), f"impersonate {reader}")]


def _merge(*groups: Iterable[Pair]) -> list[SubjectPaths]:
    paths: dict[Subject, list[Path]] = defaultdict(list)
    for group in groups:
        for subject, path in group:
            paths[subject].append(path)
    # Subjects in their dataclass order, compared as plain tuples: a matrix merges thousands
    # of groups, and the generated ``__lt__`` was a fifth of its time.
    ordered = sorted(paths.items(), key=_subject_key)
    return [SubjectPaths(s, tuple(dict.fromkeys(p))) for s, p in ordered]


def _subject_key(item: tuple[Subject, list[Path]]) -> tuple[str, str, str]:
    subject = item[0]
    return subject.kind, subject.name, subject.namespace


def _superuser() -> Pair:
    return SUPERUSER_GROUP, Path("direct", "system:masters bypasses authorization")


def who_can(
    policy: Policy, request: Request, *, index: ObjectIndex | None = None
) -> list[SubjectPaths]:
    """Every subject that can do *request*: direct paths, and indirect ones for Secret reads."""
    direct = direct_grants(policy, request)
    pairs: list[Pair] = [_superuser(), *_pairs(direct, "direct", "RBAC")]
    if request.resource == "secrets" and request.group == "" and request.verb in READ_VERBS:
        ns = request.namespace
        pairs += namespace_paths(policy, ns)
        if ns and _has_consumers(index, ns, request.name):
            pairs += exec_paths(policy, ns)
        pairs += _Becoming.of(policy).paths(dict.fromkeys(g.subject for g in direct))
    return _merge(pairs)


@dataclass(frozen=True, slots=True)
class Matrix:
    """Who can read each Secret of a namespace, with what repeats factored out.

    Thousands of Secrets times hundreds of subjects would repeat the same paths over and
    over; instead: ``common`` reaches every Secret, ``in_use`` every Secret a pod uses
    (exec/attach), ``extra`` what a single Secret adds (``resourceNames`` grants), and
    ``become_any`` who can impersonate or mint tokens for any ServiceAccount of a
    namespace whose ServiceAccounts appear among the named readers.
    """

    namespace: str
    common: list[SubjectPaths]
    in_use: list[SubjectPaths]
    used_by_pods: frozenset[str]
    extra: dict[str, list[SubjectPaths]]
    become_any: dict[str, list[SubjectPaths]]

    def for_secret(self, name: str) -> list[SubjectPaths]:
        """Everything that reaches one Secret directly or through the namespace."""
        groups = [*self.common, *self.extra.get(name, ())]
        if name in self.used_by_pods:
            groups += self.in_use
        return _merge([(sp.subject, p) for sp in groups for p in sp.paths])


def secret_matrix(
    policy: Policy, index: ObjectIndex, namespace: str, *, verb: str = "get"
) -> Matrix:
    """For every Secret in *namespace*: who can read it (``get`` by default).

    The grants and paths that do not depend on the Secret's name are found once; each
    Secret then costs only its named grants (``resourceNames``).
    """
    base = Request(verb, "", "secrets", namespace=namespace, name=_ANY)
    unnamed = direct_grants(policy, base)
    named: dict[str, list[tuple[Binding, PolicyRule]]] = defaultdict(list)
    for binding, rule in policy.rules_in_scope("secrets", "", namespace):
        if rule.resource_names and verb_matches(rule, verb) and group_matches(rule, ""):
            for name in rule.resource_names:
                named[name].append((binding, rule))
    becoming = _Becoming.of(policy)
    # A direct path names the binding and the rule, not the subject: one per pair, shared by
    # every Secret the rule names (a rule naming 50 Secrets would otherwise build 50 each).
    direct_paths: dict[tuple[int, int], Path] = {}

    def direct(grant: Grant) -> Path:
        key = (id(grant.binding), id(grant.rule))
        found = direct_paths.get(key)
        if found is None:
            found = direct_paths[key] = grant.path("direct", "RBAC")
        return found

    common = _merge(
        [
            _superuser(),
            *_pairs(unnamed, "direct", "RBAC"),
            *namespace_paths(policy, namespace),
            *becoming.paths(dict.fromkeys(g.subject for g in unnamed)),
        ]
    )
    extra: dict[str, list[SubjectPaths]] = {}
    used: set[str] = set()
    known = {g.subject for g in unnamed}
    named_sa_namespaces: set[str] = set()
    # What a Secret adds depends only on the rules that name it, and thousands of Secrets
    # share a few hundred such combinations: each combination is merged once.
    merged: dict[tuple[tuple[int, int], ...], list[SubjectPaths]] = {}
    for secret in index.of_kind("Secret", namespace=namespace):
        naming = named.get(secret.name, [])
        key = tuple((id(binding), id(rule)) for binding, rule in naming)
        found = merged.get(key)
        if found is None:
            grants = [
                Grant(s, binding, binding.role, rule)
                for binding, rule in naming
                if binding.role is not None  # always: rules_in_scope checked it
                for s in binding.subjects
            ]
            pairs: list[Pair] = [(g.subject, direct(g)) for g in grants]
            readers = dict.fromkeys(g.subject for g in grants if g.subject not in known)
            pairs += becoming.paths(readers, generic=False)
            named_sa_namespaces.update(r.namespace for r in readers if r.kind == "ServiceAccount")
            found = merged[key] = _merge(pairs)
        if _used_by_pods(index, namespace, secret.name):
            used.add(secret.name)
        extra[secret.name] = found  # shared: the report renders each combination once
    become_any = {
        ns: _merge(
            pair
            for verb_, sub, what in (
                ("create", "token", "create a token for"),
                ("impersonate", "", "impersonate"),
            )
            for pair in _pairs(
                becoming.generic_grants(verb_, "serviceaccounts", sub, ns),
                "indirect",
                f"{what} any ServiceAccount in {ns}",
            )
        )
        for ns in sorted(named_sa_namespaces)
    }
    in_use = _merge(exec_paths(policy, namespace)) if used else []
    return Matrix(namespace, common, in_use, frozenset(used), extra, become_any)


def reader_namespaces(policy: Policy, namespace: str) -> frozenset[str]:
    """Namespaces of the ServiceAccounts that may read some Secret of *namespace*.

    Who can mint a token for (or impersonate) such a ServiceAccount is decided by the
    Roles and RoleBindings of its own namespace; those of any other namespace play no part
    in an answer about *namespace*'s Secrets. *policy* needs only the ClusterRoles,
    ClusterRoleBindings and the Roles and RoleBindings of *namespace*: that is where every
    grant on its Secrets comes from. Any verb counts (a superset of the readers of one).
    """
    return frozenset(
        subject.namespace
        for binding, rule in policy.rules_in_scope("secrets", "", namespace)
        if group_matches(rule, "")
        for subject in binding.subjects
        if subject.kind == "ServiceAccount"
    )


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


def _used_by_pods(index: ObjectIndex, namespace: str, name: str) -> bool:
    """Some pod template uses the Secret (an Ingress or a StorageClass naming it is no pod)."""
    return any(r.consumer.kind in WORKLOAD_KINDS for r in index.consumers_of(namespace, name))


def _has_consumers(index: ObjectIndex | None, namespace: str, name: str) -> bool:
    if index is None:
        return True  # unknown workloads: assume some pod uses it
    if name:
        return _used_by_pods(index, namespace, name)
    return any(
        r.namespace == namespace and r.consumer.kind in WORKLOAD_KINDS
        for r in index.secret_references()
    )


# ---------------------------------------------------------------------------- impersonation


def subject_of_username(username: str) -> Subject:
    """The subject an impersonated user name stands for (``system:serviceaccount:ns:n``)."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] and all(parts[2:]):
        return Subject("ServiceAccount", parts[3], parts[2])
    return Subject("User", username)


def _groups_of(subject: Subject) -> frozenset[str]:
    """The groups the API server puts a subject in by itself."""
    if subject.kind == "ServiceAccount":
        return frozenset(
            {"system:serviceaccounts", f"system:serviceaccounts:{subject.namespace}",
             "system:authenticated"}
        )  # fmt: skip
    if subject.kind == "User":
        return frozenset({"system:authenticated"})
    return frozenset()


def _bound(binding: Binding, subject: Subject) -> bool:
    groups = _groups_of(subject)
    return any(s == subject or (s.kind == "Group" and s.name in groups) for s in binding.subjects)


def secret_access_of(policy: Policy, subject: Subject) -> list[str]:
    """What *subject* can do that reveals Secret values, in words; ``[]`` for nothing.

    The question an impersonation rule restricted to named subjects raises: being able to
    act as them is exactly as dangerous as what they can do. Counted: reading Secrets
    (get/list/watch), creating pods or pod-template workloads, exec/attach, minting
    ServiceAccount tokens, bind/escalate on roles and ``nodes/proxy``; members of
    ``system:masters`` can do everything. Bootstrap bindings count too: a user bound to
    the built-in ``system:`` roles really holds them.
    """
    if subject == SUPERUSER_GROUP:
        return ["everything (system:masters bypasses authorization)"]
    found: dict[str, None] = {}
    for binding in policy.bindings:
        if binding.role is None or not _bound(binding, subject):
            continue
        ns = "" if binding.cluster_wide else binding.namespace
        where = "in every namespace" if binding.cluster_wide else f"in namespace {ns}"
        scope = ns or "x"
        for rule in binding.role.rules:
            reads = [
                v for v in sorted(READ_VERBS)
                if rule_allows(rule, Request(v, "", "secrets", namespace=scope))
                or rule_allows(rule, Request(v, "", "secrets", namespace=scope, name=_ANY))
            ]  # fmt: skip
            if reads:
                found[f"{'/'.join(reads)} Secrets {where}"] = None
            for group, resource, verbs in POD_CREATORS:
                if any(rule_allows(rule, Request(v, group, resource, namespace=scope))
                       for v in verbs):  # fmt: skip
                    found[f"create or change {resource} {where}"] = None
            for sub in ("exec", "attach"):
                if any(
                    rule_allows(rule, Request(v, "", "pods", sub, scope, _ANY))
                    for v in ("create", "get")
                ):
                    found[f"{sub} into pods {where}"] = None
            if rule_allows(rule, Request("create", "", "serviceaccounts", "token", scope, _ANY)):
                found[f"create ServiceAccount tokens {where}"] = None
            for verb in ("bind", "escalate"):
                if any(
                    rule_allows(rule, Request(verb, RBAC_GROUP, r, namespace=scope, name=_ANY))
                    for r in ("roles", "clusterroles")
                ):
                    found[f"{verb} roles {where}"] = None
            if binding.cluster_wide and any(
                rule_allows(rule, Request(v, "", "nodes", "proxy", name=_ANY))
                for v in ("get", "create")
            ):
                found["use the kubelet API (nodes/proxy)"] = None
    return list(found)
