"""age keys and files, shared by SOPS files and backups (``kustos.crypto.age``).

Aspects covered:
- age (``age1…``) recipients parse; SSH (ed25519) recipients only where asked for
  (``ssh=True``, backups), their comment dropped; an identity given as a recipient, a
  malformed key, a post-quantum key and a bare word are refused with a message naming
  where the key came from and never the text given;
- recipients files as ``age -R`` reads them (comments, blanks, line numbers in errors);
- identity files: age lines with comments (what ``age-keygen`` writes), OpenSSH keys with
  ``ssh=True`` only; bad lines named by number only; ``Identities`` has no text form
  showing a key and cannot be pickled; key-store identities (``Identities.of``);
- round trips: X25519, SSH ed25519, passphrase (scrypt), armored; ``open`` says ``None``
  for a file no key opens, ``decrypt`` says which failure it was;
- passphrase files: the first line, never empty;
- every failure is an ``InputError`` (exit 2), and none quotes a key or the plaintext.
"""

from __future__ import annotations

import pickle

import pytest

from kustos.crypto import age
from kustos.errors import InputError
from kustos.sensitive import Sensitive
from tests.unit.crypto.keypairs import ssh_pair

CANARY = "age-canary-5d1e0b"
PLAINTEXT = f"payload with {CANARY} inside".encode() * 2000


def _age_pair() -> tuple[age.Recipient, age.Identities]:
    public, secret = age.new_identity()
    identity_file = f"# created: now\n# public key: {public}\n{secret.reveal_text()}\n"
    return (
        age.Recipient.parse(public, where="--recipient #1"),
        age.Identities.parse(identity_file.encode(), source="key.txt"),
    )


def test_age_recipients_and_ssh_ones_where_asked_for() -> None:
    public, secret = age.new_identity()
    assert age.recipient_of(secret) == public
    parsed = age.Recipient.parse(f"  {public}\n", where="x")
    assert parsed.text == public
    assert parsed.short == f"{public[:9]}…{public[-4:]}"
    ssh_public, _ = ssh_pair()
    with pytest.raises(age.RecipientError, match=r"^x: only age X25519 recipients"):
        age.Recipient.parse(ssh_public, where="x")  # sops files: X25519 only
    ssh = age.Recipient.parse(ssh_public, where="x", ssh=True)
    assert ssh.text.startswith("ssh-ed25519 AAAA")
    assert "user@host" not in ssh.text  # the comment is not part of the key
    assert ssh.short.startswith("ssh-ed25519 AAAAC3Nz…")


@pytest.mark.parametrize(
    ("text", "ssh", "expected"),
    [
        ("age1notavalidkeyatall", True, "--recipient #2: not an age public key"),
        ("age1notavalidkeyatall", False, "--recipient #2: not an age public key"),
        ("age1pq1" + "q" * 60, True, "--recipient #2: only age X25519 recipients"),
        ("ssh-ed25519 AAAAnotbase64!!", True, "--recipient #2: not a usable SSH public key"),
        ("hunter2-" + CANARY, True, "--recipient #2: not a recipient"),
        ("hunter2-" + CANARY, False, "--recipient #2: only age X25519 recipients"),
    ],
)
def test_malformed_recipients_are_refused_without_quoting_them(
    text: str, ssh: bool, expected: str
) -> None:
    with pytest.raises(age.RecipientError) as caught:
        age.Recipient.parse(text, where="--recipient #2", ssh=ssh)
    assert str(caught.value).startswith(expected)
    assert text not in str(caught.value)
    assert CANARY not in str(caught.value)
    assert isinstance(caught.value, InputError)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("ssh", [True, False])
def test_an_identity_given_as_recipient_is_refused(ssh: bool) -> None:
    _, secret = age.new_identity()
    with pytest.raises(age.RecipientError, match="this is an age identity") as caught:
        age.Recipient.parse(secret.reveal_text(), where="--recipient #1", ssh=ssh)
    assert secret.reveal_text() not in str(caught.value)


def test_recipients_files_read_like_age_dash_r_and_name_lines() -> None:
    (a, _), (b, _) = age.new_identity(), age.new_identity()
    found = age.parse_recipients(f"# team\n{a}\n\n  {b}  \n", source="r.txt")
    assert [r.text for r in found] == [a, b]
    with pytest.raises(age.RecipientError, match=r"^r\.txt:3: not a recipient"):
        age.parse_recipients(f"{a}\n# x\nbogus\n", source="r.txt", ssh=True)
    with pytest.raises(age.RecipientError, match=r"^r\.txt: no recipient"):
        age.parse_recipients("# only a comment\n", source="r.txt")


def test_identity_files_and_their_errors() -> None:
    recipient, identities = _age_pair()
    assert len(identities) == 1
    assert identities.sources == ("key.txt",)
    for text in (repr(identities), str(identities)):
        assert "AGE-SECRET-KEY" not in text
    with pytest.raises(TypeError):
        pickle.dumps(identities)
    with pytest.raises(age.IdentityError, match=r"^id\.txt:2: not an age X25519 identity") as c:
        age.Identities.parse(f"# c\n{CANARY}\n", source="id.txt")
    assert CANARY not in str(c.value)
    _, secret = age.new_identity()
    damaged = secret.reveal_text()[:-3] + "qqq"
    with pytest.raises(age.IdentityError, match=r"^k:1: not an age identity") as c:
        age.Identities.parse(damaged, source="k")
    assert damaged not in str(c.value)
    with pytest.raises(age.IdentityError, match=r"no identity \(no AGE-SECRET-KEY-1… line\)"):
        age.Identities.parse(b"# nothing\n", source="id.txt")
    with pytest.raises(age.IdentityError, match="binary data"):
        age.Identities.parse(b"\xff\xfe\x00", source="id.txt")
    _, private = ssh_pair()
    with pytest.raises(age.IdentityError, match=r"^id_ed25519:1: not an age X25519 identity"):
        age.Identities.parse(private, source="id_ed25519")  # sops files: no SSH keys
    assert len(age.Identities.parse(private, source="id_ed25519", ssh=True)) == 1
    assert recipient.text.startswith("age1")
    stored = age.Identities.of([secret, age.new_identity()[1]], source="key store")
    assert len(stored + identities) == 3


@pytest.mark.parametrize("kind", ["x25519", "ssh", "passphrase", "armored"])
def test_round_trips(kind: str) -> None:
    if kind in ("x25519", "armored"):
        recipient, identities = _age_pair()
        data = age.encrypt(PLAINTEXT, [recipient], armored=kind == "armored")
        assert age.is_age_file(data)
        if kind == "x25519":
            assert age.stanza_types(data) == ["X25519"]  # grease stanzas left out
        assert identities.decrypt(data) == PLAINTEXT
        assert identities.open(data.decode() if kind == "armored" else data) == PLAINTEXT
    elif kind == "ssh":
        public, private = ssh_pair()
        data = age.encrypt(PLAINTEXT, [age.Recipient.parse(public, where="r", ssh=True)])
        ids = age.Identities.parse(private, source="id_ed25519", ssh=True)
        assert ids.decrypt(data) == PLAINTEXT
    else:
        data = age.encrypt_with_passphrase(PLAINTEXT, Sensitive("correct horse"))
        assert age.stanza_types(data) == ["scrypt"]
        assert age.decrypt_with_passphrase(data, Sensitive("correct horse")) == PLAINTEXT
    assert CANARY.encode() not in data


def test_files_that_do_not_open_say_why() -> None:
    recipient, identities = _age_pair()
    _, other = _age_pair()
    data = age.encrypt(PLAINTEXT, [recipient])
    assert other.open(data) is None
    failures = {
        "wrong key": (other, data),
        "truncated": (identities, data[: len(data) // 2]),
    }
    seen = {}
    for name, (keys, blob) in failures.items():
        with pytest.raises(age.OpenError) as caught:
            keys.decrypt(blob)
        seen[name] = caught.value.failure
        assert CANARY not in str(caught.value)
    assert seen == {"wrong key": age.Failure.WRONG_KEY, "truncated": age.Failure.DAMAGED}
    locked = age.encrypt_with_passphrase(PLAINTEXT, Sensitive("right"))
    with pytest.raises(age.OpenError) as wrong:
        age.decrypt_with_passphrase(locked, Sensitive("wrong"))
    assert wrong.value.failure is age.Failure.WRONG_KEY
    with pytest.raises(age.RecipientError, match="no recipient"):
        age.encrypt(PLAINTEXT, [])
    assert not age.is_age_file(PLAINTEXT)
    assert age.stanza_types(PLAINTEXT) == []


def test_passphrase_files() -> None:
    assert age.read_passphrase(b"secret words\r\nignored\n", source="p").reveal() == (
        b"secret words"
    )
    with pytest.raises(age.AgeKeyError, match=r"^p: the passphrase file is empty"):
        age.read_passphrase(b"\nsecond line\n", source="p")
    with pytest.raises(age.AgeKeyError, match="not UTF-8"):
        age.read_passphrase(b"\xff\xfe\n", source="p")
