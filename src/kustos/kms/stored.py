"""What kube-apiserver stores in etcd for a KMS v2 encrypted object (pure parsing).

The value is ``k8s:enc:kms:v2:<provider name>:`` followed by a protobuf
``EncryptedObject`` (``encryptedData`` = 1, ``keyID`` = 2, ``encryptedDEKSource`` = 3,
``annotations`` = 4, ``encryptedDEKSourceType`` = 5). Reading the key id out of it tells
which key an object is under without decrypting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KMS_V2_PREFIX: Final = b"k8s:enc:kms:v2:"


@dataclass(frozen=True, slots=True)
class StoredValue:
    """The public facts of one stored value."""

    encrypted: bool
    provider: str = ""
    key_id: str = ""
    #: The wrapped DEK seed (``encryptedDEKSource``): one per seed the API server drew.
    dek_source: bytes = b""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _field(message: bytes, number: int) -> bytes | None:
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = _varint(message, pos)
            if tag >> 3 == number:
                return message[pos : pos + length]
            pos += length
        elif wire == 0:
            _, pos = _varint(message, pos)
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return None


def parse_stored(raw: bytes) -> StoredValue:
    """Describe a raw etcd value: KMS v2 (provider and key id) or not encrypted by KMS v2."""
    if not raw.startswith(KMS_V2_PREFIX):
        return StoredValue(encrypted=False)
    end = raw.index(b":", len(KMS_V2_PREFIX))
    provider = raw[len(KMS_V2_PREFIX) : end].decode(errors="replace")
    message = raw[end + 1 :]
    key_id = _field(message, 2)
    text = key_id.decode(errors="replace") if key_id else ""
    return StoredValue(
        encrypted=True, provider=provider, key_id=text, dek_source=_field(message, 3) or b""
    )
