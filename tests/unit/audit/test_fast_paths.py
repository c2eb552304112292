"""The fast ingest paths give what the plain ones give.

Aspects covered: ``prepare`` keeps an event's text as it came when it has no body, and
decodes, strips and rewrites any event with a body (a Secret value hidden behind a
repeated key included); text that is no Event is refused; a pretty-printed event is stored
on one line; the view read from text equals the view read from the decoded event; an
archive filled from text holds the same bytes, index and alerts as one filled from decoded
events; the detectors' cheap skip of routine requests changes no alert and no baseline;
detection in its own process stores the same alerts and baseline as detection in the
writer's process.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from kustos.audit.alerts import AlertStore
from kustos.audit.archive import Archive
from kustos.audit.detecting import Detector, DetectorsConfig
from kustos.audit.indexing import Index
from kustos.audit.receiving import BatchError, parse_batch
from kustos.audit.records import (
    STRIPPED_ANNOTATION,
    ArchivedEvent,
    EventView,
    decode_view,
    prepare,
    view_of,
)
from kustos.audit.watching import baseline_file, hooks_for

CANARY = "canary-c2VjcmV0LXZhbHVl"


def mixed_events(count: int, *, seed: int = 3) -> list[dict[str, Any]]:
    """Traffic of every kind the detectors tell apart, in time order."""
    rng = random.Random(seed)  # noqa: S311 - test data
    users = [
        ("alice@example.com", ["developers", "system:authenticated"]),
        ("bob@example.com", ["system:authenticated"]),
        ("system:node:node-1", ["system:nodes"]),
        ("system:kube-controller-manager", []),
        ("system:anonymous", ["system:unauthenticated"]),
        *((f"system:serviceaccount:team-{i}:app", ["system:serviceaccounts"]) for i in range(4)),
    ]
    events = []
    for n in range(count):
        username, groups = rng.choice(users)
        resource = rng.choice(("secrets", "secrets", "pods", "configmaps", "leases"))
        verb = rng.choice(("get", "list", "watch", "update", "create", "delete", "patch"))
        ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
        if rng.random() < 0.9:
            ref["namespace"] = f"team-{rng.randrange(5)}"
        if verb not in ("list", "watch", "create"):
            ref["name"] = f"{resource[:-1]}-{rng.randrange(30)}"
        if resource == "pods" and rng.random() < 0.2:
            ref["subresource"] = rng.choice(("exec", "attach", "log"))
        stamp = f"2026-11-02T{8 + n // 3600 % 12:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000000Z"
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": f"id-{n:06d}",
            "stage": rng.choice(("ResponseComplete", "ResponseComplete", "RequestReceived")),
            "requestURI": f"/api/v1/{resource}",
            "verb": verb,
            "user": {"username": username, "groups": groups},
            "sourceIPs": [f"10.0.0.{rng.randrange(6)}"],
            "objectRef": ref,
            "responseStatus": {"code": rng.choice((200, 200, 200, 201, 403, 401, 404))},
            "requestReceivedTimestamp": stamp,
            "stageTimestamp": stamp,
        }
        if username.startswith("system:serviceaccount:"):
            event["user"]["extra"] = {"authentication.kubernetes.io/pod-name": ["app-1"]}
        if rng.random() < 0.05:
            event["impersonatedUser"] = {"username": "carol@example.com"}
        if rng.random() < 0.05:
            event["requestObject"] = {"kind": "Pod", "metadata": {"name": "x"}}
        events.append(event)
    return events


# --------------------------------------------------------------------------- prepare
def test_text_without_a_body_is_kept_as_it_came() -> None:
    text = b'{"kind":"Event", "auditID":"a-1","stage":"ResponseComplete","verb":"get"}\n'
    ready = prepare(text)
    assert ready is not None
    assert ready.data == text.strip()
    assert ready.event is None
    assert not ready.stripped


def test_a_body_is_decoded_and_a_secret_body_removed() -> None:
    event = mixed_events(1)[0]
    event.pop("requestObject", None)
    event.update(
        objectRef={"resource": "secrets", "namespace": "a", "name": "b", "apiVersion": "v1"},
        responseObject={"kind": "Secret", "data": {"password": CANARY}},
    )
    ready = prepare(orjson.dumps(event))
    assert ready is not None
    assert ready.stripped
    assert CANARY.encode() not in ready.data
    assert STRIPPED_ANNOTATION in orjson.loads(ready.data)["annotations"]
    assert ready.view.stripped == "responseObject"


_SECRET_BODY = b'{"kind":"Secret","data":{"k":"' + CANARY.encode() + b'"}}'


@pytest.mark.parametrize(
    ("ref", "bodies"),
    [
        # The last of two keys wins when JSON is decoded: the first body must not survive.
        (b"pods", b'"requestObject":' + _SECRET_BODY + b',"requestObject":{"kind":"Pod"}'),
        # An escaped key is the same key.
        (b"secrets", b'"\\u0072equestObject":' + _SECRET_BODY),
    ],
)
def test_a_secret_body_behind_an_odd_key_is_not_stored(ref: bytes, bodies: bytes) -> None:
    text = (
        b'{"kind":"Event","auditID":"a","stage":"ResponseComplete","objectRef":'
        b'{"resource":"%s"},%s}' % (ref, bodies)
    )
    ready = prepare(text)
    assert ready is not None
    assert orjson.loads(text)  # valid JSON, as an API server would not write it
    assert CANARY.encode() not in ready.data


@pytest.mark.parametrize(
    "text",
    [b"not json", b"[1, 2]", b'{"kind":"Pod","auditID":"a","stage":"x"}', b'{"auditID":"a"}'],
)
def test_text_that_is_no_event_is_refused(text: bytes) -> None:
    assert prepare(text) is None


def test_a_pretty_printed_event_is_stored_on_one_line() -> None:
    text = orjson.dumps(mixed_events(1)[0], option=orjson.OPT_INDENT_2)
    ready = prepare(text)
    assert ready is not None
    assert b"\n" not in ready.data
    assert orjson.loads(ready.data) == orjson.loads(text)


def test_views_from_text_and_from_the_decoded_event_agree() -> None:
    for event in mixed_events(300):
        assert decode_view(orjson.dumps(event)) == view_of(event)


def test_a_field_of_another_type_counts_as_absent() -> None:
    event = mixed_events(1)[0]
    event["responseStatus"] = {"code": "200"}
    event["sourceIPs"] = "10.0.0.1"
    assert decode_view(orjson.dumps(event)) is None
    ready = prepare(orjson.dumps(event))
    assert ready is not None
    view: EventView = ready.view
    assert view.responseStatus is not None
    assert view.responseStatus.code is None
    assert view.sourceIPs == ()


def test_webhook_items_keep_one_line_each_and_a_bad_item_refuses_the_batch() -> None:
    events = mixed_events(3)
    body = (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[\n'
        + b",\n".join(orjson.dumps(e, option=orjson.OPT_INDENT_2) for e in events)
        + b"]}"
    )
    ready = parse_batch(body)
    assert [orjson.loads(r.data) for r in ready] == events
    assert all(b"\n" not in r.data for r in ready)
    with pytest.raises(BatchError, match=r"items\[1\]"):
        parse_batch(
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[%s,{"kind":"Pod"}]}'
            % orjson.dumps(events[0])
        )


# --------------------------------------------------------------------------- archive
def test_text_and_decoded_events_make_the_same_archive(tmp_path: Path) -> None:
    events = mixed_events(2000)
    config = tmp_path / "watch.yaml"
    config.write_text("detectors: {learning_period: '0'}\n")
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    with Archive(plain) as archive:
        archive.hooks.extend(hooks_for(plain, config, in_process=True))
        for i in range(0, len(events), 250):
            archive.append(events[i : i + 250])
    with Archive(fast) as archive:
        archive.hooks.extend(hooks_for(fast, config))
        texts = [orjson.dumps(e) for e in events]
        for i in range(0, len(texts), 250):
            batch = [prepare(t) for t in texts[i : i + 250]]
            archive.append_prepared([r for r in batch if r is not None])
    segments = sorted((plain / "segments").iterdir())
    assert segments
    for path in segments:
        assert path.read_bytes() == (fast / "segments" / path.name).read_bytes()
    plain_index, fast_index = Index(plain / "index.sqlite"), Index(fast / "index.sqlite")
    try:
        for block in plain_index.blocks():
            assert plain_index.block(block) == fast_index.block(block)
    finally:
        plain_index.close()
        fast_index.close()
    alerts = [s.alert for s in AlertStore(plain).read()]
    assert alerts
    assert alerts == [s.alert for s in AlertStore(fast).read()]
    assert baseline_file(plain).read() == baseline_file(fast).read()


# --------------------------------------------------------------------------- detectors
class _NoSkip(Detector):
    """Every event through every detector: what the cheap skip must not change."""

    def _routine(self, view: EventView) -> bool:
        return False


@pytest.mark.parametrize(
    "config",
    [
        {"learning_period": "0"},
        {"learning_period": "0", "new_source_ip": {"include_service_accounts": True}},
        {"learning_period": "1h", "off_hours": {"enabled": True}},
        {"learning_period": "0", "ignore_users": []},
    ],
)
def test_skipping_routine_requests_changes_no_alert_and_no_baseline(
    config: dict[str, Any],
) -> None:
    settings = DetectorsConfig.model_validate(config)
    archived = [ArchivedEvent(i + 1, e) for i, e in enumerate(mixed_events(6000, seed=9))]
    fast, full = Detector(settings), _NoSkip(settings)
    alerts = fast.process(archived)
    assert alerts
    assert alerts == full.process(archived)
    for name in ("secret_readers", "addresses", "windows", "distinct", "sessions", "cooldowns"):
        assert getattr(fast.state, name) == getattr(full.state, name), name
