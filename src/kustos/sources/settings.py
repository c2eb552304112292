"""``SecretSource`` and ``ClusterSecretSource``: how to reach a store, as typed values. Pure.

A SecretSource (namespaced) or ClusterSecretSource (cluster-wide) holds connection
settings; credentials stay in a Secret it names (``auth.secretRef``), in the source's own
namespace (a ClusterSecretSource names the namespace). Like ``ManagedSecret.spec`` these
are untrusted input: they enter through pydantic once, and a bad one is one
``InvalidSpecError`` naming the field.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kustos.errors import InvalidSpecError, first_problem

KIND: Final = "SecretSource"
CLUSTER_KIND: Final = "ClusterSecretSource"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretKeys(_Model):
    """A Secret holding credentials, and which keys hold what."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None  # ClusterSecretSource only


class AwsAuth(_Model):
    """Static access keys from a Secret (``access-key-id``, ``secret-access-key``)."""

    secret_ref: Annotated[SecretKeys, Field(alias="secretRef")]
    access_key_id_key: Annotated[str, Field(alias="accessKeyIdKey")] = "access-key-id"
    secret_access_key_key: Annotated[str, Field(alias="secretAccessKeyKey")] = "secret-access-key"  # noqa: S105 - the name of a key, not a credential
    session_token_key: Annotated[str | None, Field(alias="sessionTokenKey")] = None


class AwsSource(_Model):
    """AWS Secrets Manager in one region."""

    region: Annotated[str, Field(min_length=1, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
    endpoint: Annotated[str | None, Field(pattern=r"^https?://")] = None
    auth: AwsAuth


class VaultKubernetesAuth(_Model):
    """Vault's kubernetes auth method with a token of the named ServiceAccount."""

    role: Annotated[str, Field(min_length=1)]
    mount_path: Annotated[str, Field(alias="mountPath")] = "kubernetes"
    service_account: Annotated[str, Field(alias="serviceAccount", min_length=1)] = "default"
    #: ClusterSecretSource only: where the ServiceAccount lives.
    service_account_namespace: Annotated[str | None, Field(alias="serviceAccountNamespace")] = None
    audience: str | None = None


class VaultAppRoleAuth(_Model):
    """Vault's AppRole auth method; the secret id comes from a Secret."""

    role_id: Annotated[str, Field(alias="roleId", min_length=1)]
    secret_ref: Annotated[SecretKeys, Field(alias="secretRef")]
    secret_id_key: Annotated[str, Field(alias="secretIdKey")] = "secret-id"  # noqa: S105 - a key name
    mount_path: Annotated[str, Field(alias="mountPath")] = "approle"


class VaultAuth(_Model):
    """Exactly one of ``kubernetes`` and ``appRole``."""

    kubernetes: VaultKubernetesAuth | None = None
    app_role: Annotated[VaultAppRoleAuth | None, Field(alias="appRole")] = None

    @model_validator(mode="after")
    def _one(self) -> VaultAuth:
        if (self.kubernetes is None) == (self.app_role is None):
            raise ValueError("choose exactly one of kubernetes and appRole")
        return self


class VaultSource(_Model):
    """A Vault server and its KV v2 mount."""

    address: Annotated[str, Field(pattern=r"^https?://")]
    mount: str = "secret"
    ca_bundle: Annotated[str | None, Field(alias="caBundle")] = None  # PEM
    auth: VaultAuth


class SecretSourceSpec(_Model):
    """``SecretSource.spec``: exactly one store."""

    vault: VaultSource | None = None
    aws_secrets_manager: Annotated[AwsSource | None, Field(alias="awsSecretsManager")] = None

    @model_validator(mode="after")
    def _one(self) -> SecretSourceSpec:
        if (self.vault is None) == (self.aws_secrets_manager is None):
            raise ValueError("choose exactly one store: vault or awsSecretsManager")
        return self


def parse_source(raw: object, *, where: str) -> SecretSourceSpec:
    """Validate a SecretSource spec; ``InvalidSpecError`` names the source and the field."""
    try:
        return SecretSourceSpec.model_validate(raw)
    except ValidationError as exc:
        loc, why = first_problem(exc)
        field = f"spec.{loc}: " if loc else ""
        raise InvalidSpecError(f"{where}: {field}{why}") from None
