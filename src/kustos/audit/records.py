"""Audit events as the archive keeps them: value stripping and the summary the index holds.

Purely data: no I/O. An ``audit.k8s.io/v1`` Event arrives as decoded JSON; before anything
is stored, :func:`strip_values` removes the request and response bodies of requests on
resources that carry secret values (Secrets, ConfigMaps, TokenReviews, TokenRequests) and
marks the event with :data:`STRIPPED_ANNOTATION`, so that a policy that leaks is noticed
(and an alert raised) although no value was kept. :func:`summary_of` gives the handful of
fields that ``kustos audit query`` answers with.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Annotation put on an event whose bodies were removed: the removed fields, comma-separated.
STRIPPED_ANNOTATION: Final = "kustos.io/values-stripped"
#: ``(apiGroup, resource)`` pairs whose request or response bodies hold values or tokens.
SENSITIVE_RESOURCES: Final = frozenset(
    {
        ("", "secrets"),
        ("", "configmaps"),
        ("authentication.k8s.io", "tokenreviews"),
    }
)
#: Subresources whose bodies hold tokens, whatever the resource (``serviceaccounts/token``).
SENSITIVE_SUBRESOURCES: Final = frozenset({"token"})
#: Object kinds that hold values: a body of one of these is removed wherever it appears.
SENSITIVE_KINDS: Final = frozenset(
    {"Secret", "SecretList", "ConfigMap", "ConfigMapList", "TokenReview", "TokenRequest"}
)
BODY_FIELDS: Final = ("requestObject", "responseObject")
#: Stage of the request's first event: it duplicates the final one and carries no status.
REQUEST_RECEIVED: Final = "RequestReceived"
_MICRO_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One archived audit event: its 1-based, dense sequence number and the stripped Event."""

    seq: int
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What the index keeps of an event (every field a name, an address or a code)."""

    time: str
    audit_id: str
    stage: str
    user: str
    groups: tuple[str, ...]
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    source_ip: str
    user_agent: str
    code: int | None

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape of one ``kustos audit query`` result."""
        return {
            "time": self.time,
            "user": self.user,
            "groups": list(self.groups),
            "verb": self.verb,
            "namespace": self.namespace,
            "name": self.name,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "code": self.code,
            "audit_id": self.audit_id,
        }


def _is_sensitive(event: Mapping[str, Any]) -> bool:
    ref = event.get("objectRef")
    if isinstance(ref, Mapping):
        group = ref.get("apiGroup") or ""
        if (group, ref.get("resource") or "") in SENSITIVE_RESOURCES:
            return True
        if (ref.get("subresource") or "") in SENSITIVE_SUBRESOURCES:
            return True
    return any(
        isinstance(body, Mapping) and body.get("kind") in SENSITIVE_KINDS
        for body in (event.get(f) for f in BODY_FIELDS)
    )


def needs_stripping(event: Mapping[str, Any]) -> bool:
    """Whether *event* carries a body that may hold a value (cheap test, no copy)."""
    return ("requestObject" in event or "responseObject" in event) and _is_sensitive(event)


def strip_values(event: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """*event* without value-bearing bodies, and the names of the fields removed.

    Only requests on sensitive resources lose their bodies; other events come back as they
    were (a shallow copy) with nothing removed. The removed fields are named in the
    :data:`STRIPPED_ANNOTATION` annotation of the returned event.
    """
    copy = dict(event)
    if not needs_stripping(event):
        return copy, ()
    removed = tuple(f for f in BODY_FIELDS if f in copy)
    for f in removed:
        del copy[f]
    annotations = copy.get("annotations")
    kept = dict(annotations) if isinstance(annotations, Mapping) else {}
    kept[STRIPPED_ANNOTATION] = ",".join(removed)
    copy["annotations"] = kept
    return copy, removed


def stripped_fields(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The body fields removed from an archived event (empty when none was)."""
    annotations = event.get("annotations")
    if not isinstance(annotations, Mapping):
        return ()
    value = annotations.get(STRIPPED_ANNOTATION)
    return tuple(value.split(",")) if isinstance(value, str) and value else ()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def micro_time(value: Any) -> str:
    """A timestamp as the API server writes MicroTime (``...T05:28:40.005508Z``), or ``""``.

    Normalised so that the index can compare times as text.
    """
    if not isinstance(value, str) or not value:
        return ""
    if _MICRO_TIME.fullmatch(value):
        return value
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return format_time(parsed)


def format_time(value: dt.datetime) -> str:
    """*value* in the API server's MicroTime text form, in UTC."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def summary_of(event: Mapping[str, Any]) -> EventSummary:
    """The indexed fields of *event*; missing fields become ``""`` (code ``None``)."""
    user = event.get("user")
    user = user if isinstance(user, Mapping) else {}
    groups = user.get("groups")
    ref = event.get("objectRef")
    ref = ref if isinstance(ref, Mapping) else {}
    ips = event.get("sourceIPs")
    status = event.get("responseStatus")
    code = status.get("code") if isinstance(status, Mapping) else None
    return EventSummary(
        # ``timestamp``: events written before audit.k8s.io/v1 had the two stage times.
        time=micro_time(
            event.get("requestReceivedTimestamp")
            or event.get("stageTimestamp")
            or event.get("timestamp")
        ),
        audit_id=_text(event.get("auditID")),
        stage=_text(event.get("stage")),
        user=_text(user.get("username")),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        verb=_text(event.get("verb")),
        resource=_text(ref.get("resource")),
        subresource=_text(ref.get("subresource")),
        namespace=_text(ref.get("namespace")),
        name=_text(ref.get("name")),
        # All but the last address can be set by the client: the last one is the peer's.
        source_ip=_text(ips[-1]) if isinstance(ips, list) and ips else "",
        user_agent=_text(event.get("userAgent")),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def event_key(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(auditID, stage)``: the identity of an event (a retried batch repeats it)."""
    audit_id = event.get("auditID")
    stage = event.get("stage")
    if isinstance(audit_id, str) and audit_id and isinstance(stage, str):
        return audit_id, stage
    return None


def is_event(value: Any) -> bool:
    """Whether decoded JSON *value* looks like an ``audit.k8s.io`` Event (with its identity)."""
    return (
        type(value) is dict
        and type(value.get("auditID")) is str
        and type(value.get("stage")) is str
        and value.get("kind", "Event") == "Event"
    )
