"""Parsing what kube-apiserver stores for a KMS v2 object.

Aspects: the prefix and provider name; the key id from the EncryptedObject protobuf with
other fields around it; values that are not KMS v2; truncated messages.
"""

from __future__ import annotations

import pytest

from kustos.kms.stored import parse_stored


def _len_field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_key_id_is_read_from_the_encrypted_object() -> None:
    message = _len_field(1, b"\x00" * 40) + _len_field(2, b"kek-0002-deadbeef") + bytes([5 << 3, 1])
    stored = parse_stored(b"k8s:enc:kms:v2:kustos:" + message)
    assert (stored.encrypted, stored.provider, stored.key_id) == (
        True,
        "kustos",
        "kek-0002-deadbeef",
    )


def test_other_values_are_not_kms_v2() -> None:
    assert not parse_stored(b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret").encrypted
    assert not parse_stored(b"k8s:enc:aesgcm:v1:key1:....").encrypted


def test_truncated_message_is_an_error_not_a_hang() -> None:
    with pytest.raises(ValueError, match="truncated"):
        parse_stored(b"k8s:enc:kms:v2:kustos:\x12")
