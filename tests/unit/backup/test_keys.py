"""Backup keys: recipients, identities, passphrases, and every way opening a file fails.

Aspects covered:
- age (``age1…``) and SSH (ed25519) recipients parse; an identity given as a recipient, a
  malformed key and a bare word are refused with a message naming the flag position and
  never the text given;
- recipients files as ``age -R`` reads them (comments, blanks, line numbers in errors);
- identity files: age lines with comments (what ``age-keygen`` writes), OpenSSH keys;
  bad lines are named by number only; ``Identities`` has no text form showing a key;
- round trips: X25519, SSH ed25519, passphrase (scrypt);
- failures are ``BackupError`` (exit 1), one line each: wrong identity, wrong passphrase,
  a passphrase file for a key-encrypted backup and the reverse, truncation, a flipped
  byte, not an age file; none quotes the plaintext (canary).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kustos.backup import keys
from kustos.errors import BackupError, InputError
from kustos.sensitive import Sensitive
from tests.unit.backup.objects import CANARY

PLAINTEXT = f"payload with {CANARY} inside".encode() * 2000


def _ssh_pair() -> tuple[str, bytes]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return public.decode() + " user@host", private


def _age_pair() -> tuple[keys.Recipient, keys.Identities]:
    public, secret = keys.generate()
    identity_file = f"# created: now\n# public key: {public}\n{secret.reveal_text()}\n"
    return (
        keys.parse_recipient(public, where="--recipient #1"),
        keys.parse_identities(identity_file.encode(), source="key.txt"),
    )


def test_age_and_ssh_recipients_parse() -> None:
    public, _ = keys.generate()
    ssh_public, _ = _ssh_pair()
    assert keys.parse_recipient(public, where="x").text == public
    parsed = keys.parse_recipient(ssh_public, where="x")
    assert parsed.text.startswith("ssh-ed25519 AAAA")
    assert "user@host" not in parsed.text  # the comment is not part of the key
    assert parsed.short.startswith("ssh-ed25519 AAAAC3Nz…")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age1notavalidkeyatall", "--recipient #2: not an age public key"),
        ("ssh-ed25519 AAAAnotbase64!!", "--recipient #2: not a usable SSH public key"),
        ("hunter2-" + CANARY, "--recipient #2: not a recipient"),
    ],
)
def test_malformed_recipients_are_refused_without_quoting_them(text: str, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        keys.parse_recipient(text, where="--recipient #2")
    assert str(caught.value).startswith(expected)
    assert text not in str(caught.value)
    assert CANARY not in str(caught.value)


def test_an_identity_given_as_recipient_is_refused() -> None:
    _, secret = keys.generate()
    with pytest.raises(InputError) as caught:
        keys.parse_recipient(secret.reveal_text(), where="--recipient #1")
    assert "identity" in str(caught.value)
    assert secret.reveal_text() not in str(caught.value)


def test_recipients_file_reads_like_age_and_names_lines() -> None:
    a, _ = keys.generate()
    b, _ = keys.generate()
    found = keys.parse_recipients_file(f"# team\n{a}\n\n  {b}  \n", source="r.txt")
    assert [r.text for r in found] == [a, b]
    with pytest.raises(InputError, match=r"^r\.txt:3: not a recipient"):
        keys.parse_recipients_file(f"{a}\n# x\nbogus\n", source="r.txt")
    with pytest.raises(InputError, match="no recipient"):
        keys.parse_recipients_file("# only a comment\n", source="r.txt")


def test_identity_files_and_their_errors() -> None:
    recipient, identities = _age_pair()
    assert len(identities) == 1
    assert "AGE-SECRET-KEY" not in repr(identities)
    assert "AGE-SECRET-KEY" not in str(identities)
    with pytest.raises(InputError, match=r"^id\.txt:2: not an age identity") as caught:
        keys.parse_identities(f"# c\n{CANARY}\n".encode(), source="id.txt")
    assert CANARY not in str(caught.value)
    with pytest.raises(InputError, match="no identity"):
        keys.parse_identities(b"# nothing\n", source="id.txt")
    assert recipient.text.startswith("age1")


@pytest.mark.parametrize("kind", ["x25519", "ssh", "passphrase"])
def test_round_trips(kind: str) -> None:
    if kind == "x25519":
        recipient, identities = _age_pair()
        data = keys.encrypt(PLAINTEXT, [recipient])
        assert keys.stanza_types(data)[0] == "X25519"
        assert keys.decrypt(data, source="b.age", identities=identities) == PLAINTEXT
    elif kind == "ssh":
        public, private = _ssh_pair()
        data = keys.encrypt(PLAINTEXT, [keys.parse_recipient(public, where="r")])
        ids = keys.parse_identities(private, source="id_ed25519")
        assert keys.decrypt(data, source="b.age", identities=ids) == PLAINTEXT
    else:
        data = keys.encrypt_with_passphrase(PLAINTEXT, Sensitive("correct horse"))
        assert keys.stanza_types(data) == ["scrypt"]
        assert keys.decrypt(data, source="b.age", passphrase=Sensitive("correct horse")) == (
            PLAINTEXT
        )
    assert CANARY.encode() not in data


def _failure(data: bytes, **opener: object) -> str:
    with pytest.raises(BackupError) as caught:
        keys.decrypt(data, source="b.age", **opener)  # type: ignore[arg-type]
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "\n" not in message
    assert CANARY not in message
    return message


def test_every_failure_is_one_line_naming_the_problem() -> None:
    recipient, identities = _age_pair()
    _, other = _age_pair()
    data = keys.encrypt(PLAINTEXT, [recipient])
    locked = keys.encrypt_with_passphrase(PLAINTEXT, Sensitive("right"))
    assert "none of the identities in key.txt opens it" in _failure(data, identities=other)
    assert "wrong passphrase" in _failure(locked, passphrase=Sensitive("wrong"))
    assert "give --passphrase-file" in _failure(locked, identities=identities)
    assert "give --identity" in _failure(data, passphrase=Sensitive("x"))
    assert "truncated" in _failure(data[: len(data) // 2], identities=identities)
    flipped = bytearray(data)
    flipped[-100] ^= 0x01
    assert "does not authenticate" in _failure(bytes(flipped), identities=identities)
    assert "not an age file" in _failure(PLAINTEXT, identities=identities)


def test_passphrase_files() -> None:
    assert keys.read_passphrase(b"secret words\r\nignored\n", source="p").reveal() == (
        b"secret words"
    )
    with pytest.raises(InputError, match="empty"):
        keys.read_passphrase(b"\nsecond line\n", source="p")
