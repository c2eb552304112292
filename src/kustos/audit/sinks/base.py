"""What a sink is given and what it answers: records, deliveries, the sender protocol."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kustos.audit.alerts import Severity
from kustos.audit.sinks.settings import Stream


@dataclass(frozen=True, slots=True)
class Record:
    """One thing to forward: an archived audit event or an alert, with its stable key.

    ``key`` identifies the record across retries (``auditID:stage`` for events, the
    alert's position for alerts), so that sinks which can deduplicate (Elasticsearch ids,
    webhook idempotency keys) do; ``doc`` is already free of values (events are stored
    stripped, alerts carry names only).
    """

    stream: Stream
    seq: int
    key: str
    time: dt.datetime
    severity: Severity
    doc: Mapping[str, Any]

    @property
    def epoch(self) -> float:
        """Seconds since the epoch, as Splunk wants the time."""
        return self.time.timestamp()

    def envelope(self) -> dict[str, Any]:
        """The JSON every HTTP sink carries per record."""
        return {"stream": self.stream, "seq": self.seq, "key": self.key, "record": self.doc}


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to a batch: records that are in, records to try again, records refused.

    A sink that accepts or refuses a batch whole reports it whole; the bulk API reports
    item by item, so a retry resends only ``retry``. ``refused`` records will never be
    accepted (a mapping error, say); they are logged by key and skipped.
    """

    delivered: tuple[Record, ...] = ()
    retry: tuple[Record, ...] = ()
    refused: tuple[tuple[Record, str], ...] = field(default=())


class Sender(Protocol):
    """Deliver records to one sink; raise ``SinkError`` when the whole batch failed."""

    name: str

    async def send(self, records: Sequence[Record]) -> Delivery: ...

    async def close(self) -> None: ...
