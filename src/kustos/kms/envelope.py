"""The plugin's side of the KMS v2 contract: ciphertext format, limits and annotations.

Purely data. kube-apiserver hands the plugin a 32-byte DEK seed to wrap and stores what
comes back (ciphertext, key id, annotations) beside every object. The contract's limits
(k8s.io/apiserver kmsv2 envelope): ciphertext and key id at most 1 KiB each, annotation
keys fully qualified domain names, annotations at most 32 KiB in total.

Ciphertext layout: ``0x01 || provider blob`` where the provider blob is the provider's own
authenticated wrapping (AES-GCM: nonce || ciphertext || tag) with the key id bound in as
associated data, so a ciphertext presented with another key id does not unwrap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from kustos.errors import ContractError
from kustos.kms.keys import KEY_ID_MAX

FORMAT_V1: Final = b"\x01"
CIPHERTEXT_MAX: Final = 1024
ANNOTATIONS_MAX: Final = 32 * 1024
#: nonce (12) + GCM tag (16) + format byte (1): the largest plaintext that still fits.
PLAINTEXT_MAX: Final = CIPHERTEXT_MAX - 12 - 16 - 1
VERSION_ANNOTATION: Final = "version.kms.kustos.io"
VERSION_VALUE: Final = b"1"
_FQDN_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_fqdn(name: str) -> bool:
    """A DNS-1123 subdomain of at least two labels (the API server's annotation key rule)."""
    if len(name) > 253 or "." not in name:
        return False
    return all(len(label) <= 63 and _FQDN_LABEL.match(label) for label in name.split("."))


def check_annotations(annotations: Mapping[str, bytes]) -> None:
    """Raise ``ContractError`` unless the annotations pass the API server's checks."""
    total = 0
    for key, value in annotations.items():
        if not is_fqdn(key):
            raise ContractError(f"annotation key {key[:64]!r} is not a fully qualified domain name")
        total += len(key) + len(value)
    if total > ANNOTATIONS_MAX:
        raise ContractError(f"annotations total {total} bytes, more than {ANNOTATIONS_MAX}")


def default_annotations() -> dict[str, bytes]:
    """The annotations every Encrypt response carries."""
    return {VERSION_ANNOTATION: VERSION_VALUE}


def aad_for(key_id: str) -> bytes:
    """Associated data that binds a wrapped seed to its key id."""
    return b"kustos-kms-v2|" + key_id.encode()


def seal(blob: bytes) -> bytes:
    """Frame a provider blob as a plugin ciphertext; enforce the 1 KiB limit."""
    out = FORMAT_V1 + blob
    if len(out) > CIPHERTEXT_MAX:
        raise ContractError(f"ciphertext would be {len(out)} bytes, more than {CIPHERTEXT_MAX}")
    return out


def unseal(ciphertext: bytes) -> bytes:
    """The provider blob inside a plugin ciphertext; ``ContractError`` for anything else."""
    if not ciphertext:
        raise ContractError("empty ciphertext")
    if len(ciphertext) > CIPHERTEXT_MAX:
        raise ContractError(
            f"ciphertext of {len(ciphertext)} bytes is larger than {CIPHERTEXT_MAX}"
        )
    if ciphertext[:1] != FORMAT_V1:
        raise ContractError("ciphertext was not produced by this plugin (unknown format)")
    return ciphertext[1:]


def check_key_id(key_id: str) -> None:
    """A key id as the contract allows it: non-empty, at most 1 KiB."""
    if not key_id:
        raise ContractError("empty key id")
    if len(key_id.encode()) > KEY_ID_MAX:
        raise ContractError(f"key id longer than {KEY_ID_MAX} bytes")


def check_plaintext(plaintext: bytes) -> None:
    """A plaintext the plugin can wrap within the ciphertext limit."""
    if not plaintext:
        raise ContractError("empty plaintext")
    if len(plaintext) > PLAINTEXT_MAX:
        raise ContractError(f"plaintext of {len(plaintext)} bytes is larger than {PLAINTEXT_MAX}")
