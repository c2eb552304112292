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
from typing import Final

from kustos.errors import KmsError

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
