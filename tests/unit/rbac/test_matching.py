"""RBAC rule matching as the API server does it.

Aspects: verbs and ``*``; apiGroups (core ``""``, named, ``*``); resources, ``*``
(subresources included), ``*/sub``, and ``secrets/*`` not being a wildcard; resourceNames
(only for named requests); non-resource rules never matching resource requests; parsing of
``who-can`` resource arguments.
"""

from __future__ import annotations

import pytest

from kustos.rbac.matching import Request, parse_resource, rule_allows
from kustos.rbac.model import PolicyRule


def rule(verbs: str, groups: str, resources: str, names: str = "") -> PolicyRule:
    return PolicyRule(
        index=0,
        verbs=frozenset(verbs.split()),
        api_groups=frozenset("" if g == "core" else g for g in groups.split()),
        resources=frozenset(resources.split()),
        resource_names=frozenset(names.split()),
    )


GET_SECRET = Request("get", "", "secrets", namespace="ns", name="db")
LIST_SECRETS = Request("list", "", "secrets", namespace="ns")
EXEC = Request("create", "", "pods", "exec", namespace="ns", name="p")


@pytest.mark.parametrize(
    ("r", "request_", "allowed"),
    [
        (rule("get", "core", "secrets"), GET_SECRET, True),
        (rule("*", "core", "secrets"), GET_SECRET, True),
        (rule("list", "core", "secrets"), GET_SECRET, False),
        (rule("get", "apps", "secrets"), GET_SECRET, False),
        (rule("get", "*", "secrets"), GET_SECRET, True),
        (rule("get", "core", "*"), GET_SECRET, True),
        (rule("get", "core", "configmaps"), GET_SECRET, False),
        # resourceNames: only requests that name an object
        (rule("get", "core", "secrets", "db other"), GET_SECRET, True),
        (rule("get", "core", "secrets", "other"), GET_SECRET, False),
        (rule("list", "core", "secrets", "db"), LIST_SECRETS, False),
        (rule("list", "core", "secrets"), LIST_SECRETS, True),
        # subresources
        (rule("create", "core", "pods/exec"), EXEC, True),
        (rule("create", "core", "pods"), EXEC, False),
        (rule("create", "core", "*"), EXEC, True),
        (rule("create", "core", "*/exec"), EXEC, True),
        (rule("create", "core", "pods/*"), EXEC, False),  # not a wildcard in RBAC
        (rule("create", "core", "*/attach"), EXEC, False),
        (rule("get", "core", "secrets/*"), GET_SECRET, False),
    ],
)
def test_rule_allows(r: PolicyRule, request_: Request, allowed: bool) -> None:
    assert rule_allows(r, request_) is allowed


def test_non_resource_rules_never_match_resources() -> None:
    r = PolicyRule(index=0, verbs=frozenset({"*"}), non_resource_urls=frozenset({"*"}))
    assert not rule_allows(r, GET_SECRET)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secrets", ("", "secrets", "")),
        ("pods/exec", ("", "pods", "exec")),
        ("deployments", ("apps", "deployments", "")),
        ("deployments.apps", ("apps", "deployments", "")),
        ("widgets.example.com", ("example.com", "widgets", "")),
        ("serviceaccounts/token", ("", "serviceaccounts", "token")),
        ("roles", ("rbac.authorization.k8s.io", "roles", "")),
    ],
)
def test_parse_resource(text: str, expected: tuple[str, str, str]) -> None:
    assert parse_resource(text) == expected
