"""The ``ManagedSecret`` resource (``kustos.io/v1alpha1``) as typed values.

A ManagedSecret's ``spec`` is untrusted input (anybody who may create the resource writes
it), so it enters through pydantic here, once; the rest of the rotation code reads the
frozen models. :func:`parse_spec` turns every validation failure into one
:class:`InvalidSpecError` naming the field (``spec.data.password.password.length: ...``),
which the operator shows as the ``Ready=False`` reason. The CRD's OpenAPI schema in
``deploy/crd-managedsecret.yaml`` says the same things for the API server; a unit test
holds the two together.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kustos.durations import parse_duration
from kustos.errors import InvalidSpecError, first_problem
from kustos.kube.objects import DNS1123_SUBDOMAIN
from kustos.rotation.schedules import parse_cron, parse_window

KIND: Final = "ManagedSecret"
PLURAL: Final = "managedsecrets"
DEFAULT_KEEP: Final = 5
MAX_KEEP: Final = 100
_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")  # the API server's rule for Secret data keys


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretType(StrEnum):
    """The Secret types a ManagedSecret can produce."""

    OPAQUE = "Opaque"
    TLS = "kubernetes.io/tls"
    DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
    BASIC_AUTH = "kubernetes.io/basic-auth"
    SSH_AUTH = "kubernetes.io/ssh-auth"


#: Keys the API server requires for each type (it refuses the Secret without them).
REQUIRED_KEYS: Final[Mapping[SecretType, tuple[str, ...]]] = {
    SecretType.OPAQUE: (),
    SecretType.TLS: ("tls.crt", "tls.key"),
    SecretType.DOCKER_CONFIG_JSON: (".dockerconfigjson",),
    SecretType.BASIC_AUTH: (),
    SecretType.SSH_AUTH: ("ssh-privatekey",),
}


# --------------------------------------------------------------------------- generators
class Password(_Model):
    """Random characters from the chosen classes, at least one of each class chosen."""

    length: Annotated[int, Field(ge=8, le=1024)] = 32
    lower: bool = True
    upper: bool = True
    digits: bool = True
    symbols: bool = False
    symbol_characters: Annotated[str, Field(alias="symbolCharacters", min_length=1)] = (
        "!#$%&()*+,-./:;<=>?@[]^_{|}~"
    )
    exclude: str = ""  # characters never used (quotes that break a shell or a URL, ...)

    @model_validator(mode="after")
    def _some_class(self) -> Password:
        if not (self.lower or self.upper or self.digits or self.symbols):
            raise ValueError("choose at least one character class")
        return self


class TokenEncoding(StrEnum):
    """How token bytes become text."""

    HEX = "hex"
    BASE64 = "base64"
    BASE64URL = "base64url"


class Token(_Model):
    """Random bytes, encoded."""

    bytes: Annotated[int, Field(ge=16, le=4096)] = 32
    encoding: TokenEncoding = TokenEncoding.HEX


class Uuid(_Model):
    """A random (version 4) UUID."""


class SshAlgorithm(StrEnum):
    """Key types for ``sshKeypair``."""

    ED25519 = "ed25519"
    RSA = "rsa"


class SshKeypair(_Model):
    """An OpenSSH private key under this key, its public key under ``publicKeyKey``."""

    algorithm: SshAlgorithm = SshAlgorithm.ED25519
    bits: Annotated[int, Field(ge=2048, le=8192)] = 4096  # RSA only
    public_key_key: Annotated[str | None, Field(alias="publicKeyKey")] = None
    comment: str = ""


class SecretKeyRef(_Model):
    """A Secret in the ManagedSecret's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]


class X509(_Model):
    """A certificate (PEM) under this key, signed by the CA in ``issuer``.

    The private key goes under ``privateKeyKey`` (default ``tls.key``) and the CA
    certificate, if ``caKey`` is set, under that key. The CA Secret holds ``tls.crt`` and
    ``tls.key`` (what ``kubectl create secret tls`` makes).
    """

    issuer: SecretKeyRef
    common_name: Annotated[str, Field(alias="commonName", min_length=1, max_length=64)]
    dns_names: Annotated[tuple[str, ...], Field(alias="dnsNames")] = ()
    duration: str = "2160h"  # 90 days, as cert-manager
    renew_before: Annotated[str | None, Field(alias="renewBefore")] = None  # default 1/3
    private_key_key: Annotated[str, Field(alias="privateKeyKey")] = "tls.key"
    ca_key: Annotated[str | None, Field(alias="caKey")] = None
    key_algorithm: Annotated[Literal["ecdsa-p256", "rsa-2048"], Field(alias="keyAlgorithm")] = (
        "ecdsa-p256"
    )

    @model_validator(mode="after")
    def _durations(self) -> X509:
        life = parse_duration(self.duration)
        if life.total_seconds() < 3600:
            raise ValueError("duration must be at least 1h")
        if self.renew_before is not None and parse_duration(self.renew_before) >= life:
            raise ValueError("renewBefore must be shorter than duration")
        return self


class PostgresStrategy(StrEnum):
    """How a database password changes without refusing clients."""

    ALTERNATING = "alternating"  # two roles; the inactive one gets the new password
    SINGLE = "single"  # one role, password changed in place


class PostgresRole(_Model):
    """A PostgreSQL login role's password under this key (its name under ``usernameKey``)."""

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: str = "postgres"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    admin_secret: Annotated[SecretKeyRef, Field(alias="adminSecret")]
    role: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z_][a-z0-9_]*$")]
    strategy: PostgresStrategy = PostgresStrategy.ALTERNATING
    username_key: Annotated[str, Field(alias="usernameKey")] = "username"
    password: Password = Password(length=32, symbols=False)

    def roles(self) -> tuple[str, ...]:
        """The role names this generator alternates between (one for ``single``)."""
        if self.strategy is PostgresStrategy.SINGLE:
            return (self.role,)
        return (f"{self.role}_a", f"{self.role}_b")


class DockerConfig(_Model):
    """A ``.dockerconfigjson`` for one registry; the password comes from another key."""

    registry: Annotated[str, Field(min_length=1)]
    username: str | None = None
    username_from: Annotated[str | None, Field(alias="usernameFrom")] = None
    password_from: Annotated[str, Field(alias="passwordFrom", min_length=1)]
    email: str | None = None

    @model_validator(mode="after")
    def _one_username(self) -> DockerConfig:
        if (self.username is None) == (self.username_from is None):
            raise ValueError("give exactly one of username and usernameFrom")
        return self


class SourceKind(StrEnum):
    """Where a store's connection settings live."""

    NAMESPACED = "SecretSource"  # in the ManagedSecret's namespace
    CLUSTER = "ClusterSecretSource"  # cluster-wide


class SourceRef(_Model):
    """A ``SecretSource`` in this namespace, or a ``ClusterSecretSource``."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    kind: SourceKind = SourceKind.NAMESPACED


class VaultValue(_Model):
    """A value read from Vault KV v2: ``key`` of the secret at ``path`` (latest or ``version``)."""

    source: SourceRef
    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^/].*[^/]$|^[^/]$")]
    key: Annotated[str | None, Field(min_length=1)] = None  # default: the data key's name
    version: Annotated[int | None, Field(ge=1)] = None  # pinned: never refreshed


class AwsSecretsManagerValue(_Model):
    """A value read from AWS Secrets Manager: the whole string, or ``jsonKey`` of its JSON."""

    source: SourceRef
    secret_id: Annotated[str, Field(alias="secretId", min_length=1, max_length=2048)]
    json_key: Annotated[str | None, Field(alias="jsonKey", min_length=1)] = None
    version_stage: Annotated[str, Field(alias="versionStage", min_length=1)] = "AWSCURRENT"


class SealedValue(_Model):
    """A value unsealed from a ``SealedSecret`` in this namespace (key ``key``)."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str | None, Field(min_length=1)] = None  # default: the data key's name


#: Generators whose values come from a store (or a sealed file) rather than from Kustos.
SOURCE_KINDS: Final = frozenset({"vault", "aws_secrets_manager", "sealed"})


class Generator(_Model):
    """One ``spec.data`` entry: exactly one generator or store source."""

    password: Password | None = None
    token: Token | None = None
    uuid: Uuid | None = None
    ssh_keypair: Annotated[SshKeypair | None, Field(alias="sshKeypair")] = None
    x509: X509 | None = None
    template: Annotated[str | None, Field(min_length=1, max_length=65536)] = None  # {{ key }}
    postgres_role: Annotated[PostgresRole | None, Field(alias="postgresRole")] = None
    docker_config: Annotated[DockerConfig | None, Field(alias="dockerConfig")] = None
    vault: VaultValue | None = None
    aws_secrets_manager: Annotated[
        AwsSecretsManagerValue | None, Field(alias="awsSecretsManager")
    ] = None
    sealed: SealedValue | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Generator:
        chosen = [name for name, value in self if value is not None]
        if len(chosen) != 1:
            raise ValueError(
                "choose exactly one generator (password, token, uuid, sshKeypair, x509, "
                "template, postgresRole, dockerConfig) or source (vault, awsSecretsManager, "
                "sealed); "
                f"got {len(chosen)}"
            )
        return self

    @property
    def from_store(self) -> bool:
        """True if the value comes from a secrets manager."""
        return self.kind in SOURCE_KINDS

    @property
    def kind(self) -> str:
        """The chosen generator's field name."""
        return next(name for name, value in self if value is not None)

    @property
    def config(self) -> Any:
        """The chosen generator's settings."""
        return getattr(self, self.kind)


# --------------------------------------------------------------------------- rotation
class Window(_Model):
    """When rotations may start: hours ``"02:00-05:00"`` (UTC) and days ``["Mon", ...]``."""

    hours: str | None = None
    days: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _valid(self) -> Window:
        parse_window(self.hours, self.days)
        return self


class Rotation(_Model):
    """When to rotate: ``every`` a duration or on a cron ``schedule``; within a ``window``."""

    every: str | None = None
    schedule: str | None = None
    window: Window | None = None
    max_age: Annotated[str | None, Field(alias="maxAge")] = None

    @model_validator(mode="after")
    def _valid(self) -> Rotation:
        if self.every is not None and self.schedule is not None:
            raise ValueError("give every or schedule, not both")
        if self.every is not None and parse_duration(self.every).total_seconds() < 60:
            raise ValueError("every must be at least 1m")
        if self.schedule is not None:
            parse_cron(self.schedule)
        if self.max_age is not None and parse_duration(self.max_age).total_seconds() < 60:
            raise ValueError("maxAge must be at least 1m")
        return self


class History(_Model):
    """How many versions to keep as immutable Secrets."""

    keep: Annotated[int, Field(ge=1, le=MAX_KEEP)] = DEFAULT_KEEP


class RolloutStrategy(StrEnum):
    """Which workloads roll after a rotation."""

    AUTO = "auto"  # every consumer the secret-reference parser finds
    TARGETS = "targets"  # exactly ``targets``
    NONE = "none"  # nothing restarts (applications re-read the Secret themselves)


class Target(_Model):
    """A workload to roll."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: Annotated[str, Field(min_length=1, max_length=253)]


class Rollout(_Model):
    """How consumers roll after a new version is applied, and what a failure does."""

    strategy: RolloutStrategy = RolloutStrategy.AUTO
    targets: tuple[Target, ...] = ()
    timeout: str = "10m"
    rollback_on_failure: Annotated[bool, Field(alias="rollbackOnFailure")] = True
    max_concurrent: Annotated[int, Field(alias="maxConcurrent", ge=1, le=100)] = 5

    @model_validator(mode="after")
    def _valid(self) -> Rollout:
        if self.strategy is RolloutStrategy.TARGETS and not self.targets:
            raise ValueError("strategy targets needs at least one target")
        if self.strategy is not RolloutStrategy.TARGETS and self.targets:
            raise ValueError("targets are only read with strategy: targets")
        if parse_duration(self.timeout).total_seconds() < 1:
            raise ValueError("timeout must be at least 1s")
        return self


class Push(_Model):
    """Write generated values to a store first, then to the cluster."""

    source: SourceRef
    #: Vault: the KV v2 path; AWS Secrets Manager: the secret id (values as one JSON object).
    path: Annotated[str, Field(min_length=1, max_length=2048)]


class ManagedSecretSpec(_Model):
    """``ManagedSecret.spec``."""

    secret_name: Annotated[str, Field(alias="secretName", min_length=1, max_length=240)]
    type: SecretType = SecretType.OPAQUE
    data: Annotated[dict[str, Generator], Field(min_length=1)]
    rotation: Rotation = Rotation()
    history: History = History()
    rollout: Rollout = Rollout()
    #: How often stores are asked whether a source value changed (by version, not value).
    refresh: str | None = None
    push: Push | None = None

    @property
    def sources(self) -> dict[str, Generator]:
        """The ``data`` entries whose values come from a store."""
        return {k: g for k, g in self.data.items() if g.from_store}

    @model_validator(mode="after")
    def _valid(self) -> ManagedSecretSpec:
        if self.refresh is not None and parse_duration(self.refresh).total_seconds() < 10:
            raise ValueError("refresh must be at least 10s")
        if self.refresh is not None and not self.sources:
            raise ValueError("refresh needs at least one vault or awsSecretsManager value")
        if self.push is not None and not [g for g in self.data.values() if not g.from_store]:
            raise ValueError("push needs at least one generated value")
        if not DNS1123_SUBDOMAIN.match(self.secret_name):
            raise ValueError("secretName must be a DNS-1123 subdomain (lowercase, digits, -, .)")
        keys = produced_keys(self)
        for key in keys:
            if not _KEY.match(key) or len(key) > 253 or key in {".", ".."} or key.startswith(".."):
                raise ValueError(f"key {key[:64]!r} is not a valid Secret key")
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"key {twice[0]!r} is produced by two generators")
        produced = set(keys)
        missing = [k for k in REQUIRED_KEYS[self.type] if k not in produced]
        if missing:
            raise ValueError(f"type {self.type.value} needs keys {', '.join(missing)}")
        if self.type is SecretType.BASIC_AUTH and not {"username", "password"} & produced:
            raise ValueError("type kubernetes.io/basic-auth needs a username or password key")
        return self


def produced_keys(spec: ManagedSecretSpec) -> list[str]:
    """Every key the live Secret will hold (generators may write companion keys)."""
    keys: list[str] = []
    for key, gen in spec.data.items():
        keys.append(key)
        config = gen.config
        if isinstance(config, SshKeypair):
            keys.append(config.public_key_key or f"{key}.pub")
        elif isinstance(config, X509):
            keys.append(config.private_key_key)
            if config.ca_key:
                keys.append(config.ca_key)
        elif isinstance(config, PostgresRole):
            keys.append(config.username_key)
    return keys


def parse_spec(raw: Any, *, where: str = "spec") -> ManagedSecretSpec:
    """Validate a ManagedSecret's ``spec``; ``InvalidSpecError`` names the first bad field."""
    try:
        return ManagedSecretSpec.model_validate(raw)
    except ValidationError as exc:
        loc, why = first_problem(exc)
        field = f"{where}.{loc}" if loc else where
        raise InvalidSpecError(f"{field}: {why}") from None
