"""Least privilege from the audit trail: the Roles each ServiceAccount needs, and the rest.

Purely data-manipulative: audit events in, Kubernetes objects and reports out. What a
ServiceAccount did is every resource request it made (the request's final stage, counted
once per ``auditID``), allowed or refused: a refused request is something the workload
tried to do, as in audit2rbac. Requests made while impersonating count for the
impersonated identity; requests that failed authentication count for nobody.

:func:`suggest` turns those requests into minimal RBAC:

- a namespaced request becomes a rule of a Role in that namespace, bound by a RoleBinding;
  a cluster-scoped resource, a request across all namespaces, or a non-resource URL
  becomes a rule of a ClusterRole bound by a ClusterRoleBinding;
- verbs that name an object (``get``, ``update``, ``patch``, ``delete`` and a ``watch`` or
  ``list`` of one object) get ``resourceNames``; verbs the API server authorizes without
  a name (``list``, ``watch``, ``create``, ``deletecollection`` on a resource itself) get
  none, because a rule with names would never match them (a subresource's URL names its
  object, so ``create pods/exec`` keeps the pod's name);
- rules are merged: objects of one resource that are used with the same verbs share a
  rule, so the output stays short while granting exactly what was used.

:func:`unused_grants` compares the suggestion with what RBAC actually grants (the
``kustos.rbac`` model of a folder of manifests or a live cluster): every rule bound to a
ServiceAccount, with the verbs no recorded request used.

May import: ``kustos.rbac`` and the pure modules of ``kustos.kube``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.conventions import LABEL_MANAGED_BY, MANAGED_BY_VALUE
from kustos.rbac.access import direct_grants
from kustos.rbac.matching import CLUSTER_SCOPED_RESOURCES, Request
from kustos.rbac.model import RBAC_GROUP, Binding, Policy, PolicyRule, Role, Subject

SA_PREFIX: Final = "system:serviceaccount:"
#: Verbs the authorizer sees without an object name, whatever the audit event records.
UNNAMED_VERBS: Final = frozenset({"create", "list", "watch", "deletecollection"})
_COUNTED: Final = frozenset({"ResponseStarted", "ResponseComplete", "Panic"})
SUGGESTED_PREFIX: Final = "kustos-suggested"


@dataclass(frozen=True, slots=True, order=True)
class Use:
    """One kind of request a ServiceAccount made (a name only where RBAC can use it)."""

    namespace: str  # "" for cluster-scoped or all-namespace requests
    group: str
    resource: str  # with its subresource: ``pods/exec``
    verb: str
    name: str = ""
    url: str = ""  # non-resource requests (``/metrics``)

    def request(self) -> Request:
        """The authorizer's view of this use, for :mod:`kustos.rbac.matching`."""
        resource, _, sub = self.resource.partition("/")
        return Request(self.verb, self.group, resource, sub, self.namespace, self.name)


@dataclass
class Activity:
    """Everything each ServiceAccount (``namespace/name``) did."""

    uses: dict[Subject, set[Use]] = field(default_factory=dict)

    def accounts(self) -> list[Subject]:
        """The ServiceAccounts seen, sorted."""
        return sorted(self.uses)


def _account(event: Mapping[str, Any]) -> Subject | None:
    user = event.get("impersonatedUser") or event.get("user")
    name = user.get("username") if isinstance(user, Mapping) else None
    if not isinstance(name, str) or not name.startswith(SA_PREFIX):
        return None
    namespace, _, account = name[len(SA_PREFIX) :].partition(":")
    if not namespace or not account:
        return None
    return Subject("ServiceAccount", account, namespace)


def use_of(event: Mapping[str, Any]) -> tuple[Subject, Use] | None:
    """The ServiceAccount and the use one audit event records, or ``None``."""
    if event.get("stage") not in _COUNTED:
        return None
    status = event.get("responseStatus")
    if isinstance(status, Mapping) and status.get("code") == 401:
        return None
    subject = _account(event)
    verb = event.get("verb")
    if subject is None or not isinstance(verb, str) or not verb:
        return None
    ref = event.get("objectRef")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("resource"), str):
        uri = event.get("requestURI")
        if not isinstance(uri, str) or not uri:
            return None
        return subject, Use("", "", "", verb, url=uri.split("?", 1)[0])
    resource = str(ref["resource"])
    sub = ref.get("subresource")
    combined = f"{resource}/{sub}" if isinstance(sub, str) and sub else resource
    namespace = ref.get("namespace") if isinstance(ref.get("namespace"), str) else ""
    if resource in CLUSTER_SCOPED_RESOURCES:
        namespace = ""
    name = ref.get("name") if isinstance(ref.get("name"), str) else ""
    subresource = combined != resource  # pods/web-1/exec: the URL names the pod
    if verb in UNNAMED_VERBS and not subresource and not (verb in ("list", "watch") and name):
        name = ""
    group = ref.get("apiGroup") if isinstance(ref.get("apiGroup"), str) else ""
    return subject, Use(str(namespace), str(group), combined, verb, str(name))


def collect(
    events: Iterable[Mapping[str, Any]],
    *,
    namespace: str | None = None,
    account: Subject | None = None,
) -> Activity:
    """What each ServiceAccount did in *events* (only *namespace*'s, or only *account*)."""
    activity = Activity()
    seen: set[str] = set()
    for event in events:
        found = use_of(event)
        if found is None:
            continue
        subject, use = found
        if namespace is not None and subject.namespace != namespace:
            continue
        if account is not None and subject != account:
            continue
        audit_id = event.get("auditID")
        if isinstance(audit_id, str):
            if audit_id in seen:
                continue
            seen.add(audit_id)
        activity.uses.setdefault(subject, set()).add(use)
    return activity


# --------------------------------------------------------------------------- suggest
def _rules(uses: Iterable[Use]) -> list[dict[str, Any]]:
    """Minimal RBAC rules (as manifests write them) granting exactly *uses*."""
    urls: dict[str, set[str]] = {}
    unnamed: dict[tuple[str, str], set[str]] = {}
    named: dict[tuple[str, str], dict[str, set[str]]] = {}
    for use in uses:
        if use.url:
            urls.setdefault(use.url, set()).add(use.verb)
        elif use.name:
            named.setdefault((use.group, use.resource), {}).setdefault(use.name, set()).add(
                use.verb
            )
        else:
            unnamed.setdefault((use.group, use.resource), set()).add(use.verb)
    rules: list[dict[str, Any]] = []
    for group, resource in sorted(set(unnamed) | set(named)):
        verbs = unnamed.get((group, resource))
        if verbs:
            rules.append({"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)})
        by_verbs: dict[tuple[str, ...], list[str]] = {}
        for name, name_verbs in named.get((group, resource), {}).items():
            by_verbs.setdefault(tuple(sorted(name_verbs)), []).append(name)
        for verb_set, names in sorted(by_verbs.items()):
            rules.append(
                {
                    "apiGroups": [group],
                    "resources": [resource],
                    "resourceNames": sorted(names),
                    "verbs": list(verb_set),
                }
            )
    by_url_verbs: dict[tuple[str, ...], list[str]] = {}
    for url, verbs in urls.items():
        by_url_verbs.setdefault(tuple(sorted(verbs)), []).append(url)
    for verb_set, paths in sorted(by_url_verbs.items()):
        rules.append({"nonResourceURLs": sorted(paths), "verbs": list(verb_set)})
    return rules


def _subject_doc(subject: Subject) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": subject.name, "namespace": subject.namespace}


def suggest(activity: Activity) -> list[dict[str, Any]]:
    """Roles, ClusterRoles and their bindings granting each ServiceAccount what it used."""
    objects: list[dict[str, Any]] = []
    rbac = f"{RBAC_GROUP}/v1"
    for subject in activity.accounts():
        per_namespace: dict[str, set[Use]] = {}
        for use in activity.uses[subject]:
            per_namespace.setdefault(use.namespace, set()).add(use)
        for namespace, uses in sorted(per_namespace.items()):
            rules = _rules(uses)
            name = f"{SUGGESTED_PREFIX}:{subject.namespace}:{subject.name}"
            meta: dict[str, Any] = {"name": name}
            if namespace:
                meta["namespace"] = namespace
                role_kind, binding_kind = "Role", "RoleBinding"
            else:
                role_kind, binding_kind = "ClusterRole", "ClusterRoleBinding"
            meta["labels"] = {LABEL_MANAGED_BY: MANAGED_BY_VALUE}
            objects.append(
                {"apiVersion": rbac, "kind": role_kind, "metadata": meta, "rules": rules}
            )
            objects.append(
                {
                    "apiVersion": rbac,
                    "kind": binding_kind,
                    "metadata": dict(meta),
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": name},
                    "subjects": [_subject_doc(subject)],
                }
            )
    return objects


# --------------------------------------------------------------------------- compare
@dataclass(frozen=True, slots=True)
class Unused:
    """A rule bound to a ServiceAccount and what of it the recorded requests never used.

    ``used`` and ``unused`` are ``"verb resource"`` pairs (``"list secrets"``); a rule with
    a wildcard verb or resource is reported as ``"*"`` only when nothing used it at all.
    """

    subject: Subject
    binding: str
    role: str
    rule: str
    rule_index: int
    used: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def whole_rule(self) -> bool:
        """Nothing the rule grants was used: the rule (or binding) can go."""
        return not self.used

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``kustos rbac suggest --compare``."""
        return {
            "service_account": f"{self.subject.namespace}/{self.subject.name}",
            "binding": self.binding,
            "role": self.role,
            "rule": self.rule,
            "rule_index": self.rule_index,
            "used": list(self.used),
            "unused": list(self.unused),
        }


def _bound_to(binding: Binding, subject: Subject) -> bool:
    return any(s == subject for s in binding.subjects)


UsedPairs = dict[tuple[int, int], set[tuple[str, str]]]


def unused_grants(policy: Policy, activity: Activity, accounts: Iterable[Subject]) -> list[Unused]:
    """Every rule bound directly to each of *accounts*, with the verbs that went unused.

    Rules reached through groups (``system:serviceaccounts``, ...) are shared with other
    accounts and are not reported.
    """
    out: list[Unused] = []
    for subject in sorted(set(accounts)):
        uses = activity.uses.get(subject, set())
        used_by_rule: UsedPairs = {}
        for use in uses:
            if use.url:
                continue
            for grant in direct_grants(policy, use.request()):
                if grant.subject == subject:
                    key = (id(grant.binding), grant.rule.index)
                    used_by_rule.setdefault(key, set()).add((use.verb, use.resource))
        for binding in policy.bindings:
            if binding.role is None or not _bound_to(binding, subject):
                continue
            out.extend(_unused_rules(subject, binding, binding.role, used_by_rule))
    return out


def _unused_rules(
    subject: Subject, binding: Binding, role: Role, used_by_rule: UsedPairs
) -> Iterable[Unused]:
    for rule in role.rules:
        if rule.non_resource_urls and not rule.resources:
            continue
        used = used_by_rule.get((id(binding), rule.index), set())
        unused = _unused_pairs(rule, used)
        if unused:
            yield Unused(
                subject=subject,
                binding=str(binding),
                role=str(role),
                rule=rule.describe(),
                rule_index=rule.index,
                used=tuple(sorted(f"{v} {r}" for v, r in used)),
                unused=unused,
            )


def _unused_pairs(rule: PolicyRule, used: set[tuple[str, str]]) -> tuple[str, ...]:
    if "*" in rule.verbs or any("*" in r for r in rule.resources):
        return () if used else ("*",)
    granted = {(v, r) for v in rule.verbs for r in rule.resources}
    return tuple(sorted(f"{v} {r}" for v, r in granted - used))
