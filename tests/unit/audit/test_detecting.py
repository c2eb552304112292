"""Detectors, one by one, on planted behaviours and on the real audit logs of the corpus.

Aspects covered: each detector raises its alert on the behaviour it is for and stays quiet
on the near miss (platform identities, allowed writers, below thresholds, inside hours,
learning period); a request is counted once across its stages; impersonation is
attributed to the impersonated user; cooldowns stop floods; alerts carry audit IDs and
no body; the real logs of the corpus (audit2rbac's demo, KHI's control-plane events)
raise nothing, while Falco's planted fixtures raise exactly the expected detectors.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.audit.alerts import Alert
from kustos.audit.detecting import (
    ANNOTATION_STRIPPED,
    OPERATOR_USER,
    Detector,
    DetectorsConfig,
    detect,
)

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # a Monday, 10:00 UTC
ALICE = "alice@example.com"
NOW = {"learning_period": "0"}


def event(
    *,
    user: str = ALICE,
    verb: str = "get",
    resource: str = "secrets",
    namespace: str | None = "payments",
    name: str | None = "db-creds",
    at: float = 0.0,
    code: int = 200,
    ip: str = "10.0.0.5",
    stage: str = "ResponseComplete",
    audit_id: str | None = None,
    subresource: str | None = None,
    groups: tuple[str, ...] = ("system:authenticated",),
    extra: Mapping[str, list[str]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One ``audit.k8s.io/v1`` event at ``T0 + at`` seconds."""
    when = (T0 + dt.timedelta(seconds=at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
    if namespace is not None:
        ref["namespace"] = namespace
    if name is not None:
        ref["name"] = name
    if subresource is not None:
        ref["subresource"] = subresource
    user_info: dict[str, Any] = {"username": user, "groups": list(groups)}
    if extra is not None:
        user_info["extra"] = dict(extra)
    event.counter += 1  # type: ignore[attr-defined]
    doc: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id or f"id-{event.counter:05d}",  # type: ignore[attr-defined]
        "stage": stage,
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name or ''}",
        "verb": verb,
        "user": user_info,
        "sourceIPs": [ip],
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": when,
        "stageTimestamp": when,
    }
    doc.update(fields)
    return doc


event.counter = 0  # type: ignore[attr-defined]


def run(events: list[dict[str, Any]], **config: Any) -> list[Alert]:
    return detect(events, DetectorsConfig.model_validate({**NOW, **config}))


def detectors(alerts: list[Alert]) -> list[str]:
    return [a.detector for a in alerts]


# --------------------------------------------------------------------------- first read
def test_first_read_of_a_secret_alerts_once_per_principal_and_secret() -> None:
    alerts = run([event(at=0), event(at=5), event(name="other", at=6)])
    assert detectors(alerts) == ["first_secret_read", "first_secret_read"]
    first = alerts[0]
    assert (first.user, first.namespace, first.name) == (ALICE, "payments", "db-creds")
    assert first.source_ip == "10.0.0.5"
    assert first.time.startswith("2026-03-02T10:00:00")
    assert len(first.audit_ids) == 1


def test_first_read_is_learned_silently_during_the_learning_period() -> None:
    events = [event(at=0), event(name="late", at=7200)]
    alerts = run(events, learning_period="1h")
    assert [(a.detector, a.name) for a in alerts] == [("first_secret_read", "late")]


def test_platform_identities_and_failed_reads_are_not_first_reads() -> None:
    alerts = run(
        [
            event(user="system:node:node-1"),
            event(user="system:serviceaccount:kube-system:generic-garbage-collector"),
            event(user=OPERATOR_USER),
            event(code=403, at=1),
        ]
    )
    assert alerts == []


def test_a_detector_can_be_turned_off() -> None:
    assert run([event()], first_secret_read={"enabled": False}) == []


# --------------------------------------------------------------------------- source ip
def test_new_source_ip_for_a_known_principal() -> None:
    alerts = run(
        [event(at=0), event(at=1, ip="10.0.0.5"), event(at=2, ip="203.0.113.9")],
        first_secret_read={"enabled": False},
    )
    assert detectors(alerts) == ["new_source_ip"]
    assert alerts[0].source_ip == "203.0.113.9"


def test_pod_service_accounts_change_address_without_alerts_by_default() -> None:
    sa = "system:serviceaccount:shop:web"
    events = [event(user=sa, ip=f"10.244.0.{i}", at=i) for i in range(5)]
    quiet = {"first_secret_read": {"enabled": False}}
    assert run(events, **quiet) == []
    loud = run(events, **quiet, new_source_ip={"include_service_accounts": True})
    assert detectors(loud) == ["new_source_ip"] * 4


# --------------------------------------------------------------------------- hours
def test_reads_outside_configured_hours() -> None:
    config = {"off_hours": {"enabled": True, "hours": "08:00-18:00", "timezone": "UTC"}}
    quiet = {"first_secret_read": {"enabled": False}}
    inside = run([event(at=0)], **config, **quiet)  # Monday 10:00
    night = run([event(at=12 * 3600)], **config, **quiet)  # Monday 22:00
    sunday = run([event(at=-2 * 86400)], **config, **quiet)  # Saturday 10:00
    assert inside == []
    assert detectors(night) == ["off_hours"]
    assert detectors(sunday) == ["off_hours"]
    assert "22:00" in night[0].message


def test_workloads_reading_at_night_are_not_off_hours_by_default() -> None:
    night = {"at": 12 * 3600, "user": "system:serviceaccount:payments:api"}
    config = {"off_hours": {"enabled": True}, "first_secret_read": {"enabled": False}}
    assert run([event(**night)], **config) == []  # type: ignore[arg-type]
    config["off_hours"] = {"enabled": True, "include_service_accounts": True}
    assert detectors(run([event(**night)], **config)) == ["off_hours"]  # type: ignore[arg-type]


def test_hours_follow_the_configured_time_zone() -> None:
    # 10:00 UTC is 19:00 in Tokyo: outside 09:00-18:00 there.
    config = {"off_hours": {"enabled": True, "hours": "09:00-18:00", "timezone": "Asia/Tokyo"}}
    alerts = run([event()], **config, first_secret_read={"enabled": False})
    assert detectors(alerts) == ["off_hours"]


# --------------------------------------------------------------------------- bulk
def test_cluster_wide_list_of_secrets() -> None:
    alerts = run([event(verb="list", namespace=None, name=None)])
    assert detectors(alerts) == ["bulk_read"]
    assert alerts[0].message == f"{ALICE} listed the Secrets of every namespace"


def test_many_distinct_secrets_in_a_short_window() -> None:
    reads = [event(name=f"s{i}", at=i) for i in range(10)]
    alerts = run(reads, first_secret_read={"enabled": False})
    assert detectors(alerts) == ["bulk_read"]
    assert len(alerts[0].audit_ids) == 10


def test_distinct_secrets_spread_beyond_the_window_are_not_bulk() -> None:
    reads = [event(name=f"s{i}", at=i * 30) for i in range(10)]  # one per 30 s, window 1 m
    assert run(reads, first_secret_read={"enabled": False}) == []


def test_listing_secrets_across_namespaces() -> None:
    lists = [event(verb="list", namespace=f"ns{i}", name=None, at=i) for i in range(3)]
    alerts = run(lists)
    assert detectors(alerts) == ["bulk_read"]
    assert len(alerts[0].audit_ids) == 3


def test_a_controller_listing_secrets_everywhere_is_normal() -> None:
    alerts = run([event(user="system:kube-controller-manager", verb="watch", namespace=None)])
    assert alerts == []


# --------------------------------------------------------------------------- anonymous
def test_anonymous_request_allowed_and_refused() -> None:
    anon = {"user": "system:anonymous", "groups": ("system:unauthenticated",)}
    allowed = run([event(**anon)])  # type: ignore[arg-type]
    refused = run([event(code=403, ip="198.51.100.7", **anon)])  # type: ignore[arg-type]
    assert detectors(allowed)[:1] == ["anonymous"]
    assert "was allowed" in allowed[0].message
    assert detectors(refused) == ["anonymous"]
    assert "refused (403)" in refused[0].message


def test_failed_authentication_is_an_unauthenticated_attempt() -> None:
    doc = event(code=401)
    doc["user"] = {}
    assert detectors(run([doc])) == ["anonymous"]


def test_anonymous_health_probes_are_normal() -> None:
    probe = event(user="system:anonymous", groups=("system:unauthenticated",))
    del probe["objectRef"]
    probe["requestURI"] = "/readyz"
    probe["verb"] = "get"
    assert run([probe]) == []


def test_anonymous_alerts_are_rate_limited_per_source() -> None:
    anon = {"user": "system:anonymous", "groups": ("system:unauthenticated",), "code": 403}
    events = [event(at=i, **anon) for i in range(50)]  # type: ignore[arg-type]
    assert detectors(run(events)) == ["anonymous"]
    assert len(run(events, cooldown="0")) == 50


# --------------------------------------------------------------------------- denied
def test_burst_of_denied_requests() -> None:
    denied = [event(code=403, name=f"s{i}", at=i) for i in range(10)]
    alerts = run(denied)
    assert detectors(alerts) == ["denied_burst"]
    assert len(alerts[0].audit_ids) == 10


def test_a_few_denials_are_not_a_burst() -> None:
    assert run([event(code=403, at=i * 10) for i in range(9)]) == []


def test_impersonated_denials_count_for_the_impersonated_user() -> None:
    denied = [
        event(user="system:admin", code=403, at=i, impersonatedUser={"username": "bob"})
        for i in range(10)
    ]
    alerts = run(denied)
    assert [(a.detector, a.user) for a in alerts] == [("denied_burst", "bob")]
    assert "impersonated by system:admin" in alerts[0].message


# --------------------------------------------------------------------------- exec
def exec_into(pod: str, *, user: str = ALICE, at: float = 0) -> dict[str, Any]:
    return event(
        user=user,
        verb="create",
        resource="pods",
        name=pod,
        subresource="exec",
        stage="ResponseStarted",
        code=101,
        at=at,
    )


def test_exec_then_secret_read_by_the_same_user() -> None:
    alerts = run([exec_into("web-1"), event(at=60)], first_secret_read={"enabled": False})
    assert detectors(alerts) == ["exec_then_secret"]
    assert len(alerts[0].audit_ids) == 2


def test_exec_then_secret_read_by_the_pods_service_account() -> None:
    pod_sa = event(
        user="system:serviceaccount:payments:web",
        extra={"authentication.kubernetes.io/pod-name": ["web-1"]},
        at=30,
        ip="10.244.1.7",
    )
    alerts = run([exec_into("web-1"), pod_sa], first_secret_read={"enabled": False})
    assert detectors(alerts) == ["exec_then_secret"]
    assert "from inside pod payments/web-1" in alerts[0].message


def test_secret_read_long_after_an_exec_is_not_linked() -> None:
    alerts = run([exec_into("web-1"), event(at=3600)], first_secret_read={"enabled": False})
    assert alerts == []


def test_exec_stages_count_once() -> None:
    started = exec_into("web-1")
    complete = dict(started, stage="ResponseComplete")
    alerts = run([started, complete, event(at=5)], first_secret_read={"enabled": False})
    assert detectors(alerts) == ["exec_then_secret"]


# --------------------------------------------------------------------------- changes
def test_secret_changed_or_deleted_by_a_person() -> None:
    alerts = run([event(verb="patch"), event(verb="delete", at=1)])
    assert detectors(alerts) == ["secret_changed", "secret_changed"]
    assert "patched" in alerts[0].message
    assert "deleted" in alerts[1].message


def test_the_operator_and_allowed_writers_change_secrets_quietly() -> None:
    events = [
        event(user=OPERATOR_USER, verb="update"),
        event(user="ci-deployer", verb="create", at=1),
        event(user="system:kube-controller-manager", verb="delete", at=2),
        event(verb="update", code=409, at=3),
    ]
    assert run(events, secret_changed={"allow_users": ["ci-*", "system:kube-*"]}) == []


def test_platform_identities_still_alert_when_they_write_secrets_or_leak() -> None:
    node = "system:node:node-1"
    events = [
        event(user=node, verb="get", at=0),  # routine: the kubelet reads a mounted Secret
        event(user=node, verb="delete", at=1),  # not routine: a node has no business here
        event(
            user="system:kube-scheduler",
            resource="configmaps",
            annotations={ANNOTATION_STRIPPED: "responseObject"},
            at=2,
        ),
    ]
    assert detectors(run(events)) == ["secret_changed", "policy_leak"]


# --------------------------------------------------------------------------- leaks
def test_stripped_body_means_the_policy_leaks() -> None:
    leaked = event(
        user=OPERATOR_USER, verb="update", annotations={ANNOTATION_STRIPPED: "requestObject"}
    )
    alerts = run([leaked])
    assert detectors(alerts) == ["policy_leak"]
    assert "Metadata" in alerts[0].message


def test_an_unstripped_secret_body_is_a_leak_and_its_value_is_not_quoted() -> None:
    canary = "canary-Zq8vT1-never-in-alerts"
    leaked = event(user=OPERATOR_USER, responseObject={"data": {"password": canary}})
    alerts = run([leaked])
    assert detectors(alerts) == ["policy_leak"]
    assert canary not in json.dumps([a.to_json() for a in alerts])


# --------------------------------------------------------------------------- driving
@dataclass(frozen=True)
class Archived:
    seq: int
    event: Mapping[str, Any]


def test_events_already_processed_are_skipped_by_sequence() -> None:
    detector = Detector(DetectorsConfig.model_validate(NOW))
    batch = [Archived(1, event(verb="delete")), Archived(2, event(verb="delete", at=1))]
    assert len(detector.process(batch)) == 2
    assert detector.process(batch) == []
    assert detector.state.last_seq == 2


def test_request_received_and_malformed_events_are_ignored() -> None:
    assert run([event(verb="delete", stage="RequestReceived"), {"kind": 0}, {}]) == []


# --------------------------------------------------------------------------- corpus
def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


@pytest.mark.parametrize("learning", ["24h", "0"])
def test_real_logs_raise_nothing(corpus_dir: Path, learning: str) -> None:
    audit = corpus_dir / "audit"
    khi = yaml.safe_load((audit / "khi/test/logs/oss/test-log.yaml").read_text())
    logs = [
        *_lines(audit / "audit2rbac/testdata/demo.log"),
        *_lines(audit / "audit2rbac/history-501d132/testdata/demo.log"),
    ]
    assert len(logs) > 700
    # audit2rbac's demo is one admin's session (a human): only first reads may be news.
    quiet_first = {"first_secret_read": {"enabled": learning != "0"}}
    assert run(logs, learning_period=learning, **quiet_first) == []
    assert run([khi], learning_period=learning) == []


def test_falco_planted_fixtures_raise_the_matching_detector(corpus_dir: Path) -> None:
    folder = corpus_dir / "audit/falco/test/trace_files/k8s_audit"
    expected = {
        "anonymous_creates_namespace_foo.json": ["anonymous"],
        "create_secret.json": ["secret_changed"],
        "delete_secret.json": ["secret_changed"],
        "create_kube_system_secret.json": ["secret_changed"],
    }
    raised = {}
    for path in sorted(folder.glob("*.json")):
        alerts = run(_lines(path))
        if alerts:
            raised[path.name] = detectors(alerts)
    assert raised == expected
