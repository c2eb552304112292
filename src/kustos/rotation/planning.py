"""When a ManagedSecret rotates next, and why. Pure: the clock is an argument.

The reasons, earliest wins:
- ``Initial``: no version exists yet.
- ``SpecChanged``: the generators or the type changed since the current version was made
  (a hash of ``spec.data`` and ``spec.type`` is kept in status; rollout or history
  settings do not count).
- ``Scheduled``: ``every`` after the last rotation, or the next ``schedule`` time after it.
- ``MaxAge``: the current version is older than ``maxAge``.
- ``CertificateRenewal``: an x509 value reaches its ``renewBefore`` point (read from the
  certificate itself, default two thirds of its lifetime, as cert-manager), or expired.

A due time is then moved to the next moment the ``window`` is open. An unfinished
rotation (``status.rotation``) always resumes at once, window or not: half a rotation is
worse than one outside hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import orjson

from kustos.crypto.certificates import CertFacts, renewal_time
from kustos.durations import parse_duration
from kustos.rotation.schedules import ALWAYS, parse_cron, parse_window
from kustos.rotation.spec import X509, ManagedSecretSpec


class Reason(StrEnum):
    """Why a version was made."""

    INITIAL = "Initial"
    SPEC_CHANGED = "SpecChanged"
    SCHEDULED = "Scheduled"
    MAX_AGE = "MaxAge"
    CERTIFICATE_RENEWAL = "CertificateRenewal"
    MANUAL = "Manual"
    RESUME = "Resume"
    ROLLBACK = "Rollback"
    SOURCE_CHANGED = "SourceChanged"


@dataclass(frozen=True, slots=True)
class Due:
    """The next rotation: when, and why (``at <= now`` means now)."""

    at: dt.datetime
    reason: Reason
    detail: str = ""
    #: A certificate's expiry: the window is ignored if waiting for it would let it expire.
    deadline: dt.datetime | None = None

    def is_due(self, now: dt.datetime) -> bool:
        """True if the rotation should start at *now*."""
        return self.at <= now


def data_spec_hash(spec: ManagedSecretSpec) -> str:
    """Fingerprint of what shapes the values (``data`` and ``type``), for SpecChanged."""
    doc = {"type": spec.type.value, "data": spec.model_dump(mode="json", by_alias=True)["data"]}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def next_rotation(
    spec: ManagedSecretSpec,
    *,
    now: dt.datetime,
    last_rotation: dt.datetime | None,
    current_created: dt.datetime | None,
    stored_spec_hash: str | None,
    certificates: Mapping[str, CertFacts] | None = None,
) -> Due | None:
    """The next rotation of *spec*, or ``None`` if nothing ever makes it due.

    *certificates* maps a data key holding an x509 value to the facts read from the live
    certificate (the caller reads the Secret; a missing or unreadable certificate is due).
    """
    if last_rotation is None or current_created is None:
        return Due(now, Reason.INITIAL, "no version exists yet")
    if stored_spec_hash is not None and stored_spec_hash != data_spec_hash(spec):
        return Due(now, Reason.SPEC_CHANGED, "spec.data or spec.type changed")
    candidates: list[Due] = []
    rotation = spec.rotation
    if rotation.every is not None:
        every = parse_duration(rotation.every)
        candidates.append(Due(last_rotation + every, Reason.SCHEDULED, f"every {rotation.every}"))
    if rotation.schedule is not None:
        at = parse_cron(rotation.schedule).next_after(last_rotation)
        candidates.append(Due(at, Reason.SCHEDULED, f"schedule {rotation.schedule}"))
    if rotation.max_age is not None:
        at = current_created + parse_duration(rotation.max_age)
        candidates.append(Due(at, Reason.MAX_AGE, f"maxAge {rotation.max_age}"))
    certificates = certificates or {}
    for key, gen in spec.data.items():
        if not isinstance(gen.config, X509):
            continue
        facts = certificates.get(key)
        if facts is None:
            missing = f"{key}: no readable certificate"
            candidates.append(Due(now, Reason.CERTIFICATE_RENEWAL, missing))
            continue
        before = parse_duration(gen.config.renew_before) if gen.config.renew_before else None
        at = renewal_time(facts, before)
        detail = f"{key} expires {facts.not_after.isoformat()}"
        candidates.append(Due(at, Reason.CERTIFICATE_RENEWAL, detail, facts.not_after))
    if not candidates:
        return None
    first = min(candidates, key=lambda d: d.at)
    window = (
        parse_window(rotation.window.hours, rotation.window.days) if rotation.window else ALWAYS
    )
    opens = window.next_open(max(first.at, now))
    if first.deadline is not None and opens >= first.deadline:
        return first  # waiting for the window would let the certificate expire
    return Due(opens, first.reason, first.detail, first.deadline)
