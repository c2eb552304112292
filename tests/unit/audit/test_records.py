"""Event records: value stripping (canary), summaries, identities.

Also the event builders the other audit tests import (``event``, ``leaking_event``).

- a Secret body in a RequestResponse event is removed and the event marked;
- ConfigMap, TokenReview and serviceaccounts/token bodies are removed too;
- bodies of other resources are kept; events without bodies are unchanged;
- summaries take the last source IP, normalise times, tolerate missing fields.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kustos.audit.records import (
    STRIPPED_ANNOTATION,
    event_key,
    is_event,
    micro_time,
    strip_values,
    stripped_fields,
    summary_of,
)

# Shared with the other audit tests: events shaped like the API server's.
CANARY = "kustos-canary-value-9f2c"


def event(
    n: int,
    *,
    user: str = "alice",
    verb: str = "get",
    resource: str = "secrets",
    namespace: str = "payments",
    name: str | None = "db-creds",
    ip: str = "10.0.0.7",
    time: str = "2026-11-30T10:00:00.000000Z",
    stage: str = "ResponseComplete",
    code: int = 200,
) -> dict[str, Any]:
    """Event number *n* (its auditID is unique per *n*)."""
    ref: dict[str, Any] = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
    if name is not None:
        ref["name"] = name
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"00000000-0000-4000-8000-{n:012d}",
        "stage": stage,
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name or ''}",
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["192.0.2.1", ip],
        "userAgent": "kubectl/v1.34.0 (linux/amd64)",
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }


def leaking_event(n: int) -> dict[str, Any]:
    """A RequestResponse event on a Secret: its response body holds the canary."""
    body = event(n)
    body["level"] = "RequestResponse"
    body["responseObject"] = {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "db-creds", "namespace": "payments"},
        "data": {"password": CANARY},
        "stringData": {"raw": CANARY},
    }
    body["requestObject"] = {"kind": "Secret", "data": {"password": CANARY}}
    return body


def test_secret_body_is_stripped_and_marked() -> None:
    kept, removed = strip_values(leaking_event(1))
    assert removed == ("requestObject", "responseObject")
    assert CANARY.encode() not in orjson.dumps(kept)
    assert kept["annotations"][STRIPPED_ANNOTATION] == "requestObject,responseObject"
    assert kept["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert stripped_fields(kept) == ("requestObject", "responseObject")


@pytest.mark.parametrize(
    ("group", "resource", "subresource"),
    [
        ("", "configmaps", None),
        ("authentication.k8s.io", "tokenreviews", None),
        ("", "serviceaccounts", "token"),
    ],
)
def test_other_value_bearing_bodies_are_stripped(
    group: str, resource: str, subresource: str | None
) -> None:
    body = event(2, resource=resource)
    body["objectRef"]["apiGroup"] = group
    if subresource:
        body["objectRef"]["subresource"] = subresource
    body["responseObject"] = {"kind": "Anything", "status": {"token": CANARY}}
    kept, removed = strip_values(body)
    assert removed == ("responseObject",)
    assert CANARY not in orjson.dumps(kept).decode()


def test_secret_kind_body_is_stripped_whatever_the_resource() -> None:
    body = event(3, resource="pods")
    body["responseObject"] = {"kind": "SecretList", "items": [{"data": {"k": CANARY}}]}
    kept, _ = strip_values(body)
    assert "responseObject" not in kept


def test_other_bodies_and_plain_events_are_kept() -> None:
    body = event(4, resource="pods")
    body["requestObject"] = {"kind": "Pod", "spec": {}}
    kept, removed = strip_values(body)
    assert removed == ()
    assert kept == body
    plain = event(5)
    assert strip_values(plain) == (plain, ())
    assert stripped_fields(plain) == ()


def test_summary_fields() -> None:
    summary = summary_of(event(6, user="bob", verb="list", name=None, ip="10.1.1.1", code=403))
    assert summary.user == "bob"
    assert summary.verb == "list"
    assert summary.name == ""
    assert summary.source_ip == "10.1.1.1"  # the last address: the one the client cannot set
    assert summary.code == 403
    assert summary.to_json()["groups"] == ["system:authenticated"]
    assert set(summary.to_json()) == {
        "time", "user", "groups", "verb", "namespace", "name", "source_ip", "user_agent",
        "code", "audit_id",
    }  # fmt: skip


def test_summary_of_a_bare_event() -> None:
    summary = summary_of({"auditID": "x", "stage": "ResponseComplete", "user": "not-a-map"})
    assert (summary.user, summary.code, summary.time, summary.groups) == ("", None, "", ())


def test_times_are_normalised() -> None:
    assert micro_time("2024-12-13T05:28:40.005508Z") == "2024-12-13T05:28:40.005508Z"
    assert micro_time("2017-09-11T19:55:05Z") == "2017-09-11T19:55:05.000000Z"
    assert micro_time("2024-12-13T06:28:40+01:00") == "2024-12-13T05:28:40.000000Z"
    assert micro_time("yesterday") == ""


def test_identity_and_shape() -> None:
    assert event_key(event(7)) == ("00000000-0000-4000-8000-000000000007", "ResponseComplete")
    assert event_key({"stage": "x"}) is None
    assert is_event(event(7))
    assert not is_event({"kind": "Pod", "auditID": "a", "stage": "b"})
    assert not is_event(["not", "a", "map"])
