"""Make the values of one ManagedSecret version from its ``spec.data`` generators.

:func:`generate` returns every key :func:`~kustos.rotation.spec.produced_keys` names, each
value wrapped in :class:`~kustos.sensitive.Sensitive`. It is pure: the randomness, the
time, the issuer CAs and the PostgreSQL role to use are arguments, read or chosen by the
caller. Choices made here:

- ``password``: a uniform choice among all strings of the alphabet that hold at least one
  character of each chosen class (rejection sampling over ``randbelow``, which has no
  modulo bias). If a class is so small that rejection keeps failing, one character of
  each class is placed at a random position instead; that fallback is slightly biased
  towards the small class and only reachable with tiny classes in short passwords.
- ``token``: ``hex``; ``base64`` keeps its ``=`` padding (RFC 4648, section 4);
  ``base64url`` drops it, as JWTs and External Secrets do (RFC 4648, section 5, with
  the padding omission of RFC 7515).
- ``sshKeypair`` and ``x509``: keys come from ``cryptography``, which reads the operating
  system's random source; it cannot take ours. Certificate serials come from ours.
- ``template`` and ``dockerConfig`` read other keys; they are resolved in dependency
  order, so a template may use another template. An unknown key or a cycle is an
  :class:`InvalidSpecError` naming the keys (:func:`check_references` finds it without
  generating anything). Values are inserted as they are, without escaping: a password
  that goes into a URL should ``exclude`` the characters URLs reserve. A value larger
  than a whole Secret may be is refused before it is built.
- With *previous* (the current version's values), a random value equal to its previous
  one is drawn again: a rotation that silently keeps a credential is not a rotation.

Messages name keys and fields, never values. Pure: no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kustos.crypto.certificates import (
    CaMaterial,
    InvalidIssuerError,
    check_dns_names,
    issue_leaf,
    load_issuer,
)
from kustos.durations import parse_duration
from kustos.errors import InvalidSpecError, KustosError
from kustos.rotation.spec import (
    X509,
    DockerConfig,
    ManagedSecretSpec,
    Password,
    PostgresRole,
    SshAlgorithm,
    SshKeypair,
    Token,
    TokenEncoding,
    Uuid,
    produced_keys,
)
from kustos.sensitive import Sensitive

#: ``{{ key }}`` in a template; the key follows the Secret data-key rule.
PLACEHOLDER: Final = re.compile(r"\{\{\s*([-._a-zA-Z0-9]+)\s*\}\}")
_PLACEHOLDER_BYTES: Final = re.compile(PLACEHOLDER.pattern.encode())
#: The API server refuses a Secret larger than 1 MiB; no single value may be larger.
MAX_VALUE_BYTES: Final = 1024 * 1024
#: Whole-password draws before placing one character of each class by construction.
_REJECTION_ROUNDS: Final = 200
#: Draws of a random value that keep equalling the previous one before giving up.
_FRESH_ATTEMPTS: Final = 8


class RandomSource(Protocol):
    """Where generators draw randomness; the ``secrets`` module satisfies it."""

    def token_bytes(self, nbytes: int, /) -> bytes:
        """*nbytes* uniformly random bytes."""
        ...

    def randbelow(self, exclusive_upper_bound: int, /) -> int:
        """A uniformly random integer in ``[0, exclusive_upper_bound)``."""
        ...


class RandomSourceError(KustosError):
    """The random source keeps returning the value being replaced; it cannot be trusted."""


@dataclass(frozen=True, slots=True)
class _Context:
    spec: ManagedSecretSpec
    rng: RandomSource
    now: dt.datetime
    ca: Mapping[str, CaMaterial]
    postgres_users: Mapping[str, str]
    previous: Mapping[str, Sensitive]


def generate(
    spec: ManagedSecretSpec,
    *,
    rng: RandomSource,
    now: dt.datetime,
    ca: Mapping[str, CaMaterial],
    postgres_users: Mapping[str, str],
    previous: Mapping[str, Sensitive] | None = None,
    sourced: Mapping[str, Sensitive] | None = None,
) -> dict[str, Sensitive]:
    """Return every produced key of *spec* with a fresh value, in ``produced_keys`` order.

    *ca* maps an issuer Secret name to its material; *postgres_users* maps a
    ``postgresRole`` data key to the role this version uses (one of its ``roles()``).
    *sourced* holds the values the caller read from secrets managers (``vault``,
    ``awsSecretsManager`` keys): they are taken as they are, and templates may use them.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    order = _derived_order(spec)
    ctx = _Context(spec, rng, now, ca, postgres_users, previous or {})
    values: dict[str, Sensitive] = {}
    for key, gen in spec.data.items():
        if gen.from_store:
            if sourced is None or key not in sourced:
                raise InvalidSpecError(f"spec.data.{key}: its store value was not read")
            values[key] = sourced[key]
        elif key not in order:
            values.update(_primary(ctx, key, gen.config))
    for key in order:
        config = spec.data[key].config
        if isinstance(config, DockerConfig):
            values[key] = _docker_config(key, config, values)
        else:
            values[key] = _template(key, config, values)
    return {k: values[k] for k in produced_keys(spec)}


def check_references(spec: ManagedSecretSpec) -> None:
    """Raise ``InvalidSpecError`` if a template or dockerConfig names an unknown key or a
    cycle; generate nothing (the operator calls this when it reads the spec)."""
    _derived_order(spec)


# --------------------------------------------------------------------------- dependencies
def _references(key: str, config: object) -> list[tuple[str, str]]:
    """(field, referenced key) pairs of a derived generator."""
    if isinstance(config, DockerConfig):
        refs = [("dockerConfig.passwordFrom", config.password_from)]
        if config.username_from is not None:
            refs.append(("dockerConfig.usernameFrom", config.username_from))
        return refs
    if isinstance(config, str):
        return [("template", m) for m in PLACEHOLDER.findall(config)]
    raise TypeError(f"spec.data.{key} is not a derived generator")


def _derived_order(spec: ManagedSecretSpec) -> list[str]:
    """Template and dockerConfig keys, each after the derived keys it reads."""
    derived = {
        key: _references(key, gen.config)
        for key, gen in spec.data.items()
        if gen.kind in {"template", "docker_config"}
    }
    known = set(produced_keys(spec))
    for key, refs in derived.items():
        unknown = sorted({ref for _, ref in refs if ref not in known})
        if unknown:
            field = next(f for f, r in refs if r == unknown[0])
            raise InvalidSpecError(
                f"spec.data.{key}.{field}: refers to unknown key(s) {', '.join(unknown)}"
            )
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            cycle = [*path[path.index(key) :], key]
            raise InvalidSpecError(
                f"spec.data: {' -> '.join(cycle)} refer to each other in a cycle"
            )
        state[key] = "visiting"
        for _, ref in derived[key]:
            if ref in derived:
                visit(ref, [*path, key])
        state[key] = "done"
        order.append(key)

    for key in derived:
        visit(key, [])
    return order


# --------------------------------------------------------------------------- random values
def _fresh(ctx: _Context, key: str, draw: Callable[[], bytes]) -> Sensitive:
    """Draw until the value differs from the previous version's (almost always once)."""
    before = ctx.previous.get(key)
    for _ in range(_FRESH_ATTEMPTS):
        value = Sensitive(draw())
        if before is None or value != before:
            return value
    raise RandomSourceError(
        f"spec.data.{key}: the random source returned the previous value {_FRESH_ATTEMPTS} times"
    )


def _classes(config: Password, where: str) -> list[tuple[str, str]]:
    chosen = [
        ("lower", string.ascii_lowercase, config.lower),
        ("upper", string.ascii_uppercase, config.upper),
        ("digits", string.digits, config.digits),
        ("symbols", config.symbol_characters, config.symbols),
    ]
    out = []
    for name, chars, wanted in chosen:
        if not wanted:
            continue
        left = "".join(dict.fromkeys(c for c in chars if c not in config.exclude))
        if not left:
            raise InvalidSpecError(f"{where}.exclude: removes every character of class {name}")
        out.append((name, left))
    return out


def password_text(config: Password, rng: RandomSource, *, where: str = "password") -> str:
    """A password following *config*; ``InvalidSpecError`` (at *where*) if impossible."""
    named = _classes(config, where)
    classes = [set(chars) for _, chars in named]
    alphabet = "".join(dict.fromkeys(c for _, chars in named for c in chars))
    size = len(alphabet)
    for _ in range(_REJECTION_ROUNDS):
        chars = [alphabet[rng.randbelow(size)] for _ in range(config.length)]
        if all(not cls.isdisjoint(chars) for cls in classes):
            return "".join(chars)
    # Tiny classes in a short password: place one of each, fill the rest, shuffle.
    chars = [
        *(chars[rng.randbelow(len(chars))] for chars in (sorted(c) for c in classes)),
        *(alphabet[rng.randbelow(size)] for _ in range(config.length - len(classes))),
    ]
    for i in range(len(chars) - 1, 0, -1):  # Fisher-Yates
        j = rng.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _password(ctx: _Context, key: str, config: Password) -> dict[str, Sensitive]:
    where = f"spec.data.{key}.password"
    return {key: _fresh(ctx, key, lambda: password_text(config, ctx.rng, where=where).encode())}


def _token(ctx: _Context, key: str, config: Token) -> dict[str, Sensitive]:
    def draw() -> bytes:
        raw = ctx.rng.token_bytes(config.bytes)
        if config.encoding is TokenEncoding.HEX:
            return raw.hex().encode()
        if config.encoding is TokenEncoding.BASE64:
            return base64.b64encode(raw)
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    return {key: _fresh(ctx, key, draw)}


def _uuid(ctx: _Context, key: str, config: Uuid) -> dict[str, Sensitive]:
    del config  # no settings
    return {
        key: _fresh(
            ctx, key, lambda: str(uuid.UUID(bytes=ctx.rng.token_bytes(16), version=4)).encode()
        )
    }


def _ssh_keypair(ctx: _Context, key: str, config: SshKeypair) -> dict[str, Sensitive]:
    if any(not c.isprintable() for c in config.comment):
        raise InvalidSpecError(f"spec.data.{key}.sshKeypair.comment: must be one printable line")
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if config.algorithm is SshAlgorithm.RSA:
        private = rsa.generate_private_key(public_exponent=65537, key_size=config.bits)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if config.comment:
        public += b" " + config.comment.encode()
    return {
        key: Sensitive(private_pem),
        config.public_key_key or f"{key}.pub": Sensitive(public + b"\n"),
    }


def _x509(ctx: _Context, key: str, config: X509) -> dict[str, Sensitive]:
    where = f"spec.data.{key}.x509"
    bad = check_dns_names(config.dns_names)
    if bad:
        raise InvalidSpecError(f"{where}.dnsNames.{bad[0]}: not a DNS name")
    material = ctx.ca.get(config.issuer.name)
    if material is None:
        raise InvalidIssuerError(f"{where}.issuer: CA Secret {config.issuer.name} was not read")
    issuer = load_issuer(config.issuer.name, material, now=ctx.now)
    serial = int.from_bytes(ctx.rng.token_bytes(16), "big") >> 1 or 1  # positive, < 2**127
    issued = issue_leaf(
        issuer,
        common_name=config.common_name,
        dns_names=config.dns_names,
        now=ctx.now,
        lifetime=parse_duration(config.duration),
        serial=serial,
        key_algorithm=config.key_algorithm,
    )
    out = {key: Sensitive(issued.chain_pem), config.private_key_key: issued.key_pem}
    if config.ca_key:
        out[config.ca_key] = Sensitive(issued.ca_pem)
    return out


def _postgres_role(ctx: _Context, key: str, config: PostgresRole) -> dict[str, Sensitive]:
    where = f"spec.data.{key}.postgresRole"
    role = ctx.postgres_users.get(key)
    if role not in config.roles():
        # The caller picks the role; anything else would set a password nobody applies.
        raise InvalidSpecError(f"{where}: no role among {', '.join(config.roles())} was chosen")
    password = _fresh(
        ctx,
        key,
        lambda: password_text(config.password, ctx.rng, where=f"{where}.password").encode(),
    )
    return {key: password, config.username_key: Sensitive(role)}


def _primary(ctx: _Context, key: str, config: object) -> dict[str, Sensitive]:
    """The values of a generator that reads no other key."""
    if isinstance(config, Password):
        return _password(ctx, key, config)
    if isinstance(config, Token):
        return _token(ctx, key, config)
    if isinstance(config, Uuid):
        return _uuid(ctx, key, config)
    if isinstance(config, SshKeypair):
        return _ssh_keypair(ctx, key, config)
    if isinstance(config, X509):
        return _x509(ctx, key, config)
    if isinstance(config, PostgresRole):
        return _postgres_role(ctx, key, config)
    raise TypeError(f"spec.data.{key}: no generator for {type(config).__name__}")


# --------------------------------------------------------------------------- derived values
def _template(key: str, template: str, values: Mapping[str, Sensitive]) -> Sensitive:
    raw = template.encode()
    matches = list(_PLACEHOLDER_BYTES.finditer(raw))
    # Templates of templates grow geometrically; refuse before building, not after.
    size = len(raw) + sum(len(values[m.group(1).decode()]) - len(m.group(0)) for m in matches)
    if size > MAX_VALUE_BYTES:
        raise InvalidSpecError(
            f"spec.data.{key}.template: the value would exceed {MAX_VALUE_BYTES} bytes, "
            "the size limit of a whole Secret"
        )
    return Sensitive(_PLACEHOLDER_BYTES.sub(lambda m: values[m.group(1).decode()].reveal(), raw))


def _text(values: Mapping[str, Sensitive], ref: str, where: str) -> str:
    try:
        return values[ref].reveal().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpecError(f"{where}: key {ref} is not UTF-8 text") from None


def _docker_config(key: str, config: DockerConfig, values: Mapping[str, Sensitive]) -> Sensitive:
    where = f"spec.data.{key}.dockerConfig"
    if config.username_from is not None:
        username = _text(values, config.username_from, f"{where}.usernameFrom")
    else:
        username = config.username or ""
    if ":" in username:
        # Basic auth splits at the first colon: such a name cannot log in.
        raise InvalidSpecError(f"{where}: the username must not contain ':'")
    password = _text(values, config.password_from, f"{where}.passwordFrom")
    entry = {
        "username": username,
        "password": password,
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode(),
    }
    if config.email is not None:
        entry["email"] = config.email
    doc = {"auths": {config.registry: entry}}
    return Sensitive(json.dumps(doc, separators=(",", ":")).encode())
