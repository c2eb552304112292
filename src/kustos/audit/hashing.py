"""The archive's tamper evidence: the hash chain, record lines and signed checkpoints.

Purely data: no I/O. Every record is one line of a segment file::

    <seq> <hash hex> <event JSON>\\n

where ``hash = SHA-256(previous hash || seq as 8 bytes big-endian || event JSON)`` and the
hash before record 1 is 32 zero bytes. Changing, removing or moving a record breaks the
chain at that record; cutting the tail is caught by a checkpoint: an Ed25519 signature over
a note in the C2SP ``tlog-checkpoint`` spirit (origin, size, base64 head hash), which the
archive writes every few thousand records, every few seconds and when it closes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: The chain value before the first record.
GENESIS: Final = bytes(32)
#: First line of every checkpoint note.
ORIGIN: Final = "kustos.io/audit-archive"
_SEQ_BYTES: Final = 8


class RecordFormatError(ValueError):
    """A segment line is not a record (``<seq> <hash> <json>``)."""


def link(previous: bytes, seq: int, data: bytes) -> bytes:
    """The chain hash of record *seq* holding *data*, after *previous*."""
    digest = hashlib.sha256(previous)
    digest.update(seq.to_bytes(_SEQ_BYTES, "big"))
    digest.update(data)
    return digest.digest()


def record_line(seq: int, digest: bytes, data: bytes) -> bytes:
    """The segment line of one record (ends with a newline)."""
    return b"%d %s %s\n" % (seq, digest.hex().encode(), data)


@dataclass(frozen=True, slots=True)
class RecordLine:
    """One segment line, split: what it claims (seq, hash) and the event JSON it holds."""

    seq: int
    digest: bytes
    data: bytes


def parse_line(line: bytes) -> RecordLine:
    """Split a segment line (with or without its newline); ``RecordFormatError`` if not one."""
    parts = line.rstrip(b"\n").split(b" ", 2)
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != 64:
        raise RecordFormatError("not a <seq> <hash> <event> line")
    try:
        digest = bytes.fromhex(parts[1].decode("ascii"))
    except ValueError as exc:
        raise RecordFormatError("the hash is not hexadecimal") from exc
    return RecordLine(int(parts[0]), digest, parts[2])


# --------------------------------------------------------------------------- checkpoints


def checkpoint_note(size: int, head: bytes) -> bytes:
    """The signed text of a checkpoint: origin, size, base64 head hash, one per line."""
    return f"{ORIGIN}\n{size}\n{base64.b64encode(head).decode()}\n".encode()


def key_id(public: Ed25519PublicKey) -> str:
    """A short identifier of a checkpoint key (C2SP signed-note key hash, hex)."""
    raw = public.public_bytes_raw()
    return hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4].hex()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the archive held *size* records and its chain head was *head*."""

    size: int
    head: bytes
    time: str
    key_id: str
    signature: bytes

    def verify(self, public: Ed25519PublicKey) -> bool:
        """Whether the signature is *public*'s over this size and head."""
        try:
            public.verify(self.signature, checkpoint_note(self.size, self.head))
        except InvalidSignature:
            return False
        return True
