"""SOPS files: encrypt and decrypt one YAML document exactly as ``sops`` 3.13 does.

A SOPS file is the document itself with each chosen value replaced by
``ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`` (AES-256-GCM under one random 32-byte data
key, a 32-byte IV, the value's path ``a:b:c:`` as authenticated data), and a top-level
``sops`` block: the data key wrapped once per age recipient (an armored age file holding
the raw key), the rule that chose the values, ``lastmodified``, and ``mac``: SHA-512 over
the plaintext of the values in document order, written in uppercase hex and encrypted like
a value with ``lastmodified`` as authenticated data. The rules below are sops's own
(``sops.go``, ``aes/cipher.go``, ``stores/``), checked against the real binary:

- ``""`` is never encrypted and ``null`` is neither encrypted nor hashed (so neither is
  authenticated); list indices are not part of a path; every key on the path is tested
  against the rule, and a regex rule matches anywhere in the key unless anchored.
- The MAC hashes every value (``mac_only_encrypted: false``, the default) or, behind a
  fixed 32-byte seed (SHA-256 of ``sops``), only the encrypted ones.
- Values are typed ``str``, ``int``, ``float``, ``bool`` or ``time``; their plaintext
  bytes are Go's (``True``/``False``, floats without exponent, RFC 3339 times).

What this module refuses instead of guessing: several key groups (Shamir), comment-based
rules (PyYAML drops comments, so they cannot be evaluated), non-string keys, and values
of other types. Only age X25519 recipients and identities (``age1…``,
``AGE-SECRET-KEY-1…``) unlock a file here; other key types stay in the metadata untouched.

Pure: documents (``dict``) and text in, documents and text out; no file, no clock, no
process. The caller passes the time and, if it wants, the randomness. Errors are
:class:`SopsError` (an ``InputError``) naming the value's path, never a value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from math import isinf, isnan
from typing import Any, Final, Literal

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, ValidationError

from kustos.crypto import age
from kustos.crypto.age import Identities, Recipient, new_identity, parse_recipients, recipient_of
from kustos.errors import InputError, first_problem

__all__ = [
    "DEFAULT_RULE",
    "KUBERNETES_REGEX",
    "MAC_ONLY_ENCRYPTED_SEED",
    "METADATA_KEY",
    "SOPS_VERSION",
    "Decrypted",
    # The age keys, as sealing code has always imported them from here; one
    # implementation, kustos.crypto.age (X25519 only: sops files take no SSH keys here).
    "Identities",
    "MacMismatchError",
    "Metadata",
    "NoMatchingIdentityError",
    "Recipient",
    "Rewrapped",
    "Rule",
    "SopsError",
    "SopsFormatError",
    "SopsIntegrityError",
    "TamperedValueError",
    "decrypt",
    "encrypt",
    "is_encrypted",
    "new_identity",
    "parse_recipients",
    "recipient_of",
    "rewrap",
    "to_yaml",
    "wrap_key",
]

#: The sops release whose file format this module writes (and records as ``version``).
SOPS_VERSION: Final = "3.13.2"
#: The top-level key that holds the metadata block.
METADATA_KEY: Final = "sops"
#: Flux's rule for Kubernetes Secrets: only values under ``data``/``stringData`` encrypted.
KUBERNETES_REGEX: Final = r"^(data|stringData)$"
#: sops's ``MACOnlyEncryptedInitialization``: ``sha256("sops")``, hashed first in that mode.
MAC_ONLY_ENCRYPTED_SEED: Final = hashlib.sha256(b"sops").digest()

_KEY_SIZE: Final = 32
_IV_SIZE: Final = 32  # aes/cipher.go nonceSize; any IV length is accepted on decrypt
_TAG_SIZE: Final = 16
_INT64: Final = 2**63
_ENC: Final = re.compile(
    r"ENC\[AES256_GCM,data:([A-Za-z0-9+/=]+),iv:([A-Za-z0-9+/=]+),"
    r"tag:([A-Za-z0-9+/=]+),type:([a-z]+)\]"
)
_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_GO_INT: Final = re.compile(r"[+-]?[0-9]+")
_GO_BOOL: Final = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")

Leaf = str | bool | int | float | datetime | date | bytes
Path = tuple[str | int, ...]


# --------------------------------------------------------------------------- errors


class SopsError(InputError):
    """A SOPS file (or the input to make one) cannot be used; names paths, never values."""


class SopsFormatError(SopsError):
    """Not a SOPS file, a malformed metadata block or value, or a feature not supported."""


class NoMatchingIdentityError(SopsError):
    """None of the given identities opens any of the file's age stanzas."""


class SopsIntegrityError(SopsError):
    """The file was changed outside sops: a value or the MAC does not authenticate."""


class TamperedValueError(SopsIntegrityError):
    """One value fails AES-GCM authentication (edited, or moved from another path or file)."""


class MacMismatchError(SopsIntegrityError):
    """The values authenticate one by one but not together (removed, added, reordered)."""


# --------------------------------------------------------------------------- rules


RuleKind = Literal["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"]
_RULE_KINDS: Final[tuple[RuleKind, ...]] = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
)
_COMMENT_RULES: Final = ("unencrypted_comment_regex", "encrypted_comment_regex")


@dataclass(frozen=True, slots=True)
class Rule:
    """Which values a file encrypts: one of sops's four key rules (``shouldBeEncrypted``)."""

    kind: RuleKind
    value: str

    def __post_init__(self) -> None:
        if self.kind.endswith("regex"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise SopsFormatError(f"{self.kind} is not a valid regex ({exc.msg})") from None

    def encrypts(self, path: Sequence[str]) -> bool:
        """True if a value at *path* (map keys from the root) is encrypted under this rule."""
        if self.kind == "unencrypted_suffix":
            return not any(key.endswith(self.value) for key in path)
        if self.kind == "encrypted_suffix":
            return any(key.endswith(self.value) for key in path)
        # Go's regexp.Match is unanchored: re.search, not re.match.
        matched = any(re.search(self.value, key) for key in path)
        return not matched if self.kind == "unencrypted_regex" else matched


DEFAULT_RULE: Final = Rule("unencrypted_suffix", "_unencrypted")


# --------------------------------------------------------------------------- keys


def wrap_key(data_key: bytes, recipient: Recipient) -> str:
    """The data key as an armored age file for one recipient (one sops ``age`` stanza)."""
    return age.encrypt(data_key, [recipient], armored=True).decode()


# --------------------------------------------------------------------------- metadata


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _AgeStanza(_Model):
    recipient: str
    enc: str


class _KeyGroup(_Model):
    age: list[_AgeStanza] | None = None


class _Metadata(_Model):
    """The ``sops`` block as stored; other key types are kept as extra fields."""

    age: list[_AgeStanza] | None = None
    key_groups: list[_KeyGroup] | None = None
    lastmodified: str | datetime
    mac: str = ""
    mac_only_encrypted: bool = False
    version: str | float | int | None = None
    unencrypted_suffix: str | None = None
    encrypted_suffix: str | None = None
    unencrypted_regex: str | None = None
    encrypted_regex: str | None = None
    unencrypted_comment_regex: str | None = None
    encrypted_comment_regex: str | None = None


@dataclass(frozen=True, slots=True)
class Metadata:
    """What a SOPS file says about itself, without the wrapped keys."""

    recipients: tuple[str, ...]
    rule: Rule
    mac_only_encrypted: bool
    lastmodified: str
    version: str


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A verified plaintext document (the ``sops`` block removed) and its file's metadata."""

    document: dict[str, Any] = field(repr=False)
    metadata: Metadata


def is_encrypted(document: object) -> bool:
    """True if *document* is a mapping with a top-level ``sops`` block."""
    return isinstance(document, Mapping) and isinstance(document.get(METADATA_KEY), Mapping)


def _read_metadata(block: object, source: str) -> _Metadata:
    if not isinstance(block, Mapping):
        raise SopsFormatError(f"{source}: not a SOPS file (no top-level sops mapping)")
    try:
        return _Metadata.model_validate(dict(block))
    except ValidationError as exc:
        where, why = first_problem(exc)
        raise SopsFormatError(
            f"{source}: the sops block is malformed (sops.{where or 'sops'}: {why})"
        ) from None


def _rule_of(meta: _Metadata, source: str) -> Rule:
    for name in _COMMENT_RULES:
        if getattr(meta, name):
            raise SopsFormatError(
                f"{source}: {name} depends on YAML comments, which Kustos does not read; "
                "decrypt this file with sops -d"
            )
    rules = [Rule(kind, value) for kind in _RULE_KINDS if (value := getattr(meta, kind))]
    if len(rules) > 1:
        raise SopsFormatError(f"{source}: the sops block names more than one encryption rule")
    return rules[0] if rules else DEFAULT_RULE


def _stanzas(meta: _Metadata, source: str) -> list[_AgeStanza]:
    if meta.key_groups:
        if len(meta.key_groups) > 1:
            raise SopsFormatError(
                f"{source}: {len(meta.key_groups)} key groups (Shamir secret sharing) "
                "are not supported; decrypt this file with sops -d"
            )
        return list(meta.key_groups[0].age or ())
    return list(meta.age or ())


def _lastmodified(meta: _Metadata, source: str) -> str:
    """``lastmodified`` re-formatted as Go's ``time.RFC3339`` (the MAC's authenticated data)."""
    value = meta.lastmodified
    if isinstance(value, str):
        match = _TIME.fullmatch(value)
        if match is None:
            raise SopsFormatError(f"{source}: sops.lastmodified is not an RFC 3339 time")
        when = _datetime_of(match)
    else:
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return _go_time(when.replace(microsecond=0))


# --------------------------------------------------------------------------- values


def _where(path: Path) -> str:
    """``spec.data["tls.crt"]``, ``list[2].key``: a value's place, for messages."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f'["{step}"]'
    return out or "(document)"


def _go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if isnan(value):
        return "NaN"
    if isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _go_time(value: datetime) -> str:
    """Go's ``Time.MarshalText`` (RFC 3339 with trailing-zero-free fractions, ``Z`` for UTC)."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{value.microsecond:06d}".rstrip("0")
    if fraction:
        text += "." + fraction
    return text + _go_offset(value.utcoffset() or timedelta(0))


def _go_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _datetime_of(match: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0").ljust(6, "0")[:6])
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )


def _plaintext(value: Leaf, path: Path, source: str) -> tuple[bytes, str]:
    """sops's ``ToBytes`` and type name for one leaf."""
    if isinstance(value, bool):
        return (b"True" if value else b"False"), "bool"
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise SopsFormatError(
                f"{source}: {_where(path)}: integer outside the 64-bit range sops reads"
            )
        return str(value).encode(), "int"
    if isinstance(value, float):
        return _go_float(value).encode(), "float"
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape"), "str"
    if isinstance(value, bytes):  # a !!binary scalar: sops walks it as a string
        return value, "str"
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return _go_time(aware).encode(), "time"
    if isinstance(value, date):  # YAML 2024-01-01: a time at midnight UTC, as go-yaml reads it
        return _go_time(datetime(value.year, value.month, value.day, tzinfo=UTC)).encode(), "time"
    raise SopsFormatError(
        f"{source}: {_where(path)}: a {type(value).__name__} value cannot be stored by sops"
    )


def _from_plaintext(data: bytes, kind: str, path: Path, source: str) -> tuple[Any, bytes]:
    """sops's typed value for decrypted bytes, and the bytes the MAC hashes for it."""
    text = data.decode("utf-8", errors="surrogateescape")
    bad = SopsFormatError(f"{source}: {_where(path)}: the decrypted value is not a valid {kind}")
    value: Any
    if kind == "str":
        return (text if _utf8(data) else data), data
    if kind == "bytes":
        return data, data
    if kind == "int":
        if not _GO_INT.fullmatch(text):
            raise bad from None
        value = int(text)
    elif kind == "float":
        try:
            value = float(text) if "_" not in text and text.strip() == text else None
        except ValueError:
            value = None
        if value is None:
            raise bad from None
    elif kind == "bool":
        if text not in _GO_BOOL:
            raise bad from None
        value = _GO_BOOL[text]
    elif kind == "time":
        match = _TIME.fullmatch(text)
        if match is None:
            raise bad from None
        value = _datetime_of(match)
        fraction = (match.group(7) or "").rstrip("0")
        canonical = (
            text[:19]
            + (f".{fraction}" if fraction else "")
            + _go_offset(value.utcoffset() or timedelta(0))
        )
        return value, canonical.encode()
    else:
        raise SopsFormatError(f"{source}: {_where(path)}: unknown value type {kind[:16]!r}")
    return value, _plaintext(value, path, source)[0]


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _seal_value(key: bytes, plain: bytes, kind: str, aad: str, iv: bytes) -> str:
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode())
    data, tag = sealed[:-_TAG_SIZE], sealed[-_TAG_SIZE:]
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(data).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(tag).decode()},type:{kind}]"
    )


def _open_value(key: bytes, text: str, aad: str, path: Path, source: str) -> tuple[bytes, str]:
    match = _ENC.fullmatch(text)
    if match is None:
        raise SopsFormatError(f"{source}: {_where(path)}: not an ENC[AES256_GCM,…] value")
    try:
        data, iv, tag = (base64.b64decode(match.group(i), validate=True) for i in (1, 2, 3))
    except (binascii.Error, ValueError):
        raise SopsFormatError(f"{source}: {_where(path)}: malformed base64 in the value") from None
    if len(tag) != _TAG_SIZE or not 8 <= len(iv) <= 128:
        raise SopsFormatError(f"{source}: {_where(path)}: malformed IV or tag length")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode())
    except InvalidTag:
        raise TamperedValueError(
            f"{source}: {_where(path)}: the value fails authentication (changed, or copied "
            "from another key or file)"
        ) from None
    return plain, match.group(4)


def _walk(
    value: Any, keys: tuple[str, ...], path: Path, source: str, leaf: Callable[..., Any]
) -> Any:
    """sops's ``walkBranch``/``walkSlice``: rebuild *value*, applying *leaf* to each scalar."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SopsFormatError(
                    f"{source}: {_where(path)}: a {type(key).__name__} key; sops supports "
                    "string keys only (quote it)"
                )
            out[key] = _walk(item, (*keys, key), (*path, key), source, leaf)
        return out
    if isinstance(value, list):
        return [_walk(item, keys, (*path, i), source, leaf) for i, item in enumerate(value)]
    if value is None:
        return None
    return leaf(value, keys, path)


def _aad(keys: Sequence[str]) -> str:
    return ":".join(keys) + ":"


# --------------------------------------------------------------------------- encrypt


def encrypt(
    document: Mapping[str, Any],
    recipients: Sequence[Recipient],
    *,
    now: datetime,
    rule: Rule = DEFAULT_RULE,
    mac_only_encrypted: bool = False,
    randbytes: Callable[[int], bytes] = os.urandom,
    source: str = "<document>",
) -> dict[str, Any]:
    """Encrypt *document* for *recipients* as ``sops encrypt`` would (``sops`` block last).

    *now* becomes ``lastmodified`` (whole seconds, UTC); *randbytes* gives the data key and
    the IVs (``os.urandom``; tests pass their own to compare bytes).
    """
    if METADATA_KEY in document:
        raise SopsFormatError(f"{source}: already has a top-level sops key (encrypted twice?)")
    if not recipients:
        raise age.RecipientError(f"{source}: no recipient to encrypt for")
    key = randbytes(_KEY_SIZE)
    digest = hashlib.sha512()
    if mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_SEED)

    def leaf(value: Leaf, keys: tuple[str, ...], path: Path) -> Any:
        plain, kind = _plaintext(value, path, source)
        encrypted = rule.encrypts(keys)
        if encrypted or not mac_only_encrypted:
            digest.update(plain)
        if not encrypted or (not plain and kind == "str"):  # "" stays "" (aes isEmpty)
            return value
        return _seal_value(key, plain, kind, _aad(keys), randbytes(_IV_SIZE))

    body: dict[str, Any] = _walk(document, (), (), source, leaf)
    stamp = _go_time(now.astimezone(UTC).replace(microsecond=0))
    mac = _seal_value(key, digest.hexdigest().upper().encode(), "str", stamp, randbytes(_IV_SIZE))
    block: dict[str, Any] = {
        "age": [{"enc": wrap_key(key, r), "recipient": r.text} for r in recipients],
        rule.kind: rule.value,
        "lastmodified": stamp,
        "mac": mac,
        "version": SOPS_VERSION,
    }
    if mac_only_encrypted:
        block["mac_only_encrypted"] = True
    body[METADATA_KEY] = dict(sorted(block.items()))  # 3.13 writes the block sorted
    return body


# --------------------------------------------------------------------------- decrypt


def _unwrap(meta: _Metadata, identities: Identities, source: str) -> bytes:
    stanzas = _stanzas(meta, source)
    if not stanzas:
        kinds = ", ".join(sorted(k for k, v in (meta.model_extra or {}).items() if v)) or "none"
        raise NoMatchingIdentityError(
            f"{source}: the file has no age recipient (key types: {kinds}); Kustos opens "
            "age recipients only"
        )
    for stanza in stanzas:
        key = identities.open(stanza.enc)
        if key is not None:
            if len(key) != _KEY_SIZE:
                raise SopsFormatError(f"{source}: the age stanza does not hold a 32-byte key")
            return key
    named = ", ".join(_short(s.recipient) for s in stanzas)
    raise NoMatchingIdentityError(
        f"{source}: none of the given identities opens this file (it is encrypted for {named})"
    )


def _short(recipient: str) -> str:
    return f"{recipient[:9]}…{recipient[-4:]}" if len(recipient) > 16 else recipient


def decrypt(
    document: Mapping[str, Any], identities: Identities, *, source: str = "<document>"
) -> Decrypted:
    """Decrypt and verify a SOPS document as ``sops decrypt`` does (every value, then the MAC).

    Raises :class:`TamperedValueError` naming the first value that fails, and
    :class:`MacMismatchError` when all values authenticate but the MAC does not.
    """
    if not isinstance(document, Mapping) or METADATA_KEY not in document:
        raise SopsFormatError(f"{source}: not a SOPS file (no top-level sops block)")
    meta = _read_metadata(document[METADATA_KEY], source)
    rule = _rule_of(meta, source)
    stamp = _lastmodified(meta, source)
    if not meta.mac:
        raise MacMismatchError(f"{source}: the file has no MAC; refused")
    key = _unwrap(meta, identities, source)
    digest = hashlib.sha512()
    if meta.mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_SEED)

    def leaf(value: Leaf, keys: tuple[str, ...], path: Path) -> Any:
        encrypted = rule.encrypts(keys)
        if not encrypted:
            if not meta.mac_only_encrypted:
                digest.update(_plaintext(value, path, source)[0])
            return value
        if not isinstance(value, str):
            raise SopsFormatError(
                f"{source}: {_where(path)}: expected an encrypted value, found a "
                f"{type(value).__name__} in clear"
            )
        if value == "":
            return ""
        plain, kind = _open_value(key, value, _aad(keys), path, source)
        result, hashed = _from_plaintext(plain, kind, path, source)
        digest.update(hashed)
        return result

    body = {k: v for k, v in document.items() if k != METADATA_KEY}
    plain_doc: dict[str, Any] = _walk(body, (), (), source, leaf)
    try:
        stored, kind = _open_value(key, meta.mac, stamp, (METADATA_KEY, "mac"), source)
    except TamperedValueError:
        raise MacMismatchError(
            f"{source}: the MAC does not authenticate (sops.mac or sops.lastmodified was changed)"
        ) from None
    if kind != "str" or not hmac.compare_digest(stored, digest.hexdigest().upper().encode()):
        raise MacMismatchError(
            f"{source}: MAC mismatch: values were removed, added, reordered or changed outside sops"
        )
    metadata = Metadata(
        recipients=tuple(s.recipient for s in _stanzas(meta, source)),
        rule=rule,
        mac_only_encrypted=meta.mac_only_encrypted,
        lastmodified=stamp,
        version=str(meta.version or ""),
    )
    return Decrypted(plain_doc, metadata)


# --------------------------------------------------------------------------- rewrap


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """A file whose data key was wrapped again for another set of recipients."""

    document: dict[str, Any] = field(repr=False)
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """True if the recipients differ (an unchanged file need not be written)."""
        return self.before != self.after


def rewrap(
    document: Mapping[str, Any],
    identities: Identities,
    recipients: Sequence[Recipient],
    *,
    source: str = "<document>",
) -> Rewrapped:
    """*document* with its data key wrapped for exactly *recipients* (``sops updatekeys``).

    The file is verified first (every value and the MAC), with :func:`decrypt`. The data
    key, every encrypted value, ``lastmodified`` and the MAC stay byte for byte, so ``sops``
    still opens and edits it and a Git diff shows only the ``sops.age`` stanzas; a stanza
    for a recipient the file already had is kept as it was.
    """
    if not recipients:
        raise age.RecipientError(f"{source}: no recipient to wrap the data key for")
    decrypt(document, identities, source=source)
    meta = _read_metadata(document[METADATA_KEY], source)
    if meta.key_groups:
        raise SopsFormatError(
            f"{source}: the file uses key_groups; change its recipients with sops updatekeys"
        )
    key = _unwrap(meta, identities, source)
    kept = {s.recipient: s.enc for s in meta.age or ()}
    unique = list(dict.fromkeys(r.text for r in recipients))
    by_text = {r.text: r for r in recipients}
    stanzas = [
        {"enc": kept.get(text) or wrap_key(key, by_text[text]), "recipient": text}
        for text in unique
    ]
    block = dict(document[METADATA_KEY])
    block["age"] = stanzas
    body = {k: v for k, v in document.items() if k != METADATA_KEY}
    body[METADATA_KEY] = block
    return Rewrapped(body, tuple(s.recipient for s in meta.age or ()), tuple(unique))


# --------------------------------------------------------------------------- YAML


class _GoYamlDumper(yaml.SafeDumper):
    """PyYAML made to look like go-yaml v3 as sops uses it: indent 4, list items indented."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        if not flow and self.sequence_context and self.indent is not None:
            # A collection that is a list item: its keys line up after "- ".
            self.indents.append(self.indent)
            self.indent += 2
            return
        super().increase_indent(flow, indentless=False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    resolve: Any = dumper.resolve  # untyped in types-PyYAML
    style: str | None = None
    if "\n" in value:
        style = "|"
    elif resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        style = '"'  # go-yaml double-quotes strings that would read as another type
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GoYamlDumper.add_representer(str, _represent_str)


def to_yaml(document: Mapping[str, Any], *, indent: int = 4) -> str:
    """*document* as block YAML in sops's layout (keys in order, literal blocks for ``enc``)."""
    text: str = yaml.dump(
        dict(document),
        Dumper=_GoYamlDumper,
        indent=indent,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
    )
    return text
