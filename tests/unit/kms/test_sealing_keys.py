"""Sealing keys (the cluster's age identity for SealedSecrets) in the local keyring.

Aspects: ``kms sealing-key create`` stores one identity in the encrypted keyring and
prints only its public recipient; create refuses twice, rotate refuses before create;
rotate makes a newer current key and keeps the old one for unsealing; list shows ids,
states and recipients, never an identity; retire refuses the current key and deletes an
old one; the identities open files sealed for their recipients; the keyring file and an
export keep them (and the file never holds one in clear); a keyring written before
sealing keys existed still opens; canary: no identity in any output or log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyrage
import pytest

from kustos.cli.main import main
from kustos.crypto import sops
from kustos.errors import KmsError
from kustos.kms.keys import SealingKeyStore
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive
from kustos.sources import sealing
from tests.unit.sources.sealkit import CANARY, NOW, secret_manifest

PASS = Sensitive("a passphrase")


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    passphrase = tmp_path / "pass"
    passphrase.write_text("a passphrase\n")
    passphrase.chmod(0o600)
    flags = ["--keyring", str(tmp_path / "ring.json"), "--passphrase-file", str(passphrase)]
    assert main(["kms", "keys", "init", *flags]) == 0
    return flags


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _ring(store: list[str]) -> LocalKeyring:
    return LocalKeyring(Path(store[1]), PASS)


def _secrets_in(ring: LocalKeyring) -> list[str]:
    return [identity.reveal_text() for _, identity in ring.sealing_identities()]


def test_create_rotate_list_retire_through_the_cli(
    store: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = _run(capsys, "kms", "sealing-key", "create", *store)
    assert code == 0, err
    first = _ring(store).sealing_keys()
    assert len(first) == 1
    assert first[0].key_id.startswith("seal-0001-")
    assert out == f"created sealing key {first[0].key_id} (current): {first[0].recipient}\n"

    code, _, err = _run(capsys, "kms", "sealing-key", "create", *store)
    assert code != 0
    assert "already has a sealing key" in err
    assert err.count("\n") == 1

    code, out, err = _run(capsys, "kms", "sealing-key", "rotate", *store)
    assert code == 0, err
    ring = _ring(store)
    newest, older = ring.sealing_keys()
    assert (newest.sequence, older.key_id) == (2, first[0].key_id)
    assert newest.recipient in out

    code, out, _ = _run(capsys, "kms", "sealing-key", "list", "--format", "json", *store)
    rows = json.loads(out)["sealing_keys"]
    assert [(r["key_id"], r["state"]) for r in rows] == [
        (newest.key_id, "current"),
        (older.key_id, "previous"),
    ]
    code, table, _ = _run(capsys, "kms", "sealing-key", "list", *store)
    assert newest.recipient in table
    assert older.recipient in table

    code, _, err = _run(capsys, "kms", "sealing-key", "retire", newest.key_id, *store)
    assert code != 0
    assert "is the current sealing key" in err
    code, _, err = _run(capsys, "kms", "sealing-key", "retire", "seal-0009-00000000", *store)
    assert code != 0
    assert "no sealing key seal-0009" in err
    code, out, _ = _run(capsys, "kms", "sealing-key", "retire", older.key_id, *store)
    assert code == 0
    assert [k.key_id for k in _ring(store).sealing_keys()] == [newest.key_id]

    # Canary: no identity in any output, error, log line or in the file in clear.
    secrets = _secrets_in(_ring(store))
    everything = out + table + err + caplog.text + Path(store[1]).read_text()
    for secret in secrets:
        assert secret.startswith("AGE-SECRET-KEY-1")
        assert secret not in everything
    assert "AGE-SECRET-KEY" not in everything


def test_rotate_before_create_and_kek_only_commands_are_unchanged(
    store: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "kms", "sealing-key", "rotate", *store)
    assert code != 0
    assert "has no sealing key" in err
    code, out, _ = _run(capsys, "kms", "sealing-key", "list", *store)
    assert code == 0
    assert "no sealing key" in out
    # The key-encryption keys are untouched by sealing keys and vice versa.
    assert _run(capsys, "kms", "sealing-key", "create", *store)[0] == 0
    before = _ring(store).records()
    assert _run(capsys, "kms", "keys", "rotate", *store)[0] == 0
    ring = _ring(store)
    assert len(ring.records()) == len(before) + 1
    assert len(ring.sealing_keys()) == 1


def test_identities_open_files_sealed_for_every_kept_recipient(store: list[str]) -> None:
    ring = _ring(store)
    assert isinstance(ring, SealingKeyStore)
    old = ring.add_sealing_key(created="2026-01-01T00:00:00+00:00", first=True)
    sealed_old = sealing.seal(secret_manifest(), [sops.Recipient.parse(old.recipient)], now=NOW)
    new = ring.add_sealing_key(created="2026-02-01T00:00:00+00:00", first=False)
    sealed_new = sealing.seal(secret_manifest(), [sops.Recipient.parse(new.recipient)], now=NOW)
    # A second instance (the operator) sees both through the file.
    other = _ring(store)
    held = other.sealing_identities()
    assert [k.key_id for k, _ in held] == [new.key_id, old.key_id]
    identities = sops.Identities.of([s for _, s in held], source="ring")
    for document in (sealed_old, sealed_new):
        assert sealing.unseal(document, identities)["stringData"]["password"] == CANARY
    assert sops.recipient_of(held[0][1]) == new.recipient
    ring.retire_sealing_key(old.key_id)
    only_new = sops.Identities.of([s for _, s in _ring(store).sealing_identities()], source="r")
    with pytest.raises(sops.NoMatchingIdentityError):
        sealing.unseal(sealed_old, only_new)
    assert sealing.unseal(sealed_new, only_new)["metadata"]["name"] == "db"


def test_export_keeps_sealing_keys_and_an_old_keyring_still_opens(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = _ring(store)
    key = ring.add_sealing_key(created="2026-01-01T00:00:00+00:00", first=True)
    payload = ring.export_payload()
    restored = LocalKeyring(tmp_path / "restored.json", PASS, must_exist=False)
    restored.import_payload(payload)
    assert [k.key_id for k in restored.sealing_keys()] == [key.key_id]
    assert _secrets_in(restored) == _secrets_in(ring)
    # A keyring written before sealing keys existed has no "sealing" field: none held.
    plain = LocalKeyring(tmp_path / "plain.json", PASS, must_exist=False)
    plain.init_keys(created="2026-01-01T00:00:00+00:00")
    assert plain.sealing_keys() == []
    with pytest.raises(KmsError, match="no sealing key"):
        plain.add_sealing_key(created="2026-01-01T00:00:00+00:00", first=False)
    # The CLI export is age-encrypted: the identity is not in it in clear.
    backup_key = pyrage.x25519.Identity.generate()
    out = tmp_path / "backup.age"
    code = main(
        [
            "kms",
            "keys",
            "export",
            *store,
            "--recipient",
            str(backup_key.to_public()),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    assert _secrets_in(ring)[0].encode() not in out.read_bytes()
    exported = json.loads(pyrage.decrypt(out.read_bytes(), [backup_key]))
    assert [e["key_id"] for e in exported["sealing"]] == [key.key_id]
    capsys.readouterr()


def test_operator_refuses_a_bad_sealing_store_at_start(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    wrong.chmod(0o600)
    base = ["operator", "run", "-A", "--kubeconfig", str(tmp_path / "none.kubeconfig")]
    cases = [
        (["--sealing-keyring", store[1], "--sealing-passphrase-file", str(wrong)],
         "wrong passphrase"),
        (["--sealing-keyring", store[1]], "--keyring needs --passphrase-file"),
        (["--sealing-pkcs11-token", "x"], "PKCS#11 needs"),
        (["--recipient-configmap", "nonsense"], "is not NAMESPACE/NAME"),
    ]  # fmt: skip
    for flags, message in cases:
        code, _, err = _run(capsys, *base, *flags)
        assert code != 0, flags
        assert message in err, (flags, err)
        assert err.count("\n") == 1, err
