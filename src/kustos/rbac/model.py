"""Roles, bindings and subjects as values, read from an ``ObjectIndex``.

Purely data. ClusterRoles with an ``aggregationRule`` get the rules of every ClusterRole
their selectors match (the controller does this in a live cluster; for files Kustos does
it). Well-known default ClusterRoles that a file scan references but does not contain
(``cluster-admin``, ``admin``, ``edit``, ``view``) are supplied from :data:`BUILTIN_ROLES`,
reduced to the rules that matter for Secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject, is_map

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
#: The kinds a policy is built from (:func:`build_policy` reads nothing else).
RBAC_KINDS: Final = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
#: Label the API server puts on the default roles and bindings it creates itself.
BOOTSTRAP_LABEL: Final = "kubernetes.io/bootstrapping"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule of a role, with its position (``rules[index]``)."""

    index: int
    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: frozenset[str] = frozenset()
    #: For rules gathered by aggregation: the ClusterRole they came from.
    origin: str = ""

    def describe(self) -> str:
        """A compact, value-free rendering: ``get,list secrets [""]``."""
        verbs = ",".join(sorted(self.verbs))
        if self.non_resource_urls:
            return f"{verbs} {','.join(sorted(self.non_resource_urls))}"
        res = ",".join(sorted(self.resources))
        groups = ",".join(f'"{g}"' for g in sorted(self.api_groups))
        names = f" names={','.join(sorted(self.resource_names))}" if self.resource_names else ""
        return f"{verbs} {res} [{groups}]{names}"


@dataclass(frozen=True, slots=True)
class Role:
    """A Role or ClusterRole with its effective rules."""

    kind: str
    namespace: str
    name: str
    rules: tuple[PolicyRule, ...]
    obj: KubeObject | None = field(default=None, compare=False)
    builtin: bool = False

    @property
    def bootstrap(self) -> bool:
        """Created by the API server itself (default roles)."""
        return self.obj is not None and BOOTSTRAP_LABEL in self.obj.labels

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True, slots=True, order=True)
class Subject:
    """A User, Group or ServiceAccount (namespace only for ServiceAccounts)."""

    kind: str
    name: str
    namespace: str = ""

    @property
    def username(self) -> str:
        """The user name the API server sees (``system:serviceaccount:ns:name`` for SAs)."""
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Binding:
    """A RoleBinding or ClusterRoleBinding, resolved to its role (``None`` if missing)."""

    kind: str
    namespace: str
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[Subject, ...]
    role: Role | None
    obj: KubeObject | None = field(default=None, compare=False)

    @property
    def cluster_wide(self) -> bool:
        """A ClusterRoleBinding grants in every namespace."""
        return self.kind == "ClusterRoleBinding"

    @property
    def bootstrap(self) -> bool:
        """Created by the API server itself (default bindings)."""
        return self.obj is not None and BOOTSTRAP_LABEL in self.obj.labels

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


#: The element types of a list that :func:`_set` takes as it is.
_STR_ONLY: Final = frozenset({str})


def _set(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        # Nearly every list holds plain strings only: taken as they are, in C.
        if set(map(type, value)) <= _STR_ONLY:
            return frozenset(value)
        return frozenset(str(v) for v in value if isinstance(v, str | int))
    return frozenset()


def parse_rules(raw: Any, origin: str = "") -> tuple[PolicyRule, ...]:
    """Rules of a role body; malformed entries are skipped."""
    if not isinstance(raw, list):
        return ()
    rules = []
    for i, item in enumerate(raw):
        if not is_map(item):
            continue
        rules.append(
            PolicyRule(
                index=i,
                verbs=_set(item.get("verbs")),
                api_groups=_set(item.get("apiGroups")),
                resources=_set(item.get("resources")),
                resource_names=_set(item.get("resourceNames")),
                non_resource_urls=_set(item.get("nonResourceURLs")),
                origin=origin,
            )
        )
    return tuple(rules)


def _rule(index: int, verbs: str, groups: str, resources: str) -> PolicyRule:
    return PolicyRule(
        index=index,
        verbs=frozenset(verbs.split()),
        api_groups=frozenset("" if g == '""' else g for g in groups.split()),
        resources=frozenset(resources.split()),
    )


_WRITE = "create delete deletecollection patch update"
_READ = "get list watch"
_WORKLOADS = "deployments replicasets statefulsets daemonsets"
#: The defaults of the RBAC bootstrap policy, reduced to rules that matter for Secrets.
BUILTIN_ROLES: Final[Mapping[str, tuple[PolicyRule, ...]]] = {
    "cluster-admin": (
        _rule(0, "*", "*", "*"),
        PolicyRule(index=1, verbs=frozenset({"*"}), non_resource_urls=frozenset({"*"})),
    ),
    "admin": (
        _rule(0, f"{_READ} {_WRITE}", '""', "secrets pods serviceaccounts replicationcontrollers"),
        _rule(1, "create get", '""', "pods/exec pods/attach pods/portforward pods/proxy"),
        _rule(2, "impersonate", '""', "serviceaccounts"),
        _rule(3, "create", '""', "serviceaccounts/token"),
        _rule(4, f"{_READ} {_WRITE}", "apps", _WORKLOADS),
        _rule(5, f"{_READ} {_WRITE}", "batch", "jobs cronjobs"),
        _rule(6, f"{_READ} {_WRITE}", RBAC_GROUP, "roles rolebindings"),
    ),
    "edit": (
        _rule(0, f"{_READ} {_WRITE}", '""', "secrets pods serviceaccounts replicationcontrollers"),
        _rule(1, "create get", '""', "pods/exec pods/attach pods/portforward pods/proxy"),
        _rule(2, "impersonate", '""', "serviceaccounts"),
        _rule(3, "create", '""', "serviceaccounts/token"),
        _rule(4, f"{_READ} {_WRITE}", "apps", _WORKLOADS),
        _rule(5, f"{_READ} {_WRITE}", "batch", "jobs cronjobs"),
    ),
    "view": (_rule(0, _READ, '""', "pods configmaps serviceaccounts"),),
}


def _matches_selector(labels: Mapping[str, Any], selector: Any) -> bool:
    if not isinstance(selector, Mapping):
        return False
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, Mapping):
            return False
        key, op, values = str(expr.get("key")), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels.get(key) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return bool(match_labels) or bool(selector.get("matchExpressions"))


@dataclass(slots=True)
class Policy:
    """Every role and binding of an index, resolved, with roles looked up by name."""

    roles: dict[tuple[str, str, str], Role]
    bindings: list[Binding]
    #: resource (``pods/exec``, ``*``, ``*/exec``) → (binding, rule) pairs; built on first use.
    _by_resource: dict[str, list[tuple[Binding, PolicyRule]]] | None = None
    _lookups: dict[tuple[str, str], list[tuple[Binding, PolicyRule]]] = field(default_factory=dict)
    _scoped: dict[tuple[str, str, str], list[tuple[Binding, PolicyRule]]] = field(
        default_factory=dict
    )
    _naming: dict[tuple[str, str, str], dict[str, list[tuple[Binding, PolicyRule]]]] = field(
        default_factory=dict
    )

    def rules_naming(
        self, resource: str, subresource: str, namespace: str, name: str
    ) -> list[tuple[Binding, PolicyRule]]:
        """``rules_in_scope`` limited to rules whose ``resourceNames`` list *name*, in order.

        "Who can mint a token for this ServiceAccount" is asked for hundreds of readers,
        and only the few rules naming one of them can answer: the others (``*`` rules,
        rules without names) are not tested again for each reader.
        """
        key = (resource, subresource, namespace)
        table = self._naming.get(key)
        if table is None:
            table = {}
            for binding, rule in self.rules_in_scope(resource, subresource, namespace):
                for named in rule.resource_names:
                    table.setdefault(named, []).append((binding, rule))
            self._naming[key] = table
        return table.get(name, [])

    def rules_in_scope(
        self, resource: str, subresource: str, namespace: str
    ) -> list[tuple[Binding, PolicyRule]]:
        """``rules_for`` limited to bindings that grant in *namespace* (``""``: cluster scope).

        A ClusterRoleBinding grants everywhere; a RoleBinding only in its own namespace and
        never on cluster-scoped requests. Kept per question, so that asking about thousands
        of subjects in one namespace does not test every binding of the cluster each time.
        """
        key = (resource, subresource, namespace)
        cached = self._scoped.get(key)
        if cached is None:
            cached = [
                (binding, rule)
                for binding, rule in self.rules_for(resource, subresource)
                if binding.role is not None
                and (
                    binding.kind == "ClusterRoleBinding"
                    or (bool(namespace) and binding.namespace == namespace)
                )
            ]
            self._scoped[key] = cached
        return cached

    def rules_for(self, resource: str, subresource: str = "") -> list[tuple[Binding, PolicyRule]]:
        """(binding, rule) pairs whose rule names this (sub)resource or a wildcard for it."""
        if self._by_resource is None:
            table: dict[str, list[tuple[Binding, PolicyRule]]] = {}
            for binding in self.bindings:
                if binding.role is None:
                    continue
                for rule in binding.role.rules:
                    for name in rule.resources:
                        table.setdefault(name, []).append((binding, rule))
            self._by_resource = table
        cached = self._lookups.get((resource, subresource))
        if cached is not None:
            return cached
        combined = f"{resource}/{subresource}" if subresource else resource
        keys = [combined, "*"] + ([f"*/{subresource}"] if subresource else [])
        found: list[tuple[Binding, PolicyRule]] = []
        seen: set[tuple[int, int]] = set()
        for key in keys:
            for pair in self._by_resource.get(key, ()):
                ident = (id(pair[0]), id(pair[1]))
                if ident not in seen:
                    seen.add(ident)
                    found.append(pair)
        self._lookups[(resource, subresource)] = found
        return found

    def role(self, kind: str, namespace: str, name: str) -> Role | None:
        """The role ``kind namespace/name`` (namespace ``""`` for ClusterRoles)."""
        return self.roles.get((kind, namespace if kind == "Role" else "", name))


def build_policy(
    index: ObjectIndex, *, every_declaration: bool = False, earlier: Policy | None = None
) -> Policy:
    """Read roles and bindings from *index*, aggregating ClusterRoles and resolving refs.

    A folder may declare one object in several files (two renderings of one chart). It
    grants once, so by default each identity counts once, as the declaration that
    ``index.get`` returns (the last). A scan passes *every_declaration*: each copy is a
    place to fix and is reported where it is.

    *earlier*, a policy built from part of the same index (who-can builds one to find
    where else to list), lends its roles and bindings made of the very same objects when
    they resolve alike, instead of parsing them again: the policy is the same.
    """
    lent_roles = {id(r.obj): r for r in earlier.roles.values()} if earlier else {}
    lent_bindings = {id(b.obj): b for b in earlier.bindings} if earlier else {}

    def _declared(*kinds: str) -> list[KubeObject]:
        objs = index.of_kind(*kinds)
        if every_declaration or not index.duplicates:
            return objs  # each object is the one ``index.get`` returns
        return [o for o in objs if index.get(o.ref) is o]

    cluster_objs = _declared("ClusterRole")
    roles: dict[tuple[str, str, str], Role] = {}
    lent_cluster = [r for k, r in earlier.roles.items() if k[0] == "ClusterRole"] if earlier else []
    if len(lent_cluster) == len(cluster_objs) and all(
        r.obj is o for r, o in zip(lent_cluster, cluster_objs, strict=True)
    ):
        # The very same ClusterRoles, so the same aggregation: each one as it was.
        roles.update((("ClusterRole", "", r.name), r) for r in lent_cluster)
        cluster_objs = []
    own = {o.name: parse_rules(o.body.get("rules")) for o in cluster_objs}
    for obj in cluster_objs:
        rules = list(own[obj.name])
        aggregation = obj.body.get("aggregationRule")
        selectors = (
            aggregation.get("clusterRoleSelectors") if isinstance(aggregation, Mapping) else None
        )
        if isinstance(selectors, list):
            seen = {
                (r.verbs, r.api_groups, r.resources, r.resource_names, r.non_resource_urls)
                for r in rules
            }
            for other in cluster_objs:
                if other.name == obj.name or not any(
                    _matches_selector(other.labels, s) for s in selectors
                ):
                    continue
                for r in parse_rules(other.body.get("rules"), origin=other.name):
                    key = (
                        r.verbs,
                        r.api_groups,
                        r.resources,
                        r.resource_names,
                        r.non_resource_urls,
                    )
                    if key not in seen:
                        seen.add(key)
                        rules.append(r)
        roles[("ClusterRole", "", obj.name)] = Role("ClusterRole", "", obj.name, tuple(rules), obj)
    for obj in _declared("Role"):
        roles[("Role", obj.namespace, obj.name)] = lent_roles.get(id(obj)) or Role(
            "Role", obj.namespace, obj.name, parse_rules(obj.body.get("rules")), obj
        )
    bindings: list[Binding] = []
    for obj in _declared("RoleBinding", "ClusterRoleBinding"):
        binding = lent_bindings.get(id(obj))
        if binding is None or binding.role is not _role_of(binding, roles):
            binding = _binding(obj, roles)
        bindings.append(binding)
    return Policy(roles, bindings)


def _role_of(binding: Binding, roles: dict[tuple[str, str, str], Role]) -> Role | None:
    """The role *binding*'s reference resolves to in *roles* (``None``: missing or builtin)."""
    role_ns = binding.namespace if binding.role_kind == "Role" else ""
    return roles.get((binding.role_kind, role_ns, binding.role_name))


def _binding(obj: KubeObject, roles: dict[tuple[str, str, str], Role]) -> Binding:
    raw_ref = obj.body.get("roleRef")
    ref: Mapping[str, Any] = raw_ref if isinstance(raw_ref, Mapping) else {}
    role_kind = str(ref.get("kind", ""))
    role_name = str(ref.get("name", ""))
    role_ns = obj.namespace if role_kind == "Role" else ""
    role = roles.get((role_kind, role_ns, role_name))
    if role is None and role_kind == "ClusterRole" and role_name in BUILTIN_ROLES:
        role = Role("ClusterRole", "", role_name, BUILTIN_ROLES[role_name], None, builtin=True)
    return Binding(
        kind=obj.kind,
        namespace=obj.namespace,
        name=obj.name,
        role_kind=role_kind,
        role_name=role_name,
        subjects=tuple(_subjects(obj)),
        role=role,
        obj=obj,
    )


def _subjects(obj: KubeObject) -> Iterable[Subject]:
    raw = obj.body.get("subjects")
    if not isinstance(raw, list):
        return
    for item in raw:
        if not is_map(item) or not isinstance(item.get("name"), str):
            continue
        kind = str(item.get("kind", ""))
        if kind == "ServiceAccount":
            ns = item.get("namespace") or obj.namespace
            yield Subject("ServiceAccount", item["name"], str(ns))
        elif kind in ("User", "Group"):
            yield Subject(kind, item["name"])
