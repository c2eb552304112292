"""Sinks on the wire: what a real HTTP server receives from each sender, and how answers map.

Aspects covered: the generic webhook posts the documented JSON over HTTPS with an
idempotency key and an HMAC signature a receiver can recompute; Splunk HEC gets
``Authorization: Splunk <token>`` and one concatenated event object per record with epoch
time and sourcetype; the Elasticsearch bulk body is NDJSON ``create`` actions keyed by the
record key, ending with a newline, and its per-item answer is split into delivered (2xx,
409), retry (429, 5xx) and refused; Loki gets streams with low-cardinality labels and
nanosecond timestamps as strings; 5xx and 429 are retryable, 401 is not; an unreachable
sink is a retryable error naming the sink; the RFC 5424 encoder writes PRI, version,
structured data with escapes and a BOM; credentials come from the environment and never
appear in errors; config mistakes are one line naming the field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kustos.audit.alerts import Severity
from kustos.audit.forwarding import Forwarder
from kustos.audit.sinks.base import Record
from kustos.audit.sinks.http import HttpSender, sign
from kustos.audit.sinks.settings import SyslogSink
from kustos.audit.sinks.syslog import SyslogSender, format_message, frame
from kustos.audit.watching import WatchConfig
from kustos.errors import ConfigError, SinkError
from kustos.testing.pki import ClusterPKI, make_pki
from kustos.testing.processes import free_ports

TOKEN = "hec-token-9f1c2b"
T = dt.datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=dt.UTC)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Capture:
    """A local HTTP(S) server that records requests and answers from a script."""

    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    port: int = 0
    scheme: str = "http"
    #: Bodies over this many bytes get 413, as a proxy or the sink's own limit answers.
    max_body: int | None = None
    #: Answers computed from the request (after the size check), instead of ``answers``.
    respond: Callable[[Received], tuple[int, bytes]] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _serve(capture: Capture, context: ssl.SSLContext | None) -> Iterator[Capture]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            received = Received(self.path, dict(self.headers.items()), body)
            capture.requests.append(received)
            if capture.max_body is not None and length > capture.max_body:
                status, answer = 413, b'{"text":"Content too large"}'
            elif capture.respond is not None:
                status, answer = capture.respond(received)
            else:
                status, answer = capture.answers.pop(0) if capture.answers else (200, b"{}")
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_ports(1)[0]), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        capture.scheme = "https"
    capture.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def http() -> Iterator[Capture]:
    yield from _serve(Capture(), None)


@pytest.fixture
def https(pki: ClusterPKI) -> Iterator[Capture]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.serving.cert, pki.serving.key)
    yield from _serve(Capture(), context)


def records(count: int = 2, stream: str = "alerts") -> list[Record]:
    return [
        Record(
            stream=stream,  # type: ignore[arg-type]
            seq=i,
            key=f"key-{i}",
            time=T + dt.timedelta(seconds=i),
            severity=Severity.HIGH if stream == "alerts" else Severity.INFO,
            doc={"detector": "bulk_read", "user": "mallory", "n": i},
        )
        for i in range(1, count + 1)
    ]


def sender(doc: dict[str, Any]) -> HttpSender:
    config = WatchConfig.model_validate({"sinks": [{"name": "s", **doc}]})
    return HttpSender(config.sinks[0])


# --------------------------------------------------------------------------- webhook
@pytest.mark.asyncio
async def test_webhook_posts_signed_json_over_https(
    https: Capture, pki: ClusterPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_KEY", "hmac-key-1")
    hook = sender(
        {
            "type": "webhook",
            "url": https.url + "/in",
            "ca": str(pki.ca.cert),
            "secret_env": "HOOK_KEY",
        }
    )
    try:
        delivery = await hook.send(records())
    finally:
        await hook.close()
    assert len(delivery.delivered) == 2
    (request,) = https.requests
    assert request.path == "/in"
    assert request.headers["Content-Type"] == "application/json"
    doc = json.loads(request.body)
    assert [r["key"] for r in doc["records"]] == ["key-1", "key-2"]
    assert doc["records"][0]["record"]["detector"] == "bulk_read"
    stamp = request.headers["X-Kustos-Timestamp"]
    assert request.headers["X-Kustos-Signature"] == sign(b"hmac-key-1", stamp, request.body)
    assert len(request.headers["Idempotency-Key"]) == 64


@pytest.mark.asyncio
async def test_webhook_errors_say_whether_to_retry(http: Capture) -> None:
    http.answers = [(503, b"busy"), (401, b"no")]
    hook = sender({"type": "webhook", "url": http.url})
    try:
        with pytest.raises(SinkError, match="503") as busy:
            await hook.send(records())
        with pytest.raises(SinkError, match="401") as refused:
            await hook.send(records())
    finally:
        await hook.close()
    assert busy.value.retryable
    assert not refused.value.retryable


@pytest.mark.asyncio
async def test_an_unreachable_sink_is_retryable_and_named() -> None:
    hook = sender({"type": "webhook", "url": f"http://127.0.0.1:{free_ports(1)[0]}"})
    try:
        with pytest.raises(SinkError, match="sink s") as err:
            await hook.send(records())
    finally:
        await hook.close()
    assert err.value.retryable


# --------------------------------------------------------------------------- splunk
@pytest.mark.asyncio
async def test_splunk_hec_wire_format(http: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    http.answers = [(200, b'{"text":"Success","code":0}')]
    hec = sender({"type": "splunk", "url": http.url, "token_env": "HEC_TOKEN", "index": "k8s"})
    try:
        await hec.send(records(stream="events"))
    finally:
        await hec.close()
    (request,) = http.requests
    assert request.path == "/services/collector/event"
    assert request.headers["Authorization"] == f"Splunk {TOKEN}"
    decoder = json.JSONDecoder()
    text, events, at = request.body.decode(), [], 0
    while at < len(text):
        doc, at = decoder.raw_decode(text, at)
        events.append(doc)
        while at < len(text) and text[at].isspace():
            at += 1
    assert len(events) == 2
    first = events[0]
    assert first["time"] == pytest.approx((T + dt.timedelta(seconds=1)).timestamp())
    assert first["sourcetype"] == "kube:apiserver:audit"
    assert first["index"] == "k8s"
    assert first["event"]["n"] == 1
    assert first["fields"] == {"stream": "events", "key": "key-1"}


@pytest.mark.asyncio
async def test_splunk_busy_is_retryable_and_the_token_is_not_in_the_error(
    http: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    http.answers = [(503, b'{"text":"Server is busy","code":9}')]
    hec = sender({"type": "splunk", "url": http.url, "token_env": "HEC_TOKEN"})
    try:
        with pytest.raises(SinkError) as err:
            await hec.send(records())
    finally:
        await hec.close()
    assert err.value.retryable
    assert TOKEN not in str(err.value)


def test_a_missing_credential_is_one_config_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEC_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HEC_TOKEN is not set"):
        sender({"type": "splunk", "url": "http://x", "token_env": "HEC_TOKEN"})


# --------------------------------------------------------------------------- elasticsearch
@pytest.mark.asyncio
async def test_elasticsearch_bulk_body_and_per_item_results(
    http: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ES_KEY", "es-api-key")
    items = [
        {"create": {"status": 201}},
        {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
        {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
        {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
    ]
    http.answers = [(200, json.dumps({"errors": True, "items": items}).encode())]
    bulk = sender(
        {"type": "elasticsearch", "url": http.url, "index": "audit", "api_key_env": "ES_KEY"}
    )
    try:
        delivery = await bulk.send(records(4))
    finally:
        await bulk.close()
    (request,) = http.requests
    assert request.path == "/_bulk"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers["Authorization"] == "ApiKey es-api-key"
    assert request.body.endswith(b"\n")
    lines = [json.loads(line) for line in request.body.splitlines()]
    assert lines[0] == {"create": {"_index": "audit", "_id": "key-1"}}
    assert lines[1]["@timestamp"] == "2026-03-02T10:00:01.123456Z"
    assert lines[1]["record"]["n"] == 1
    assert [r.key for r in delivery.delivered] == ["key-1", "key-2"]
    assert [r.key for r in delivery.retry] == ["key-3"]
    assert [(r.key, why) for r, why in delivery.refused] == [
        ("key-4", "400 mapper_parsing_exception")
    ]


@pytest.mark.asyncio
async def test_elasticsearch_unreadable_answer_is_retryable(http: Capture) -> None:
    http.answers = [(200, b'{"errors": false, "items": []}')]
    bulk = sender({"type": "elasticsearch", "url": http.url})
    try:
        with pytest.raises(SinkError, match="unreadable bulk answer") as err:
            await bulk.send(records(2))
    finally:
        await bulk.close()
    assert err.value.retryable


# --------------------------------------------------------------------------- loki
@pytest.mark.asyncio
async def test_loki_push_streams_and_labels(http: Capture) -> None:
    http.answers = [(204, b"")]
    loki = sender({"type": "loki", "url": http.url, "labels": {"job": "k"}, "tenant": "team-a"})
    try:
        await loki.send([*records(2), *records(1, stream="events")])
    finally:
        await loki.close()
    (request,) = http.requests
    assert request.path == "/loki/api/v1/push"
    assert request.headers["X-Scope-OrgID"] == "team-a"
    streams = json.loads(request.body)["streams"]
    labels = sorted(json.dumps(s["stream"], sort_keys=True) for s in streams)
    assert labels == [
        '{"job": "k", "severity": "high", "stream": "alerts"}',
        '{"job": "k", "stream": "events"}',
    ]
    alerts = next(s for s in streams if s["stream"]["stream"] == "alerts")
    stamp, line = alerts["values"][0]
    assert stamp == str(int((T + dt.timedelta(seconds=1)).timestamp() * 1e6) * 1000)
    assert json.loads(line)["key"] == "key-1"
    assert "mallory" not in json.dumps([s["stream"] for s in streams])  # users are not labels


# --------------------------------------------------------------------------- syslog
def test_rfc5424_message_and_octet_counting() -> None:
    (record,) = records(1)
    escaped = Record(record.stream, record.seq, 'k"]\\', record.time, Severity.CRITICAL, record.doc)
    message = format_message(escaped, facility=13, hostname="node a", app_name="kustos")
    head, _, body = message.partition(b"\xef\xbb\xbf")
    assert head.startswith(b"<106>1 2026-03-02T10:00:01.123456Z nodea kustos - alert ")
    assert b'[kustos@32473 stream="alerts" seq="1" key="k\\"\\]\\\\" detector="bulk_read"] ' in head
    assert json.loads(body)["n"] == 1
    framed = frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)


def test_syslog_settings_refuse_a_bad_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        SyslogSink.model_validate({"type": "syslog", "name": "s", "address": "nohost"})


# --------------------------------------------------------------------------- end to end
@dataclass(frozen=True)
class Archived:
    seq: int
    event: dict[str, Any]


@dataclass
class Events:
    items: list[Archived]

    def read(self, after_seq: int = 0) -> Iterator[Archived]:
        return (a for a in self.items if a.seq > after_seq)


@pytest.mark.asyncio
async def test_bulk_sink_down_then_partly_failing_receives_everything_once(
    http: Capture, tmp_path: Path
) -> None:
    """A real HTTP server: down (503), then a bulk answer with one 429 item: all once."""
    events = Events(
        [
            Archived(i, {"auditID": f"a{i}", "stage": "ResponseComplete", "verb": "get"})
            for i in range(1, 8)
        ]
    )

    def bulk_answer(statuses: list[int]) -> bytes:
        return json.dumps(
            {"errors": True, "items": [{"create": {"status": s}} for s in statuses]}
        ).encode()

    http.answers = [
        (503, b"unavailable"),
        (200, bulk_answer([201, 429, 201, 201, 201])),  # first batch of 5
        (200, bulk_answer([201])),  # the 429 item alone
        (200, bulk_answer([201, 201])),  # second batch
    ]
    config = WatchConfig.model_validate(
        {"sinks": [{"name": "es", "type": "elasticsearch", "url": http.url, "batch_size": 5,
                    "send": ["events"]}]}
    )  # fmt: skip
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    sink = config.sinks[0]
    forwarder = Forwarder(sink, HttpSender(sink), archive_dir=tmp_path, events=events, sleep=sleep)
    try:
        progress = await forwarder.run_once()
    finally:
        await forwarder.sender.close()
    ids = [
        json.loads(line)["create"]["_id"]
        for request in http.requests
        for line in request.body.splitlines()[::2]
    ]
    assert ids.count("a2:ResponseComplete") == 3  # refused by 503, 429 once, then indexed
    delivered = set(ids)
    assert delivered == {f"a{i}:ResponseComplete" for i in range(1, 8)}
    assert len(http.requests) == 4
    assert (progress.events, progress.retries, len(waits)) == (7, 2, 2)
    assert forwarder.position().events == 7


@pytest.mark.asyncio
async def test_syslog_sender_frames_every_record_on_one_connection() -> None:
    received: list[bytes] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read())  # until the sender's end of file
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = SyslogSink.model_validate(
        {"type": "syslog", "name": "s", "address": f"127.0.0.1:{port}", "hostname": "node-a"}
    )
    try:
        delivery = await SyslogSender(settings).send(records(3))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.02)
    finally:
        server.close()
        await server.wait_closed()
    assert len(delivery.delivered) == 3
    (stream,) = received
    messages = []
    while stream:
        length, _, rest = stream.partition(b" ")
        messages.append(rest[: int(length)])
        stream = rest[int(length) :]
    assert [m.split(b" ")[5] for m in messages] == [b"alert"] * 3
    assert all(m.split(b" ")[2] == b"node-a" for m in messages)


@pytest.mark.asyncio
async def test_syslog_receiver_down_is_retryable() -> None:
    settings = SyslogSink.model_validate(
        {"type": "syslog", "name": "s", "address": f"127.0.0.1:{free_ports(1)[0]}"}
    )
    with pytest.raises(SinkError, match=r"syslog sink s \(127\.0\.0\.1") as err:
        await SyslogSender(settings).send(records(1))
    assert err.value.retryable


# --------------------------------------------------------------------------- 413
def _keys_in(kind: str, body: bytes) -> list[str]:
    """The record keys a request carried, read back from each sink's wire format."""
    if kind == "webhook":
        return [r["key"] for r in json.loads(body)["records"]]
    if kind == "splunk":
        decoder, text, at, found = json.JSONDecoder(), body.decode(), 0, []
        while at < len(text):
            doc, at = decoder.raw_decode(text, at)
            found.append(doc["fields"]["key"])
            while at < len(text) and text[at].isspace():
                at += 1
        return found
    if kind == "elasticsearch":
        return [json.loads(line)["create"]["_id"] for line in body.splitlines()[::2]]
    return [
        json.loads(value[1])["key"]
        for stream in json.loads(body)["streams"]
        for value in stream["values"]
    ]


def _accept_all(received: Received) -> tuple[int, bytes]:
    if received.path == "/_bulk":
        count = len(received.body.splitlines()) // 2
        items = [{"create": {"status": 201}} for _ in range(count)]
        return 200, json.dumps({"errors": False, "items": items}).encode()
    return 200, b'{"text":"Success","code":0}'


@pytest.mark.parametrize("kind", ["webhook", "splunk", "elasticsearch", "loki"])
@pytest.mark.asyncio
async def test_413_splits_the_batch_and_a_record_too_large_alone_is_skipped_and_counted(
    kind: str,
    http: Capture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    http.max_body, http.respond = 1000, _accept_all
    big = "B" * 3000
    events = Events(
        [
            Archived(
                i,
                {
                    "auditID": f"a{i}",
                    "stage": "ResponseComplete",
                    "verb": "get",
                    "userAgent": big if i == 5 else "y" * 200,
                },
            )
            for i in range(1, 10)
        ]
    )
    extra = {"token_env": "HEC_TOKEN"} if kind == "splunk" else {}
    config = WatchConfig.model_validate(
        {"sinks": [{"name": "big", "type": kind, "url": http.url, "batch_size": 8,
                    "send": ["events"], **extra}]}
    )  # fmt: skip
    sink = config.sinks[0]

    async def no_wait(_: float) -> None:
        return None

    forwarder = Forwarder(
        sink, HttpSender(sink), archive_dir=tmp_path, events=events, sleep=no_wait
    )
    try:
        progress = await forwarder.run_once()
    finally:
        await forwarder.sender.close()
    accepted = [
        key
        for request in http.requests
        if len(request.body) <= 1000
        for key in _keys_in(kind, request.body)
    ]
    expected = [f"a{i}:ResponseComplete" for i in range(1, 10) if i != 5]
    assert sorted(accepted) == sorted(expected)  # every other record, each once
    assert len(http.requests) < 20  # halves, not a loop
    assert progress.refused == 1
    assert forwarder.position().events == 9  # skipped, not stuck
    refusals = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
    assert len(refusals) == 1
    assert "a5:ResponseComplete" in refusals[0]
    assert "413 payload too large" in refusals[0]
    assert big not in caplog.text


# --------------------------------------------------------------------------- HEC ack
@dataclass
class Hec:
    """HEC with indexer acknowledgement: ack ids per channel, indexed after some polls."""

    polls_before_indexed: int = 1
    never: set[int] = field(default_factory=set)
    next_id: int = 0
    polls: dict[int, int] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)

    def __call__(self, received: Received) -> tuple[int, bytes]:
        channel = received.headers.get("X-Splunk-Request-Channel", "")
        self.channels.add(channel)
        if received.path.startswith("/services/collector/event"):
            ack, self.next_id = self.next_id, self.next_id + 1
            return 200, json.dumps({"text": "Success", "code": 0, "ackId": ack}).encode()
        assert received.path == f"/services/collector/ack?channel={channel}"
        answer = {}
        for ack in json.loads(received.body)["acks"]:
            self.polls[ack] = self.polls.get(ack, 0) + 1
            answer[str(ack)] = ack not in self.never and self.polls[ack] > self.polls_before_indexed
        return 200, json.dumps({"acks": answer}).encode()


def _hec_forwarder(http: Capture, tmp_path: Path, count: int, **ack: Any) -> Forwarder:
    events = Events(
        [
            Archived(i, {"auditID": f"a{i}", "stage": "ResponseComplete"})
            for i in range(1, count + 1)
        ]
    )
    config = WatchConfig.model_validate(
        {"sinks": [{"name": "hec", "type": "splunk", "url": http.url, "token_env": "HEC_TOKEN",
                    "batch_size": 2, "send": ["events"], "ack": True,
                    "ack_poll_seconds": 0.02, **ack}]}
    )  # fmt: skip
    sink = config.sinks[0]

    async def no_wait(_: float) -> None:
        return None

    return Forwarder(sink, HttpSender(sink), archive_dir=tmp_path, events=events, sleep=no_wait)


@pytest.mark.asyncio
async def test_splunk_ack_waits_for_the_indexer_on_one_channel(
    http: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    hec = Hec(polls_before_indexed=2)
    http.respond = hec
    forwarder = _hec_forwarder(http, tmp_path, 4)
    try:
        progress = await forwarder.run_once()
    finally:
        await forwarder.sender.close()
    posts = [r for r in http.requests if r.path == "/services/collector/event"]
    polls = [r for r in http.requests if r.path.startswith("/services/collector/ack")]
    assert len(posts) == 2
    assert len(polls) == 6  # two unindexed answers, then indexed, per batch
    (channel,) = hec.channels
    assert len(channel) == 36  # a UUID, the same on every request
    assert all(r.headers["Authorization"] == f"Splunk {TOKEN}" for r in http.requests)
    assert json.loads(polls[0].body) == {"acks": [0]}
    assert (progress.events, progress.retries) == (4, 0)


@pytest.mark.asyncio
async def test_splunk_ack_timeout_resends_the_batch(
    http: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    http.respond = Hec(polls_before_indexed=0, never={0})  # the first post is lost
    forwarder = _hec_forwarder(http, tmp_path, 2, ack_timeout_seconds=0.1)
    try:
        progress = await forwarder.run_once()
    finally:
        await forwarder.sender.close()
    posts = [r for r in http.requests if r.path == "/services/collector/event"]
    assert len(posts) == 2  # sent again after the timeout
    assert _keys_in("splunk", posts[0].body) == _keys_in("splunk", posts[1].body)
    assert (progress.events, progress.retries) == (2, 1)
    assert forwarder.position().events == 2


@pytest.mark.asyncio
async def test_splunk_ack_on_a_token_without_ack_is_one_clear_refusal(
    http: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    http.answers = [(200, b'{"text":"Success","code":0}')]
    forwarder = _hec_forwarder(http, tmp_path, 1)
    try:
        with pytest.raises(SinkError, match="without an ackId") as refused:
            await forwarder.run_once()
    finally:
        await forwarder.sender.close()
    assert not refused.value.retryable
    assert TOKEN not in str(refused.value)
