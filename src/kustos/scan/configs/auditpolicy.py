"""The audit Policy given with ``--audit-policy``, read into types once.

Purely data. Rules are read the way kube-apiserver reads them (``audit.k8s.io/v1``;
``v1beta1`` and ``v1alpha1`` have the same rule semantics): unknown fields are ignored, as
the API server's decoder ignores them, and ``omitStages`` of the policy is folded into every
rule. A policy the API server would refuse (not a Policy, no rules, a rule with a missing or
unknown level, resources mixed with nonResourceURLs...) is read as its problems instead of
rules. Problems carry rule indexes, resource names and levels only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The rule family (``Rule.family``) that checks this file: its findings are located here.
FAMILY: Final = "audit-policy"

API_VERSIONS: Final = frozenset(
    {"audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"}
)
NONE: Final = "None"
METADATA: Final = "Metadata"
REQUEST: Final = "Request"
REQUEST_RESPONSE: Final = "RequestResponse"
LEVELS: Final = (NONE, METADATA, REQUEST, REQUEST_RESPONSE)
REQUEST_RECEIVED: Final = "RequestReceived"
RESPONSE_COMPLETE: Final = "ResponseComplete"
STAGES: Final = frozenset({REQUEST_RECEIVED, "ResponseStarted", RESPONSE_COMPLETE, "Panic"})

_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_STRING_LISTS: Final = ("users", "userGroups", "verbs", "namespaces", "nonResourceURLs")


@dataclass(frozen=True, slots=True)
class GroupResources:
    """One item of a rule's ``resources``; empty sets mean "no restriction"."""

    group: str
    resources: frozenset[str]
    names: frozenset[str]


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule. ``None`` for a subject, verb or namespace list means "no restriction"."""

    index: int
    level: str
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    verbs: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    resources: tuple[GroupResources, ...] = ()
    urls: tuple[str, ...] = ()
    #: Stages this rule omits, the policy's own ``omitStages`` included.
    omit_stages: frozenset[str] = frozenset()

    @property
    def field(self) -> str:
        """The field path of this rule."""
        return f"rules[{self.index}]"

    @property
    def matches_resources(self) -> bool:
        """Whether the rule is about resource requests (``namespaces`` or ``resources`` set)."""
        return self.namespaces is not None or bool(self.resources)

    @property
    def matches_urls_only(self) -> bool:
        """Whether the rule matches non-resource requests only."""
        return not self.matches_resources and bool(self.urls)

    @property
    def logs(self) -> bool:
        """Whether a request this rule decides leaves any audit event for a plain request.

        A level above ``None`` that omits both ``RequestReceived`` and ``ResponseComplete``
        leaves nothing for a get, create or delete (only long-running requests have
        ``ResponseStarted``).
        """
        return self.level != NONE and not {REQUEST_RECEIVED, RESPONSE_COMPLETE} <= self.omit_stages


@dataclass(frozen=True, slots=True)
class AuditPolicy:
    """What the policy says, or why the API server would refuse it (then ``rules`` is empty)."""

    rules: tuple[PolicyRule, ...]
    omit_stages: frozenset[str]
    problems: tuple[tuple[str, str], ...] = ()


def read_policy(body: Any) -> AuditPolicy:
    """Read an audit Policy body; problems are ``(field, message)`` pairs free of values."""
    if not isinstance(body, Mapping):
        return _refused("", "the file is not a YAML mapping, so not an audit Policy")
    if body.get("kind") == "ConfigMap":
        return _refused(
            "kind", "a ConfigMap, not an audit Policy: pass the policy file it carries in data"
        )
    if body.get("kind") != "Policy" or body.get("apiVersion") not in API_VERSIONS:
        return _refused(
            "kind", "not an audit Policy (expected apiVersion audit.k8s.io/v1 and kind Policy)"
        )
    problems: list[tuple[str, str]] = []
    policy_stages = _stages(body.get("omitStages"), "omitStages", problems)
    raw_rules = body.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append(
            ("rules", "rules is missing or empty: the API server refuses a policy with no rules")
        )
        raw_rules = []
    rules = []
    for i, raw in enumerate(raw_rules):
        rule = _read_rule(i, raw, policy_stages, problems)
        if rule is not None:
            rules.append(rule)
    if problems:
        return AuditPolicy((), frozenset(), tuple(problems))
    return AuditPolicy(tuple(rules), policy_stages)


def _refused(field: str, message: str) -> AuditPolicy:
    return AuditPolicy((), frozenset(), ((field, message),))


def _stages(raw: Any, where: str, problems: list[tuple[str, str]]) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(s, str) and s in STAGES for s in raw):
        problems.append((where, f"{where} must list stages among {', '.join(sorted(STAGES))}"))
        return frozenset()
    return frozenset(raw)


def _strings(
    raw: Mapping[str, Any], key: str, where: str, problems: list[tuple[str, str]]
) -> frozenset[str] | None:
    value = raw.get(key)
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((f"{where}.{key}", f"{where}.{key} must be a list of strings"))
        return None
    return frozenset(value)


def _read_rule(
    index: int, raw: Any, policy_stages: frozenset[str], problems: list[tuple[str, str]]
) -> PolicyRule | None:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping):
        problems.append((where, f"{where} is not a mapping"))
        return None
    level = raw.get("level")
    if level not in LEVELS:
        problems.append(
            (f"{where}.level", f"{where}.level is missing or not one of {', '.join(LEVELS)}")
        )
    lists = {key: _strings(raw, key, where, problems) for key in _STRING_LISTS}
    urls = lists["nonResourceURLs"] or frozenset()
    for url in sorted(urls):
        if url != "*" and (not url.startswith("/") or "*" in url[:-1]):
            message = f"{where}.nonResourceURLs has a path not starting with '/' or with '*' inside"
            problems.append((f"{where}.nonResourceURLs", message))
            break
    resources = _read_resources(raw.get("resources"), f"{where}.resources", problems)
    if urls and (resources or lists["namespaces"] is not None):
        problems.append(
            (
                f"{where}.nonResourceURLs",
                f"{where} sets both nonResourceURLs and resources or namespaces",
            )
        )
    own = _stages(raw.get("omitStages"), f"{where}.omitStages", problems)
    return PolicyRule(
        index=index,
        level=level if isinstance(level, str) else "",
        users=lists["users"],
        groups=lists["userGroups"],
        verbs=lists["verbs"],
        namespaces=lists["namespaces"],
        resources=resources,
        urls=tuple(sorted(urls)),
        omit_stages=own | policy_stages,
    )


def _read_resources(
    raw: Any, where: str, problems: list[tuple[str, str]]
) -> tuple[GroupResources, ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        problems.append((where, f"{where} must be a list"))
        return ()
    items = []
    for k, item in enumerate(raw):
        at = f"{where}[{k}]"
        if not isinstance(item, Mapping):
            problems.append((at, f"{at} is not a mapping"))
            continue
        group = item.get("group") or ""
        if not isinstance(group, str) or (group and not _valid_group(group)):
            problems.append((f"{at}.group", f"{at}.group is not an API group name"))
            continue
        names = _strings(item, "resourceNames", at, problems) or frozenset()
        kinds = _strings(item, "resources", at, problems) or frozenset()
        if names and not kinds:
            problems.append((f"{at}.resourceNames", f"{at} sets resourceNames without resources"))
        items.append(GroupResources(group, kinds, names))
    return tuple(items)


def _valid_group(group: str) -> bool:
    return len(group) <= 253 and _DNS_SUBDOMAIN.fullmatch(group) is not None
