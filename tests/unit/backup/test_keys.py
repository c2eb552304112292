"""Which key opens a backup, and every way opening one fails (``kustos.backup.keys``).

Aspects covered (parsing the keys themselves: ``tests/unit/crypto/test_age.py``):
- a backup opens with its X25519 identity, an SSH ed25519 key or its passphrase;
- failures are ``BackupError`` (exit 1), one line each: wrong identity (naming the key
  files), wrong passphrase, a passphrase file for a key-encrypted backup and the reverse,
  truncation, a flipped byte, not an age file; none quotes the plaintext (canary);
- no key at all is a usage problem (exit 2), not a damaged backup.
"""

from __future__ import annotations

import pytest

from kustos.backup import keys
from kustos.crypto import age
from kustos.errors import BackupError, InputError
from kustos.sensitive import Sensitive
from tests.unit.backup.objects import CANARY
from tests.unit.crypto.keypairs import ssh_pair

PLAINTEXT = f"payload with {CANARY} inside".encode() * 2000


def _age_pair() -> tuple[age.Recipient, age.Identities]:
    public, secret = age.new_identity()
    return (
        age.Recipient.parse(public, where="--recipient #1"),
        age.Identities.parse(f"# created: now\n{secret.reveal_text()}\n", source="key.txt"),
    )


@pytest.mark.parametrize("kind", ["x25519", "ssh", "passphrase"])
def test_a_backup_opens_with_its_key(kind: str) -> None:
    if kind == "x25519":
        recipient, identities = _age_pair()
        data = age.encrypt(PLAINTEXT, [recipient])
        assert keys.decrypt(data, source="b.age", identities=identities) == PLAINTEXT
    elif kind == "ssh":
        public, private = ssh_pair()
        data = age.encrypt(PLAINTEXT, [age.Recipient.parse(public, where="r", ssh=True)])
        ids = age.Identities.parse(private, source="id_ed25519", ssh=True)
        assert keys.decrypt(data, source="b.age", identities=ids) == PLAINTEXT
    else:
        data = age.encrypt_with_passphrase(PLAINTEXT, Sensitive("correct horse"))
        opened = keys.decrypt(data, source="b.age", passphrase=Sensitive("correct horse"))
        assert opened == PLAINTEXT
    assert CANARY.encode() not in data


def _failure(data: bytes, **opener: object) -> str:
    with pytest.raises(BackupError) as caught:
        keys.decrypt(data, source="b.age", **opener)  # type: ignore[arg-type]
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "\n" not in message
    assert CANARY not in message
    assert message.startswith("b.age: ")
    return message


def test_every_failure_is_one_line_naming_the_problem() -> None:
    recipient, identities = _age_pair()
    _, other = _age_pair()
    data = age.encrypt(PLAINTEXT, [recipient])
    locked = age.encrypt_with_passphrase(PLAINTEXT, Sensitive("right"))
    assert "none of the identities in key.txt opens it" in _failure(data, identities=other)
    assert "wrong passphrase" in _failure(locked, passphrase=Sensitive("wrong"))
    assert "give --passphrase-file" in _failure(locked, identities=identities)
    assert "give --identity" in _failure(data, passphrase=Sensitive("x"))
    assert "truncated" in _failure(data[: len(data) // 2], identities=identities)
    flipped = bytearray(data)
    flipped[-100] ^= 0x01
    assert "does not authenticate" in _failure(bytes(flipped), identities=identities)
    assert "not an age file" in _failure(PLAINTEXT, identities=identities)


def test_no_key_at_all_is_a_usage_error() -> None:
    recipient, _ = _age_pair()
    with pytest.raises(InputError, match="no identity") as caught:
        keys.decrypt(age.encrypt(PLAINTEXT, [recipient]), source="b.age")
    assert caught.value.exit_code == 2
