"""``rbac suggest``: minimal Roles from the audit trail, checked by the RBAC evaluator.

Aspects covered: what a ServiceAccount did becomes Roles (namespaced requests) and
ClusterRoles (cluster-scoped or all-namespace requests) with bindings to it; verbs that
name an object get ``resourceNames`` and verbs the authorizer sees without a name do not;
objects used with the same verbs share a rule; the suggested YAML, loaded back by the
manifest loader and evaluated by ``kustos.rbac``, allows every recorded request and
refuses its near misses (another name, verb, namespace or account); people, failed
authentication and repeated stages are not counted; impersonated requests count for the
impersonated account; ``--compare`` lists rules and verbs granted but never used; the
command reads a real archive and refuses a bad ``--service-account``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.audit.archive import Archive
from kustos.audit.suggesting import collect, suggest, unused_grants
from kustos.cli.main import main
from kustos.kube.loading import load_manifests
from kustos.rbac.access import direct_grants
from kustos.rbac.matching import Request
from kustos.rbac.model import Policy, Subject, build_policy

API = Subject("ServiceAccount", "api", "payments")
WORKER = Subject("ServiceAccount", "worker", "jobs")
COUNTER = iter(range(1, 1_000_000))


def event(
    account: Subject,
    verb: str,
    resource: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    group: str = "",
    subresource: str | None = None,
    code: int = 200,
    stage: str = "ResponseComplete",
    audit_id: str | None = None,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "apiGroup": group, "apiVersion": "v1"}
    if namespace is not None:
        ref["namespace"] = namespace
    if name is not None:
        ref["name"] = name
    if subresource is not None:
        ref["subresource"] = subresource
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id or f"id-{next(COUNTER)}",
        "stage": stage,
        "requestURI": "/api/v1/...",
        "verb": verb,
        "user": {"username": account.username, "groups": ["system:serviceaccounts"]},
        "sourceIPs": ["10.244.0.9"],
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-03-02T10:00:00.000000Z",
        "stageTimestamp": "2026-03-02T10:00:00.000000Z",
    }


def trail() -> list[dict[str, Any]]:
    return [
        event(API, "get", "secrets", namespace="payments", name="db-creds"),
        event(API, "get", "secrets", namespace="payments", name="db-creds"),
        event(API, "get", "secrets", namespace="payments", name="api-key"),
        event(API, "update", "secrets", namespace="payments", name="api-key"),
        event(API, "list", "configmaps", namespace="payments"),
        event(API, "watch", "configmaps", namespace="payments"),
        event(API, "create", "events", namespace="payments", name="api.17c", group=""),
        event(API, "get", "leases", namespace="payments", name="api", group="coordination.k8s.io"),
        event(API, "create", "pods", namespace="payments", name="web-1", subresource="exec"),
        event(API, "get", "nodes", name="node-1"),
        event(API, "list", "secrets"),  # across all namespaces
        event(WORKER, "get", "secrets", namespace="jobs", name="queue", code=403),
    ]


def policy_of(objects: list[dict[str, Any]], tmp_path: Path) -> Policy:
    path = tmp_path / "suggested.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    index = load_manifests([path])
    assert index.errors == []
    return build_policy(index)


def allowed(policy: Policy, account: Subject, request: Request) -> bool:
    return any(g.subject == account for g in direct_grants(policy, request))


def test_suggested_roles_grant_exactly_what_was_used(tmp_path: Path) -> None:
    objects = suggest(collect(trail()))
    policy = policy_of(objects, tmp_path)
    used = [
        Request("get", "", "secrets", "", "payments", "db-creds"),
        Request("get", "", "secrets", "", "payments", "api-key"),
        Request("update", "", "secrets", "", "payments", "api-key"),
        Request("list", "", "configmaps", "", "payments"),
        Request("watch", "", "configmaps", "", "payments"),
        Request("create", "", "events", "", "payments"),
        Request("get", "coordination.k8s.io", "leases", "", "payments", "api"),
        Request("create", "", "pods", "exec", "payments", "web-1"),
        Request("get", "", "nodes", "", "", "node-1"),
        Request("list", "", "secrets", "", ""),
    ]
    for request in used:
        assert allowed(policy, API, request), request
    near_misses = [
        Request("get", "", "secrets", "", "payments", "other"),
        Request("update", "", "secrets", "", "payments", "db-creds"),
        Request("delete", "", "secrets", "", "payments", "api-key"),
        Request("get", "", "secrets", "", "billing", "db-creds"),
        Request("watch", "", "secrets", "", "payments-2"),
        Request("get", "", "pods", "", "payments", "web-1"),
        Request("create", "", "pods", "exec", "payments", "web-2"),
        Request("get", "", "nodes", "", "", "node-2"),
        Request("get", "apps", "leases", "", "payments", "api"),
    ]
    for request in near_misses[:-1]:
        assert not allowed(policy, API, request), request
    assert not allowed(policy, API, near_misses[-1])
    assert not allowed(policy, WORKER, used[0])
    assert allowed(policy, WORKER, Request("get", "", "secrets", "", "jobs", "queue"))


def test_rules_name_objects_only_where_rbac_can(tmp_path: Path) -> None:
    objects = suggest(collect(trail()))
    role = next(
        o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == "payments"
    )
    rules = {(r["resources"][0], tuple(r["verbs"])): r.get("resourceNames") for r in role["rules"]}
    assert rules[("secrets", ("get",))] == ["db-creds"]
    assert rules[("secrets", ("get", "update"))] == ["api-key"]
    assert rules[("configmaps", ("list", "watch"))] is None
    assert rules[("events", ("create",))] is None  # create is authorized without a name
    assert rules[("pods/exec", ("create",))] == ["web-1"]
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "api", "namespace": "payments"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    cluster = next(o for o in objects if o["kind"] == "ClusterRole")
    assert {r["resources"][0] for r in cluster["rules"]} == {"nodes", "secrets"}


def test_people_failed_logins_and_repeated_stages_do_not_count() -> None:
    person = event(API, "delete", "secrets", namespace="payments", name="x")
    person["user"] = {"username": "alice@example.com"}
    failed = event(API, "delete", "secrets", namespace="payments", name="y", code=401)
    received = event(
        API, "delete", "secrets", namespace="payments", name="z", stage="RequestReceived"
    )
    started = event(
        API, "watch", "pods", namespace="payments", stage="ResponseStarted", audit_id="w"
    )
    complete = dict(started, stage="ResponseComplete")
    activity = collect([person, failed, received, started, complete])
    assert [(u.verb, u.resource) for u in activity.uses[API]] == [("watch", "pods")]


def test_impersonated_requests_count_for_the_impersonated_account() -> None:
    doc = event(WORKER, "get", "secrets", namespace="payments", name="db")
    doc["user"] = {"username": "system:admin"}
    doc["impersonatedUser"] = {"username": API.username}
    assert list(collect([doc]).uses) == [API]


def test_filters_by_namespace_and_account() -> None:
    assert list(collect(trail(), namespace="jobs").uses) == [WORKER]
    assert list(collect(trail(), account=API).uses) == [API]


GRANTED = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: api, namespace: payments}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list, delete]}
- {apiGroups: [""], resources: [pods], verbs: [watch]}
- {apiGroups: [""], resources: [configmaps], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: api, namespace: payments}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: api}
subjects: [{kind: ServiceAccount, name: api, namespace: payments}]
"""


def test_compare_lists_permissions_granted_but_never_used(tmp_path: Path) -> None:
    (tmp_path / "rbac.yaml").write_text(GRANTED)
    policy = build_policy(load_manifests([tmp_path / "rbac.yaml"]))
    unused = unused_grants(policy, collect(trail()), [API])
    found = {(u.rule_index, u.used, u.unused) for u in unused}
    assert found == {
        (0, ("get secrets",), ("delete secrets", "list secrets")),
        (1, (), ("watch pods",)),
    }  # configmaps "*" was used (list, watch): not reported
    assert next(u for u in unused if u.rule_index == 1).whole_rule


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    with Archive(folder) as store:
        store.append(trail())
    return folder


def test_the_command_prints_appliable_yaml(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["rbac", "suggest", "--archive", str(archive), "--service-account", "payments/api"])
    assert code == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {o["kind"] for o in objects} == {
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    policy = policy_of(objects, tmp_path)
    assert allowed(policy, API, Request("get", "", "secrets", "", "payments", "db-creds"))
    assert not allowed(policy, WORKER, Request("get", "", "secrets", "", "jobs", "queue"))


def test_the_command_compares_with_manifests(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rbac.yaml").write_text(GRANTED)
    code = main(
        ["rbac", "suggest", "--archive", str(archive), "-n", "payments",
         "--compare", str(tmp_path / "rbac.yaml"), "--format", "json"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {(u["rule_index"], tuple(u["unused"])) for u in report["unused"]} == {
        (0, ("delete secrets", "list secrets")),
        (1, ("watch pods",)),
    }
    assert report["unused"][0]["service_account"] == "payments/api"


def test_the_command_refuses_bad_input(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ["rbac", "suggest", "--archive", str(archive), "--service-account", "api"]
    assert main(bad) == 2
    assert "NAMESPACE/NAME" in capsys.readouterr().err
    assert main(["rbac", "suggest", "--archive", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
