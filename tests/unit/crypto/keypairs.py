"""Key pairs for tests of age keys: an OpenSSH ed25519 pair made in memory."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def ssh_pair(comment: str = "user@host") -> tuple[str, bytes]:
    """A new ed25519 key: its ``ssh-ed25519 AAAA… comment`` line and its OpenSSH PEM."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return f"{public.decode()} {comment}", private
