"""HTTP sinks: a generic webhook, Splunk HEC, Elasticsearch/OpenSearch ``_bulk`` and Loki.

Each sink is an encoder (records → path, headers, body; pure) and an interpreter (the
answer → a :class:`~kustos.audit.sinks.base.Delivery`); :class:`HttpSender` is the one
adapter that posts with ``httpx`` and turns transport failures into ``SinkError``.

Wire formats (the vendors' documentation; summarised in ``docs/audit-alerts.md``):

- webhook: ``POST url``, ``{"records": [{"stream", "seq", "key", "record"}]}``, headers
  ``Idempotency-Key`` (the batch's keys, hashed), ``X-Kustos-Timestamp`` and, with a key,
  ``X-Kustos-Signature: sha256=HMAC-SHA256(key, "<timestamp>." + body)``;
- Splunk HEC: ``POST url/services/collector/event``, ``Authorization: Splunk <token>``,
  one ``{"time", "host", "source", "sourcetype", "index"?, "event", "fields"}`` object per
  record, concatenated; HEC answers 503 when busy. With ``ack: true`` every request
  carries ``X-Splunk-Request-Channel`` (a UUID per sender), the answer's ``ackId`` is
  polled at ``/services/collector/ack?channel=…`` with ``{"acks": [id]}`` until
  ``{"acks": {"id": true}}``, and a batch not acknowledged in time is sent again;
- Elasticsearch ``_bulk``: NDJSON ``{"create": {"_index", "_id": key}}`` then the document,
  final newline, ``application/x-ndjson``; the answer is 200 even when items failed, so
  each item's status is read: 2xx and 409 (already indexed by an earlier attempt) are
  delivered, 429 and 5xx are retried alone, anything else is refused and logged;
- Loki: ``POST url/loki/api/v1/push``, JSON ``{"streams": [{"stream": labels, "values":
  [["<unix ns>", "<json line>"]]}]}``; labels are the configured ones plus ``stream`` and,
  for alerts, ``severity`` (never a user or a Secret name: those are high-cardinality).

Every HTTP sink: a 413 (Payload Too Large) splits the batch in halves, recursively; a
single record still too large is refused for good (counted and logged by key), never
retried.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import httpx
import orjson

from kustos.audit.sinks.base import Delivery, Record
from kustos.audit.sinks.settings import (
    ElasticsearchSink,
    LokiSink,
    SinkSettings,
    SplunkSink,
    WebhookSink,
    _Sink,
)
from kustos.errors import ConfigError, FileAccessError, SinkError, quote_foreign
from kustos.sensitive import Sensitive

_log = logging.getLogger(__name__)

JSON: Final = "application/json"
TOO_LARGE: Final = 413
_RETRY_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def tls_context(settings: _Sink, *, what: str) -> ssl.SSLContext:
    """A client TLS context trusting ``settings.ca`` (or the system) with optional mTLS."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca) if settings.ca is not None else None
        )
        if (settings.client_cert is None) != (settings.client_key is None):
            raise ConfigError(f"{what}: give client_cert and client_key together")
        if settings.client_cert is not None and settings.client_key is not None:
            context.load_cert_chain(str(settings.client_cert), str(settings.client_key))
    except (OSError, ssl.SSLError) as exc:
        path = settings.ca or settings.client_cert or "TLS material"
        raise FileAccessError(path, f"load TLS material for {what}", str(exc)[:120]) from exc
    return context


def secret_from_env(name: str | None, *, what: str) -> Sensitive | None:
    """The credential in environment variable *name*; ``ConfigError`` if it is unset."""
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{what}: environment variable {name} is not set")
    return Sensitive(value)


def _retryable(status: int) -> bool:
    return status in _RETRY_STATUS or status >= 500


def _whole(status: int, text: str, records: Sequence[Record], *, where: str) -> Delivery:
    """A sink that accepts or refuses the batch whole."""
    if 200 <= status < 300:
        return Delivery(delivered=tuple(records))
    raise SinkError(f"{where}: HTTP {status}: {quote_foreign(text)}", retryable=_retryable(status))


# --------------------------------------------------------------------------- encoders
Request = tuple[str, dict[str, str], bytes]


class Webhook:
    """Generic JSON webhook, optionally HMAC-signed."""

    def __init__(self, settings: WebhookSink, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._key = secret_from_env(settings.secret_env, what=f"sink {settings.name}")
        self._clock = clock

    def encode(self, records: Sequence[Record]) -> Request:
        body = orjson.dumps({"records": [r.envelope() for r in records]})
        keys = "\n".join(r.key for r in records).encode()
        stamp = str(int(self._clock()))
        headers = {
            "Content-Type": JSON,
            "Idempotency-Key": hashlib.sha256(keys).hexdigest(),
            "X-Kustos-Timestamp": stamp,
        }
        if self._key is not None:
            mac = hmac.new(self._key.reveal(), stamp.encode() + b"." + body, hashlib.sha256)
            headers["X-Kustos-Signature"] = "sha256=" + mac.hexdigest()
        return self.settings.url, headers, body

    def interpret(self, status: int, text: str, records: Sequence[Record]) -> Delivery:
        return _whole(status, text, records, where=f"webhook sink {self.settings.name}")


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Kustos-Signature`` a receiver recomputes to check a webhook body."""
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Splunk:
    """Splunk HTTP Event Collector, JSON event endpoint."""

    def __init__(self, settings: SplunkSink, *, hostname: str | None = None) -> None:
        self.settings = settings
        token = secret_from_env(settings.token_env, what=f"sink {settings.name}")
        if token is None:  # pragma: no cover - token_env is required by the settings model
            raise ConfigError(f"sink {settings.name}: token_env is required")
        self._token = token
        self._host = hostname or socket.gethostname()
        #: The channel HEC keeps this sender's acknowledgements on (one per sender).
        self.channel = str(uuid.uuid4())

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": JSON, "Authorization": "Splunk " + self._token.reveal_text()}
        if self.settings.ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        return headers

    def encode(self, records: Sequence[Record]) -> Request:
        parts = []
        for r in records:
            doc: dict[str, Any] = {
                "time": round(r.epoch, 6),
                "host": self._host,
                "source": self.settings.source,
                "sourcetype": "kustos:alert" if r.stream == "alerts" else "kube:apiserver:audit",
                "event": r.doc,
                "fields": {"stream": r.stream, "key": r.key},
            }
            if self.settings.index is not None:
                doc["index"] = self.settings.index
            parts.append(orjson.dumps(doc))
        url = self.settings.url + "/services/collector/event"
        return url, self._headers(), b"\n".join(parts)

    def interpret(self, status: int, text: str, records: Sequence[Record]) -> Delivery:
        return _whole(status, text, records, where=f"Splunk sink {self.settings.name}")

    def ack_id(self, text: str) -> int:
        """The ``ackId`` of an accepted batch; ``SinkError`` when HEC gave none."""
        try:
            ack = orjson.loads(text)["ackId"]
            if not isinstance(ack, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SinkError(
                f"Splunk sink {self.settings.name}: HEC answered without an ackId (is indexer "
                "acknowledgement enabled on this token?)",
                retryable=False,
            ) from None
        return ack

    def ack_request(self, ack_ids: Sequence[int]) -> Request:
        """The poll of ``/services/collector/ack`` for *ack_ids* on this channel."""
        url = f"{self.settings.url}/services/collector/ack?channel={self.channel}"
        return url, self._headers(), orjson.dumps({"acks": list(ack_ids)})

    def acknowledged(self, status: int, text: str) -> set[int]:
        """The ack ids HEC says are indexed; ``SinkError`` on an error answer."""
        where = f"Splunk sink {self.settings.name}"
        if not 200 <= status < 300:
            raise SinkError(
                f"{where}: ack poll: HTTP {status}: {quote_foreign(text)}",
                retryable=_retryable(status),
            )
        try:
            acks = orjson.loads(text)["acks"]
            return {int(k) for k, v in acks.items() if v is True}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SinkError(f"{where}: unreadable ack answer", retryable=True) from None


class Elasticsearch:
    """Elasticsearch/OpenSearch bulk API with per-item results."""

    def __init__(self, settings: ElasticsearchSink) -> None:
        self.settings = settings
        what = f"sink {settings.name}"
        self._api_key = secret_from_env(settings.api_key_env, what=what)
        self._password = secret_from_env(settings.password_env, what=what)

    def encode(self, records: Sequence[Record]) -> Request:
        lines = []
        for r in records:
            lines.append(orjson.dumps({"create": {"_index": self.settings.index, "_id": r.key}}))
            stamp = r.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lines.append(orjson.dumps({"@timestamp": stamp, **r.envelope()}))
        headers = {"Content-Type": "application/x-ndjson"}
        if self._api_key is not None:
            headers["Authorization"] = "ApiKey " + self._api_key.reveal_text()
        elif self.settings.username is not None and self._password is not None:
            pair = f"{self.settings.username}:{self._password.reveal_text()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return self.settings.url + "/_bulk", headers, b"\n".join(lines) + b"\n"

    def interpret(self, status: int, text: str, records: Sequence[Record]) -> Delivery:
        where = f"Elasticsearch sink {self.settings.name}"
        if not 200 <= status < 300:
            return _whole(status, text, records, where=where)
        try:
            answer = orjson.loads(text)
            items = answer["items"]
            if not isinstance(items, list) or len(items) != len(records):
                raise TypeError("items do not match the batch")
        except (ValueError, KeyError, TypeError) as exc:
            raise SinkError(f"{where}: unreadable bulk answer ({exc})", retryable=True) from None
        delivered, retry, refused = [], [], []
        for record, item in zip(records, items, strict=True):
            result = next(iter(item.values())) if isinstance(item, Mapping) and item else {}
            code = result.get("status", 0) if isinstance(result, Mapping) else 0
            if 200 <= code < 300 or code == 409:
                delivered.append(record)
            elif _retryable(code):
                retry.append(record)
            else:
                error = result.get("error", {}) if isinstance(result, Mapping) else {}
                kind = error.get("type", "error") if isinstance(error, Mapping) else "error"
                refused.append((record, f"{code} {kind}"))
        return Delivery(delivered=tuple(delivered), retry=tuple(retry), refused=tuple(refused))


class Loki:
    """Grafana Loki push API, JSON."""

    def __init__(self, settings: LokiSink) -> None:
        self.settings = settings

    def encode(self, records: Sequence[Record]) -> Request:
        streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for r in records:
            labels = {**self.settings.labels, "stream": r.stream}
            if r.stream == "alerts":
                labels["severity"] = str(r.severity)
            key = tuple(sorted(labels.items()))
            nanos = str(int(r.time.timestamp()) * 1_000_000_000 + r.time.microsecond * 1000)
            streams.setdefault(key, []).append([nanos, orjson.dumps(r.envelope()).decode()])
        body = orjson.dumps(
            {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}
        )
        headers = {"Content-Type": JSON}
        if self.settings.tenant is not None:
            headers["X-Scope-OrgID"] = self.settings.tenant
        return self.settings.url + "/loki/api/v1/push", headers, body

    def interpret(self, status: int, text: str, records: Sequence[Record]) -> Delivery:
        return _whole(status, text, records, where=f"Loki sink {self.settings.name}")


Encoder = Webhook | Splunk | Elasticsearch | Loki


def encoder_for(settings: SinkSettings) -> Encoder:
    """The encoder of an HTTP sink's settings."""
    if isinstance(settings, WebhookSink):
        return Webhook(settings)
    if isinstance(settings, SplunkSink):
        return Splunk(settings)
    if isinstance(settings, ElasticsearchSink):
        return Elasticsearch(settings)
    if isinstance(settings, LokiSink):
        return Loki(settings)
    raise TypeError(f"not an HTTP sink: {settings.type}")


class HttpSender:
    """Post encoded batches with one ``httpx.AsyncClient``."""

    def __init__(self, settings: SinkSettings, encoder: Encoder | None = None) -> None:
        self.name = settings.name
        self.encoder = encoder if encoder is not None else encoder_for(settings)
        verify: ssl.SSLContext | bool = True
        if settings.ca is not None or settings.client_cert is not None:
            verify = tls_context(settings, what=f"sink {settings.name}")
        self._client = httpx.AsyncClient(verify=verify, timeout=settings.timeout_seconds)

    async def send(self, records: Sequence[Record]) -> Delivery:
        """Post one batch; ``SinkError`` when the sink is unreachable or refused it whole.

        A 413 (payload too large) splits the batch in halves, each posted (and split
        again) on its own; a record too large alone is refused for good with that reason,
        so the forwarder counts it, logs its key and goes on: never a loop.
        """
        url, headers, body = self.encoder.encode(records)
        response = await self._post(url, headers, body)
        if response.status_code == TOO_LARGE:
            if len(records) == 1:
                reason = f"413 payload too large: {len(body)} bytes alone exceed the sink's limit"
                return Delivery(refused=((records[0], reason),))
            half = len(records) // 2
            first = await self.send(records[:half])
            second = await self.send(records[half:])
            return Delivery(
                delivered=first.delivered + second.delivered,
                retry=first.retry + second.retry,
                refused=first.refused + second.refused,
            )
        delivery = self.encoder.interpret(response.status_code, response.text, records)
        if isinstance(self.encoder, Splunk) and self.encoder.settings.ack:
            return await self._acknowledged(self.encoder, response.text, delivery)
        return delivery

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        try:
            return await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = quote_foreign(str(exc) or type(exc).__name__, 120)
            raise SinkError(f"sink {self.name}: {reason}", retryable=True) from exc

    async def _acknowledged(self, hec: Splunk, text: str, delivery: Delivery) -> Delivery:
        """Wait for HEC to say the batch is indexed; past the timeout, send it again."""
        ack = hec.ack_id(text)
        deadline = time.monotonic() + hec.settings.ack_timeout_seconds
        while True:
            await asyncio.sleep(hec.settings.ack_poll_seconds)
            url, headers, body = hec.ack_request([ack])
            response = await self._post(url, headers, body)
            if ack in hec.acknowledged(response.status_code, response.text):
                return delivery
            if time.monotonic() >= deadline:
                _log.warning(
                    "sink %s: batch (ack %d) not acknowledged within %gs; sending it again",
                    self.name,
                    ack,
                    hec.settings.ack_timeout_seconds,
                )
                return Delivery(retry=delivery.delivered, refused=delivery.refused)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
