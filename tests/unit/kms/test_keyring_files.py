"""The keyring file and its export go through the one state-file codec (``kustos.files``).

Aspects:
- the file keeps its field names (``kustos_keyring``, ``kdf``, ``nonce``, ``ciphertext``)
  and a keyring written before the codec (plain ``json``) still opens, rotates and
  unwraps;
- a missing keyring says "does not exist", never "wrong passphrase"; a keyring path
  that is a folder is one line naming it; a foreign or damaged document names the path
  and the bad field, never a value;
- a body that fails validation after decryption, and an export with a bad field, name the
  field and never quote key material;
- ``repr`` of the models shows no key material;
- two processes' worth of rotations on one file lose nothing (read-modify-write under
  the file lock); a keyring in a folder that cannot be created is one line naming it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kustos.errors import FileAccessError, KmsError, KustosError
from kustos.kms.keys import KeyState
from kustos.kms.providers.keyring import (
    FILE_AAD,
    KeyringExport,
    LocalKeyring,
)
from kustos.sensitive import Sensitive

NOW = "2026-11-29T00:00:00+00:00"
PASS = Sensitive("file codec passphrase")
MATERIAL = b"K" * 32  # distinctive: finding its base64 anywhere means a leak
MATERIAL_B64 = base64.b64encode(MATERIAL).decode()


def _seal_raw(path: Path, body: bytes, passphrase: Sensitive = PASS) -> None:
    """Write a keyring file the way the pre-codec code did (json.dumps, 0600)."""
    salt = secrets.token_bytes(16)
    key = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.reveal())
    nonce = secrets.token_bytes(12)
    doc = {
        "kustos_keyring": 1,
        "kdf": {"name": "scrypt", "salt": base64.b64encode(salt).decode(), "n": 2**15,
                "r": 8, "p": 1},
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(AESGCM(key).encrypt(nonce, body, FILE_AAD)).decode(),
    }  # fmt: skip
    path.write_text(json.dumps(doc, indent=1))
    path.chmod(0o600)


def _old_body(*entries: tuple[str, int, str, bytes]) -> bytes:
    return json.dumps(
        {
            "keys": [
                {
                    "key_id": key_id,
                    "sequence": sequence,
                    "created": NOW,
                    "state": state,
                    "material": base64.b64encode(material).decode(),
                }
                for key_id, sequence, state, material in entries
            ],
            "reencrypted_under": None,
        }
    ).encode()


def test_a_keyring_written_before_the_codec_still_works(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    _seal_raw(
        path,
        _old_body(
            ("kek-0001-aaaaaaaa", 1, "retired", b""),
            ("kek-0002-bbbbbbbb", 2, "current", MATERIAL),
        ),
    )
    ring = LocalKeyring(path, PASS)
    assert [(r.key_id, r.state) for r in ring.records()] == [
        ("kek-0001-aaaaaaaa", KeyState.RETIRED),
        ("kek-0002-bbbbbbbb", KeyState.CURRENT),
    ]
    blob = AESGCM(MATERIAL).encrypt(b"n" * 12, b"seed", b"aad")
    assert ring.unwrap("kek-0002-bbbbbbbb", b"n" * 12 + blob, b"aad") == b"seed"
    ring.rotate_keys(created=NOW)
    doc = json.loads(path.read_text())
    assert set(doc) == {"kustos_keyring", "kdf", "nonce", "ciphertext"}
    assert set(doc["kdf"]) == {"name", "salt", "n", "r", "p"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [r.state for r in LocalKeyring(path, PASS).records()] == [
        KeyState.RETIRED,
        KeyState.PREVIOUS,
        KeyState.CURRENT,
    ]


def test_a_missing_keyring_is_missing_not_a_wrong_passphrase(tmp_path: Path) -> None:
    with pytest.raises(KmsError) as info:
        LocalKeyring(tmp_path / "absent.json", Sensitive("anything at all"))
    message = str(info.value)
    assert "does not exist" in message
    assert "absent.json" in message
    assert "passphrase" not in message


def test_a_folder_in_place_of_the_keyring_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ring.json"
    folder.mkdir(mode=0o700)
    with pytest.raises(FileAccessError) as info:
        LocalKeyring(folder, PASS)
    assert str(folder) in str(info.value)
    assert "is a directory" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["kdf"].update(n=1024), "kdf.n"),
        (lambda d: d.update(kustos_keyring=2), "kustos_keyring"),
        (lambda d: d.update(nonce="not base64!"), "nonce"),
        (lambda d: d.pop("ciphertext"), "ciphertext"),
        (lambda d: d.update(extra=MATERIAL_B64), "extra"),
    ],
)
def test_a_damaged_document_names_the_field_never_the_value(
    tmp_path: Path, edit: object, field: str
) -> None:
    path = tmp_path / "ring.json"
    LocalKeyring(path, PASS, must_exist=False).init_keys(created=NOW)
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(KmsError, match="not a Kustos keyring") as info:
        LocalKeyring(path, PASS)
    message = str(info.value)
    assert field in message
    assert str(path) in message
    assert MATERIAL_B64 not in message
    assert "\n" not in message


def test_an_invalid_body_names_the_field_never_the_material(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    _seal_raw(path, _old_body(("kek-0001-aaaaaaaa", 1, "shiny", MATERIAL)))
    with pytest.raises(KmsError, match=r"keys\.0\.state") as info:
        LocalKeyring(path, PASS)
    assert MATERIAL_B64 not in str(info.value) + repr(info.value)
    assert PASS.reveal_text() not in str(info.value)


def test_an_export_with_a_bad_field_names_it_never_the_material(tmp_path: Path) -> None:
    payload = json.dumps(
        {
            "kustos_keyring_export": 1,
            "keys": [{"key_id": "k", "sequence": "x", "created": NOW, "state": "current",
                      "material": MATERIAL_B64}],
        }
    ).encode()  # fmt: skip
    target = LocalKeyring(tmp_path / "new.json", PASS, must_exist=False)
    with pytest.raises(KmsError, match=r"backup\.age is not a Kustos keyring export") as info:
        target.import_payload(payload, source="backup.age")
    assert "keys.0.sequence" in str(info.value)
    assert MATERIAL_B64 not in str(info.value)
    assert not target.path.exists()


def test_models_never_show_material(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "ring.json", PASS, must_exist=False)
    ring.init_keys(created=NOW)
    export = KeyringExport.model_validate_json(ring.export_payload())
    material = export.keys[0].material.reveal()
    assert len(material) == 32
    text = repr(export) + str(export)
    assert base64.b64encode(material).decode() not in text
    assert "Sensitive(***)" in text


def test_rotations_from_two_instances_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    LocalKeyring(path, PASS, must_exist=False).init_keys(created=NOW)
    first, second = LocalKeyring(path, PASS), LocalKeyring(path, PASS)
    errors: list[BaseException] = []

    def rotate(ring: LocalKeyring) -> None:
        try:
            for _ in range(6):
                ring.rotate_keys(created=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=rotate, args=(r,)) for r in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = LocalKeyring(path, PASS).records()
    assert len(records) == 13
    assert len({r.sequence for r in records}) == 13
    assert [r.state for r in records].count(KeyState.CURRENT) == 1


def test_a_keyring_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ring = LocalKeyring(blocker / "keys" / "ring.json", PASS, must_exist=False)
    with pytest.raises(KustosError) as info:
        ring.init_keys(created=NOW)
    assert str(blocker) in str(info.value)
    assert "\n" not in str(info.value)
