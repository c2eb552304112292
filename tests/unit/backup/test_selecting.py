"""Backup selection: which objects a backup takes, and ManagedSecret consistency.

Aspects covered:
- label selectors as ``kubectl -l`` reads them (``=``, ``==``, ``!=``, ``in``, ``notin``,
  existence and its negation); malformed terms refused naming the term;
- Secrets matching the selector are taken with their namespace; service-account tokens
  are left out and counted; a selected ManagedSecret brings every Secret of its family
  whatever their labels;
- a ManagedSecret is inconsistent when a rotation is under way, its live Secret is
  missing or holds another version, or its current version's Secret is missing.
"""

from __future__ import annotations

from typing import Any

import pytest

from kustos.backup import format as fmt
from kustos.backup.selecting import Selector, inconsistencies, select
from kustos.conventions import ANNOTATION_VERSION, API_VERSION, LABEL_MANAGED_SECRET
from kustos.errors import UsageError
from kustos.kube.documents import to_object
from kustos.kube.objects import KubeObject
from tests.unit.backup.objects import CANARY, secret


def _managed(status: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": API_VERSION,
        "kind": "ManagedSecret",
        "metadata": {"name": "db", "namespace": "app", "labels": labels or {}},
        "spec": {"secretName": "db"},
        "status": status or {},
    }


def _objects(*bodies: Any) -> list[KubeObject]:
    return [to_object(b, None) for b in bodies]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("team=a", {"team": "a"}, True),
        ("team==a", {"team": "b"}, False),
        ("team!=a", {}, True),
        ("tier in (web, db)", {"tier": "db"}, True),
        ("tier notin (web,db),team", {"tier": "x", "team": "a"}, True),
        ("!backup.example.com/skip", {"backup.example.com/skip": ""}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_selectors(text: str, labels: dict[str, str], expected: bool) -> None:
    assert Selector.parse(text).matches(labels) is expected


def test_malformed_selector_is_refused() -> None:
    with pytest.raises(UsageError, match="'a b c' is not a label selector term"):
        Selector.parse("x=y,a b c")


def test_selection_takes_families_and_leaves_out_tokens() -> None:
    token = secret("default-token", type_="kubernetes.io/service-account-token")
    objects = _objects(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "unused"}},
        _managed(labels={"backup": "yes"}),
        secret("db", labels={LABEL_MANAGED_SECRET: "db"}),
        secret("picked", labels={"backup": "yes"}),
        secret("ignored"),
        token,
    )
    chosen = select(objects, selector=Selector.parse("backup=yes"))
    assert sorted(str(e) for e in chosen.entries) == [
        "ManagedSecret app/db",
        "Namespace app",
        "Secret app/db",
        "Secret app/picked",
    ]
    assert chosen.excluded == {"kubernetes.io/service-account-token": 1}
    assert CANARY not in repr(chosen)


def _entries(status: dict[str, Any], *secrets: Any) -> list[fmt.Entry]:
    bodies = [fmt.clean_managed_secret(_managed(status))]
    bodies += [fmt.clean_secret(s) for s in secrets]
    return [fmt.Entry.of(b) for b in bodies]


def test_inconsistent_families_are_named() -> None:
    live = secret("db", annotations={ANNOTATION_VERSION: "2"})
    v2 = secret("db-v2")
    assert inconsistencies(_entries({"currentVersion": 2}, live, v2)) == []
    assert inconsistencies(_entries({}, live)) == []  # never rotated yet
    assert inconsistencies(_entries({"currentVersion": 2, "rotation": {"version": 3}}, live)) == [
        "ManagedSecret app/db: a rotation is under way"
    ]
    assert inconsistencies(_entries({"currentVersion": 3}, live, v2)) == [
        "ManagedSecret app/db: live Secret holds version 2, status says 3"
    ]
    assert inconsistencies(_entries({"currentVersion": 2}, live)) == [
        "ManagedSecret app/db: the Secret of its current version 2 is missing"
    ]
    assert inconsistencies(_entries({"currentVersion": 2}, v2)) == [
        "ManagedSecret app/db: its live Secret db is missing"
    ]
