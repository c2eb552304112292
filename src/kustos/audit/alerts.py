"""Alerts: the value a detector raises, and the append-only file that keeps them.

An :class:`Alert` names who did what to which Secret, when and from where, and the audit
IDs of the events behind it; it never carries a value (detectors only ever read
metadata, and the message is built from names). Alerts are kept in
``DIR/watch/alerts.jsonl`` in the archive folder: one JSON object per line, appended and
``fsync``-ed, never rewritten, so a crash loses at most a line being written (a torn last
line is ignored on read and overwritten by the next append). The 1-based line number is
the alert's sequence number, which the forwarder's cursor counts in.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson

from kustos.errors import FileAccessError, InputError

#: Folder inside the archive where Watch keeps its own state (alerts, baselines, cursors).
WATCH_FOLDER: Final = "watch"
ALERTS_FILE: Final = "alerts.jsonl"


class Severity(StrEnum):
    """How urgently a person should look (syslog and the sinks map these to theirs)."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """One anomaly: the detector, the principal, the Secret (if any) and the evidence."""

    detector: str
    severity: Severity
    time: str
    user: str
    message: str
    source_ip: str | None = None
    namespace: str | None = None
    name: str | None = None
    audit_ids: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The document ``kustos audit alerts --format json`` and the sinks emit."""
        return {
            "detector": self.detector,
            "severity": str(self.severity),
            "time": self.time,
            "user": self.user,
            "source_ip": self.source_ip,
            "namespace": self.namespace,
            "name": self.name,
            "audit_ids": list(self.audit_ids),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Alert:
        """Read back what :meth:`to_json` wrote; ``ValueError``/``TypeError`` on anything else."""
        if not isinstance(doc, dict):
            raise TypeError("not an object")

        def text(key: str) -> str:
            value = doc.get(key)
            if not isinstance(value, str):
                raise TypeError(f"{key}: not a string")
            return value

        def optional(key: str) -> str | None:
            value = doc.get(key)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{key}: not a string")
            return value

        ids = doc.get("audit_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TypeError("audit_ids: not a list of strings")
        return cls(
            detector=text("detector"),
            severity=Severity(text("severity")),
            time=text("time"),
            user=text("user"),
            message=text("message"),
            source_ip=optional("source_ip"),
            namespace=optional("namespace"),
            name=optional("name"),
            audit_ids=tuple(ids),
        )


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert with its 1-based position in the alert file (the forwarding cursor unit)."""

    seq: int
    alert: Alert


def watch_folder(archive_dir: Path) -> Path:
    """``DIR/watch``, where alerts, baselines and forwarding cursors live."""
    return archive_dir / WATCH_FOLDER


class AlertStore:
    """The append-only alert file of one archive folder."""

    def __init__(self, archive_dir: Path) -> None:
        self.path = watch_folder(archive_dir) / ALERTS_FILE

    def append(self, alerts: Iterable[Alert]) -> int:
        """Append *alerts* durably (flushed and synced before returning); return how many."""
        lines = [orjson.dumps(a.to_json()) + b"\n" for a in alerts]
        return self.append_lines(b"".join(lines), len(lines))

    def append_lines(self, data: bytes, count: int) -> int:
        """Append *count* alerts already written as lines (``orjson.dumps(a.to_json())``
        and a newline each: the native detector writes them so) durably; return *count*."""
        if not count:
            return 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise FileAccessError(self.path, "write alerts", exc.strerror or "error") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = _complete_length(fd)
            os.ftruncate(fd, end)  # drop a torn last line left by a crash
            os.lseek(fd, end, os.SEEK_SET)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            raise FileAccessError(self.path, "write alerts", exc.strerror or "error") from exc
        finally:
            os.close(fd)
        return count

    def read(self, after_seq: int = 0) -> Iterator[StoredAlert]:
        """Every stored alert after *after_seq*, in order; a torn last line is skipped."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise FileAccessError(self.path, "read alerts", exc.strerror or "error") from exc
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):
                    return  # a line still being written, or torn by a crash
                if number <= after_seq:
                    continue
                try:
                    alert = Alert.from_json(orjson.loads(line))
                except (ValueError, TypeError) as exc:
                    raise InputError(f"{self.path}:{number}: not an alert ({exc})") from None
                yield StoredAlert(seq=number, alert=alert)

    def count(self) -> int:
        """How many complete alerts the file holds."""
        return sum(1 for _ in self.read())


def _complete_length(fd: int) -> int:
    """The length of *fd*'s content up to and including its last newline."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    step = 4096
    position = size
    while position > 0:
        start = max(0, position - step)
        chunk = os.pread(fd, position - start, start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        position = start
    return 0
