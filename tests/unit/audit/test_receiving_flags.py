"""The harness's audit webhook files (pure functions of ``kustos.testing.flags``).

- the webhook kubeconfig names the receiver URL, the CA and the client certificate;
- the token file has one CSV line per user with its groups quoted;
- the test webhook flags shorten the batch wait and the retry back-off.
"""

from __future__ import annotations

from pathlib import Path

from kustos.testing.flags import (
    AUDIT_WEBHOOK_TEST_FLAGS,
    audit_webhook_kubeconfig,
    token_auth_file,
)
from kustos.testing.pki import CertPair


def test_webhook_kubeconfig() -> None:
    pair = CertPair(Path("/pki/apiserver.crt"), Path("/pki/apiserver.key"))
    config = audit_webhook_kubeconfig("https://127.0.0.1:9443/audit", Path("/pki/ca.crt"), pair)
    cluster = config["clusters"][0]["cluster"]
    assert cluster == {
        "server": "https://127.0.0.1:9443/audit",
        "certificate-authority": "/pki/ca.crt",
    }
    user = config["users"][0]["user"]
    assert user == {"client-certificate": "/pki/apiserver.crt", "client-key": "/pki/apiserver.key"}
    context = config["contexts"][0]
    assert config["current-context"] == context["name"]


def test_token_file() -> None:
    text = token_auth_file({"t1": ("alice", ("a", "b")), "t2": ("bob", ())})
    assert text == 't1,alice,alice,"a,b"\nt2,bob,bob,""\n'


def test_webhook_test_flags() -> None:
    assert "--audit-webhook-batch-max-wait=1s" in AUDIT_WEBHOOK_TEST_FLAGS
    assert "--audit-webhook-initial-backoff=1s" in AUDIT_WEBHOOK_TEST_FLAGS
