"""Key-encryption keys as records: ids, states and the rules of their lifecycle.

Purely data. A key id is public (kube-apiserver logs it and stores it beside every object)
and must be stable, never reused and at most 1 KiB, so ids carry a sequence number and a
random suffix: ``kek-0003-1f9c2ab4``. Only the current key wraps; every earlier key that is
not retired still unwraps.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from kustos.errors import KmsError
from kustos.sensitive import Sensitive

KEY_ID_MAX: Final = 1024


class KeyState(StrEnum):
    """Where a key is in its life."""

    CURRENT = "current"  # wraps new DEK seeds and unwraps
    PREVIOUS = "previous"  # unwraps only
    RETIRED = "retired"  # gone: unwrap refused


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Public facts about one key-encryption key (no key material)."""

    key_id: str
    sequence: int
    created: str  # RFC 3339
    state: KeyState

    def retired(self) -> KeyRecord:
        """This key, retired."""
        return replace(self, state=KeyState.RETIRED)


def new_key_id(sequence: int, *, token: str | None = None) -> str:
    """A fresh key id: sequence for humans, random suffix so an id is never reused."""
    return f"kek-{sequence:04d}-{token or secrets.token_hex(4)}"


def key_id_hash(key_id: str) -> str:
    """A short, non-reversible label for metrics and logs (the docs advise hashing ids)."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:16]


def rotate(records: list[KeyRecord], *, created: str, token: str | None = None) -> list[KeyRecord]:
    """A new current key; the old current key becomes previous."""
    sequence = max((r.sequence for r in records), default=0) + 1
    demoted = [replace(r, state=KeyState.PREVIOUS) if r.state is KeyState.CURRENT else r
               for r in records]  # fmt: skip
    return [
        *demoted,
        KeyRecord(new_key_id(sequence, token=token), sequence, created, KeyState.CURRENT),
    ]


def current(records: list[KeyRecord]) -> KeyRecord:
    """The key that wraps; raise ``KmsError`` if there is none."""
    for record in records:
        if record.state is KeyState.CURRENT:
            return record
    raise KmsError("no current key: run `kustos kms keys init`")


def check_retire(
    records: list[KeyRecord], key_id: str, *, reencrypted_under: str | None, force: bool
) -> list[KeyRecord]:
    """Retire *key_id* if nothing can still be under it; raise ``KmsError`` otherwise.

    Safe means: a full ``kustos kms reencrypt`` finished while a key newer than this one
    was current. ``force`` skips that proof (data under the key becomes unreadable).
    """
    by_id = {r.key_id: r for r in records}
    record = by_id.get(key_id)
    if record is None:
        raise KmsError(f"no key {key_id}")
    if record.state is KeyState.CURRENT:
        raise KmsError(f"{key_id} is the current key; rotate first")
    if record.state is KeyState.RETIRED:
        raise KmsError(f"{key_id} is already retired")
    proof = by_id.get(reencrypted_under or "")
    if not force and (proof is None or proof.sequence <= record.sequence):
        raise KmsError(
            f"objects may still be encrypted under {key_id}: run `kustos kms reencrypt` after "
            "rotating, or pass --force to retire it anyway"
        )
    return [r.retired() if r.key_id == key_id else r for r in records]


# ---------------------------------------------------------------------- sealing keys
#: The prefix of a sealing key's id (the age identity that opens SealedSecrets).
SEALING_PREFIX: Final = "seal"


@dataclass(frozen=True, slots=True)
class SealingKey:
    """Public facts about one sealing key: an age X25519 identity kept in the key store.

    The newest key (highest sequence) is current: it is the recipient the cluster
    publishes and ``kustos seal`` encrypts for. Every older key still unseals, until it
    is retired (deleted from the store) once ``--reseal`` has rewritten the files.
    """

    key_id: str
    sequence: int
    created: str  # RFC 3339
    recipient: str  # age1…, public


def new_sealing_id(sequence: int, *, token: str | None = None) -> str:
    """``seal-0003-1f9c2ab4``: a sequence for humans, a random suffix never reused."""
    return f"{SEALING_PREFIX}-{sequence:04d}-{token or secrets.token_hex(4)}"


def sealing_order(found: list[SealingKey]) -> list[SealingKey]:
    """*found* newest first: the current key, then the ones kept for unsealing."""
    return sorted(found, key=lambda k: k.sequence, reverse=True)


def next_sealing_sequence(found: list[SealingKey]) -> int:
    """The sequence number of the next sealing key."""
    return max((k.sequence for k in found), default=0) + 1


def check_sealing_retire(found: list[SealingKey], key_id: str) -> SealingKey:
    """The key to retire; ``KmsError`` if it is unknown or the current one."""
    ordered = sealing_order(found)
    match = next((k for k in ordered if k.key_id == key_id), None)
    if match is None:
        raise KmsError(f"no sealing key {key_id}")
    if match is ordered[0]:
        raise KmsError(f"{key_id} is the current sealing key; rotate first")
    return match


@runtime_checkable
class SealingKeyStore(Protocol):
    """A key store that also keeps sealing keys (the keyring and the PKCS#11 token)."""

    def sealing_keys(self) -> list[SealingKey]:
        """Every sealing key, newest (current) first."""
        ...

    def sealing_identities(self) -> list[tuple[SealingKey, Sensitive]]:
        """Every sealing key with its ``AGE-SECRET-KEY-1…`` identity, newest first."""
        ...

    def add_sealing_key(self, *, created: str, first: bool) -> SealingKey:
        """Make a new current sealing key (*first*: refuse if one exists; else need one)."""
        ...

    def retire_sealing_key(self, key_id: str) -> None:
        """Delete an older sealing key (never the current one)."""
        ...
