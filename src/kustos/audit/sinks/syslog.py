"""Syslog: RFC 5424 messages, octet-counted (RFC 6587 §3.4.1) over TCP or TLS (RFC 5425).

Each record is one message::

    <PRI>1 TIMESTAMP HOST APP - MSGID [kustos@32473 stream=".." seq=".." key=".."] BOM{json}

PRI is ``facility * 8 + severity`` (alerts map critical/high/medium/low/info to 2/3/4/5/6;
audit events are informational), MSGID is ``alert`` or ``event``, the structured data
carries the record's identity and the message is the record's JSON, UTF-8 with a BOM.
TCP syslog has no acknowledgement: a batch counts as delivered once written and flushed
on a connection that closed cleanly, and a failure anywhere resends the whole batch
(at least once). One connection per batch, so a receiver that restarted is reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Sequence
from typing import Final

import orjson

from kustos.audit.alerts import Severity
from kustos.audit.sinks.base import Delivery, Record
from kustos.audit.sinks.settings import SyslogSink
from kustos.errors import SinkError

#: Private enterprise number reserved for documentation (RFC 5612); SD-ID ``kustos@32473``.
SD_ID: Final = "kustos@32473"
BOM: Final = b"\xef\xbb\xbf"
SEVERITY: Final = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}


def _sd_value(text: str) -> str:
    """Escape ``"``, ``\\`` and ``]`` as RFC 5424 §6.3.3 requires."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(text: str, limit: int) -> str:
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)
    return clean[:limit] or "-"


def format_message(record: Record, *, facility: int, hostname: str, app_name: str) -> bytes:
    """One RFC 5424 message for *record* (without framing)."""
    pri = facility * 8 + SEVERITY[record.severity]
    stamp = record.time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    msgid = "alert" if record.stream == "alerts" else "event"
    params = {"stream": record.stream, "seq": str(record.seq), "key": record.key}
    if record.stream == "alerts":
        params["detector"] = str(record.doc.get("detector", ""))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    header = (
        f"<{pri}>1 {stamp} {_header_field(hostname, 255)} {_header_field(app_name, 48)}"
        f" - {msgid} {sd} "
    )
    return header.encode("ascii") + BOM + orjson.dumps(record.doc)


def frame(message: bytes) -> bytes:
    """Octet-counting framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogSender:
    """Send records to one syslog receiver, a fresh connection per batch."""

    def __init__(self, settings: SyslogSink) -> None:
        self.name = settings.name
        self.settings = settings
        host, _, port = settings.address.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._hostname = settings.hostname if settings.hostname != "-" else socket.gethostname()
        self._tls = _tls_context(settings) if settings.tls else None

    async def send(self, records: Sequence[Record]) -> Delivery:
        """Write every record, flush, close; ``SinkError`` (retryable) on any failure."""
        payload = b"".join(
            frame(
                format_message(
                    r,
                    facility=self.settings.facility,
                    hostname=self._hostname,
                    app_name=self.settings.app_name,
                )
            )
            for r in records
        )
        timeout = self.settings.timeout_seconds
        where = f"syslog sink {self.name} ({self.settings.address})"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
                try:
                    writer.write(payload)
                    await writer.drain()
                    if self._tls is None and writer.can_write_eof():
                        writer.write_eof()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.wait_closed()
                del reader
        except TimeoutError as exc:
            raise SinkError(f"{where}: no answer within {timeout:g}s", retryable=True) from exc
        except ssl.SSLError as exc:
            raise SinkError(f"{where}: TLS failed: {exc.reason}", retryable=True) from exc
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SinkError(f"{where}: {reason}", retryable=True) from exc
        return Delivery(delivered=tuple(records))

    async def close(self) -> None:
        """Nothing stays open between batches."""


def _tls_context(settings: SyslogSink) -> ssl.SSLContext:
    from kustos.audit.sinks.http import tls_context  # noqa: PLC0415 - one TLS setup

    return tls_context(settings, what=f"syslog sink {settings.name}")
