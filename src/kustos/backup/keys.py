"""Which key opens a backup, and why one does not: one line for each failure. Pure.

A backup is one age file (:mod:`kustos.crypto.age` parses the keys and runs age): to
X25519 or SSH recipients, or a passphrase. Opening one fails in a few ways a user must
tell apart: not an age file, a passphrase file given for a backup encrypted to public keys
(or the reverse), no identity that matches, a wrong passphrase, a damaged header, data that
does not authenticate (truncated or altered). Each is a :class:`BackupError` (exit 1)
naming the file and the key files, never a key or a byte of the content.
"""

from __future__ import annotations

from kustos.crypto import age
from kustos.errors import BackupError, InputError
from kustos.sensitive import Sensitive


def decrypt(
    ciphertext: bytes,
    *,
    source: str,
    identities: age.Identities | None = None,
    passphrase: Sensitive | None = None,
) -> bytes:
    """Open an age file; ``BackupError`` (exit 1) with one line if it cannot be opened."""
    if not age.is_age_file(ciphertext):
        raise BackupError(f"{source}: not an age file (no age-encryption.org/v1 header)")
    types = age.stanza_types(ciphertext)
    if passphrase is not None:
        if types and "scrypt" not in types:
            raise BackupError(
                f"{source}: encrypted to public keys ({', '.join(sorted(set(types)))}), "
                "not with a passphrase; give --identity"
            )
        try:
            return age.decrypt_with_passphrase(ciphertext, passphrase)
        except age.OpenError as exc:
            raise _failure(source, exc.failure, "wrong passphrase") from None
    if identities is None or not len(identities):
        raise InputError("no identity: give --identity FILE or --passphrase-file FILE")
    if "scrypt" in types:
        raise BackupError(f"{source}: encrypted with a passphrase; give --passphrase-file")
    try:
        return identities.decrypt(ciphertext)
    except age.OpenError as exc:
        wrong = f"none of the identities in {', '.join(identities.sources)} opens it"
        raise _failure(source, exc.failure, wrong) from None


def _failure(source: str, failure: age.Failure, wrong_key: str) -> BackupError:
    if failure is age.Failure.WRONG_KEY:
        return BackupError(f"{source}: {wrong_key}, or its header was altered")
    if failure is age.Failure.HEADER:
        return BackupError(f"{source}: the age header is damaged")
    return BackupError(f"{source}: damaged or truncated: the encrypted data does not authenticate")
