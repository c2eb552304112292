"""Audit events as the archive keeps them: value stripping and the summary the index holds.

Purely data: no I/O. An ``audit.k8s.io/v1`` Event arrives as decoded JSON; before anything
is stored, :func:`strip_values` removes the request and response bodies of requests on
resources that carry secret values (Secrets, ConfigMaps, TokenReviews, TokenRequests) and
marks the event with :data:`STRIPPED_ANNOTATION`, so that a policy that leaks is noticed
(and an alert raised) although no value was kept. :func:`summary_of` gives the handful of
fields that ``kustos audit query`` answers with.

The ingest paths do not decode whole events: :func:`prepare` reads one event's JSON text
into an :class:`EventView` (the few fields the index, the dedupe window and the detectors
use; everything else is skipped without building Python objects) and keeps the text as it
came, unless the event carries a request or response body: then it is decoded in full,
stripped when it must be, and written again, so that what is stored never holds a body
that the stripping check did not see.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from kustos.errors import ArchiveError

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


# --------------------------------------------------------------------------- views
#: ``user.extra`` key of the pod a ServiceAccount token was bound to.
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"


class ExtraView(msgspec.Struct, frozen=True, gc=False):
    """``user.extra``: the bound pod's name only (the other keys are skipped unread)."""

    pod_name: tuple[str, ...] = msgspec.field(default=(), name=POD_NAME_EXTRA)


class UserView(msgspec.Struct, frozen=True, gc=False):
    """``user`` or ``impersonatedUser`` of an event, as the detectors use it."""

    username: str | None = None
    groups: tuple[str, ...] = ()
    extra: ExtraView | None = None


class AnnotationsView(msgspec.Struct, frozen=True, gc=False):
    """``annotations``: the stripping mark only."""

    stripped: str | None = msgspec.field(default=None, name=STRIPPED_ANNOTATION)


class RefView(msgspec.Struct, frozen=True, gc=False):
    """``objectRef``: what the request was about."""

    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""  # noqa: N815 - the JSON field's name


class StatusView(msgspec.Struct, frozen=True, gc=False):
    """``responseStatus``: its code only."""

    code: int | None = None


class BodyView(msgspec.Struct, frozen=True, gc=False):
    """A request or response body: its ``kind`` only (the rest is never decoded here)."""

    kind: str = ""


class MetaView(msgspec.Struct, frozen=True, gc=False):
    """``metadata`` of events written before ``audit.k8s.io/v1`` (their time)."""

    creationTimestamp: str = ""  # noqa: N815


class EventView(msgspec.Struct, frozen=True, gc=False):
    """The fields of an Event that the index, the dedupe window and the detectors read.

    Decoded strictly from JSON text (:func:`decode_view`); an event whose fields have
    unexpected types gets a view from its decoded form instead (:func:`view_of`), where a
    field of the wrong type counts as absent. A body is present (:data:`UNSET` when not)
    even when it is ``null``.
    """

    auditID: str  # noqa: N815
    stage: str
    kind: str = "Event"
    verb: str = ""
    requestURI: str = ""  # noqa: N815
    user: UserView | None = None
    impersonatedUser: UserView | None = None  # noqa: N815
    sourceIPs: tuple[str, ...] = ()  # noqa: N815
    objectRef: RefView | None = None  # noqa: N815
    responseStatus: StatusView | None = None  # noqa: N815
    requestObject: BodyView | UnsetType | None = UNSET  # noqa: N815
    responseObject: BodyView | UnsetType | None = UNSET  # noqa: N815
    requestReceivedTimestamp: str = ""  # noqa: N815
    stageTimestamp: str = ""  # noqa: N815
    timestamp: str = ""
    metadata: MetaView | None = None
    annotations: AnnotationsView | None = None

    @property
    def has_body(self) -> bool:
        """Whether a request or response body field is present (even ``null``)."""
        return self.requestObject is not UNSET or self.responseObject is not UNSET

    @property
    def stripped(self) -> str | None:
        """The body fields the archive removed (the stripping annotation), if any."""
        return self.annotations.stripped if self.annotations is not None else None


_DECODER: Final = msgspec.json.Decoder(EventView)


def decode_view(data: bytes) -> EventView | None:
    """The view of one event's JSON text, or ``None`` when a field has an unexpected type
    (or the text is not an Event): the caller then decodes it in full."""
    try:
        view = _DECODER.decode(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None
    return view if view.kind == "Event" else None


def text_view(data: bytes) -> EventView:
    """The view of a stored event's JSON text (decoded in full if it must be).

    ``ValueError`` (``orjson.JSONDecodeError`` included) if the text is no JSON object.
    """
    view = decode_view(data)
    if view is not None:
        return view
    event = orjson.loads(data)
    if type(event) is not dict:
        raise ValueError("not a JSON object")
    return view_of(event)


def _str(value: Any) -> str:
    return value if type(value) is str else ""


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if type(v) is str) if type(value) is list else ()


def _user(value: Any) -> UserView | None:
    if type(value) is not dict:
        return None
    extra = value.get("extra")
    username = value.get("username")
    return UserView(
        username if type(username) is str else None,
        _strs(value.get("groups")),
        ExtraView(_strs(extra.get(POD_NAME_EXTRA))) if type(extra) is dict else None,
    )


def _body(event: Mapping[str, Any], key: str) -> BodyView | UnsetType | None:
    if key not in event:
        return UNSET
    body = event[key]
    return BodyView(_str(body.get("kind"))) if type(body) is dict else None


def view_of(event: Mapping[str, Any]) -> EventView:
    """The view of a decoded event; a field of an unexpected type counts as absent."""
    ref = event.get("objectRef")
    status = event.get("responseStatus")
    code = status.get("code") if type(status) is dict else None
    meta = event.get("metadata")
    annotations = event.get("annotations")
    return EventView(
        auditID=_str(event.get("auditID")),
        stage=_str(event.get("stage")),
        kind=_str(event.get("kind", "Event")),
        verb=_str(event.get("verb")),
        requestURI=_str(event.get("requestURI")),
        user=_user(event.get("user")),
        impersonatedUser=_user(event.get("impersonatedUser")),
        sourceIPs=_strs(event.get("sourceIPs")),
        objectRef=RefView(
            _str(ref.get("resource")),
            _str(ref.get("subresource")),
            _str(ref.get("namespace")),
            _str(ref.get("name")),
            _str(ref.get("apiGroup")),
        )
        if type(ref) is dict
        else None,
        responseStatus=StatusView(code if type(code) is int else None)
        if type(status) is dict
        else None,
        requestObject=_body(event, "requestObject"),
        responseObject=_body(event, "responseObject"),
        requestReceivedTimestamp=_str(event.get("requestReceivedTimestamp")),
        stageTimestamp=_str(event.get("stageTimestamp")),
        timestamp=_str(event.get("timestamp")),
        metadata=MetaView(_str(meta.get("creationTimestamp"))) if type(meta) is dict else None,
        annotations=AnnotationsView(
            stripped if type(stripped := annotations.get(STRIPPED_ANNOTATION)) is str else None
        )
        if type(annotations) is dict
        else None,
    )


class ArchivedEvent:
    """One archived audit event: its 1-based, dense sequence number and the stripped Event.

    Made from the decoded Event, or (on the ingest paths) from the stored JSON text and
    its :class:`EventView`: the full decode then happens only if someone reads ``event``.
    """

    __slots__ = ("_event", "_view", "data", "seq")

    def __init__(
        self,
        seq: int,
        event: Mapping[str, Any] | None = None,
        *,
        data: bytes = b"",
        view: EventView | None = None,
    ) -> None:
        if event is None and not data and view is None:
            raise ValueError("an archived event needs its Event, its JSON text or its view")
        self.seq = seq
        self.data = data
        self._event = event
        self._view = view

    @property
    def event(self) -> Mapping[str, Any]:
        """The stripped Event (decoded from the stored text on first use)."""
        if self._event is None:
            if not self.data:
                raise LookupError(f"record {self.seq}: only its view was kept")
            try:
                self._event = orjson.loads(self.data)
            except orjson.JSONDecodeError:
                raise _garbage(self.seq) from None
        return self._event

    @property
    def view(self) -> EventView:
        """The fields the detectors read."""
        if self._view is None:
            if not self.data:
                self._view = view_of(self.event)
            else:
                try:
                    self._view = text_view(self.data)
                except ValueError:
                    raise _garbage(self.seq) from None
        return self._view

    def __repr__(self) -> str:  # the event itself is never shown
        return f"ArchivedEvent(seq={self.seq})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchivedEvent):
            return NotImplemented
        return self.seq == other.seq and self.event == other.event

    __hash__ = None  # type: ignore[assignment] # mutable cache inside, compared by value


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


class Prepared(NamedTuple):
    """One event ready for the archive: the JSON text to store, its view, and whether a
    body was stripped from it (*event*: the decoded Event when it had to be decoded)."""

    data: bytes
    view: EventView
    event: dict[str, Any] | None = None
    stripped: bool = False


def prepare(text: bytes) -> Prepared | None:
    """One event's JSON text made ready for the archive; ``None`` if it is not an Event.

    Text without a body is kept as it came (surrounding whitespace removed). Any body
    means a full decode: removed when the event is about values (:func:`strip_values`),
    and the event written again, so that only bodies the check saw can be stored.
    """
    view = decode_view(text)
    if view is not None and not view.has_body:
        data = text.strip()
        if b"\n" not in data:  # a line of its own in a segment
            return Prepared(data, view)
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not is_event(event):
        return None
    stripped = needs_stripping(event)
    if stripped:
        event, _ = strip_values(event)
    data = orjson.dumps(event)
    return Prepared(data, decode_view(data) or view_of(event), event, stripped)


def prepare_event(event: Mapping[str, Any]) -> Prepared:
    """A decoded Event made ready for the archive (its bodies stripped when they must be)."""
    stripped = needs_stripping(event)
    kept = strip_values(event)[0] if stripped else dict(event)
    data = orjson.dumps(kept)
    return Prepared(data, decode_view(data) or view_of(kept), kept, stripped)


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


def _garbage(seq: int) -> ArchiveError:
    return ArchiveError(f"record {seq} holds no JSON event: run `kustos audit verify`")
