"""Expired and expiring credentials: certificates in Secrets, ManagedSecrets past maxAge.

Aspects: a tls.crt that expired is KST047 (high) with its date, one expiring within 30
days is KST048 (medium), a fresh one and a non-certificate value are silent; ca.crt is
read too, in any Secret type; the message never contains the certificate; a ManagedSecret
whose current version is older than spec.rotation.maxAge is KST049, one within it is not,
and without a clock (``now``) none of these checks runs.
"""

from __future__ import annotations

import base64
import datetime as dt

from kustos.crypto.certificates import make_self_signed_ca
from tests.unit.manifests import findings

ISSUED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _tls(name: str, days: int, key: str = "tls.crt", kind: str = "kubernetes.io/tls") -> str:
    ca = make_self_signed_ca(f"{name} test", ISSUED, days)
    pem = base64.b64encode(ca.cert_pem).decode()
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: web}}
type: {kind}
data:
  {key}: {pem}
  tls.key: {base64.b64encode(b"not a key").decode()}
---
"""


def test_expired_and_expiring_certificates() -> None:
    text = (
        _tls("old", 30)
        + _tls("soon", 60)
        + _tls("fresh", 365)
        + _tls("cabundle", 10, "ca.crt", "Opaque")
    )
    now = ISSUED + dt.timedelta(days=40)
    expired = findings(text, "KST047", now=now)
    expiring = findings(text, "KST048", now=now)
    assert sorted(f.resource.name for f in expired if f.resource) == ["cabundle", "old"]
    assert [f.resource.name for f in expiring if f.resource] == ["soon"]
    old = next(f for f in expired if f.resource and f.resource.name == "old")
    assert old.field == "data.tls.crt"
    assert "expired on 2026-01-31 (10 days ago)" in old.message
    assert expiring[0].message.endswith("(in 20 days)")
    for f in expired + expiring:
        assert "BEGIN CERTIFICATE" not in f.message
        assert "MII" not in f.message


def test_no_clock_no_expiry_findings() -> None:
    assert findings(_tls("old", 1), "KST047") == []


def _managed(created: str, max_age: str | None) -> str:
    rotation = f"rotation: {{maxAge: {max_age}}}" if max_age else "rotation: {}"
    return f"""
apiVersion: kustos.io/v1alpha1
kind: ManagedSecret
metadata: {{name: db-{max_age or "none"}, namespace: shop}}
spec:
  secretName: db
  data: {{p: {{password: {{}}}}}}
  {rotation}
status:
  currentVersion: 3
  versions:
  - {{number: 3, created: "{created}", state: Current, contentHash: abc, reason: Scheduled}}
  - {{number: 2, created: "2025-01-01T00:00:00Z", state: Previous, contentHash: def, reason: Initial}}
---
"""


def test_managed_secret_older_than_max_age() -> None:
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    text = (
        _managed("2026-09-01T00:00:00Z", "30d")
        + _managed("2026-11-20T00:00:00Z", "45d")
        + _managed("2020-01-01T00:00:00Z", None)
    )
    found = findings(text, "KST049", now=now)
    assert [f.resource.name for f in found if f.resource] == ["db-30d"]
    assert found[0].message == "ManagedSecret db-30d: version 3 is 92 days old (maxAge 30d)"
    assert found[0].field == "spec.rotation.maxAge"
