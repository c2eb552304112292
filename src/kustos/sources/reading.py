"""Store values for the rotation engine: resolve sources, share clients, read, push.

:class:`StoreReader` implements the engine's ``Stores`` protocol. It reads a
``SecretSource``/``ClusterSecretSource`` and the credentials Secret it names, builds one
client per source and keeps it (one login, one token renewed in place, one connection
pool, however many ManagedSecrets use the source for however long), and rebuilds it (the
old token revoked) only when the source or its credentials Secret changed: their
``resourceVersion``, the source's from the operator's watch, the Secret's asked for at most
every ``CREDENTIALS_RECHECK`` seconds (an API server GET, nothing asked of the store).
Version checks ask the store for the version only; values are read when a new Kustos
version is made, once per path and version for all the readers of a tracked path.

Version checks go through :class:`~kustos.sources.checking.VersionChecks`: a path that
ManagedSecrets are tracked on (:meth:`StoreReader.track`, the operator) is asked once
per window whatever the number of its readers; an untracked one is asked every time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lightkube import AsyncClient
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources import core_v1

from kustos import conventions as c
from kustos.crypto import sops
from kustos.errors import InvalidSpecError, KubeNotFoundError, KustosError, StoreError
from kustos.kube.client import api_errors
from kustos.rotation.spec import (
    AwsSecretsManagerValue,
    Generator,
    ManagedSecretSpec,
    Push,
    SealedValue,
    SourceKind,
    SourceRef,
    VaultValue,
)
from kustos.sensitive import Sensitive
from kustos.sources.aws import AwsSecretsManager, AwsSettings, AwsValue, json_value
from kustos.sources.checking import Fetch, PathKey, VersionChecks
from kustos.sources.sealing import unseal
from kustos.sources.settings import (
    CLUSTER_KIND,
    KIND,
    AwsSource,
    SecretSourceSpec,
    VaultSource,
    parse_source,
)
from kustos.sources.vault import (
    AppRoleAuth,
    KubernetesAuth,
    StoredValue,
    VaultClient,
    VaultSettings,
)

log = logging.getLogger(__name__)

SealedSecret: Any = create_namespaced_resource(c.GROUP, "v1alpha1", "SealedSecret", "sealedsecrets")
SecretSource: Any = create_namespaced_resource(c.GROUP, "v1alpha1", KIND, "secretsources")
ClusterSecretSource: Any = create_global_resource(
    c.GROUP, "v1alpha1", CLUSTER_KIND, "clustersecretsources"
)
#: The credentials Secret's ``resourceVersion`` is asked for at most this often: a new
#: one (rotated credentials) rebuilds the client; the same keeps it and its token.
CREDENTIALS_RECHECK: Final = 300.0
#: Without a watch (:meth:`StoreReader.source_event`), a source object is read again (to
#: see an edit) at most this often, not once per use.
SOURCE_RECHECK: Final = 30.0
SourceKey = tuple[str, str, str]  # (kind, namespace or "", name)


def sources_of(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The ``(kind, name)`` of every SecretSource/ClusterSecretSource a ManagedSecret uses."""
    found: set[tuple[str, str]] = set()
    refs = [
        (entry.get(kind) or {}).get("source")
        for entry in (spec.get("data") or {}).values()
        if isinstance(entry, Mapping)
        for kind in ("vault", "awsSecretsManager")
        if isinstance(entry.get(kind), Mapping)
    ]
    push = spec.get("push")
    if isinstance(push, Mapping):
        refs.append(push.get("source"))
    for ref in refs:
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            found.add((str(ref.get("kind") or SourceKind.NAMESPACED.value), ref["name"]))
    return found


def sealed_version(raw: Mapping[str, Any]) -> str:
    """A SealedSecret's content version: its SOPS MAC and time (any change moves both)."""
    meta = raw.get("sops") or {}
    text = f"{meta.get('mac', '')}|{meta.get('lastmodified', '')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SourcedValue:
    """A value from a store and the store's version it came from."""

    value: Sensitive
    version: str


@dataclass(frozen=True, slots=True)
class _Credentials:
    """The Secret a client's credentials came from, and its ``resourceVersion`` then."""

    namespace: str
    name: str
    version: str


@dataclass(slots=True)
class _Entry:
    client: Any
    #: The source's ``resourceVersion`` the client was built from.
    source_version: str
    credentials: _Credentials | None
    #: When the source (without a watch) and the credentials Secret were last asked for.
    checked: float
    credentials_checked: float
    #: The credentials Secret changed: rebuild at this use.
    stale: bool = False


class StoreReader:
    """Reads and writes store values for ManagedSecrets; one client per source."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        identities: sops.Identities | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = client
        self._clock = clock
        self.identities = identities  # the cluster's unsealing identities (SealedSecrets)
        self._clients: dict[SourceKey, _Entry] = {}
        #: Sources seen by the operator's watch; ``None`` until :meth:`watching` is called.
        self._watched: dict[SourceKey, dict[str, Any]] | None = None
        self.checks = VersionChecks(clock=clock)
        self.builds = 0  # store clients built (a rebuild logs in again): for tests, metrics
        self._building: dict[SourceKey, asyncio.Lock] = {}

    def watching(self) -> None:
        """From now on sources arrive through :meth:`source_event` (no re-read per use)."""
        if self._watched is None:
            self._watched = {}

    def source_event(self, kind: str, event: str, raw: Mapping[str, Any]) -> tuple[SourceKey, bool]:
        """Record one watch event of a *kind* (``SecretSource`` or ``ClusterSecretSource``).

        Returns its key and whether it changed (a new ``resourceVersion`` of an object seen
        before); a changed source's client is rebuilt at its next use.
        """
        self.watching()
        assert self._watched is not None  # noqa: S101 - set just above
        meta = raw.get("metadata") or {}
        namespace = "" if kind == CLUSTER_KIND else str(meta.get("namespace", ""))
        key = (kind, namespace, str(meta.get("name", "")))
        before = self._watched.get(key)
        if event == "DELETED":
            self._watched.pop(key, None)
            changed = before is not None
        else:
            self._watched[key] = dict(raw)
            old = ((before or {}).get("metadata") or {}).get("resourceVersion")
            changed = before is not None and old != meta.get("resourceVersion")
        if changed:
            # Versions seen through the old settings say nothing about the new ones.
            self.checks.forget(lambda path: path[:3] == key)
        return key, changed

    async def close(self) -> None:
        """Stop the version checks in flight, then close every store client."""
        await self.checks.close()
        for entry in self._clients.values():
            await entry.client.close()
        self._clients.clear()

    # ------------------------------------------------------------------ sources
    @staticmethod
    def _what(namespace: str, ref: SourceRef) -> str:
        cluster = ref.kind is SourceKind.CLUSTER
        return f"{ref.kind.value} {'' if cluster else namespace + '/'}{ref.name}"

    @staticmethod
    def _parsed(raw: Mapping[str, Any], what: str) -> tuple[SecretSourceSpec, str, str]:
        meta = raw.get("metadata") or {}
        return parse_source(raw.get("spec"), where=what), str(meta.get("resourceVersion", "")), what

    async def _source(self, namespace: str, ref: SourceRef) -> tuple[SecretSourceSpec, str, str]:
        cluster = ref.kind is SourceKind.CLUSTER
        what = self._what(namespace, ref)
        try:
            with api_errors(f"read {what}", verb="get", resource="secretsources"):
                obj = await (
                    self.kube.get(ClusterSecretSource, ref.name)
                    if cluster
                    else self.kube.get(SecretSource, ref.name, namespace=namespace)
                )
        except KubeNotFoundError:
            raise InvalidSpecError(f"{what} does not exist") from None
        raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        return self._parsed(raw, what)

    async def _secret(
        self, namespace: str, name: str, what: str
    ) -> tuple[dict[str, Sensitive], str]:
        try:
            with api_errors(
                f"read Secret {namespace}/{name} ({what})", verb="get", resource="secrets"
            ):
                secret = await self.kube.get(core_v1.Secret, name, namespace=namespace)
        except KubeNotFoundError:
            missing = f"{what}: credentials Secret {namespace}/{name} does not exist"
            raise InvalidSpecError(missing) from None
        data = {k: Sensitive(base64.b64decode(v)) for k, v in (secret.data or {}).items()}
        version = secret.metadata.resourceVersion if secret.metadata else ""
        return data, str(version or "")

    async def _client(self, namespace: str, ref: SourceRef) -> Any:
        key = (ref.kind.value, "" if ref.kind is SourceKind.CLUSTER else namespace, ref.name)
        # One build per source at a time: concurrent first uses (many ManagedSecrets, many
        # paths) share one client instead of each making one and leaking all but the last.
        async with self._building.setdefault(key, asyncio.Lock()):
            return await self._client_locked(namespace, ref, key)

    async def _client_locked(self, namespace: str, ref: SourceRef, key: SourceKey) -> Any:
        entry = self._clients.get(key)
        now = self._clock()
        watched = None if self._watched is None else self._watched.get(key)
        if watched is not None:
            # The watch keeps the source: no request at all unless it changed.
            source_version = str((watched.get("metadata") or {}).get("resourceVersion", ""))
            if (
                entry is not None
                and entry.source_version == source_version
                and await self._credentials_kept(entry, now, key)
            ):
                return entry.client
            spec, source_version, what = self._parsed(watched, self._what(namespace, ref))
        else:
            if (
                self._watched is None
                and entry is not None
                and now - entry.checked < SOURCE_RECHECK
                and await self._credentials_kept(entry, now, key)
            ):
                return entry.client  # many ManagedSecrets, one source: no request per use
            # Not (yet) seen by the watch: read it (a 404 says it does not exist).
            spec, source_version, what = await self._source(namespace, ref)
            if (
                entry is not None
                and entry.source_version == source_version
                and await self._credentials_kept(entry, now, key)
            ):
                entry.checked = now
                return entry.client
        home = namespace if ref.kind is SourceKind.NAMESPACED else None
        client: AwsSecretsManager | VaultClient
        creds: _Credentials | None
        if spec.aws_secrets_manager is not None:
            client, creds = await self._aws(spec.aws_secrets_manager, home, what)
        else:
            assert spec.vault is not None  # noqa: S101 - the spec holds exactly one store
            client, creds = await self._vault(spec.vault, home, what)
        if entry is not None:
            await entry.client.close()  # revokes the old token
        self._clients[key] = _Entry(client, source_version, creds, now, now)
        self.builds += 1
        return client

    async def _credentials_kept(self, entry: _Entry, now: float, key: SourceKey) -> bool:
        """Whether *entry*'s credentials Secret is the one it was built from.

        Asked of the API server at most every ``CREDENTIALS_RECHECK`` seconds; Secrets are
        not watched (the operator would hold every Secret of its namespaces in memory).
        """
        creds = entry.credentials
        if entry.stale:
            return False
        if creds is None or now - entry.credentials_checked < CREDENTIALS_RECHECK:
            return True
        entry.credentials_checked = now
        what = f"{key[0]} {key[1] + '/' if key[1] else ''}{key[2]}"
        try:
            _, version = await self._secret(creds.namespace, creds.name, what)
        except KustosError as exc:
            # The client still works with what it has; a build would fail on this.
            log.warning("%s: store client kept: %s", what, exc)
            return True
        if version != creds.version:
            log.info("%s: credentials Secret %s/%s changed", what, creds.namespace, creds.name)
            entry.stale = True
        return not entry.stale

    async def _aws(
        self, source: AwsSource, home: str | None, what: str
    ) -> tuple[AwsSecretsManager, _Credentials]:
        ref = source.auth.secret_ref
        namespace = home or ref.namespace
        if namespace is None:
            raise InvalidSpecError(
                f"{what}: auth.secretRef.namespace is required for a ClusterSecretSource"
            )
        data, version = await self._secret(namespace, ref.name, what)
        auth = source.auth
        for needed in (auth.access_key_id_key, auth.secret_access_key_key):
            if needed not in data:
                raise InvalidSpecError(f"{what}: Secret {namespace}/{ref.name} has no key {needed}")
        settings = AwsSettings(
            region=source.region,
            endpoint=source.endpoint,
            access_key_id=data[auth.access_key_id_key],
            secret_access_key=data[auth.secret_access_key_key],
            session_token=data.get(auth.session_token_key) if auth.session_token_key else None,
        )
        return AwsSecretsManager(settings), _Credentials(namespace, ref.name, version)

    async def _vault(
        self, source: VaultSource, home: str | None, what: str
    ) -> tuple[VaultClient, _Credentials | None]:
        """A client for *source*; the credentials Secret it read, if any (AppRole)."""
        auth: KubernetesAuth | AppRoleAuth
        creds = None  # kubernetes auth: a fresh ServiceAccount token at each login
        cluster_only = "is required for a ClusterSecretSource"
        if source.auth.kubernetes is not None:
            k8s = source.auth.kubernetes
            namespace = home or k8s.service_account_namespace
            if namespace is None:
                raise InvalidSpecError(
                    f"{what}: auth.kubernetes.serviceAccountNamespace {cluster_only}"
                )
            jwt = self._token_source(namespace, k8s.service_account, k8s.audience)
            auth = KubernetesAuth(role=k8s.role, jwt=jwt, path=k8s.mount_path)
        else:
            approle = source.auth.app_role
            assert approle is not None  # noqa: S101 - validated: exactly one auth
            ref = approle.secret_ref
            namespace = home or ref.namespace
            if namespace is None:
                raise InvalidSpecError(f"{what}: auth.appRole.secretRef.namespace {cluster_only}")
            data, secret_version = await self._secret(namespace, ref.name, what)
            creds = _Credentials(namespace, ref.name, secret_version)
            if approle.secret_id_key not in data:
                missing = f"Secret {namespace}/{ref.name} has no key {approle.secret_id_key}"
                raise InvalidSpecError(f"{what}: {missing}")
            auth = AppRoleAuth(
                role_id=approle.role_id,
                secret_id=data[approle.secret_id_key],
                path=approle.mount_path,
            )
        settings = VaultSettings(
            address=source.address, auth=auth, mount=source.mount, ca_bundle=source.ca_bundle
        )
        return VaultClient(settings), creds

    def _token_source(
        self, namespace: str, account: str, audience: str | None
    ) -> Callable[[], Awaitable[Sensitive]]:
        """A fresh, short-lived ServiceAccount token for each Vault login (TokenRequest)."""

        async def token() -> Sensitive:
            spec = TokenRequestSpec(audiences=[audience] if audience else [], expirationSeconds=600)
            request = core_v1.ServiceAccount.Token(metadata=ObjectMeta(), spec=spec)
            what = f"request a token for ServiceAccount {namespace}/{account}"
            with api_errors(what, verb="create", resource="serviceaccounts/token"):
                made = await self.kube.create(request, name=account, namespace=namespace)
            if made.status is None or not made.status.token:
                raise StoreError(f"{what}: the API server returned no token")
            return Sensitive(made.status.token)

        return token

    # ------------------------------------------------------------------ sealed
    async def _sealed(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            with api_errors(
                f"read SealedSecret {namespace}/{name}", verb="get", resource="sealedsecrets"
            ):
                obj = await self.kube.get(SealedSecret, name, namespace=namespace)
        except KubeNotFoundError:
            raise InvalidSpecError(f"SealedSecret {namespace}/{name} does not exist") from None
        return dict(obj.to_dict() if hasattr(obj, "to_dict") else obj)

    async def _unsealed(self, namespace: str, config: SealedValue, key: str) -> SourcedValue:
        if self.identities is None:
            raise StoreError(
                f"SealedSecret {namespace}/{config.name}: no unsealing identity configured"
            )
        raw = await self._sealed(namespace, config.name)
        source = f"SealedSecret {namespace}/{config.name}"
        manifest = unseal(raw, self.identities, source=source)
        wanted = config.key or key
        data = manifest.get("data") or {}
        if wanted in data:
            value = Sensitive(base64.b64decode(str(data[wanted])))
        elif wanted in (manifest.get("stringData") or {}):
            value = Sensitive(str(manifest["stringData"][wanted]))
        else:
            raise InvalidSpecError(f"{source} has no key {wanted}")
        return SourcedValue(value, sealed_version(raw))

    # ------------------------------------------------------------------ shared checks
    @staticmethod
    def path_key(namespace: str, gen: Generator) -> PathKey | None:
        """The distinct store path *gen* reads, if its version can change (not pinned)."""
        config = gen.config
        where: tuple[str, ...]
        if isinstance(config, VaultValue) and config.version is None:
            ref, where = config.source, ("vault", config.path)
        elif isinstance(config, AwsSecretsManagerValue):
            ref, where = config.source, ("aws", config.secret_id, config.version_stage)
        else:
            return None
        home = "" if ref.kind is SourceKind.CLUSTER else namespace
        return (ref.kind.value, home, ref.name, *where)

    def _fetch(self, namespace: str, gen: Generator) -> Fetch:
        config = gen.config

        async def fetch() -> str:
            if isinstance(config, AwsSecretsManagerValue):
                client = await self._client(namespace, config.source)
                return str(await client.current_version(config.secret_id, config.version_stage))
            assert isinstance(config, VaultValue)  # noqa: S101 - path_key admits these two
            client = await self._client(namespace, config.source)
            return str(await client.current_version(config.path))

        return fetch

    def track(
        self, reader: Any, namespace: str, spec: ManagedSecretSpec | None, refresh: float | None
    ) -> dict[PathKey, tuple[str, ...]]:
        """Check the paths *spec* reads every *refresh* seconds for *reader*; path → keys.

        ``None`` (no spec, no refresh) stops checking for *reader*. Sealed values are not
        paths: their SealedSecret is watched.
        """
        keys: dict[PathKey, list[str]] = {}
        wanted: dict[PathKey, tuple[float, Fetch]] = {}
        if spec is not None and refresh is not None:
            for name, gen in spec.sources.items():
                path = self.path_key(namespace, gen)
                if path is not None:
                    keys.setdefault(path, []).append(name)
                    wanted[path] = (refresh, self._fetch(namespace, gen))
        self.checks.track(reader, wanted)
        return {path: tuple(names) for path, names in keys.items()}

    # ------------------------------------------------------------------ engine protocol
    async def version(self, namespace: str, key: str, gen: Generator) -> str:
        """The store's current version of *gen*'s value (no value read)."""
        config = gen.config
        if isinstance(config, SealedValue):
            return sealed_version(await self._sealed(namespace, config.name))
        if isinstance(config, VaultValue) and config.version is not None:
            await self._client(namespace, config.source)  # the source must still exist
            return str(config.version)  # pinned
        path = self.path_key(namespace, gen)
        if path is None:
            raise StoreError(f"spec.data.{key}: not a store value")
        return await self.checks.check(path, self._fetch(namespace, gen))

    async def read(self, namespace: str, key: str, gen: Generator) -> SourcedValue:
        """The value of *gen* and the store version it came from."""
        config = gen.config
        if isinstance(config, SealedValue):
            return await self._unsealed(namespace, config, key)
        path = self.path_key(namespace, gen)
        if isinstance(config, VaultValue):
            vault = await self._client(namespace, config.source)
            wanted = config.key or key
            if path is None:  # a pinned version: read once, never shared
                stored = await vault.read(config.path, key=wanted, version=config.version)
            else:

                async def whole() -> tuple[str, StoredValue]:
                    got = await vault.read(config.path)  # every key: any reader's is there
                    return str(got.version), got

                # One read per path and version for all its readers; the read is also
                # an observation of the version (it stands in for the next check).
                stored = (await self.checks.read(path, whole)).only(wanted)
            return SourcedValue(stored.values[wanted], str(stored.version))
        if isinstance(config, AwsSecretsManagerValue) and path is not None:
            aws = await self._client(namespace, config.source)

            async def secret() -> tuple[str, AwsValue]:
                got = await aws.get(config.secret_id, config.version_stage)
                return got.version, got

            got = await self.checks.read(path, secret)
            value = json_value(config.secret_id, got.value, config.json_key)
            return SourcedValue(value, got.version)
        raise StoreError(f"spec.data.{key}: not a store value")

    async def push(self, namespace: str, push: Push, values: Mapping[str, Sensitive]) -> str:
        """Write *values* (one JSON object) to the store named by *push*; the new version."""
        client = await self._client(namespace, push.source)
        document = json.dumps({k: v.reveal_text() for k, v in sorted(values.items())})
        if isinstance(client, AwsSecretsManager):
            return await client.put(push.path, Sensitive(document))
        if isinstance(client, VaultClient):
            return str(await client.write(push.path, dict(values)))
        raise StoreError(f"push to {push.source.name}: this store cannot be written")
