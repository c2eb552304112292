"""The local keyring provider.

Aspects: init creates a 0600 file and refuses to overwrite; wrap/unwrap round trip; wrong
key id, wrong associated data and tampering are refused; wrong passphrase, a group- or
world-readable file and a damaged file fail with one clear line; a second instance sees a
rotation (reload); retire destroys material; export to age and import back (recovery)
with the real ``age`` tooling format (pyrage); no key material in errors or logs.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pyrage
import pytest

from kustos.errors import KmsError
from kustos.kms.keys import KeyState
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive

NOW = "2026-11-29T00:00:00+00:00"
PASS = Sensitive("correct horse battery staple")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    ring = LocalKeyring(tmp_path / "keys" / "keyring.json", PASS, must_exist=False)
    ring.init_keys(created=NOW)
    return ring


def test_init_creates_a_private_file_and_refuses_to_overwrite(keyring: LocalKeyring) -> None:
    assert keyring.path.stat().st_mode & 0o777 == 0o600
    assert json.loads(keyring.path.read_text())["kustos_keyring"] == 1
    with pytest.raises(KmsError, match="already exists"):
        keyring.init_keys(created=NOW)


def test_round_trip_and_refusals(keyring: LocalKeyring) -> None:
    key_id = keyring.current_key_id()
    seed = secrets.token_bytes(32)
    blob = keyring.wrap(key_id, seed, b"aad")
    assert len(blob) == 12 + 32 + 16
    assert keyring.unwrap(key_id, blob, b"aad") == seed
    with pytest.raises(KmsError, match="ciphertext rejected"):
        keyring.unwrap(key_id, blob, b"other aad")
    tampered = bytearray(blob)
    tampered[20] ^= 1
    with pytest.raises(KmsError, match="ciphertext rejected"):
        keyring.unwrap(key_id, bytes(tampered), b"aad")
    with pytest.raises(KmsError, match="unknown or retired"):
        keyring.unwrap("kek-0009-00000000", blob, b"aad")


def test_open_failures_are_one_clear_line(keyring: LocalKeyring, tmp_path: Path) -> None:
    with pytest.raises(KmsError, match="wrong passphrase") as info:
        LocalKeyring(keyring.path, Sensitive("nope"))
    assert "\n" not in str(info.value)
    keyring.path.chmod(0o644)
    with pytest.raises(KmsError, match=r"accessible by group or others \(mode 0644\)"):
        LocalKeyring(keyring.path, PASS)
    keyring.path.chmod(0o600)
    with pytest.raises(KmsError, match="does not exist"):
        LocalKeyring(tmp_path / "missing.json", PASS)
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    damaged.chmod(0o600)
    with pytest.raises(KmsError, match="not a Kustos keyring"):
        LocalKeyring(damaged, PASS)


def test_second_instance_sees_rotation_and_old_keys_still_unwrap(keyring: LocalKeyring) -> None:
    serving = LocalKeyring(keyring.path, PASS)
    old = serving.current_key_id()
    blob = serving.wrap(old, b"seed", b"aad")
    assert serving.reload() is False
    new = keyring.rotate_keys(created=NOW).key_id
    assert serving.reload() is True
    assert serving.current_key_id() == new != old
    assert serving.unwrap(old, blob, b"aad") == b"seed"


def test_retire_destroys_material(keyring: LocalKeyring) -> None:
    old = keyring.current_key_id()
    blob = keyring.wrap(old, b"seed", b"aad")
    new = keyring.rotate_keys(created=NOW).key_id
    with pytest.raises(KmsError, match="may still be encrypted"):
        keyring.retire_key(old, force=False)
    keyring.record_reencrypt(new)
    keyring.retire_key(old, force=False)
    assert [r.state for r in keyring.records()] == [KeyState.RETIRED, KeyState.CURRENT]
    with pytest.raises(KmsError):
        keyring.unwrap(old, blob, b"aad")
    assert keyring.path.stat().st_mode & 0o777 == 0o600


def test_export_and_import_recover_every_key(keyring: LocalKeyring, tmp_path: Path) -> None:
    old = keyring.current_key_id()
    blob = keyring.wrap(old, b"seed", b"aad")
    keyring.rotate_keys(created=NOW)
    identity = pyrage.x25519.Identity.generate()
    backup = pyrage.encrypt(keyring.export_payload(), [identity.to_public()])
    restored = LocalKeyring(
        tmp_path / "restored.json", Sensitive("a new passphrase"), must_exist=False
    )
    records = restored.import_payload(pyrage.decrypt(backup, [identity]))
    assert [r.key_id for r in records] == [r.key_id for r in keyring.records()]
    assert restored.unwrap(old, blob, b"aad") == b"seed"
    with pytest.raises(KmsError, match="not a Kustos keyring export"):
        LocalKeyring(tmp_path / "x.json", PASS, must_exist=False).import_payload(b"{}")


def test_no_key_material_in_logs_or_errors(
    keyring: LocalKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    material = json.loads(keyring.export_payload())["keys"][0]["material"]
    with caplog.at_level(logging.DEBUG):
        keyring.rotate_keys(created=NOW)
        LocalKeyring(keyring.path, PASS).reload()
        messages = []
        for bad in (Sensitive("nope"),):
            try:
                LocalKeyring(keyring.path, bad)
            except KmsError as exc:
                messages.append(str(exc) + repr(exc))
    text = " ".join(messages) + " ".join(r.getMessage() for r in caplog.records)
    assert material not in text
    assert PASS.reveal_text() not in text
