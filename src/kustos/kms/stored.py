"""What kube-apiserver stores in etcd for a KMS v2 encrypted object (pure parsing).

The value is ``k8s:enc:kms:v2:<provider name>:`` followed by a protobuf
``EncryptedObject`` (``encryptedData`` = 1, ``keyID`` = 2, ``encryptedDEKSource`` = 3,
``annotations`` = 4, ``encryptedDEKSourceType`` = 5). Reading the key id out of it tells
which key an object is under without decrypting anything. A value that starts like KMS v2
but does not parse is a :class:`~kustos.errors.ContractError` (the stored form breaks the
KMS v2 format); the message gives the offset, never the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kustos.errors import ContractError

KMS_V2_PREFIX: Final = b"k8s:enc:kms:v2:"

#: protobuf wire types: varint, 64-bit, length-delimited, 32-bit (groups are not used).
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_FIXED_SIZE: Final = {_FIXED64: 8, _FIXED32: 4}
#: A varint is at most ten bytes; more means garbage, not a number.
_VARINT_MAX_BYTES: Final = 10


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
    for _ in range(_VARINT_MAX_BYTES):
        if pos >= len(data):
            raise ContractError(f"KMS v2 stored value: truncated varint at byte {pos}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ContractError(f"KMS v2 stored value: varint longer than 10 bytes at byte {pos}")


def _field(message: bytes, number: int) -> bytes | None:
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        wire = tag & 7
        if wire == _LENGTH:
            length, pos = _varint(message, pos)
            if pos + length > len(message):
                raise ContractError(
                    f"KMS v2 stored value: field {tag >> 3} runs past the end (byte {pos})"
                )
            if tag >> 3 == number:
                return message[pos : pos + length]
            pos += length
        elif wire == _VARINT:
            _, pos = _varint(message, pos)
        elif wire in _FIXED_SIZE:
            pos += _FIXED_SIZE[wire]
            if pos > len(message):
                raise ContractError(f"KMS v2 stored value: truncated field {tag >> 3}")
        else:
            raise ContractError(f"KMS v2 stored value: unexpected wire type {wire} at byte {pos}")
    return None


def parse_stored(raw: bytes) -> StoredValue:
    """Describe a raw etcd value: KMS v2 (provider and key id) or not encrypted by KMS v2.

    Raise ``ContractError`` for a value with the KMS v2 prefix that does not parse.
    """
    if not raw.startswith(KMS_V2_PREFIX):
        return StoredValue(encrypted=False)
    end = raw.find(b":", len(KMS_V2_PREFIX))
    if end < 0:
        raise ContractError("KMS v2 stored value: no ':' after the provider name")
    provider = raw[len(KMS_V2_PREFIX) : end].decode(errors="replace")
    message = raw[end + 1 :]
    key_id = _field(message, 2)
    text = key_id.decode(errors="replace") if key_id else ""
    return StoredValue(
        encrypted=True, provider=provider, key_id=text, dek_source=_field(message, 3) or b""
    )
