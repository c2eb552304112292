"""Credentials past their date: certificates and ManagedSecrets (KST047-KST049).

Purely data. Certificates are read with the same code the rotation engine uses to decide
renewals (:mod:`kustos.crypto.certificates`), so ``kustos scan`` finds an expired or
expiring credential whoever manages it. Only dates, names and key names reach a message;
never a certificate or any other value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, Final

from kustos.durations import parse_duration
from kustos.errors import InputError
from kustos.kube.objects import KubeObject, is_map
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.findings import Finding, Rule, Severity
from kustos.sensitive import Sensitive

#: A certificate expiring within this many days is reported (KST048).
EXPIRY_WARNING_DAYS: Final = 30
#: Keys that hold certificates in the Secret types that carry them.
CERTIFICATE_KEYS: Final = ("tls.crt", "ca.crt")
_PEM: Final = b"-----BEGIN CERTIFICATE-----"

EXPIRED = Rule(
    id="KST047",
    family="secrets",
    severity=Severity.HIGH,
    title="Certificate in a Secret has expired",
    rationale=(
        "Clients refuse an expired certificate: whatever serves it is failing now, or will "
        "the moment it restarts and reloads the Secret."
    ),
    remediation=(
        "Issue a new certificate; let a ManagedSecret with an x509 generator (or "
        "cert-manager) renew it before expiry."
    ),
    references=("https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets",),
)
EXPIRING = Rule(
    id="KST048",
    family="secrets",
    severity=Severity.MEDIUM,
    title="Certificate in a Secret expires within 30 days",
    rationale=(
        "A certificate nobody renews expires on a date everybody forgets. Thirty days leaves "
        "time to renew and roll the workloads that use it."
    ),
    remediation="Renew it now, or manage it with a ManagedSecret x509 generator.",
)
MANAGED_TOO_OLD = Rule(
    id="KST049",
    family="secrets",
    severity=Severity.MEDIUM,
    title="ManagedSecret older than its maxAge",
    rationale=(
        "A ManagedSecret whose current version is older than its own spec.rotation.maxAge "
        "is not rotating: the operator is not running, cannot reach a dependency, or its "
        "rotations keep failing and rolling back."
    ),
    remediation=(
        "Look at the ManagedSecret's conditions and Events (`kubectl describe "
        "managedsecret`), fix the cause, then `kustos rotate NS/NAME`."
    ),
)


def _certificates(secret: KubeObject) -> list[tuple[str, bytes]]:
    """The certificate keys of *secret* whose first 4 KiB hold a PEM certificate.

    A list, not a generator, and the PEM marker searched inside the first 4 KiB
    (``find`` with bounds, no slice copied): asked of every Secret of a scan.
    """
    data = secret.body.get("data")
    if not is_map(data):
        return []
    found: list[tuple[str, bytes]] = []
    for key in CERTIFICATE_KEYS:
        value = data.get(key)
        if isinstance(value, Sensitive):
            raw = value.reveal()
            if raw.find(_PEM, 0, 4096) >= 0:
                found.append((key, raw))
    return found


def check_certificates(scan: ScanInput) -> Iterator[Finding]:
    """KST047/KST048: certificates in Secrets that expired or expire within 30 days."""
    if scan.now is None:
        return
    soon = scan.now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for secret in scan.index.of_kind("Secret"):
        for key, pem in _certificates(secret):
            # cryptography only for a scan that meets a certificate (start-up time)
            from kustos.crypto.certificates import certificate_facts  # noqa: PLC0415

            try:
                facts = certificate_facts(pem)
            except InputError:
                continue  # not parseable as a certificate: KST041 covers malformed types
            when = facts.not_after.strftime("%Y-%m-%d")
            if facts.not_after <= scan.now:
                days = (scan.now - facts.not_after).days
                yield finding(
                    EXPIRED,
                    secret,
                    f"{key} of Secret {secret.name} expired on {when} ({days} days ago)",
                    field=f"data.{key}",
                    details={"notAfter": facts.not_after.isoformat()},
                )
            elif facts.not_after <= soon:
                days = (facts.not_after - scan.now).days
                yield finding(
                    EXPIRING,
                    secret,
                    f"{key} of Secret {secret.name} expires on {when} (in {days} days)",
                    field=f"data.{key}",
                    details={"notAfter": facts.not_after.isoformat()},
                )


def _current_created(status: Mapping[str, Any]) -> dt.datetime | None:
    for version in status.get("versions") or ():
        if isinstance(version, Mapping) and version.get("state") == "Current":
            text = str(version.get("created") or "")
            try:
                return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
            except ValueError:
                return None
    return None


def check_managed_age(scan: ScanInput) -> Iterator[Finding]:
    """KST049: ManagedSecrets whose current version is older than ``maxAge``."""
    if scan.now is None:
        return
    for managed in scan.index.of_kind("ManagedSecret"):
        spec = managed.body.get("spec")
        status = managed.body.get("status")
        if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
            continue
        rotation = spec.get("rotation")
        max_age = rotation.get("maxAge") if isinstance(rotation, Mapping) else None
        created = _current_created(status)
        if not isinstance(max_age, str) or created is None:
            continue
        try:
            limit = parse_duration(max_age)
        except InputError:
            continue  # the operator reports an unusable spec on the resource itself
        age = scan.now - created
        if age > limit:
            yield finding(
                MANAGED_TOO_OLD,
                managed,
                f"ManagedSecret {managed.name}: version {status.get('currentVersion')} is "
                f"{age.days} days old (maxAge {max_age})",
                field="spec.rotation.maxAge",
            )


CHECKS: tuple[Check, ...] = (
    Check(EXPIRED, check_certificates),
    Check(EXPIRING, check_certificates),
    Check(MANAGED_TOO_OLD, check_managed_age),
)
