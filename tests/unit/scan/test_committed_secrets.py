"""KST050: credentials committed in Secret manifests.

Aspects: a Secret file with a password or a high-entropy token is reported once, naming
the keys, never the values; a placeholder, an empty value and a name that only refers to
another object are not; values already sealed by SOPS are not; a live cluster scan does
not report (the value is not in a repository); the remediation points to `kustos seal`.
"""

from __future__ import annotations

import base64

from kustos.scan.checks.secrets import IN_GIT
from tests.unit.manifests import findings


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRETS = f"""
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: shop}}
data:
  password: {_b64("S3cr3t-Canary-Pw")}
  username: {_b64("shop")}
stringData:
  api-token: "ghp_0123456789abcdefghijABCDEFGHIJ012345"
---
apiVersion: v1
kind: Secret
metadata: {{name: placeholders, namespace: shop}}
stringData:
  password: "<your-password-here>"
  token: ""
  secretName: other
---
apiVersion: v1
kind: Secret
metadata: {{name: sealed, namespace: shop}}
stringData:
  password: "ENC[AES256_GCM,data:AbCd,iv:AAAA,tag:BBBB,type:str]"
"""


def test_credentials_in_manifests_are_reported_once_by_secret() -> None:
    found = findings(SECRETS, "KST050")
    assert [f.resource.name for f in found if f.resource] == ["db"]
    message = found[0].message
    assert (
        message
        == "Secret db holds 2 credential value(s) in clear in this file (keys: api-token, password)"
    )
    assert "S3cr3t" not in message + str(found[0].details)
    assert "kustos seal" in IN_GIT.remediation


def test_a_live_cluster_is_not_a_repository() -> None:
    assert findings(SECRETS, "KST050", live=True) == []
