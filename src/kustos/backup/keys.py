"""age recipients, identities and passphrases for backups, and the encryption itself. Pure.

A backup is one age file (https://age-encryption.org/v1): X25519 (``age1…``) and SSH
(``ssh-ed25519``, ``ssh-rsa``) recipients, or a passphrase (scrypt, as ``age -p`` writes
it). Every recipient is parsed before anything is encrypted, and one that does not parse
refuses the whole backup: a file that nobody can open is the failure that matters most.

Messages name where a key came from (``--recipient #2``, ``key.txt:3``), never the key;
identities and passphrases are held so that no text form shows them. No I/O: callers read
the files (:mod:`kustos.files`) and hand the bytes in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyrage

from kustos.crypto.sops import Recipient as AgeRecipient
from kustos.errors import BackupError, InputError
from kustos.sensitive import Sensitive

#: First line of a binary age file; an armored one starts with the PEM line instead.
AGE_MAGIC: Final = b"age-encryption.org/v1\n"
ARMOR_BEGIN: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
_SSH_TYPES: Final = ("ssh-ed25519 ", "ssh-rsa ")
_SECRET_KEY: Final = "AGE-SECRET-KEY-1"  # noqa: S105 - the prefix of an identity line


@dataclass(frozen=True, slots=True)
class Recipient:
    """A public key a backup is encrypted to (public: it may be shown, shortened)."""

    text: str
    key: Any = field(repr=False, compare=False)

    @property
    def short(self) -> str:
        """``age1abcd…wxyz`` or ``ssh-ed25519 AAAA…wxyz``: enough to recognise a key."""
        body = self.text.split()[:2]
        last = body[-1]
        head = " ".join([*body[:-1], last[:8]]) if len(body) > 1 else last[:8]
        return f"{head}…{last[-4:]}"


def parse_recipient(text: str, *, where: str) -> Recipient:
    """One ``age1…`` or SSH public key; ``InputError`` naming *where* (never the text)."""
    value = text.strip()
    if value.startswith(_SSH_TYPES):
        try:
            key = pyrage.ssh.Recipient.from_str(value)
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise InputError(
                f"{where}: not a usable SSH public key ({type(exc).__name__})"
            ) from None
        return Recipient(" ".join(value.split()[:2]), key)
    if value.startswith(("age1", _SECRET_KEY)):
        # The sealing code's parser: it also refuses an identity given by mistake.
        parsed = AgeRecipient.parse(value, where=where)
        return Recipient(parsed.text, parsed.key)
    raise InputError(
        f"{where}: not a recipient; give an age public key (age1…) or an SSH public key "
        "(ssh-ed25519 …, ssh-rsa …)"
    )


def parse_recipients_file(text: str, *, source: str) -> list[Recipient]:
    """Recipients of a file as ``age -R`` reads it: one per line, ``#`` comments, blanks."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            found.append(parse_recipient(stripped, where=f"{source}:{number}"))
    if not found:
        raise InputError(f"{source}: no recipient (one public key per line)")
    return found


class Identities:
    """Private keys that may open a backup; no text form shows them."""

    __slots__ = ("_keys", "sources")

    def __init__(self, keys: Sequence[Any], sources: Sequence[str]) -> None:
        self._keys = list(keys)
        self.sources = tuple(sources)

    def __repr__(self) -> str:
        return f"Identities({len(self._keys)} from {', '.join(self.sources) or 'nowhere'})"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._keys)

    def __add__(self, other: Identities) -> Identities:
        return Identities([*self._keys, *other._keys], [*self.sources, *other.sources])

    def keys(self) -> list[Any]:
        """The pyrage identities (for :func:`decrypt` only)."""
        return list(self._keys)


def parse_identities(data: bytes, *, source: str) -> Identities:
    """Every identity of an identity file, as ``age -i`` reads it.

    An age identity file (``AGE-SECRET-KEY-1…`` lines, ``#`` comments) or an unencrypted
    OpenSSH private key. Lines are named by number, never quoted.
    """
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data or b"PRIVATE KEY-----" in data[:64]:
        try:
            return Identities([pyrage.ssh.Identity.from_buffer(data)], [source])
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise InputError(
                f"{source}: not a usable SSH private key ({type(exc).__name__}; keys protected "
                "by a passphrase are not supported)"
            ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not an identity file (binary data)") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith(_SECRET_KEY):
            raise InputError(f"{source}:{number}: not an age identity (AGE-SECRET-KEY-1…)")
        try:
            keys.append(pyrage.x25519.Identity.from_str(stripped))
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise InputError(
                f"{source}:{number}: not an age identity ({type(exc).__name__})"
            ) from None
    if not keys:
        raise InputError(f"{source}: no identity (AGE-SECRET-KEY-1… line or SSH private key)")
    return Identities(keys, [source])


def read_passphrase(data: bytes, *, source: str) -> Sensitive:
    """The passphrase in a file: its first line, without the line ending; never empty."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first:
        raise InputError(f"{source}: the passphrase file is empty (its first line is used)")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: the passphrase is not UTF-8 text") from None
    return Sensitive(first)


def generate() -> tuple[str, Sensitive]:
    """A new X25519 key pair: the recipient (public) and the identity line (secret)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity.to_public()), Sensitive(str(identity))


def encrypt(plaintext: bytes, recipients: Iterable[Recipient]) -> bytes:
    """*plaintext* as a binary age file to every recipient (at least one)."""
    keys = [r.key for r in recipients]
    if not keys:
        raise InputError("no recipient: give --recipient or --passphrase-file")
    try:
        return bytes(pyrage.encrypt(plaintext, keys))
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise InputError(f"cannot encrypt to these recipients ({type(exc).__name__})") from None


def encrypt_with_passphrase(plaintext: bytes, passphrase: Sensitive) -> bytes:
    """*plaintext* as a binary age file opened by *passphrase* (scrypt, work factor 18)."""
    return bytes(pyrage.passphrase.encrypt(plaintext, passphrase.reveal_text()))


def stanza_types(ciphertext: bytes) -> list[str]:
    """The recipient types in an age header (``X25519``, ``scrypt``, ``ssh-ed25519``…).

    Empty for a file that is not a binary age file (armored files are told apart by the
    caller).
    """
    if not ciphertext.startswith(AGE_MAGIC):
        return []
    types = []
    for line in ciphertext[len(AGE_MAGIC) : 64 * 1024].split(b"\n"):
        if line.startswith(b"---"):
            break
        if line.startswith(b"-> "):
            parts = line[3:].split(b" ")
            types.append(parts[0].decode("ascii", errors="replace"))
    return types


def decrypt(
    ciphertext: bytes,
    *,
    source: str,
    identities: Identities | None = None,
    passphrase: Sensitive | None = None,
) -> bytes:
    """Open an age file; ``BackupError`` (exit 1) with one line if it cannot be opened.

    The line says which failure it is: not an age file, a passphrase file opened with
    identities (or the reverse), no identity matches, a wrong passphrase, or data that
    does not authenticate (truncated or altered).
    """
    armored = ciphertext.lstrip().startswith(ARMOR_BEGIN)
    if not armored and not ciphertext.startswith(AGE_MAGIC):
        raise BackupError(f"{source}: not an age file (no age-encryption.org/v1 header)")
    types = stanza_types(ciphertext)
    if passphrase is not None:
        if types and "scrypt" not in types:
            raise BackupError(
                f"{source}: encrypted to public keys ({', '.join(sorted(set(types)))}), "
                "not with a passphrase; give --identity"
            )
        try:
            return bytes(pyrage.passphrase.decrypt(ciphertext, passphrase.reveal_text()))
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise _failure(source, str(exc), "wrong passphrase") from None
    if identities is None or not len(identities):
        raise InputError("no identity: give --identity FILE or --passphrase-file FILE")
    if "scrypt" in types:
        raise BackupError(f"{source}: encrypted with a passphrase; give --passphrase-file")
    try:
        return bytes(pyrage.decrypt(ciphertext, identities.keys()))
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        wrong = f"none of the identities in {', '.join(identities.sources)} opens it"
        raise _failure(source, str(exc), wrong) from None


def _failure(source: str, reason: str, wrong_key: str) -> BackupError:
    """A pyrage failure as one line; its messages are fixed strings, never file content."""
    lowered = reason.lower()
    if "no matching keys" in lowered or lowered == "decryption failed":
        return BackupError(f"{source}: {wrong_key}, or its header was altered")
    if "header" in lowered:
        return BackupError(f"{source}: the age header is damaged")
    return BackupError(f"{source}: damaged or truncated: the encrypted data does not authenticate")
