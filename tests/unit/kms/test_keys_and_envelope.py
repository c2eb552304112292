"""Key records, lifecycle rules and the plugin's side of the KMS v2 contract (pure).

Aspects: key ids are sequenced, never reused and within 1 KiB; rotation demotes the old
current key; retire refuses the current key, an unknown key, and any key not proven
re-encrypted away from (unless forced); annotation keys must be FQDNs within 32 KiB;
ciphertext framing and its 1 KiB limit; plaintext limits.
"""

from __future__ import annotations

import pytest

from kustos.errors import ContractError, KmsError
from kustos.kms import envelope
from kustos.kms.keys import KeyState, check_retire, current, key_id_hash, rotate

NOW = "2026-11-29T00:00:00+00:00"


def test_rotation_keeps_old_keys_and_never_reuses_ids() -> None:
    records = rotate([], created=NOW)
    records = rotate(records, created=NOW)
    records = rotate(records, created=NOW)
    assert [r.sequence for r in records] == [1, 2, 3]
    assert [r.state for r in records] == [KeyState.PREVIOUS, KeyState.PREVIOUS, KeyState.CURRENT]
    assert current(records) is records[-1]
    ids = [r.key_id for r in records]
    assert len(set(ids)) == 3
    assert all(
        i.startswith(f"kek-000{n}-") and len(i.encode()) <= 1024 for n, i in enumerate(ids, 1)
    )
    assert len(key_id_hash(ids[0])) == 16
    assert ids[0] not in key_id_hash(ids[0])


def test_retire_rules() -> None:
    records = rotate(rotate([], created=NOW), created=NOW)
    old, new = records[0].key_id, records[1].key_id
    with pytest.raises(KmsError, match="current key"):
        check_retire(records, new, reencrypted_under=new, force=False)
    with pytest.raises(KmsError, match="no key"):
        check_retire(records, "kek-9999-deadbeef", reencrypted_under=new, force=False)
    with pytest.raises(KmsError, match="may still be encrypted"):
        check_retire(records, old, reencrypted_under=None, force=False)
    with pytest.raises(KmsError, match="may still be encrypted"):
        check_retire(records, old, reencrypted_under=old, force=False)
    retired = check_retire(records, old, reencrypted_under=new, force=False)
    assert retired[0].state is KeyState.RETIRED
    assert (
        check_retire(records, old, reencrypted_under=None, force=True)[0].state is KeyState.RETIRED
    )
    with pytest.raises(KmsError, match="already retired"):
        check_retire(retired, old, reencrypted_under=new, force=False)


def test_no_current_key() -> None:
    with pytest.raises(KmsError, match="kustos kms keys init"):
        current([])


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("version.kms.kustos.io", True),
        ("a.b", True),
        ("foo", False),
        ("a.io/x", False),
        ("UPPER.case.io", False),
        ("-bad.io", False),
        ("x" * 64 + ".io", False),
    ],
)
def test_annotation_keys_must_be_fqdns(key: str, ok: bool) -> None:
    assert envelope.is_fqdn(key) is ok


def test_annotation_limits_and_defaults() -> None:
    envelope.check_annotations(envelope.default_annotations())
    with pytest.raises(ContractError, match="not a fully qualified"):
        envelope.check_annotations({"foo": b"1"})
    with pytest.raises(ContractError, match="more than 32768"):
        envelope.check_annotations({"big.example.io": b"x" * 40000})


def test_ciphertext_framing_and_limits() -> None:
    assert envelope.unseal(envelope.seal(b"blob")) == b"blob"
    with pytest.raises(ContractError, match="more than 1024"):
        envelope.seal(b"x" * 1024)
    for bad, message in (
        (b"", "empty"),
        (b"\x02abc", "unknown format"),
        (b"\x01" + b"x" * 1100, "larger than"),
    ):
        with pytest.raises(ContractError, match=message):
            envelope.unseal(bad)
    envelope.check_plaintext(b"x" * envelope.PLAINTEXT_MAX)
    with pytest.raises(ContractError):
        envelope.check_plaintext(b"x" * (envelope.PLAINTEXT_MAX + 1))
    with pytest.raises(ContractError):
        envelope.check_plaintext(b"")
    with pytest.raises(ContractError):
        envelope.check_key_id("k" * 1025)
    assert envelope.aad_for("a") != envelope.aad_for("b")
