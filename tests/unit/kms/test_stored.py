"""Parsing what kube-apiserver stores for a KMS v2 object.

Aspects: the prefix and provider name; the key id from the EncryptedObject protobuf with
other fields around it (varint, fixed 32/64-bit, length-delimited); values that are not
KMS v2; malformed values (truncated varint, a field longer than the message, a runaway
varint, no provider separator, an unknown wire type) are a ``ContractError`` of the
Kustos error tree that quotes no stored bytes, never a ``ValueError`` or a hang.
"""

from __future__ import annotations

import pytest

from kustos.errors import ContractError, KustosError
from kustos.kms.stored import parse_stored

PREFIX = b"k8s:enc:kms:v2:kustos:"


def _len_field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_key_id_is_read_from_the_encrypted_object() -> None:
    message = _len_field(1, b"\x00" * 40) + _len_field(2, b"kek-0002-deadbeef") + bytes([5 << 3, 1])
    stored = parse_stored(PREFIX + message)
    assert (stored.encrypted, stored.provider, stored.key_id) == (
        True,
        "kustos",
        "kek-0002-deadbeef",
    )


def test_fixed_width_fields_are_skipped() -> None:
    message = (bytes([6 << 3 | 1]) + b"\xff" * 8 + bytes([7 << 3 | 5]) + b"\xff" * 4) + _len_field(
        2, b"kek-0001-00000000"
    )
    assert parse_stored(PREFIX + message).key_id == "kek-0001-00000000"


def test_other_values_are_not_kms_v2() -> None:
    assert not parse_stored(b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret").encrypted
    assert not parse_stored(b"k8s:enc:aesgcm:v1:key1:....").encrypted


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (PREFIX + b"\x12", "truncated varint"),
        (PREFIX + bytes([2 << 3 | 2, 50]) + b"secret-bytes", "runs past the end"),
        (PREFIX + b"\x08" + b"\xff" * 20, "longer than 10 bytes"),
        (b"k8s:enc:kms:v2:no-separator", "no ':'"),
        (PREFIX + bytes([2 << 3 | 3]), "unexpected wire type 3"),
        (PREFIX + bytes([6 << 3 | 1]) + b"\x00\x00", "truncated field 6"),
    ],
)
def test_malformed_values_are_contract_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason) as info:
        parse_stored(raw)
    assert isinstance(info.value, KustosError)
    assert not isinstance(info.value, ValueError)
    assert "secret-bytes" not in str(info.value)
