"""Audit policy: checks over the ``audit.k8s.io`` Policy given with ``--audit-policy``.

Purely data. The policy arrives parsed (``ScanInput.audit``, read by
:mod:`kustos.scan.configs.auditpolicy`); rules are matched the way kube-apiserver matches them
(``staging/src/k8s.io/apiserver/pkg/audit/policy/checker.go``):

- the first rule that matches a request sets its level; no match means ``None``;
- a rule matches when every field it sets matches: ``users`` (user name), ``userGroups``
  (any group), ``verbs``; then, if it sets ``namespaces`` or ``resources``, the request must be
  a resource request in one of those namespaces (``""`` = cluster-scoped or across all
  namespaces) and of one of those resources; otherwise, if it sets ``nonResourceURLs``, a
  non-resource request on one of those paths; a rule that sets neither matches everything;
- a ``resources`` item matches its ``group`` exactly (absent = ``""``, the core group); no
  resource list means every resource of the group, subresources included; ``*`` is every
  resource and subresource, ``*/token`` one subresource of any resource, ``pods/*`` the
  resource and all its subresources, ``pods`` the resource without its subresources;
  ``resourceNames`` narrows an item to those object names;
- ``omitStages`` of the policy and of the matching rule are united.

Reasoning about "every request on Secrets" is done symbolically, never by enumerating
requests. A rule can be the first match for some request on a resource unless an earlier
rule matches every request that rule would match *on that resource*; user, group, verb and
namespace restrictions count as "may match". Unknown fields are ignored, as the API server's
decoder ignores them; ``audit.k8s.io/v1beta1`` and ``v1alpha1`` are read like ``v1``
(same rule semantics; API servers since 1.24 load only ``v1``).

What leaks (KST110): Secret and ConfigMap values are in the request body of ``create``,
``update`` and ``patch`` (level ``Request``) and in every response body (``RequestResponse``);
a TokenReview carries the bearer token in its request; ``serviceaccounts/token`` returns the
new token in its response only, so ``Request`` on it leaks nothing and is not reported.

A policy the API server would refuse (not a Policy, no rules, a rule with a missing or
unknown level, resources mixed with nonResourceURLs...) is reported as KST114 and nothing
else is evaluated.

Messages carry rule indexes, resource names and levels only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.configs.auditpolicy import (
    FAMILY,
    NONE,
    REQUEST,
    REQUEST_RECEIVED,
    REQUEST_RESPONSE,
    AuditPolicy,
    GroupResources,
    PolicyRule,
)
from kustos.scan.findings import Finding, Rule, Severity

_AUDIT_TASK: Final = "https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/"
_AUDIT_API: Final = "https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/"


# --------------------------------------------------------------------------- matching


def pattern_matches(pattern: str, resource: str, subresource: str) -> bool:
    """Whether one ``resources`` pattern matches a resource and subresource (checker.go)."""
    combined = f"{resource}/{subresource}" if subresource else resource
    if pattern in (combined, "*"):
        return True
    if subresource and pattern.startswith("*/") and pattern[2:] == subresource:
        return True
    return pattern.endswith("/*") and pattern[:-2] == resource


def pattern_contains(outer: str, inner: str) -> bool:
    """Whether everything pattern *inner* matches, pattern *outer* matches too."""
    if outer in ("*", inner):
        return True
    if outer.startswith("*/"):
        res, slash, sub = inner.partition("/")
        return bool(slash) and "*" not in inner and sub == outer[2:] and bool(res)
    if outer.endswith("/*"):
        return inner == outer[:-2] or inner.startswith(outer[:-1])
    return False


def url_contains(outer: str, inner: str) -> bool:
    """Whether every path *inner* matches, path pattern *outer* matches too."""
    if outer in ("*", inner):
        return True
    return outer.endswith("*") and inner != "*" and inner.startswith(outer.rstrip("*"))


def _set_contains(outer: frozenset[str] | None, inner: frozenset[str] | None) -> bool:
    """Containment of restrictions where ``None`` means "anything"."""
    if outer is None:
        return True
    return inner is not None and inner <= outer


@dataclass(frozen=True, slots=True)
class Target:
    """A kind of request the checks reason about: one resource, its scope and its verbs."""

    name: str
    group: str
    resource: str
    subresource: str = ""
    #: Verbs a request on it can have; ``None`` for any.
    verbs: frozenset[str] | None = None
    #: Requests inside a namespace exist / requests with namespace ``""`` exist.
    in_namespace: bool = True
    cluster_wide: bool = True

    def restricted(self, verbs: frozenset[str]) -> Target:
        """The same target, for these verbs only."""
        return Target(
            self.name,
            self.group,
            self.resource,
            self.subresource,
            verbs if self.verbs is None else verbs & self.verbs,
            self.in_namespace,
            self.cluster_wide,
        )


_WRITES: Final = frozenset({"create", "update", "patch"})
_CREATE: Final = frozenset({"create"})

SECRETS: Final = Target("secrets", "", "secrets")
CONFIGMAPS: Final = Target("configmaps", "", "configmaps")
TOKENREVIEWS: Final = Target(
    "tokenreviews", "authentication.k8s.io", "tokenreviews", verbs=_CREATE, in_namespace=False
)
TOKEN_REQUESTS: Final = Target(
    "serviceaccounts/token", "", "serviceaccounts", "token", verbs=_CREATE, cluster_wide=False
)

#: Each sensitive target and the verbs whose *request* body holds a value or a token.
_SENSITIVE: Final[tuple[tuple[Target, frozenset[str]], ...]] = (
    (SECRETS, _WRITES),
    (CONFIGMAPS, _WRITES),
    (TOKENREVIEWS, _CREATE),
    (TOKEN_REQUESTS, frozenset()),
)

#: A rule without restrictions: "every request".
_EVERYTHING: Final = PolicyRule(index=-1, level=NONE)


def _item_can_match(item: GroupResources, target: Target) -> bool:
    if item.group != target.group:
        return False
    if not item.resources:
        return True
    return any(pattern_matches(p, target.resource, target.subresource) for p in item.resources)


def _item_covers(item: GroupResources, target: Target) -> bool:
    """Whether the item matches every object of *target*, whatever its name."""
    if item.group != target.group:
        return False
    if not item.resources:
        return True
    return not item.names and any(
        pattern_matches(p, target.resource, target.subresource) for p in item.resources
    )


def _namespaces_of(rule: PolicyRule, target: Target) -> frozenset[str] | None:
    """The namespaces of *target* requests the rule may match; ``None`` for "all of them"."""
    if rule.namespaces is None:
        return None
    return frozenset(
        ns
        for ns in rule.namespaces
        if (ns == "" and target.cluster_wide) or (ns and target.in_namespace)
    )


def _verbs_of(rule: PolicyRule, target: Target) -> frozenset[str] | None:
    if rule.verbs is None:
        return target.verbs
    return rule.verbs if target.verbs is None else rule.verbs & target.verbs


def can_match(rule: PolicyRule, target: Target) -> bool:
    """Whether some request on *target* could match *rule* (subjects assumed to fit)."""
    if rule.matches_urls_only:
        return False
    namespaces = _namespaces_of(rule, target)
    verbs = _verbs_of(rule, target)
    if namespaces is not None and not namespaces:
        return False
    if verbs is not None and not verbs:
        return False
    return not rule.resources or any(_item_can_match(i, target) for i in rule.resources)


def contains_on(outer: PolicyRule, inner: PolicyRule, target: Target) -> bool:
    """Whether *outer* matches every request on *target* that *inner* matches."""
    if outer.matches_urls_only:
        return False
    if outer.resources and not any(_item_covers(i, target) for i in outer.resources):
        return False
    if outer.namespaces is not None:
        inner_ns = _namespaces_of(inner, target)
        if inner_ns is None:
            # Inner matches every namespace the target has: only finite when that is just "".
            if target.in_namespace or not target.cluster_wide:
                return False
            inner_ns = frozenset({""})
        if not inner_ns <= outer.namespaces:
            return False
    return (
        _set_contains(outer.verbs, _verbs_of(inner, target))
        and _set_contains(outer.users, inner.users)
        and _set_contains(outer.groups, inner.groups)
    )


def first_matches(rules: Sequence[PolicyRule], target: Target) -> list[PolicyRule]:
    """The rules that are the first match of some request on *target*, in order.

    Requests that none of them matches get the default level, ``None``; a rule that matches
    every request on *target* ends the list.
    """
    found: list[PolicyRule] = []
    for j, rule in enumerate(rules):
        if not can_match(rule, target):
            continue
        if any(contains_on(earlier, rule, target) for earlier in rules[:j]):
            continue
        found.append(rule)
    return found


def contains(outer: PolicyRule, inner: PolicyRule) -> bool:
    """Whether *outer* matches every request *inner* matches, whatever the resource."""
    if not (
        _set_contains(outer.users, inner.users)
        and _set_contains(outer.groups, inner.groups)
        and _set_contains(outer.verbs, inner.verbs)
    ):
        return False
    if not outer.matches_resources and not outer.urls:
        return True
    if outer.matches_urls_only:
        return inner.matches_urls_only and all(
            any(url_contains(o, i) for o in outer.urls) for i in inner.urls
        )
    if not inner.matches_resources or not _set_contains(outer.namespaces, inner.namespaces):
        return False
    if not outer.resources:
        return True
    return bool(inner.resources) and all(
        _item_contained(outer.resources, i) for i in inner.resources
    )


def _item_contained(outer: Sequence[GroupResources], inner: GroupResources) -> bool:
    same_group = [o for o in outer if o.group == inner.group]
    if any(not o.resources for o in same_group):
        return True
    if not inner.resources:
        return any("*" in o.resources and not o.names for o in same_group)
    return all(
        any(
            _set_contains(o.names or None, inner.names or None)
            and any(pattern_contains(q, p) for q in o.resources)
            for o in same_group
        )
        for p in inner.resources
    )


def _policy_of(scan: ScanInput) -> AuditPolicy | None:
    """The audit policy, when one was given and the API server would load it."""
    policy = scan.audit
    return None if policy is None or policy.problems else policy


# --------------------------------------------------------------------------- rules

_CIS_322: Final = ("CIS 3.2.2", "kube-bench 3.2.2 (cis-1.12, manual)", "Kubescape C-0161")

BODIES_LOGGED: Final = Rule(
    id="KST110",
    family=FAMILY,
    severity=Severity.HIGH,
    title="Secret values or tokens can reach the audit log",
    rationale=(
        "A rule that is the first match for requests on secrets, configmaps, tokenreviews or "
        "serviceaccounts/token logs them at Request or RequestResponse, so the audit log (and "
        "every system it is shipped to) receives Secret and ConfigMap values, bearer tokens "
        "under review, or newly issued ServiceAccount tokens. The upstream GCE policy and CIS "
        "3.2.2 keep these at Metadata. High: the audit trail becomes a second, less protected "
        "copy of the credentials. Reported per resource and rule; Request on "
        "serviceaccounts/token is not reported because only its response holds the token."
    ),
    remediation=(
        "Add a rule before it: level Metadata for group '' resources secrets, configmaps and "
        "serviceaccounts/token, and group authentication.k8s.io resource tokenreviews."
    ),
    references=(*_CIS_322, _AUDIT_TASK, _AUDIT_API),
)

SECRETS_UNLOGGED: Final = Rule(
    id="KST111",
    family=FAMILY,
    severity=Severity.MEDIUM,
    title="Requests on Secrets are not audited at all",
    rationale=(
        "Every request on secrets first matches a rule at level None, or matches no rule "
        "(the default level is None). Nobody can later tell who read, changed or deleted a "
        "Secret, and Kustos' own audit analysis has nothing to work with. Medium: it removes "
        "detection and forensics rather than exposing a value."
    ),
    remediation=(
        "Add a rule level Metadata for group '' resource secrets (with omitStages "
        "[RequestReceived]) before any None rule that would match them."
    ),
    references=(*_CIS_322, "CIS 3.2.1", "Kubescape C-0160", _AUDIT_TASK),
)

SHADOWED_RULE: Final = Rule(
    id="KST112",
    family=FAMILY,
    severity=Severity.LOW,
    title="An audit rule is never used: an earlier rule matches all its requests",
    rationale=(
        "The first matching rule wins, and an earlier rule matches every request this rule "
        "would match, so this rule never sets a level: the policy does not do what it says. "
        "Reported only when the containment is certain from one earlier rule. Low on its own; "
        "when the dead rule was meant to protect Secrets, KST110 or KST111 reports the effect."
    ),
    remediation="Move the rule above the one that shadows it, or delete it.",
    references=(_AUDIT_TASK, _AUDIT_API),
)

REQUEST_RECEIVED_KEPT: Final = Rule(
    id="KST113",
    family=FAMILY,
    severity=Severity.LOW,
    title="RequestReceived is not omitted",
    rationale=(
        "Without omitStages [RequestReceived] every audited request is logged twice (when "
        "received and when complete) and the first event carries no response status. It "
        "doubles audit volume, buffers and webhook batches for no information; the upstream "
        "example and GCE policies omit it. Low: noise and cost, not exposure."
    ),
    remediation="Add omitStages: [RequestReceived] at the top of the policy.",
    references=(_AUDIT_TASK, _AUDIT_API),
)

MALFORMED_POLICY: Final = Rule(
    id="KST114",
    family=FAMILY,
    severity=Severity.HIGH,
    title="The audit policy is not a usable audit Policy",
    rationale=(
        "The file given as the audit policy is not one kube-apiserver would load: not an "
        "audit.k8s.io Policy, no rules (the API server refuses an empty policy), a rule "
        "without a valid level, or resources mixed with nonResourceURLs. The API server does "
        "not start with it, and nothing can be said about what is audited. High: either the "
        "control plane will not come up or the scan was pointed at the wrong file."
    ),
    remediation=(
        "Fix the field named in the finding, or pass the file kube-apiserver reads with "
        "--audit-policy-file (for a policy kept in a ConfigMap, the data value itself)."
    ),
    references=("CIS 3.2.1", "Kubescape C-0160", _AUDIT_API, _AUDIT_TASK),
)


# --------------------------------------------------------------------------- checks


def _bodies_logged(scan: ScanInput) -> Iterator[Finding]:
    policy = _policy_of(scan)
    if policy is None:
        return
    for target, request_verbs in _SENSITIVE:
        leaking: dict[int, str] = {}
        found = first_matches(policy.rules, target)
        for rule in found:
            if rule.level == REQUEST_RESPONSE and rule.logs:
                leaking[rule.index] = rule.level
        if request_verbs:
            found = first_matches(policy.rules, target.restricted(request_verbs))
            for rule in found:
                if rule.level == REQUEST and rule.logs:
                    leaking[rule.index] = rule.level
        for index in sorted(leaking):
            yield finding(
                BODIES_LOGGED,
                None,
                f"rule {index} logs {target.name} at {leaking[index]}: "
                f"{_what_leaks(target, leaking[index])} reach the audit log",
                field=f"rules[{index}]",
            )


def _what_leaks(target: Target, level: str) -> str:
    if target is TOKENREVIEWS:
        return "bearer tokens under review"
    if target is TOKEN_REQUESTS:
        return "issued ServiceAccount tokens"
    bodies = "request and response bodies" if level == REQUEST_RESPONSE else "request bodies"
    return f"{bodies} with {'Secret' if target is SECRETS else 'ConfigMap'} values"


def _secrets_unlogged(scan: ScanInput) -> Iterator[Finding]:
    policy = _policy_of(scan)
    if policy is None:
        return
    found = first_matches(policy.rules, SECRETS)
    if any(rule.logs for rule in found):
        return
    catch = next((r for r in policy.rules if contains_on(r, _EVERYTHING, SECRETS)), None)
    if catch is not None:
        yield finding(
            SECRETS_UNLOGGED,
            None,
            f"every request on secrets first matches rule {catch.index} or an earlier rule, "
            f"none of which logs (rule {catch.index} is {catch.level}): Secret access is not "
            "audited",
            field=catch.field,
        )
        return
    if found:
        message = (
            f"{len(found)} rule(s) may match secrets and none of them logs; other requests "
            "get the default level None: Secret access is not audited"
        )
    else:
        message = (
            "no rule matches secrets: every request on them gets the default level None, so "
            "Secret access is not audited"
        )
    yield finding(
        SECRETS_UNLOGGED,
        None,
        message,
        field="rules",
    )


def _shadowed(scan: ScanInput) -> Iterator[Finding]:
    policy = _policy_of(scan)
    if policy is None:
        return
    rules = policy.rules
    for j, rule in enumerate(rules):
        earlier = next((e for e in rules[:j] if contains(e, rule)), None)
        if earlier is None:
            continue
        yield finding(
            SHADOWED_RULE,
            None,
            f"rule {rule.index} ({rule.level}) is never used: rule {earlier.index} "
            f"({earlier.level}) comes first and matches every request it would match",
            field=rule.field,
        )


def _request_received_kept(scan: ScanInput) -> Iterator[Finding]:
    policy = _policy_of(scan)
    if policy is None or REQUEST_RECEIVED in policy.omit_stages:
        return
    logging = [r for r in policy.rules if r.level != NONE]
    kept = [r for r in logging if REQUEST_RECEIVED not in r.omit_stages]
    if not kept:
        return
    if len(kept) == len(logging):
        yield finding(
            REQUEST_RECEIVED_KEPT,
            None,
            f"RequestReceived is omitted neither in the policy's omitStages nor in any of its "
            f"{len(logging)} logging rule(s): every audited request is logged twice",
            field="",
        )
        return
    # Some rules omit it: the author works per rule, so name the ones that were missed.
    for rule in kept:
        yield finding(
            REQUEST_RECEIVED_KEPT,
            None,
            f"rule {rule.index} ({rule.level}) does not omit RequestReceived, unlike "
            f"{len(logging) - len(kept)} other logging rule(s): its requests are logged twice",
            field=rule.field,
        )


def _malformed(scan: ScanInput) -> Iterator[Finding]:
    if scan.audit is None:
        return
    for field, message in scan.audit.problems:
        yield finding(MALFORMED_POLICY, None, message, field=field)


CHECKS: Final[tuple[Check, ...]] = (
    Check(BODIES_LOGGED, _bodies_logged),
    Check(SECRETS_UNLOGGED, _secrets_unlogged),
    Check(SHADOWED_RULE, _shadowed),
    Check(REQUEST_RECEIVED_KEPT, _request_received_kept),
    Check(MALFORMED_POLICY, _malformed),
)
