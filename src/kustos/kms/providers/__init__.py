"""Key providers: where key-encryption keys live and who does the wrapping.

``KeyProvider`` is the one interface the gRPC service uses. Implementations:
``keyring.LocalKeyring`` (an encrypted file) and ``pkcs11.Pkcs11Provider`` (an HSM token,
SoftHSM2 in tests). Providers are synchronous and thread-safe; the asyncio service calls
them through ``asyncio.to_thread``.

A provider holds a session or decrypted keys: use it as a context manager (``with``), so
that it is closed when the command or the server is done with it. Implementations subclass
``KeyProvider`` to inherit ``__enter__``/``__exit__``.

Failures are ``KmsError`` (one line, never key material, a PIN or a passphrase); a key
store file that cannot be read or written is a ``FileAccessError`` naming it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from kustos.kms.keys import KeyRecord


class KeyProvider(Protocol):
    """Wraps and unwraps DEK seeds with key-encryption keys it never reveals."""

    def records(self) -> list[KeyRecord]:
        """Every key, in creation order (no key material)."""
        ...

    def current_key_id(self) -> str:
        """The id of the key that wraps now."""
        ...

    def wrap(self, key_id: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt *plaintext* with key *key_id*, binding *aad*; return nonce-prefixed bytes."""
        ...

    def unwrap(self, key_id: str, blob: bytes, aad: bytes) -> bytes:
        """Reverse ``wrap``; raise ``KmsError`` for unknown keys or tampered data."""
        ...

    def reload(self) -> bool:
        """Re-read keys from their store; return True if the current key changed."""
        ...

    def close(self) -> None:
        """Release sessions and handles; calling it again does nothing."""
        ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- lifecycle (``kustos kms keys ...``); each persists its change before returning

    def init_keys(self, *, created: str) -> KeyRecord:
        """Create the first key; raise ``KmsError`` if the store already has keys."""
        ...

    def rotate_keys(self, *, created: str) -> KeyRecord:
        """Create a new current key; the old one stays for unwrapping."""
        ...

    def retire_key(self, key_id: str, *, force: bool) -> None:
        """Retire a key (see ``keys.check_retire``); its material is destroyed."""
        ...

    def record_reencrypt(self, key_id: str) -> None:
        """Remember that every stored object was rewritten while *key_id* was current."""
        ...

    def reencrypted_under(self) -> str | None:
        """The key id recorded by the last complete ``reencrypt``, if any."""
        ...
