"""A local keyring file: AES-256 key-encryption keys, encrypted with a passphrase.

File format (JSON, mode 0600), :class:`KeyringDocument`: ``{"kustos_keyring": 1, "kdf":
{"name": "scrypt", "salt", "n", "r", "p"}, "nonce", "ciphertext"}``; the ciphertext is
AES-256-GCM under a key derived from the passphrase with scrypt and holds a
:class:`KeyringBody`: ``{"keys": [{"key_id", "sequence", "created", "state", "material"}],
"reencrypted_under"}``. An export (:class:`KeyringExport`) is the body with
``"kustos_keyring_export": 1``. Both documents go through the one state-file codec
(``kustos.files``): pydantic models, errors that name fields and never values, atomic
rewrites (temporary file, fsync, rename) so a running plugin never reads half a file, and
read-modify-write under a lock so two ``kms keys`` commands cannot lose each other's key.

Key material never leaves this module except through ``export_payload`` (for an
``age``-encrypted backup); inside the models it is a ``Sensitive``, so no ``repr`` shows it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import PlainSerializer, PlainValidator

from kustos.crypto.sops import new_identity
from kustos.errors import FileAccessError, FileMissingError, InputError, KmsError
from kustos.files import PRIVATE, read_bytes
from kustos.files.state import StateFile, StateModel, decode, encode
from kustos.kms.keys import (
    KeyRecord,
    KeyState,
    SealingKey,
    check_retire,
    check_sealing_retire,
    current,
    key_id_hash,
    new_sealing_id,
    next_sealing_sequence,
    rotate,
    sealing_order,
)
from kustos.kms.providers import KeyProvider
from kustos.sensitive import Sensitive

log = logging.getLogger("kustos.kms.keyring")

FORMAT: Final = 1
FILE_AAD: Final = b"kustos-keyring-v1"
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1

M = TypeVar("M", bound=StateModel)


# ---------------------------------------------------------------------- the documents
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object) -> bytes:
    if isinstance(value, bytes):  # built in Python, not read from a file
        return value
    if not isinstance(value, str):
        raise ValueError("expected base64 text")  # noqa: TRY004 - pydantic wants ValueError
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _sensitive(value: object) -> Sensitive:
    return value if isinstance(value, Sensitive) else Sensitive(_unb64(value))


#: Bytes stored as base64 text.
Base64 = Annotated[bytes, PlainValidator(_unb64), PlainSerializer(_b64, return_type=str)]
#: Key material stored as base64 text, held as ``Sensitive`` in memory.
Material = Annotated[
    Sensitive,
    PlainValidator(_sensitive),
    PlainSerializer(lambda s: _b64(s.reveal()), return_type=str),
]


class Kdf(StateModel):
    """How the file key is derived from the passphrase (only these parameters are read)."""

    name: Literal["scrypt"] = "scrypt"
    salt: Base64
    n: Literal[32768] = SCRYPT_N
    r: Literal[8] = SCRYPT_R
    p: Literal[1] = SCRYPT_P


class KeyringDocument(StateModel):
    """The keyring file as stored: the sealed body and how to open it."""

    kustos_keyring: Literal[1] = FORMAT
    kdf: Kdf
    nonce: Base64
    ciphertext: Base64


class KeyEntry(StateModel):
    """One key with its material (empty once retired)."""

    key_id: str
    sequence: int
    created: str
    state: KeyState
    material: Material

    def record(self) -> KeyRecord:
        """The public facts of this key."""
        return KeyRecord(self.key_id, self.sequence, self.created, self.state)


class SealingEntry(StateModel):
    """One sealing key: an age X25519 identity that opens SealedSecrets."""

    key_id: str
    sequence: int
    created: str
    recipient: str
    identity: Material

    def key(self) -> SealingKey:
        """The public facts of this sealing key."""
        return SealingKey(self.key_id, self.sequence, self.created, self.recipient)


class KeyringBody(StateModel):
    """What the keyring's ciphertext holds."""

    keys: tuple[KeyEntry, ...]
    reencrypted_under: str | None = None
    sealing: tuple[SealingEntry, ...] = ()


class KeyringExport(KeyringBody):
    """The decrypted keyring as exported for a backup (then encrypted with age)."""

    kustos_keyring_export: Literal[1] = FORMAT


def _detail(exc: InputError, source: str, what: str) -> str:
    """The field and reason of a decode error, without repeating the path."""
    return str(exc).removeprefix(f"{source}: not a valid {what} (").removesuffix(")")


# ---------------------------------------------------------------------- the provider
@dataclass(slots=True)
class _State:
    records: list[KeyRecord]
    materials: dict[str, Sensitive]
    reencrypted_under: str | None
    salt: bytes
    stamp: tuple[int, int]
    sealing: list[SealingEntry] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: KeyringBody, salt: bytes, stamp: tuple[int, int]) -> _State:
        return cls(
            [entry.record() for entry in body.keys],
            {e.key_id: e.material for e in body.keys if e.state is not KeyState.RETIRED},
            body.reencrypted_under,
            salt,
            stamp,
            list(body.sealing),
        )

    def body(self) -> KeyringBody:
        empty = Sensitive(b"")
        return KeyringBody(
            keys=tuple(
                KeyEntry(
                    key_id=r.key_id,
                    sequence=r.sequence,
                    created=r.created,
                    state=r.state,
                    material=self.materials.get(r.key_id, empty),
                )
                for r in self.records
            ),
            reencrypted_under=self.reencrypted_under,
            sealing=tuple(self.sealing),
        )


class LocalKeyring(KeyProvider):
    """``KeyProvider`` over an encrypted keyring file."""

    def __init__(self, path: Path, passphrase: Sensitive, *, must_exist: bool = True) -> None:
        self.path = path
        self._file = StateFile(path, KeyringDocument, what="keyring", mode=PRIVATE)
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._derived: dict[bytes, Sensitive] = {}
        self._state: _State | None = None
        if must_exist:
            self._state = self._read()

    # ------------------------------------------------------------------ file handling
    def _derive(self, salt: bytes) -> bytes:
        cached = self._derived.get(salt)
        if cached is None:
            kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
            cached = Sensitive(kdf.derive(self._passphrase.reveal()))
            self._derived = {salt: cached}
        return cached.reveal()

    def _stamp(self) -> tuple[int, int]:
        info = self.path.stat()
        return (info.st_mtime_ns, info.st_size)

    def _missing(self) -> KmsError:
        return KmsError(f"keyring {self.path} does not exist: run `kustos kms keys init`")

    def _decode(self, model: type[M], data: bytes, what: str) -> M:
        try:
            return decode(model, data, source=str(self.path), what=what)
        except InputError as exc:
            detail = _detail(exc, str(self.path), what)
            raise KmsError(
                f"keyring {self.path} is not a Kustos keyring (damaged or foreign): {detail}"
            ) from exc

    def _read(self) -> _State:
        """Read and open the file: one ``KmsError`` line for every way that can fail."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise self._missing() from None
        except OSError as exc:
            raise FileAccessError(self.path, "read keyring", exc.strerror or "error") from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KmsError(
                f"keyring {self.path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        try:
            data = read_bytes(self.path, what="keyring")
        except FileMissingError:
            raise self._missing() from None
        doc = self._decode(KeyringDocument, data, "keyring")
        try:
            payload = AESGCM(self._derive(doc.kdf.salt)).decrypt(
                doc.nonce, doc.ciphertext, FILE_AAD
            )
        except InvalidTag:
            raise KmsError(
                f"wrong passphrase for keyring {self.path} (or the file was altered)"
            ) from None
        body = self._decode(KeyringBody, payload, "keyring body")
        return _State.from_body(body, doc.kdf.salt, (info.st_mtime_ns, info.st_size))

    def _write(self, state: _State) -> None:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._derive(state.salt)).encrypt(nonce, encode(state.body()), FILE_AAD)
        self._file.write(KeyringDocument(kdf=Kdf(salt=state.salt), nonce=nonce, ciphertext=sealed))
        state.stamp = self._stamp()

    def _create(self, state: _State, *, instead: str) -> None:
        """Write a new keyring file; refuse if one is there (checked under the file lock).

        *instead* tells the user what to do when the file exists.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileAccessError(
                self.path.parent, "create the keyring folder", exc.strerror or "error"
            ) from exc
        with self._file.locked():
            if self.path.exists():
                raise KmsError(f"keyring {self.path} already exists; {instead}")
            self._write(state)
        self._state = state

    def _loaded(self) -> _State:
        if self._state is None:
            self._state = self._read()
        return self._state

    # ------------------------------------------------------------------ KeyProvider
    def records(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        with self._lock:
            return list(self._loaded().records)

    def current_key_id(self) -> str:
        """The id of the wrapping key."""
        with self._lock:
            return current(self._loaded().records).key_id

    def _material(self, key_id: str) -> bytes:
        material = self._loaded().materials.get(key_id)
        if material is None:
            raise KmsError("cannot unwrap: unknown or retired key id")
        return material.reveal()

    def wrap(self, key_id: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM with a random nonce: ``nonce || ciphertext || tag``."""
        with self._lock:
            material = self._material(key_id)
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(material).encrypt(nonce, plaintext, aad)

    def unwrap(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Reverse ``wrap``; ``KmsError`` for unknown keys or anything tampered."""
        with self._lock:
            material = self._material(key_id)
        if len(blob) < 12 + 16:
            raise KmsError("cannot unwrap: ciphertext too short")
        try:
            return AESGCM(material).decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise KmsError(
                "cannot unwrap: ciphertext rejected (tampered, or bound to another key id)"
            ) from None

    def reload(self) -> bool:
        """Re-read the file if it changed on disk; True if the current key changed."""
        with self._lock:
            old = self._state
            try:
                if old is not None and self._stamp() == old.stamp:
                    return False
            except OSError:
                return False
            new = self._read()
            self._state = new
            before = current(old.records).key_id if old is not None and old.records else None
            after = current(new.records).key_id
            if before != after:
                log.info("keyring reloaded: current key is now %s", key_id_hash(after))
            return before != after

    def close(self) -> None:
        """Forget decrypted material held in memory."""
        with self._lock:
            self._state = None
            self._derived = {}

    # ------------------------------------------------------------------ lifecycle
    def init_keys(self, *, created: str) -> KeyRecord:
        """Create the keyring file with its first key (refuses to overwrite one)."""
        with self._lock:
            records = rotate([], created=created)
            record = records[-1]
            state = _State(
                records,
                {record.key_id: Sensitive(AESGCM.generate_key(bit_length=256))},
                None,
                secrets.token_bytes(16),
                (0, 0),
            )
            self._create(state, instead="use `kustos kms keys rotate`")
            return record

    def _change(self, change: Callable[[_State], None]) -> _State:
        """Read the file, apply *change*, write it back, all under the file lock."""
        with self._lock, self._file.locked():
            state = self._read()
            change(state)
            self._write(state)
            self._state = state
            return state

    def rotate_keys(self, *, created: str) -> KeyRecord:
        """Add a new current key."""

        def add(state: _State) -> None:
            state.records = rotate(state.records, created=created)
            key_id = state.records[-1].key_id
            state.materials[key_id] = Sensitive(AESGCM.generate_key(bit_length=256))

        return self._change(add).records[-1]

    def retire_key(self, key_id: str, *, force: bool) -> None:
        """Retire a key and destroy its material."""

        def retire(state: _State) -> None:
            state.records = check_retire(
                state.records, key_id, reencrypted_under=state.reencrypted_under, force=force
            )
            state.materials.pop(key_id, None)

        self._change(retire)

    def record_reencrypt(self, key_id: str) -> None:
        """Remember a complete re-encryption under *key_id*."""

        def record(state: _State) -> None:
            state.reencrypted_under = key_id

        self._change(record)

    def reencrypted_under(self) -> str | None:
        """The key of the last complete re-encryption."""
        with self._lock:
            return self._loaded().reencrypted_under

    # ------------------------------------------------------------------ sealing keys
    def sealing_keys(self) -> list[SealingKey]:
        """Every sealing key, newest (current) first; re-read if the file changed."""
        self.reload()
        with self._lock:
            return sealing_order([e.key() for e in self._loaded().sealing])

    def sealing_identities(self) -> list[tuple[SealingKey, Sensitive]]:
        """Every sealing key with its age identity, newest first."""
        self.reload()
        with self._lock:
            entries = sorted(self._loaded().sealing, key=lambda e: e.sequence, reverse=True)
            return [(e.key(), e.identity) for e in entries]

    def add_sealing_key(self, *, created: str, first: bool) -> SealingKey:
        """Make a new current sealing key (*first*: refuse if there is one already)."""

        def add(state: _State) -> None:
            found = [e.key() for e in state.sealing]
            if first and found:
                raise KmsError(
                    f"keyring {self.path} already has a sealing key: use "
                    "`kustos kms sealing-key rotate`"
                )
            if not first and not found:
                raise KmsError(
                    f"keyring {self.path} has no sealing key: run `kustos kms sealing-key create`"
                )
            sequence = next_sealing_sequence(found)
            recipient, identity = new_identity()
            state.sealing.append(
                SealingEntry(
                    key_id=new_sealing_id(sequence),
                    sequence=sequence,
                    created=created,
                    recipient=recipient,
                    identity=identity,
                )
            )

        return self._change(add).sealing[-1].key()

    def retire_sealing_key(self, key_id: str) -> None:
        """Delete an old sealing key: SealedSecrets sealed only for it no longer open."""

        def drop(state: _State) -> None:
            check_sealing_retire([e.key() for e in state.sealing], key_id)
            state.sealing = [e for e in state.sealing if e.key_id != key_id]

        self._change(drop)

    def export_payload(self) -> bytes:
        """The decrypted keyring (key material included), for an ``age``-encrypted backup."""
        with self._lock:
            body = self._read().body()
        return encode(
            KeyringExport(
                keys=body.keys, reencrypted_under=body.reencrypted_under, sealing=body.sealing
            )
        )

    def import_payload(self, payload: bytes, *, source: str = "the backup") -> list[KeyRecord]:
        """Create this keyring file from an export (recovery); refuses to overwrite.

        *source* names the export in an error (the backup file the payload came from).
        """
        what = "Kustos keyring export"
        try:
            export = decode(KeyringExport, payload, source=source, what=what)
        except InputError as exc:
            raise KmsError(
                f"{source} is not a Kustos keyring export: {_detail(exc, source, what)}"
            ) from exc
        with self._lock:
            state = _State.from_body(export, secrets.token_bytes(16), (0, 0))
            self._create(state, instead="import into a new path")
            return list(state.records)
