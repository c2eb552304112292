"""Versions of a ManagedSecret and the persisted rotation state machine. Pure.

Every value a ManagedSecret ever held is an immutable Secret ``<secretName>-v<N>``; the
live Secret ``<secretName>`` carries the current one. A rotation is recorded in
``status.rotation`` *before* anything changes and moves through :class:`Step`:

    Pending      version N chosen; its Secret may or may not exist yet
    Created      <secretName>-vN exists (the value is safe: it is in etcd)
    Applied      the external system (PostgreSQL) and the live Secret hold version N
    RollingOut   consumers were told to restart; waiting for their rollouts
    RollingBack  a rollout failed: the live Secret holds the previous version again
    (cleared)    finished: status.currentVersion = N, old versions pruned

Each step is idempotent, so an operator that dies anywhere resumes from the recorded step
on restart: the value of version N is generated once (step Pending writes the Secret with
create, and a retry finds it), applied at most to the same value, and consumers that
already carry the restart annotation for N are not restarted again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from kustos.sensitive import Sensitive

#: Version Secrets are ``<secretName>-v<N>``; N starts at 1.
VERSION_SEPARATOR: Final = "-v"
_HASH_DOMAIN: Final = b"kustos content v1\x00"


def version_secret_name(secret_name: str, number: int) -> str:
    """The immutable Secret holding version *number*."""
    return f"{secret_name}{VERSION_SEPARATOR}{number}"


def content_hash(data: Mapping[str, Sensitive] | Mapping[str, bytes]) -> str:
    """A short fingerprint of a Secret's data: sorted keys and values, SHA-256, 16 hex digits.

    Shown in status and used to detect a change; it identifies a value without revealing
    it (the generated values are random; see docs/rotate.md on low-entropy values).
    """
    digest = hashlib.sha256(_HASH_DOMAIN)
    for key in sorted(data):
        raw = data[key]
        value = raw.reveal() if isinstance(raw, Sensitive) else raw
        digest.update(key.encode())
        digest.update(b"\x00")
        digest.update(len(value).to_bytes(8, "big"))
        digest.update(value)
    return digest.hexdigest()[:16]


class Step(StrEnum):
    """Where an unfinished rotation stands (``status.rotation.step``)."""

    PENDING = "Pending"
    CREATED = "Created"
    APPLIED = "Applied"
    ROLLING_OUT = "RollingOut"
    ROLLING_BACK = "RollingBack"


class Outcome(StrEnum):
    """How a version's rotation ended (``status.versions[].state``)."""

    CURRENT = "Current"
    PREVIOUS = "Previous"
    FAILED = "Failed"  # its rollout failed and the previous version was restored
    ROLLED_BACK_TO = "RestoredByRollback"


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version, as listed in ``status.versions``."""

    number: int
    created: str  # RFC 3339
    content_hash: str
    reason: str
    state: Outcome = Outcome.PREVIOUS
    origin: str = ""  # where the value came from: "generated", a store version, "rollback"
    sources: tuple[tuple[str, str], ...] = ()  # data key -> the store's version of it

    def to_status(self) -> dict[str, Any]:
        """The status entry."""
        out: dict[str, Any] = {
            "number": self.number,
            "created": self.created,
            "contentHash": self.content_hash,
            "reason": self.reason,
            "state": self.state.value,
        }
        if self.origin:
            out["origin"] = self.origin
        if self.sources:
            out["sourceVersions"] = dict(self.sources)
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> VersionRecord:
        """Read one status entry (written by Kustos; unknown states read as Previous)."""
        try:
            state = Outcome(str(raw.get("state", "Previous")))
        except ValueError:
            state = Outcome.PREVIOUS
        return cls(
            number=int(raw.get("number", 0)),
            created=str(raw.get("created", "")),
            content_hash=str(raw.get("contentHash", "")),
            reason=str(raw.get("reason", "")),
            state=state,
            origin=str(raw.get("origin", "")),
            sources=tuple(
                sorted((str(k), str(v)) for k, v in (raw.get("sourceVersions") or {}).items())
            ),
        )


@dataclass(frozen=True, slots=True)
class RotationState:
    """An unfinished rotation (``status.rotation``)."""

    version: int
    previous: int | None
    step: Step
    reason: str
    started: str  # RFC 3339
    rollback: bool = False  # this rotation restores an older version's value (kustos rollback)
    source_version: int | None = None  # for rollbacks: the version whose value is restored
    failure: str = ""  # why the rollout failed (RollingBack)

    def at(self, step: Step, *, failure: str | None = None) -> RotationState:
        """The same rotation at *step*."""
        return replace(self, step=step, failure=self.failure if failure is None else failure)

    def to_status(self) -> dict[str, Any]:
        """The status entry."""
        out: dict[str, Any] = {
            "version": self.version,
            "previousVersion": self.previous,
            "step": self.step.value,
            "reason": self.reason,
            "started": self.started,
        }
        if self.rollback:
            out["rollbackTo"] = self.source_version
        if self.failure:
            out["failure"] = self.failure
        return out

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> RotationState | None:
        """Read ``status.rotation``; ``None`` when no rotation is under way."""
        if not raw or "version" not in raw:
            return None
        previous = raw.get("previousVersion")
        source = raw.get("rollbackTo")
        return cls(
            version=int(raw["version"]),
            previous=int(previous) if previous is not None else None,
            step=Step(str(raw.get("step", Step.PENDING.value))),
            reason=str(raw.get("reason", "")),
            started=str(raw.get("started", "")),
            rollback=source is not None,
            source_version=int(source) if source is not None else None,
            failure=str(raw.get("failure", "")),
        )


def next_number(records: Iterable[VersionRecord], existing: Iterable[int] = ()) -> int:
    """The number of the next version: one more than any version seen anywhere."""
    return max([0, *(r.number for r in records), *existing]) + 1


def finish(
    records: list[VersionRecord], new: VersionRecord, *, keep: int
) -> tuple[list[VersionRecord], list[int]]:
    """Record *new* as current; return the kept records (newest first) and numbers to prune.

    The current version and the one before it are never pruned, whatever ``keep`` says:
    the previous value is what a failed rollout rolls back to.
    """
    others = [
        replace(r, state=Outcome.PREVIOUS) if r.state is Outcome.CURRENT else r
        for r in records
        if r.number != new.number
    ]
    ordered = sorted([replace(new, state=Outcome.CURRENT), *others], key=lambda r: -r.number)
    limit = max(keep, 2)
    return ordered[:limit], [r.number for r in ordered[limit:]]


def mark_failed(records: list[VersionRecord], number: int, why: str) -> list[VersionRecord]:
    """Mark version *number* failed (its rollout failed and it was rolled back)."""
    return [
        replace(r, state=Outcome.FAILED, reason=f"{r.reason}; rolled back: {why}"[:256])
        if r.number == number
        else r
        for r in records
    ]


def rfc3339(moment: dt.datetime) -> str:
    """*moment* as the API server writes times: UTC, seconds, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    """Read an RFC 3339 time written by Kustos or the API server; ``None`` if absent/bad."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None
