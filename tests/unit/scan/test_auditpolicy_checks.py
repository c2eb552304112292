"""Audit-policy checks (KST110-KST114) over ``audit.k8s.io`` Policy files.

Aspects: each rule fires on a policy that has the problem and stays silent on the fixed
policy; the first matching rule wins, including when the earlier rule is restricted to the
same users, groups or verbs; the default level for an unmatched request is None; core group
``""``, ``authentication.k8s.io`` tokenreviews, the ``serviceaccounts/token`` subresource and
the wildcards ``*``, ``*/token`` and ``pods/*`` match as in kube-apiserver; Request-level
rules leak only on verbs whose request body holds a value; shadowing is reported only when
one earlier rule certainly contains the later one; RequestReceived is reported once for a
policy that never omits it and per rule when only some rules omit it; a policy the API
server would refuse (a ConfigMap, no rules, a bad level...) is KST114 and nothing else;
messages name rule indexes, resources and levels and never users, groups, namespaces,
object names or paths; and the real policies in ``shared/corpus`` (an embedded ConfigMap
policy included) give the findings reviewed by hand below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.kube.index import ObjectIndex
from kustos.scan.checking import ConfigDocument, scan_input
from kustos.scan.checks import auditpolicy
from kustos.scan.checks.auditpolicy import pattern_contains, pattern_matches
from kustos.scan.findings import Finding

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "policies" / "audit-policy"

OMIT: dict[str, Any] = {"omitStages": ["RequestReceived"]}
CORE_SECRETS = {"group": "", "resources": ["secrets"]}
SENSITIVE = [
    {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
    {"group": "authentication.k8s.io", "resources": ["tokenreviews"]},
]


def policy(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    """An audit Policy body with these rules; RequestReceived omitted unless *top* says."""
    body: dict[str, Any] = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", **OMIT}
    body.update(top)
    body["rules"] = list(rules)
    return body


def run(body: Any, text: str = "") -> list[Finding]:
    """Every audit-policy finding for a file with this body."""
    scan = scan_input(ObjectIndex(), audit_policy=ConfigDocument("audit.yaml", text, body))
    return [f for check in auditpolicy.CHECKS for f in check.run(scan)]


def found(body: Any, rule_id: str | None = None) -> set[tuple[str, str]]:
    """``(rule id, field)`` of every finding, optionally of one rule only."""
    return {(f.rule_id, f.field) for f in run(body) if rule_id in (None, f.rule_id)}


def leaks(body: Any) -> set[tuple[str, str]]:
    """``(resource, field)`` of every KST110 finding, the resource read from the message."""
    out = set()
    for f in run(body):
        if f.rule_id == "KST110":
            resource = f.message.split(" logs ", 1)[1].split(" at ", 1)[0]
            out.add((resource, f.field))
    return out


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("pattern", "resource", "subresource", "expected"),
    [
        ("secrets", "secrets", "", True),
        ("pods", "pods", "log", False),
        ("pods/log", "pods", "log", True),
        ("*", "pods", "log", True),
        ("*/token", "serviceaccounts", "token", True),
        ("*/token", "serviceaccounts", "", False),
        ("serviceaccounts/*", "serviceaccounts", "token", True),
        ("serviceaccounts/*", "serviceaccounts", "", True),
        ("serviceaccounts/*", "secrets", "", False),
    ],
)
def test_resource_patterns_match_as_the_api_server_does(
    pattern: str, resource: str, subresource: str, expected: bool
) -> None:
    assert pattern_matches(pattern, resource, subresource) is expected


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("*", "pods/log", True),
        ("pods/*", "pods", True),
        ("pods/*", "pods/log", True),
        ("*/log", "pods/log", True),
        ("*/log", "pods/*", False),
        ("pods", "pods/log", False),
        ("pods/log", "pods/*", False),
    ],
)
def test_pattern_containment(outer: str, inner: str, expected: bool) -> None:
    assert pattern_contains(outer, inner) is expected


# --------------------------------------------------------------------------- KST110


def test_catch_all_request_response_leaks_every_sensitive_resource() -> None:
    assert leaks(policy({"level": "RequestResponse"})) == {
        ("secrets", "rules[0]"),
        ("configmaps", "rules[0]"),
        ("tokenreviews", "rules[0]"),
        ("serviceaccounts/token", "rules[0]"),
    }


def test_metadata_first_for_sensitive_resources_prevents_the_leak() -> None:
    body = policy({"level": "Metadata", "resources": SENSITIVE}, {"level": "RequestResponse"})
    assert found(body) == set()


def test_first_match_wins_per_resource() -> None:
    body = policy({"level": "Metadata", "resources": [CORE_SECRETS]}, {"level": "Request"})
    # Request on serviceaccounts/token carries no token (only its response does).
    assert leaks(body) == {("configmaps", "rules[1]"), ("tokenreviews", "rules[1]")}


def test_core_group_wildcard_matches_secrets_and_configmaps_only() -> None:
    body = policy({"level": "Request", "resources": [{"group": "", "resources": ["*"]}]})
    assert leaks(body) == {("secrets", "rules[0]"), ("configmaps", "rules[0]")}


def test_subresource_wildcard_matches_token_requests() -> None:
    body = policy(
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["*/token"]}]}
    )
    assert leaks(body) == {("serviceaccounts/token", "rules[0]")}


def test_restricted_rules_still_count() -> None:
    body = policy(
        {"level": "RequestResponse", "users": ["alice"], "resources": [CORE_SECRETS]},
        {"level": "Request", "namespaces": ["kube-system"], "resources": [CORE_SECRETS]},
        {"level": "Metadata"},
    )
    assert leaks(body) == {("secrets", "rules[0]"), ("secrets", "rules[1]")}


def test_request_level_on_reads_leaks_nothing() -> None:
    body = policy(
        {"level": "Request", "verbs": ["get", "list", "watch", "deletecollection"]},
        {"level": "Metadata"},
    )
    assert found(body) == set()


def test_earlier_rule_on_the_same_verbs_wins() -> None:
    body = policy(
        {"level": "Metadata", "verbs": ["create", "update", "patch"], "resources": SENSITIVE},
        {"level": "Request"},
    )
    assert found(body) == set()


def test_earlier_rule_for_the_same_group_wins() -> None:
    body = policy(
        {"level": "Metadata", "userGroups": ["g"], "resources": SENSITIVE},
        {"level": "RequestResponse", "userGroups": ["g"], "verbs": ["create"]},
        {"level": "Metadata"},
    )
    assert found(body) == set()


def test_earlier_rule_for_one_object_does_not_win() -> None:
    body = policy(
        {"level": "Metadata", "resources": [{**CORE_SECRETS, "resourceNames": ["one"]}]},
        {"level": "RequestResponse", "resources": [CORE_SECRETS]},
    )
    assert leaks(body) == {("secrets", "rules[1]")}


def test_namespaced_rule_cannot_match_cluster_scoped_tokenreviews() -> None:
    body = policy(
        {
            "level": "Request",
            "namespaces": ["kube-system"],
            "resources": [{"group": "authentication.k8s.io", "resources": ["tokenreviews"]}],
        },
        {"level": "Metadata"},
    )
    assert found(body) == set()


# --------------------------------------------------------------------------- KST111


def test_secrets_matching_no_rule_are_unlogged() -> None:
    body = policy({"level": "Metadata", "nonResourceURLs": ["/healthz*"]})
    assert found(body, "KST111") == {("KST111", "rules")}


def test_none_catch_all_first_leaves_secrets_unlogged() -> None:
    body = policy({"level": "None"}, {"level": "Metadata", "resources": [CORE_SECRETS]})
    assert found(body, "KST111") == {("KST111", "rules[0]")}


def test_none_rule_for_secrets_before_the_catch_all() -> None:
    body = policy({"level": "None", "resources": [CORE_SECRETS]}, {"level": "Metadata"})
    assert found(body, "KST111") == {("KST111", "rules[0]")}


def test_omitting_every_stage_logs_nothing() -> None:
    body = policy(
        {"level": "Metadata", "omitStages": ["RequestReceived", "ResponseComplete"]},
    )
    assert found(body, "KST111") == {("KST111", "rules[0]")}


def test_secrets_logged_for_some_users_are_not_unlogged() -> None:
    body = policy(
        {"level": "Metadata", "users": ["alice"], "resources": [CORE_SECRETS]}, {"level": "None"}
    )
    assert found(body) == set()


# --------------------------------------------------------------------------- KST112


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        pytest.param({"level": "Metadata"}, {"level": "None", "users": ["a"]}, id="catch-all"),
        pytest.param(
            {"level": "None", "resources": [CORE_SECRETS]},
            {"level": "Metadata", "resources": [CORE_SECRETS]},
            id="same-resource",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": ""}]},
            {"level": "Metadata", "verbs": ["get"], "resources": [CORE_SECRETS]},
            id="whole-core-group",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": "", "resources": ["pods/*"]}]},
            {"level": "Request", "resources": [{"group": "", "resources": ["pods", "pods/log"]}]},
            id="resource-and-subresources",
        ),
        pytest.param(
            {"level": "None", "users": ["a", "b"], "verbs": ["get", "list"]},
            {"level": "Metadata", "users": ["a"], "verbs": ["get"], "namespaces": ["x"]},
            id="subjects-and-verbs",
        ),
        pytest.param(
            {"level": "None", "nonResourceURLs": ["/api*"]},
            {"level": "Metadata", "nonResourceURLs": ["/apis/x", "/api"]},
            id="url-prefix",
        ),
        pytest.param(
            {"level": "None", "resources": [{**CORE_SECRETS, "resourceNames": ["a", "b"]}]},
            {"level": "Metadata", "resources": [{**CORE_SECRETS, "resourceNames": ["a"]}]},
            id="object-names",
        ),
    ],
)
def test_shadowed_rule_is_reported(earlier: dict[str, Any], later: dict[str, Any]) -> None:
    assert found(policy(earlier, later), "KST112") == {("KST112", "rules[1]")}


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        pytest.param({"level": "None", "users": ["a"]}, {"level": "Metadata"}, id="users"),
        pytest.param(
            {"level": "None", "namespaces": ["x"], "resources": [CORE_SECRETS]},
            {"level": "Metadata", "resources": [CORE_SECRETS]},
            id="namespaces",
        ),
        pytest.param(
            {"level": "None", "resources": [{**CORE_SECRETS, "resourceNames": ["a"]}]},
            {"level": "Metadata", "resources": [CORE_SECRETS]},
            id="object-names",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": ""}]},
            {"level": "Metadata", "verbs": ["get"]},
            id="resources-vs-everything",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": "", "resources": ["pods"]}]},
            {"level": "Metadata", "resources": [{"group": "", "resources": ["pods/log"]}]},
            id="resource-not-subresource",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": "", "resources": ["*/status"]}]},
            {"level": "Metadata", "resources": [{"group": "", "resources": ["pods/*"]}]},
            id="one-subresource-vs-all",
        ),
        pytest.param(
            {"level": "None", "verbs": ["get"]},
            {"level": "Metadata", "resources": [CORE_SECRETS]},
            id="verbs",
        ),
        pytest.param(
            {"level": "None", "resources": [{"group": "apps"}]},
            {"level": "Metadata", "resources": [CORE_SECRETS]},
            id="other-group",
        ),
    ],
)
def test_partly_overlapping_rule_is_not_reported(
    earlier: dict[str, Any], later: dict[str, Any]
) -> None:
    assert found(policy(earlier, later), "KST112") == set()


def test_rule_covered_only_by_two_earlier_rules_together_is_not_reported() -> None:
    body = policy(
        {"level": "None", "verbs": ["get"]},
        {"level": "None", "verbs": ["list"]},
        {"level": "Metadata", "verbs": ["get", "list"]},
    )
    assert found(body, "KST112") == set()


# --------------------------------------------------------------------------- KST113


def test_request_received_never_omitted_is_one_finding() -> None:
    body = policy({"level": "Metadata", "resources": [CORE_SECRETS]}, {"level": "Request"})
    del body["omitStages"]
    assert found(body, "KST113") == {("KST113", "")}


def test_rules_that_forget_it_are_named_when_others_omit_it() -> None:
    body = policy(
        {"level": "None", "users": ["a"]},
        {"level": "Metadata", "resources": [CORE_SECRETS], **OMIT},
        {"level": "Metadata"},
    )
    del body["omitStages"]
    assert found(body, "KST113") == {("KST113", "rules[2]")}


def test_request_received_omitted_per_rule_or_for_the_policy() -> None:
    per_rule = policy({"level": "None", "users": ["a"]}, {"level": "Metadata", **OMIT})
    del per_rule["omitStages"]
    assert found(per_rule, "KST113") == set()
    assert found(policy({"level": "Metadata"}), "KST113") == set()


# --------------------------------------------------------------------------- KST114

GOOD = policy({"level": "Metadata", "resources": SENSITIVE}, {"level": "Metadata"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "kind", id="empty-file"),
        pytest.param(["rules"], "", id="not-a-mapping"),
        pytest.param({"apiVersion": "v1", "kind": "ConfigMap", "data": {}}, "kind", id="cm"),
        pytest.param({**GOOD, "apiVersion": "audit.k8s.io/v2"}, "kind", id="version"),
        pytest.param({**GOOD, "kind": "Event"}, "kind", id="kind"),
        pytest.param({**GOOD, "rules": []}, "rules", id="no-rules"),
        pytest.param(policy({"resources": SENSITIVE}), "rules[0].level", id="no-level"),
        pytest.param(policy({"level": "Everything"}), "rules[0].level", id="bad-level"),
        pytest.param(
            policy({"level": "None", "resources": SENSITIVE, "nonResourceURLs": ["/x"]}),
            "rules[0].nonResourceURLs",
            id="resources-and-urls",
        ),
        pytest.param(
            policy({"level": "None", "resources": [{"group": "", "resourceNames": ["a"]}]}),
            "rules[0].resources[0].resourceNames",
            id="names-without-resources",
        ),
        pytest.param(
            policy({"level": "None", "resources": [{"group": "*"}]}),
            "rules[0].resources[0].group",
            id="star-group",
        ),
        pytest.param(policy({"level": "None"}, omitStages=["Received"]), "omitStages", id="stage"),
        pytest.param(
            policy({"level": "None", "nonResourceURLs": ["/a*b"]}),
            "rules[0].nonResourceURLs",
            id="url-star-inside",
        ),
    ],
)
def test_unusable_policy_is_kst114_and_nothing_else(body: Any, field: str) -> None:
    results = run(body)
    assert ("KST114", field) in {(f.rule_id, f.field) for f in results}
    assert {f.rule_id for f in results} == {"KST114"}


def test_older_versions_and_unknown_fields_are_read() -> None:
    # The API server's decoder ignores unknown fields: a "resource" typo leaves an item
    # that matches every resource of its group.
    body = policy(
        {"level": "None", "resources": [{"group": "apps", "resource": ["deployments"]}]},
        {"level": "RequestResponse", "resources": [{"group": "apps"}]},
        apiVersion="audit.k8s.io/v1beta1",
    )
    assert found(body) == {("KST111", "rules"), ("KST112", "rules[1]")}


def test_good_policy_has_no_findings() -> None:
    assert found(GOOD) == set()


def test_no_file_no_findings() -> None:
    scan = scan_input(ObjectIndex())
    assert [f for check in auditpolicy.CHECKS for f in check.run(scan)] == []


def test_checks_report_only_their_own_rule() -> None:
    body = policy({"level": "None", "users": ["a"]}, {"level": "RequestResponse"}, {"level": "x"})
    for candidate in (body, policy({"level": "RequestResponse"}, {"level": "None"})):
        scan = scan_input(ObjectIndex(), audit_policy=ConfigDocument("a", "", candidate))
        for check in auditpolicy.CHECKS:
            assert {f.rule_id for f in check.run(scan)} <= {check.rule.id}


def test_messages_name_no_user_group_namespace_object_or_path() -> None:
    canaries = ["canary-user", "canary-group", "canary-ns", "canary-object", "/canary-path"]
    body = policy(
        {"level": "None", "nonResourceURLs": ["/canary-path"]},
        {"level": "None", "nonResourceURLs": ["/canary-path"]},
        {
            "level": "RequestResponse",
            "users": ["canary-user"],
            "userGroups": ["canary-group"],
            "namespaces": ["canary-ns"],
            "resources": [{**CORE_SECRETS, "resourceNames": ["canary-object"]}],
        },
        {"level": "None"},
        {"level": "Metadata", "users": ["canary-user"]},
    )
    del body["omitStages"]
    results = run(body)
    assert {f.rule_id for f in results} >= {"KST110", "KST112", "KST113"}
    messages = " ".join(f.message for f in results)
    for canary in canaries:
        assert canary not in messages


def test_rules_are_catalogued_with_references() -> None:
    rules = {check.rule.id: check.rule for check in auditpolicy.CHECKS}
    assert sorted(rules) == ["KST110", "KST111", "KST112", "KST113", "KST114"]
    for rule in rules.values():
        assert rule.family == "audit-policy"
        assert any(ref.startswith("https://kubernetes.io/docs/") for ref in rule.references)


# --------------------------------------------------------------------------- the real corpus

_OS = "openshift-library-go/pkg/operator/apiserver/audit"
_CM = f"{_OS}/testdata/audit-policies-cm-scenario-1.yaml"
_FALCO = {("KST110", "rules[6]"), ("KST110", "rules[7]")}

#: Reviewed by hand against each file; keys are (file, ConfigMap data key or "").
#: - falco (both copies) and the website example log configmaps in kube-system at Request and
#:   (falco) elsewhere at RequestResponse; their Request rule for the whole core group also
#:   matches serviceaccounts/token, but a TokenRequest's request body holds no token.
#: - the GKE copy predates serviceaccounts/token in its Metadata rule, so the
#:   RequestResponse rule for known APIs (14) catches token requests; its final catch-all
#:   (15) is the only logging rule that keeps RequestReceived.
#: - OpenShift's base-policy.yaml is a fragment (two None rules) that OpenShift merges with a
#:   profile; read alone it audits no Secret. none.yaml is the "None" profile.
#: - OpenShift write/all-request-bodies profiles exclude secrets but log configmap bodies;
#:   the older copies embedded in the ConfigMap also log tokenreviews and token requests.
#: - multipleCr.yaml / oauth.yaml restrict rules to OAuth users: rule 3 (and 6 for all
#:   authenticated users) log configmap writes with bodies; Secrets stay at Metadata since
#:   the Metadata rule for the same groups comes first.
#: - the ConfigMap file itself is not a Policy (KST114); its data values are read instead.
EXPECTED: dict[tuple[str, str], set[tuple[str, str]]] = {
    ("audit2rbac/testdata/demo-policy.yaml", ""): set(),
    ("falco-legacy/examples/k8s_audit_config/audit-policy.yaml", ""): _FALCO,
    ("falcosecurity-plugins/plugins/k8saudit/configs/audit-policy.yaml", ""): _FALCO,
    ("gce-policy-copy-ferozsalam/kube-api-audit-policies/kube-api-audit-policy-gke", ""): {
        ("KST110", "rules[14]"),
        ("KST113", "rules[15]"),
    },
    ("kubernetes-website/content/en/examples/audit/audit-policy.yaml", ""): {
        ("KST110", "rules[5]")
    },
    (f"{_OS}/manifests/base-policy.yaml", ""): {("KST111", "rules")},
    (f"{_OS}/testdata/allrequestbodies.yaml", ""): {("KST110", "rules[3]")},
    (_CM, ""): {("KST114", "kind")},
    (_CM, "default.yaml"): set(),
    (_CM, "writerequestbodies.yaml"): {("KST110", "rules[4]")},
    (_CM, "allrequestbodies.yaml"): {("KST110", "rules[4]")},
    (f"{_OS}/testdata/default.yaml", ""): set(),
    (f"{_OS}/testdata/multipleCr.yaml", ""): {("KST110", "rules[3]"), ("KST110", "rules[6]")},
    (f"{_OS}/testdata/none.yaml", ""): {("KST111", "rules[2]")},
    (f"{_OS}/testdata/oauth.yaml", ""): {("KST110", "rules[3]")},
    (f"{_OS}/testdata/writerequestbodies.yaml", ""): {("KST110", "rules[3]")},
}

#: Resources named by KST110 where a rule index leaks more than one resource.
EXPECTED_LEAKS: dict[tuple[str, str], set[tuple[str, str]]] = {
    (_CM, key): {
        ("configmaps", "rules[4]"),
        ("tokenreviews", "rules[4]"),
        ("serviceaccounts/token", "rules[4]"),
    }
    for key in ("writerequestbodies.yaml", "allrequestbodies.yaml")
} | {
    ("gce-policy-copy-ferozsalam/kube-api-audit-policies/kube-api-audit-policy-gke", ""): {
        ("serviceaccounts/token", "rules[14]")
    },
    ("falcosecurity-plugins/plugins/k8saudit/configs/audit-policy.yaml", ""): {
        ("configmaps", "rules[6]"),
        ("configmaps", "rules[7]"),
    },
}


def _documents(path: Path) -> Iterator[tuple[str, str, Any]]:
    """(data key or "", text, body) of each policy in a file; a ConfigMap's data values that
    hold a Policy are read as policies of their own, after the ConfigMap itself."""
    text = path.read_text(encoding="utf-8")
    for body in yaml.safe_load_all(text):
        yield "", text, {} if body is None else body
        if isinstance(body, dict) and body.get("kind") == "ConfigMap":
            for key, value in (body.get("data") or {}).items():
                embedded = yaml.safe_load(value)
                if isinstance(embedded, dict) and embedded.get("kind") == "Policy":
                    yield key, value, embedded


def _corpus() -> dict[tuple[str, str], list[Finding]]:
    out = {}
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        for key, text, body in _documents(path):
            out[path.relative_to(CORPUS).as_posix(), key] = run(body, text)
    return out


needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo")


@needs_corpus
def test_every_corpus_policy_is_reviewed() -> None:
    assert set(_corpus()) == set(EXPECTED)


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED), ids="|".join)
def test_corpus_policy(name: tuple[str, str]) -> None:
    assert {(f.rule_id, f.field) for f in _corpus()[name]} == EXPECTED[name]


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED_LEAKS), ids="|".join)
def test_corpus_leaks_name_the_resources(name: tuple[str, str]) -> None:
    results = [f for f in _corpus()[name] if f.rule_id == "KST110"]
    named = {(f.message.split(" logs ", 1)[1].split(" at ", 1)[0], f.field) for f in results}
    assert named == EXPECTED_LEAKS[name]
