"""Keys and manifests shared by the sealing tests: fresh age keys, a canary Secret."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Final

import pyrage

from kustos.crypto import sops

#: A value that must never appear in an error, a repr or a log line.
CANARY: Final = "canary-7f3a9c-hunter2"
CANARY_B64: Final = base64.b64encode(CANARY.encode()).decode()
NOW: Final = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)


class Key:
    """One age X25519 key pair: the recipient and the identity file text."""

    def __init__(self) -> None:
        identity = pyrage.x25519.Identity.generate()
        self.public = str(identity.to_public())
        self.secret = str(identity)
        self.identity_text = f"# public key: {self.public}\n{self.secret}\n"
        self.recipient = sops.Recipient.parse(self.public)
        self.identities = sops.Identities.parse(self.identity_text, source="key.txt")


def secret_manifest(**overrides: Any) -> dict[str, Any]:
    """A Secret manifest holding the canary under data and stringData."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "prod",
            "labels": {"app": "web"},
            "annotations": {"team": "payments"},
        },
        "type": "Opaque",
        "data": {"token": CANARY_B64},
        "stringData": {"username": "admin", "password": CANARY},
    }
    manifest.update(overrides)
    return manifest


def tamper(value: str) -> str:
    """*value* (an ENC[...] string) with one bit of its ciphertext flipped."""
    start = value.index("data:") + len("data:")
    end = value.index(",", start)
    data = bytearray(base64.b64decode(value[start:end]))
    data[0] ^= 1
    return value[:start] + base64.b64encode(bytes(data)).decode() + value[end:]
