"""Checkpoint signing keys in files: rotation, the key chain, verification across rotations.

Aspects covered: a rotation checkpoints with the old key, certifies the new public key in
``checkpoint-keys.jsonl`` and signs later checkpoints with the new key, while
``checkpoint.pub`` (the anchor) stays; ``verify`` accepts old and new checkpoints through
the chain, twice rotated too, and with the anchor given by ``--public-key``; the old key
is refused once rotated away; a checkpoint signed by a key outside the chain, a link not
certified by its predecessor, a garbage chain file and a retired key signing past its
successor's start each fail verification with one line; a rotation cut short between the
new key file and the link is completed (or undone) at the next start; ``signing-key
rotate`` and ``show`` through the CLI, and the RFC 7512 ``pkcs11:`` form of
``--signing-key`` (a bad one is one line). PKCS#11 storage against SoftHSM2 is in
``tests/integration/test_audit_signing_pkcs11.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kustos.audit.archive import Archive, Fsync
from kustos.audit.hashing import checkpoint_note, key_id
from kustos.audit.signing import (
    KEY_CHAIN,
    NEXT_SUFFIX,
    FileSigner,
    TokenKey,
    certify,
    load_key_file,
    parse_location,
    read_chain,
    write_key_file,
)
from kustos.audit.verifying import verify
from kustos.cli.main import main
from kustos.errors import ConfigError
from tests.unit.audit.test_records import event


def _append(directory: Path, start: int, count: int, *, key: Path | None = None) -> None:
    with Archive(directory, fsync=Fsync.NONE, checkpoint_every=4, signing_key=key) as archive:
        archive.append([event(n) for n in range(start, start + count)])


def _rotate(directory: Path) -> str:
    with Archive(directory, fsync=Fsync.NONE) as archive:
        return archive.rotate_signing_key()


def _checkpoint_keys(directory: Path) -> list[str]:
    lines = (directory / "checkpoints.jsonl").read_bytes().splitlines()
    return [orjson.loads(line)["key_id"] for line in lines]


def test_rotation_certifies_the_new_key_and_verify_accepts_both(tmp_path: Path) -> None:
    _append(tmp_path, 0, 5)
    anchor = (tmp_path / "checkpoint.pub").read_bytes()
    first = key_id(load_key_file(tmp_path / "keys" / "checkpoint.key").public_key())
    second = _rotate(tmp_path)
    _append(tmp_path, 5, 6)
    third = _rotate(tmp_path)
    _append(tmp_path, 11, 2)

    assert len({first, second, third}) == 3
    assert (tmp_path / "checkpoint.pub").read_bytes() == anchor  # the anchor never moves
    chain = read_chain(tmp_path)
    assert [(link.certified_by, link.key_id, link.from_size) for link in chain] == [
        (first, second, 5),
        (second, third, 11),
    ]
    signers = _checkpoint_keys(tmp_path)
    assert signers[0] == first
    assert signers[-1] == third
    assert second in signers
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert result.records == 13
    assert any(f"{first} -> {second} -> {third}" in note for note in result.notes)
    # The anchor kept elsewhere verifies the whole chain too.
    kept = tmp_path.parent / "anchor.pub"
    kept.write_bytes(anchor)
    assert verify(tmp_path, public_key=kept).ok


def test_the_old_key_is_refused_after_a_rotation(tmp_path: Path) -> None:
    old = tmp_path.parent / "old.key"
    _append(tmp_path, 0, 3)
    shutil.copy(tmp_path / "keys" / "checkpoint.key", old)
    old.chmod(0o600)
    new = _rotate(tmp_path)
    with pytest.raises(ConfigError, match=f"signed by {new}"):
        Archive(tmp_path, signing_key=old).open_writer()


def test_a_checkpoint_by_a_key_outside_the_chain_fails_verify(tmp_path: Path) -> None:
    _append(tmp_path, 0, 4)
    stranger = Ed25519PrivateKey.generate()
    lines = (tmp_path / "checkpoints.jsonl").read_bytes().splitlines()
    last = orjson.loads(lines[-1])
    forged = {
        **last,
        "key_id": key_id(stranger.public_key()),
        "signature": base64.b64encode(
            stranger.sign(checkpoint_note(last["size"], bytes.fromhex(last["head"])))
        ).decode(),
    }
    (tmp_path / "checkpoints.jsonl").write_bytes(
        b"\n".join([*lines[:-1], orjson.dumps(forged)]) + b"\n"
    )
    result = verify(tmp_path)
    assert not result.ok
    assert any("not in the archive's key chain" in p for p in result.problems)


def test_a_link_the_previous_key_did_not_certify_fails_verify(tmp_path: Path) -> None:
    """Someone with write access adds their own key to the chain: refused."""
    _append(tmp_path, 0, 4)
    stranger = FileSigner(Ed25519PrivateKey.generate())
    intruder = Ed25519PrivateKey.generate()
    link = certify(stranger, intruder.public_key(), from_size=4, now=_now())
    current = key_id(load_key_file(tmp_path / "keys" / "checkpoint.key").public_key())
    doc = {**link.to_json(), "certified_by": current}  # claims the archive's key signed it
    (tmp_path / KEY_CHAIN).write_bytes(orjson.dumps(doc) + b"\n")
    with pytest.raises(ConfigError, match="not the key of this archive"):
        Archive(tmp_path).open_writer()  # the current key is no longer the chain's head
    write_key_file(tmp_path / "keys" / "checkpoint.key", intruder)
    _append(tmp_path, 4, 4)  # the intruder signs new checkpoints
    result = verify(tmp_path)
    assert not result.ok
    assert any("is not certified by key" in p for p in result.problems)
    assert any("not in the archive's key chain" in p for p in result.problems)


def test_a_garbage_chain_file_fails_verify_with_one_line(tmp_path: Path) -> None:
    _append(tmp_path, 0, 4)
    (tmp_path / KEY_CHAIN).write_bytes(b"{not json\n")
    result = verify(tmp_path)
    assert not result.ok
    assert any("line 1 is not a key-chain link" in p for p in result.problems)


def test_a_retired_key_signing_past_its_successor_fails_verify(tmp_path: Path) -> None:
    _append(tmp_path, 0, 4)
    old = load_key_file(tmp_path / "keys" / "checkpoint.key")
    _rotate(tmp_path)
    _append(tmp_path, 4, 4)
    lines = (tmp_path / "checkpoints.jsonl").read_bytes().splitlines()
    last = orjson.loads(lines[-1])
    assert last["size"] == 8
    again = {
        **last,
        "key_id": key_id(old.public_key()),
        "signature": base64.b64encode(
            old.sign(checkpoint_note(8, bytes.fromhex(last["head"])))
        ).decode(),
    }
    (tmp_path / "checkpoints.jsonl").write_bytes(b"\n".join([*lines, orjson.dumps(again)]) + b"\n")
    result = verify(tmp_path)
    assert any("retired key" in p and "past size 4" in p for p in result.problems)


def test_a_rotation_cut_short_is_completed_or_undone_at_the_next_start(tmp_path: Path) -> None:
    _append(tmp_path, 0, 4)
    key_file = tmp_path / "keys" / "checkpoint.key"
    following = key_file.with_name(key_file.name + NEXT_SUFFIX)
    # Crash after the new key was written, before the link: the old key stays.
    write_key_file(following, Ed25519PrivateKey.generate())
    _append(tmp_path, 4, 2)
    assert not following.exists()
    assert verify(tmp_path).ok
    # Crash after the link, before the new key moved in: the new key takes over.
    new = Ed25519PrivateKey.generate()
    write_key_file(following, new)
    link = certify(FileSigner(load_key_file(key_file)), new.public_key(), from_size=6, now=_now())
    (tmp_path / KEY_CHAIN).write_bytes(orjson.dumps(link.to_json()) + b"\n")
    _append(tmp_path, 6, 2)
    assert key_id(load_key_file(key_file).public_key()) == key_id(new.public_key())
    assert _checkpoint_keys(tmp_path)[-1] == key_id(new.public_key())
    assert verify(tmp_path).ok


def test_cli_rotate_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "archive"
    _append(archive, 0, 3)
    assert main(["audit", "signing-key", "rotate", "--archive", str(archive)]) == 0
    assert "signs from record 4" in capsys.readouterr().out
    _append(archive, 3, 2)
    assert (
        main(["audit", "signing-key", "show", "--archive", str(archive), "--format", "json"]) == 0
    )
    keys = orjson.loads(capsys.readouterr().out)["keys"]
    assert [(k["from_record"], k["until_record"], k["current"]) for k in keys] == [
        (1, 3, False),
        (4, None, True),
    ]
    assert main(["audit", "verify", "--archive", str(archive)]) == 0
    # Rotating while a writer (the receiver) holds the archive: one line, exit non-zero.
    with Archive(archive, fsync=Fsync.NONE):
        assert main(["audit", "signing-key", "rotate", "--archive", str(archive)]) != 0
    err = capsys.readouterr().err
    assert "another process is writing this archive" in err
    assert len(err.strip().splitlines()) == 1


def test_signing_key_locations(tmp_path: Path) -> None:
    assert parse_location(str(tmp_path / "k.pem")) == tmp_path / "k.pem"
    uri = "pkcs11:token=audit%20keys?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin"
    assert parse_location(uri) == TokenKey(
        Path("/usr/lib/softhsm/libsofthsm2.so"), "audit keys", Path("/etc/pin")
    )
    with pytest.raises(ConfigError, match="needs token=LABEL"):
        parse_location("pkcs11:token=x")


def _now() -> dt.datetime:
    return dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
