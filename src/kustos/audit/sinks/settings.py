"""The ``sinks:`` section of the Watch config file: where records are forwarded.

Pydantic models (the config file is untrusted input). Credentials never sit in the file:
a sink names the environment variable that holds its token or password (``token_env``),
and the value is read when the forwarder starts, wrapped in ``Sensitive``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: What a sink can be sent: the archived audit events, the alerts, or both.
Stream = Literal["events", "alerts"]
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ENV: Final = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class _Sink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    send: tuple[Stream, ...] = ("events", "alerts")
    batch_size: int = Field(default=200, ge=1, le=10_000)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: A PEM bundle of CAs to trust (TLS); the system's CAs when absent.
    ca: Path | None = None
    #: A client certificate and key (mutual TLS), both or neither.
    client_cert: Path | None = None
    client_key: Path | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a sink name is lower-case letters, digits and '-' (it names a file)")
        return value

    @field_validator("secret_env", "token_env", "api_key_env", "password_env", check_fields=False)
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("send")
    @classmethod
    def _send(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("send nothing? give events, alerts or both")
        return value


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV.match(value):
        raise ValueError("the name of an environment variable (A-Z, 0-9, _), not a value")
    return value


class SyslogSink(_Sink):
    """RFC 5424 messages over TCP (RFC 6587 octet counting) or TLS (RFC 5425)."""

    type: Literal["syslog"]
    address: str
    tls: bool = False
    facility: int = Field(default=13, ge=0, le=23)  # 13: log audit
    hostname: str = "-"
    app_name: str = "kustos"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("address is HOST:PORT")
        return value

    @field_validator("app_name")
    @classmethod
    def _app(cls, value: str) -> str:
        if not 0 < len(value) <= 48 or not value.isascii() or " " in value:
            raise ValueError("app_name is 1-48 printable ASCII characters (RFC 5424)")
        return value


class _HttpSink(_Sink):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("url is http(s)://host[:port][/path]")
        return value.rstrip("/")


class WebhookSink(_HttpSink):
    """A generic HTTPS webhook: JSON batches signed with HMAC-SHA256."""

    type: Literal["webhook"]
    #: The environment variable holding the HMAC key; unsigned without it.
    secret_env: str | None = None


class SplunkSink(_HttpSink):
    """Splunk HTTP Event Collector (``/services/collector/event``)."""

    type: Literal["splunk"]
    token_env: str
    index: str | None = None
    source: str = "kustos"
    #: Indexer acknowledgement: a batch counts as delivered only once HEC says it is indexed
    #: (``/services/collector/ack`` on this sender's channel); unacknowledged batches are
    #: sent again after ``ack_timeout_seconds``. The HEC token must have ack enabled.
    ack: bool = False
    ack_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    ack_poll_seconds: float = Field(default=1.0, gt=0, le=60)


class ElasticsearchSink(_HttpSink):
    """Elasticsearch or OpenSearch ``_bulk`` (``create`` actions, id = record key)."""

    type: Literal["elasticsearch"]
    index: str = "kustos-audit"
    api_key_env: str | None = None
    username: str | None = None
    password_env: str | None = None


class LokiSink(_HttpSink):
    """Grafana Loki push API (JSON), labels kept low-cardinality."""

    type: Literal["loki"]
    labels: dict[str, str] = Field(default_factory=lambda: {"job": "kustos"})
    tenant: str | None = None


SinkSettings = Annotated[
    SyslogSink | WebhookSink | SplunkSink | ElasticsearchSink | LokiSink,
    Field(discriminator="type"),
]


class RetrySettings(BaseModel):
    """Backoff between failed deliveries: initial, doubled up to max, with jitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_seconds: float = Field(default=1.0, gt=0, le=600)
    max_seconds: float = Field(default=60.0, gt=0, le=3600)
    factor: float = Field(default=2.0, ge=1, le=10)
    jitter: float = Field(default=0.2, ge=0, le=1)
