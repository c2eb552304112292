"""A local keyring file: AES-256 key-encryption keys, encrypted with a passphrase.

File format (JSON, mode 0600): ``{"kustos_keyring": 1, "kdf": {"name": "scrypt", "salt",
"n", "r", "p"}, "nonce", "ciphertext"}``; the ciphertext is AES-256-GCM under a key derived
from the passphrase with scrypt and holds ``{"keys": [{"key_id", "sequence", "created",
"state", "material"}], "reencrypted_under"}``. Key material never leaves this module except
through ``export`` (an ``age``-encrypted backup). The file is rewritten atomically
(temporary file, fsync, rename), so a running plugin never reads half a file.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kustos.errors import KmsError
from kustos.kms.keys import (
    KeyRecord,
    KeyState,
    check_retire,
    current,
    key_id_hash,
    rotate,
)
from kustos.sensitive import Sensitive

log = logging.getLogger("kustos.kms.keyring")

FORMAT: Final = 1
FILE_AAD: Final = b"kustos-keyring-v1"
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1


@dataclass(slots=True)
class _State:
    records: list[KeyRecord]
    materials: dict[str, Sensitive]
    reencrypted_under: str | None
    salt: bytes
    stamp: tuple[int, int]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not base64 text")
    return base64.b64decode(text, validate=True)


class LocalKeyring:
    """``KeyProvider`` over an encrypted keyring file."""

    def __init__(self, path: Path, passphrase: Sensitive, *, must_exist: bool = True) -> None:
        self.path = path
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

    def _read(self) -> _State:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise KmsError(
                f"keyring {self.path} does not exist: run `kustos kms keys init`"
            ) from None
        except OSError as exc:
            raise KmsError(f"keyring {self.path} cannot be read: {exc.strerror}") from exc
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KmsError(
                f"keyring {self.path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 on it"
            )
        try:
            doc = json.loads(self.path.read_bytes())
            if doc.get("kustos_keyring") != FORMAT:
                raise ValueError("unknown format")
            kdf = doc["kdf"]
            salt = _unb64(kdf["salt"])
            if (kdf["name"], kdf["n"], kdf["r"], kdf["p"]) != (
                "scrypt",
                SCRYPT_N,
                SCRYPT_R,
                SCRYPT_P,
            ):
                raise ValueError("unsupported key derivation")
            nonce, sealed = _unb64(doc["nonce"]), _unb64(doc["ciphertext"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KmsError(
                f"keyring {self.path} is not a Kustos keyring (damaged or foreign)"
            ) from exc
        try:
            payload = AESGCM(self._derive(salt)).decrypt(nonce, sealed, FILE_AAD)
        except InvalidTag:
            raise KmsError(
                f"wrong passphrase for keyring {self.path} (or the file was altered)"
            ) from None
        body = json.loads(payload)
        records, materials = [], {}
        for entry in body["keys"]:
            record = KeyRecord(
                entry["key_id"], int(entry["sequence"]), entry["created"], KeyState(entry["state"])
            )
            records.append(record)
            if record.state is not KeyState.RETIRED:
                materials[record.key_id] = Sensitive(_unb64(entry["material"]))
        return _State(
            records,
            materials,
            body.get("reencrypted_under"),
            salt,
            (info.st_mtime_ns, info.st_size),
        )

    @staticmethod
    def _body(state: _State) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "key_id": r.key_id,
                    "sequence": r.sequence,
                    "created": r.created,
                    "state": r.state.value,
                    "material": _b64(state.materials[r.key_id].reveal())
                    if r.key_id in state.materials
                    else "",
                }
                for r in state.records
            ],
            "reencrypted_under": state.reencrypted_under,
        }

    def _write(self, state: _State) -> None:
        body = self._body(state)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._derive(state.salt)).encrypt(
            nonce, json.dumps(body).encode(), FILE_AAD
        )
        doc = {
            "kustos_keyring": FORMAT,
            "kdf": {
                "name": "scrypt",
                "salt": _b64(state.salt),
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
            },
            "nonce": _b64(nonce),
            "ciphertext": _b64(sealed),
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(doc, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        state.stamp = self._stamp()

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

    # ------------------------------------------------------------------ lifecycle
    def init_keys(self, *, created: str) -> KeyRecord:
        """Create the keyring file with its first key (refuses to overwrite one)."""
        with self._lock:
            if self.path.exists():
                raise KmsError(f"keyring {self.path} already exists; use `kustos kms keys rotate`")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            records = rotate([], created=created)
            record = records[-1]
            state = _State(
                records,
                {record.key_id: Sensitive(AESGCM.generate_key(bit_length=256))},
                None,
                secrets.token_bytes(16),
                (0, 0),
            )
            self._write(state)
            self._state = state
            return record

    def rotate_keys(self, *, created: str) -> KeyRecord:
        """Add a new current key."""
        with self._lock:
            state = self._read()
            state.records = rotate(state.records, created=created)
            record = state.records[-1]
            state.materials[record.key_id] = Sensitive(AESGCM.generate_key(bit_length=256))
            self._write(state)
            self._state = state
            return record

    def retire_key(self, key_id: str, *, force: bool) -> None:
        """Retire a key and destroy its material."""
        with self._lock:
            state = self._read()
            state.records = check_retire(
                state.records, key_id, reencrypted_under=state.reencrypted_under, force=force
            )
            state.materials.pop(key_id, None)
            self._write(state)
            self._state = state

    def record_reencrypt(self, key_id: str) -> None:
        """Remember a complete re-encryption under *key_id*."""
        with self._lock:
            state = self._read()
            state.reencrypted_under = key_id
            self._write(state)
            self._state = state

    def reencrypted_under(self) -> str | None:
        """The key of the last complete re-encryption."""
        with self._lock:
            return self._loaded().reencrypted_under

    def export_payload(self) -> bytes:
        """The decrypted keyring (key material included), for an ``age``-encrypted backup."""
        with self._lock:
            state = self._read()
        return json.dumps({"kustos_keyring_export": FORMAT, **self._body(state)}).encode()

    def import_payload(self, payload: bytes) -> list[KeyRecord]:
        """Create this keyring file from an export (recovery); refuses to overwrite."""
        with self._lock:
            if self.path.exists():
                raise KmsError(f"keyring {self.path} already exists; import into a new path")
            try:
                body = json.loads(payload)
                if body.get("kustos_keyring_export") != FORMAT:
                    raise ValueError("not an export")
                records = [
                    KeyRecord(e["key_id"], int(e["sequence"]), e["created"], KeyState(e["state"]))
                    for e in body["keys"]
                ]
                materials = {
                    e["key_id"]: Sensitive(_unb64(e["material"]))
                    for e in body["keys"]
                    if e["state"] != KeyState.RETIRED.value
                }
            except (ValueError, KeyError, TypeError) as exc:
                raise KmsError("the file is not a Kustos keyring export") from exc
            self.path.parent.mkdir(parents=True, exist_ok=True)
            state = _State(
                records, materials, body.get("reencrypted_under"), secrets.token_bytes(16), (0, 0)
            )
            self._write(state)
            self._state = state
            return records
