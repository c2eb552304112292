"""Restore planning: what happens to each object, before anything is written.

Aspects covered:
- missing objects are created, with their namespace first; equal ones are ``unchanged``
  whatever the policy; differing ones are skipped (default), overwritten, or conflicts;
- an immutable Secret, or one whose type changes, is a ``replace`` under ``overwrite``;
- ``--namespace-map`` moves objects and their namespace (labels kept); a target the
  backup does not describe is created bare;
- ``--only NS/NAME`` and ``NS/*``; a ManagedSecret brings its live Secret and versions;
- a namespace being deleted counts as missing, and so does everything in it;
- flag parsing refuses malformed ``FROM=TO`` and ``NS/NAME``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kustos.backup import format as fmt
from kustos.backup.planning import (
    Conflict,
    Live,
    Verb,
    parse_namespace_map,
    parse_only,
    plan,
    target_namespaces,
)
from kustos.conventions import API_VERSION, LABEL_MANAGED_SECRET, LABEL_VERSION
from kustos.errors import UsageError
from tests.unit.backup.objects import secret


def _entries() -> list[fmt.Entry]:
    family = {LABEL_MANAGED_SECRET: "db"}
    managed = {
        "apiVersion": API_VERSION,
        "kind": "ManagedSecret",
        "metadata": {"name": "db", "namespace": "app"},
        "spec": {"secretName": "db", "data": {"password": {"password": {}}}},
        "status": {"currentVersion": 1},
    }
    bodies: list[dict[str, Any]] = [
        fmt.clean_namespace({"metadata": {"name": "app", "labels": {"team": "a"}}}),
        fmt.clean_managed_secret(managed),
        fmt.clean_secret(secret("db", labels=family)),
        fmt.clean_secret(secret("db-v1", labels={**family, LABEL_VERSION: "1"}, immutable=True)),
        fmt.clean_secret(secret("plain")),
        fmt.clean_secret(secret("other", namespace="web")),
    ]
    return [fmt.Entry.of(b) for b in bodies]


def _live(entry: fmt.Entry, **changes: Any) -> Live:
    return Live({**entry.body, **changes})


def _verbs(result: Any) -> dict[str, str]:
    return {str(a): a.verb.value for a in result.actions}


def test_everything_missing_is_created_namespaces_first() -> None:
    result = plan(_entries(), {})
    assert [str(a) for a in result.actions][:2] == ["Namespace web", "Namespace app"]
    assert set(_verbs(result).values()) == {"create"}
    assert result.count(Verb.CREATE) == 7


@pytest.mark.parametrize(
    ("conflict", "expected"),
    [(Conflict.SKIP, "skip"), (Conflict.OVERWRITE, "overwrite"), (Conflict.FAIL, "conflict")],
)
def test_existing_objects_follow_the_conflict_policy(conflict: Conflict, expected: str) -> None:
    entries = _entries()
    plain = entries[4]
    live = {
        ("Namespace", "", "app"): _live(entries[0]),
        ("Secret", "app", "plain"): _live(plain, type="Opaque", data={"password": "b3RoZXI="}),
        ("Secret", "app", "db"): _live(entries[2]),
    }
    verbs = _verbs(plan(entries, live, conflict=conflict))
    assert verbs["Secret app/plain"] == expected
    assert verbs["Secret app/db"] == "unchanged"
    assert verbs["Namespace app"] == "unchanged"
    assert verbs["Secret web/other"] == "create"


def test_immutable_and_type_changes_are_replaced() -> None:
    entries = _entries()
    live = {
        ("Secret", "app", "db-v1"): _live(entries[3], data={"password": "eA=="}),
        ("Secret", "app", "plain"): _live(entries[4], type="kubernetes.io/basic-auth"),
    }
    result = plan(entries, live, conflict=Conflict.OVERWRITE)
    verbs = _verbs(result)
    assert verbs["Secret app/db-v1"] == "replace"
    assert verbs["Secret app/plain"] == "replace"
    reasons = {str(a): a.reason for a in result.actions}
    assert reasons["Secret app/db-v1"].startswith("immutable")


def test_namespace_map_moves_objects_and_keeps_namespace_labels() -> None:
    result = plan(_entries(), {}, namespace_map={"app": "app-copy"})
    by_name = {str(a): a for a in result.actions}
    assert "Secret app-copy/plain" in by_name
    assert "Secret app/plain" not in by_name
    assert by_name["Namespace app-copy"].body["metadata"] == {
        "name": "app-copy",
        "labels": {"team": "a"},
    }
    assert by_name["Secret app-copy/plain"].source_namespace == "app"
    assert by_name["Secret app-copy/plain"].body["metadata"]["namespace"] == "app-copy"


def test_only_selects_objects_and_managed_secret_families() -> None:
    entries = _entries()
    assert set(_verbs(plan(entries, {}, only=parse_only(["app/db"])))) == {
        "Namespace app",
        "ManagedSecret app/db",
        "Secret app/db",
        "Secret app/db-v1",
    }
    assert set(_verbs(plan(entries, {}, only=parse_only(["web/*"])))) == {
        "Namespace web",
        "Secret web/other",
    }
    assert target_namespaces(entries, only=parse_only(["web/other"])) == {"web"}


def test_a_namespace_being_deleted_counts_as_missing() -> None:
    entries = _entries()
    live = {
        ("Namespace", "", "app"): Live(entries[0].body, terminating=True),
        ("Secret", "app", "plain"): _live(entries[4]),
    }
    result = plan(entries, live)
    verbs = _verbs(result)
    assert verbs["Namespace app"] == "create"
    assert verbs["Secret app/plain"] == "create"


def test_flag_parsing() -> None:
    assert parse_namespace_map(["a=b", " c = d "]) == {"a": "b", "c": "d"}
    for bad in (["a"], ["=b"], ["a=b", "a=c"]):
        with pytest.raises(UsageError):
            parse_namespace_map(bad)
    assert parse_only(["ns/name", "ns/*"]) == (("ns", "name"), ("ns", "*"))
    for wrong in ("name", "ns/", "/n", "a/b/c"):
        with pytest.raises(UsageError):
            parse_only([wrong])


def test_a_target_namespace_the_backup_does_not_describe() -> None:
    secret_only = [e for e in _entries() if str(e) == "Secret web/other"]
    missing = plan(secret_only, {}, namespace_map={"web": "web-2"})
    assert [(str(a), a.verb.value) for a in missing.actions] == [
        ("Namespace web-2", "create"),
        ("Secret web-2/other", "create"),
    ]
    assert missing.actions[0].body["metadata"] == {"name": "web-2"}
    exists = {("Namespace", "", "web-2"): Live({"metadata": {"name": "web-2"}})}
    present = plan(secret_only, exists, namespace_map={"web": "web-2"})
    assert present.actions[0].verb is Verb.UNCHANGED
