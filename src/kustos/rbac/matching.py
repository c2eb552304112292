"""Does a rule allow a request? The API server's RBAC matching, as a pure function.

Semantics (``k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go``): a verb matches
itself or ``*``; an API group matches itself or ``*``; a resource matches itself (with its
subresource, ``pods/exec``), ``*`` (everything, subresources included) or ``*/exec`` (that
subresource of any resource). ``secrets/*`` is NOT a wildcard: it matches only a
subresource literally named ``*``. ``resourceNames`` restrict only requests that name an
object, so a rule with names never matches ``list`` or ``create``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kustos.rbac.model import RBAC_GROUP, PolicyRule

#: Group of well-known resources, for parsing ``who-can VERB RESOURCE`` arguments.
KNOWN_GROUPS: Final = {
    "deployments": "apps",
    "replicasets": "apps",
    "statefulsets": "apps",
    "daemonsets": "apps",
    "controllerrevisions": "apps",
    "jobs": "batch",
    "cronjobs": "batch",
    "roles": RBAC_GROUP,
    "rolebindings": RBAC_GROUP,
    "clusterroles": RBAC_GROUP,
    "clusterrolebindings": RBAC_GROUP,
    "networkpolicies": "networking.k8s.io",
    "ingresses": "networking.k8s.io",
    "tokenreviews": "authentication.k8s.io",
    "subjectaccessreviews": "authorization.k8s.io",
    "certificatesigningrequests": "certificates.k8s.io",
    "customresourcedefinitions": "apiextensions.k8s.io",
    "managedsecrets": "kustos.io",
}
CLUSTER_SCOPED_RESOURCES: Final = frozenset(
    {"nodes", "namespaces", "persistentvolumes", "clusterroles", "clusterrolebindings",
     "certificatesigningrequests", "customresourcedefinitions", "storageclasses"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    """One API request, as the authorizer sees it."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined(self) -> str:
        """``pods/exec`` or ``secrets``."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        target = self.combined + (f".{self.group}" if self.group else "")
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {target}{' ' + self.name if self.name else ''}{where}"


def parse_resource(text: str) -> tuple[str, str, str]:
    """``pods/exec`` → ("", "pods", "exec"); ``deployments.apps`` → ("apps", "deployments", "")."""
    resource, _, sub = text.partition("/")
    resource, dot, group = resource.partition(".")
    if not dot:
        group = KNOWN_GROUPS.get(resource, "")
    if group == "core":
        group = ""
    return group, resource, sub


def request_of(verb: str, resource: str, *, name: str = "", namespace: str = "") -> Request:
    """The request ``kustos who-can VERB RESOURCE [NAME] [-n NAMESPACE]`` asks about.

    RoleBindings never grant cluster-scoped resources, so *namespace* is ignored for them:
    ``who-can get nodes -n team`` asks about ``nodes``, not about nothing.
    """
    group, res, sub = parse_resource(resource)
    scope = "" if res in CLUSTER_SCOPED_RESOURCES else namespace
    return Request(verb, group, res, sub, scope, name)


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    """The rule lists the verb or ``*``."""
    return verb in rule.verbs or "*" in rule.verbs


def group_matches(rule: PolicyRule, group: str) -> bool:
    """The rule lists the API group or ``*``."""
    return group in rule.api_groups or "*" in rule.api_groups


def resource_matches(rule: PolicyRule, resource: str, subresource: str = "") -> bool:
    """The rule covers the (sub)resource: exact, ``*`` or ``*/sub``."""
    combined = f"{resource}/{subresource}" if subresource else resource
    if "*" in rule.resources or combined in rule.resources:
        return True
    return bool(subresource) and f"*/{subresource}" in rule.resources


def name_matches(rule: PolicyRule, name: str) -> bool:
    """No ``resourceNames``, or the request names one of them."""
    return not rule.resource_names or (bool(name) and name in rule.resource_names)


def rule_allows(rule: PolicyRule, request: Request) -> bool:
    """The whole RBAC test of one rule against one resource request.

    The four tests above, written out in one body (the checks of a large policy ask it
    hundreds of thousands of times); the namespace is not the rule's business: bindings
    scope it.
    """
    resources = rule.resources
    if not resources:
        return False
    verbs, groups = rule.verbs, rule.api_groups
    if (request.verb not in verbs and "*" not in verbs) or (
        request.group not in groups and "*" not in groups
    ):
        return False
    subresource = request.subresource
    if not (
        "*" in resources
        or (f"{request.resource}/{subresource}" if subresource else request.resource) in resources
        or (subresource and f"*/{subresource}" in resources)
    ):
        return False
    names = rule.resource_names
    return not names or (bool(request.name) and request.name in names)
