"""age keys and files (https://age-encryption.org/v1): the one place Kustos touches age.

Two capabilities use it: SOPS files (:mod:`kustos.crypto.sops`) wrap their data key once per
age X25519 recipient, and backups (:mod:`kustos.backup`) are whole age files, to X25519 or
SSH (``ssh-ed25519``, ``ssh-rsa``) recipients or a passphrase (scrypt, as ``age -p``).
SSH keys are accepted only where the caller asks for them (``ssh=True``): sops files stay
X25519-only, as their format here is.

What lives here: parsing recipients and identities as ``age -R`` and ``age -i`` read them
(one per line, ``#`` comments), new key pairs, encryption, and opening a file with one of
three outcomes told apart (wrong key, damaged header, data that does not authenticate).
Messages name where a key came from (``--recipient #2``, ``key.txt:3``), never the key;
:class:`Identities` has no text form that shows one and cannot be pickled.

Pure: bytes and text in, bytes and values out; no file, no clock. Imports only ``errors``
and ``sensitive`` (and pyrage, whose untyped exceptions are translated here, once).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyrage

from kustos.errors import InputError
from kustos.sensitive import Sensitive

#: First line of a binary age file; an armored one starts with the PEM line instead.
AGE_MAGIC: Final = b"age-encryption.org/v1\n"
ARMOR_BEGIN: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
#: The prefix of an X25519 identity line (the private key).
IDENTITY_PREFIX: Final = "AGE-SECRET-KEY-1"
_SSH_TYPES: Final = ("ssh-ed25519 ", "ssh-rsa ")
_SSH_PRIVATE: Final = b"PRIVATE KEY-----"


class AgeKeyError(InputError):
    """A recipient or identity cannot be used; names where it came from, never the key."""


class RecipientError(AgeKeyError):
    """Not a usable public key (or a private key given where a public one belongs)."""


class IdentityError(AgeKeyError):
    """An identity file holds no usable private key (lines named by number only)."""


# --------------------------------------------------------------------------- recipients


@dataclass(frozen=True, slots=True)
class Recipient:
    """A public key a file is encrypted to (public: it may be shown, shortened)."""

    text: str
    key: Any = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, *, where: str = "recipient", ssh: bool = False) -> Recipient:
        """One ``age1…`` public key (or, with *ssh*, an SSH one); the error names *where*."""
        value = text.strip()
        if ssh and value.startswith(_SSH_TYPES):
            try:
                key = pyrage.ssh.Recipient.from_str(value)
            except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
                raise RecipientError(
                    f"{where}: not a usable SSH public key ({type(exc).__name__})"
                ) from None
            return cls(" ".join(value.split()[:2]), key)  # the comment is not the key
        if value.startswith(IDENTITY_PREFIX[:-1]):
            raise RecipientError(
                f"{where}: this is an age identity (a private key), not a recipient; "
                "give its public key (age-keygen -y)"
            )
        if not value.startswith("age1") or value.startswith("age1pq1"):
            if ssh and not value.startswith("age1"):
                raise RecipientError(
                    f"{where}: not a recipient; give an age public key (age1…) or an SSH "
                    "public key (ssh-ed25519 …, ssh-rsa …)"
                )
            raise RecipientError(f"{where}: only age X25519 recipients (age1…) are supported")
        try:
            key = pyrage.x25519.Recipient.from_str(value)
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise RecipientError(f"{where}: not an age public key ({type(exc).__name__})") from None
        return cls(value, key)

    @property
    def short(self) -> str:
        """``age1abcd…wxyz`` or ``ssh-ed25519 AAAA…wxyz``: enough to recognise a key."""
        *kind, body = self.text.split()[:2]
        return " ".join([*kind, f"{body[:9] if not kind else body[:8]}…{body[-4:]}"])


def parse_recipients(text: str, *, source: str, ssh: bool = False) -> tuple[Recipient, ...]:
    """The recipients of a file as ``age -R`` reads it: one per line, ``#`` comments."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            found.append(Recipient.parse(stripped, where=f"{source}:{number}", ssh=ssh))
    if not found:
        kind = "public key" if ssh else "age1… public key"
        raise RecipientError(f"{source}: no recipient (one {kind} per line)")
    return tuple(found)


# --------------------------------------------------------------------------- identities


class Identities:
    """Private keys that may open a file; no text form shows them, and none is pickled."""

    __slots__ = ("_keys", "sources")

    def __init__(self, keys: Sequence[Any] = (), sources: Sequence[str] = ()) -> None:
        self._keys = list(keys)
        #: Where the keys came from (file names), for messages.
        self.sources = tuple(sources)

    @classmethod
    def parse(cls, data: str | bytes, *, source: str, ssh: bool = False) -> Identities:
        """Every identity of an identity file, as ``age -i`` reads it.

        ``AGE-SECRET-KEY-1…`` lines with ``#`` comments (what ``age-keygen`` writes) or,
        with *ssh*, an unencrypted OpenSSH private key. Lines are named by number, never
        quoted.
        """
        raw = data.encode() if isinstance(data, str) else data
        if ssh and (b"-----BEGIN OPENSSH PRIVATE KEY-----" in raw or _SSH_PRIVATE in raw[:64]):
            try:
                return cls([pyrage.ssh.Identity.from_buffer(raw)], [source])
            except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
                raise IdentityError(
                    f"{source}: not a usable SSH private key ({type(exc).__name__}; keys "
                    "protected by a passphrase are not supported)"
                ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise IdentityError(f"{source}: not an identity file (binary data)") from None
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not stripped.startswith(IDENTITY_PREFIX):
                raise IdentityError(
                    f"{source}:{number}: not an age X25519 identity ({IDENTITY_PREFIX}…)"
                )
            try:
                keys.append(pyrage.x25519.Identity.from_str(stripped))
            except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
                raise IdentityError(
                    f"{source}:{number}: not an age identity ({type(exc).__name__})"
                ) from None
        if not keys:
            other = " or SSH private key" if ssh else ""
            raise IdentityError(f"{source}: no identity (no {IDENTITY_PREFIX}… line{other})")
        return cls(keys, [source])

    @classmethod
    def of(cls, secrets: Sequence[Sensitive], *, source: str) -> Identities:
        """Identities from ``AGE-SECRET-KEY-1…`` values held as ``Sensitive`` (a key store)."""
        text = "\n".join(s.reveal_text() for s in secrets)
        return cls.parse(text, source=source) if secrets else cls([], [source])

    def __add__(self, other: Identities) -> Identities:
        return Identities([*self._keys, *other._keys], [*self.sources, *other.sources])

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Identities({len(self._keys)})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("identities cannot be pickled")

    def open(self, ciphertext: str | bytes) -> bytes | None:
        """The plaintext of one age file (armored or not), or ``None`` if no key opens it."""
        data = ciphertext.encode() if isinstance(ciphertext, str) else ciphertext
        try:
            return bytes(pyrage.decrypt(data, self._keys))
        except Exception:  # noqa: BLE001 - pyrage's errors are untyped; any failure is "not ours"
            return None

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext of an age file; :class:`OpenError` saying why it cannot be opened."""
        try:
            return bytes(pyrage.decrypt(ciphertext, self._keys))
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
            raise OpenError(_failure(str(exc))) from None


def new_identity() -> tuple[str, Sensitive]:
    """A fresh age X25519 key pair: the recipient (public) and the identity line (secret)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity.to_public()), Sensitive(str(identity))


def recipient_of(identity: Sensitive, *, where: str = "identity") -> str:
    """The public recipient of one ``AGE-SECRET-KEY-1…`` identity."""
    try:
        return str(pyrage.x25519.Identity.from_str(identity.reveal_text().strip()).to_public())
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise IdentityError(f"{where}: not an age identity ({type(exc).__name__})") from None


def read_passphrase(data: bytes, *, source: str) -> Sensitive:
    """The passphrase in a file: its first line, without the line ending; never empty."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first:
        raise AgeKeyError(f"{source}: the passphrase file is empty (its first line is used)")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise AgeKeyError(f"{source}: the passphrase is not UTF-8 text") from None
    return Sensitive(first)


# --------------------------------------------------------------------------- files


class Failure(enum.Enum):
    """Why an age file did not open (pyrage's fixed messages, told apart once, here)."""

    WRONG_KEY = "no key given opens it"
    HEADER = "the age header is damaged"
    DAMAGED = "the encrypted data does not authenticate"


class OpenError(Exception):
    """An age file cannot be opened; :attr:`failure` says why. Callers translate it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.value)
        self.failure = failure


def _failure(reason: str) -> Failure:
    lowered = reason.lower()
    if "no matching keys" in lowered or lowered == "decryption failed":
        return Failure.WRONG_KEY
    if "header" in lowered:
        return Failure.HEADER
    return Failure.DAMAGED


def encrypt(plaintext: bytes, recipients: Iterable[Recipient], *, armored: bool = False) -> bytes:
    """*plaintext* as an age file to every recipient (at least one)."""
    keys = [r.key for r in recipients]
    if not keys:
        raise RecipientError("no recipient to encrypt to")
    try:
        return bytes(pyrage.encrypt(plaintext, keys, armored=armored))
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise RecipientError(f"cannot encrypt to these recipients ({type(exc).__name__})") from None


def encrypt_with_passphrase(plaintext: bytes, passphrase: Sensitive) -> bytes:
    """*plaintext* as a binary age file opened by *passphrase* (scrypt, work factor 18)."""
    return bytes(pyrage.passphrase.encrypt(plaintext, passphrase.reveal_text()))


def decrypt_with_passphrase(ciphertext: bytes, passphrase: Sensitive) -> bytes:
    """The plaintext of a passphrase-encrypted age file; :class:`OpenError` if it fails."""
    try:
        return bytes(pyrage.passphrase.decrypt(ciphertext, passphrase.reveal_text()))
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise OpenError(_failure(str(exc))) from None


def is_age_file(data: bytes) -> bool:
    """True if *data* starts as a binary or an armored age file does."""
    return data.startswith(AGE_MAGIC) or data.lstrip().startswith(ARMOR_BEGIN)


def stanza_types(ciphertext: bytes) -> list[str]:
    """The recipient types in an age header (``X25519``, ``scrypt``, ``ssh-ed25519``…).

    Grease stanzas (``*-grease``, random ones that age implementations add so that parsers
    stay lenient) are left out: they name no key.

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
            kind = line[3:].split(b" ")[0].decode("ascii", errors="replace")
            if not kind.endswith("-grease"):  # random stanzas age adds; no one's key
                types.append(kind)
    return types
