"""SecretSource changes reach the store clients through a watch, not a periodic re-read.

Aspects (real control plane, real Vault): once the watch has seen a SecretSource, reading
a value asks the API server nothing about the source; an edit (Vault's address) is used
by the very next read (before, the old client answered for up to 30 s); putting it back
works again; a deleted source is reported as missing; ``sources_of`` finds every source a
ManagedSecret names (data and push, namespaced and cluster-wide); a client and its token
live as long as the credentials Secret is unchanged (one login for an hour of use, where
a rebuild every five minutes used to log in and revoke again), and a new secret id in
that Secret makes a new client and revokes the old token (Vault's audit log counts).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from kustos.errors import InvalidSpecError, StoreError
from kustos.kube.client import ClientSettings, make_async_client
from kustos.operator.watching import watch_forever
from kustos.rotation.spec import Generator, parse_spec
from kustos.sources.reading import (
    CREDENTIALS_RECHECK,
    ClusterSecretSource,
    SecretSource,
    StoreReader,
    sources_of,
)
from kustos.testing.controlplane import ControlPlane
from kustos.testing.vault import VaultServer
from tests.integration.test_operator import _until
from tests.integration.test_sources_vault import (  # noqa: F401 - vault is a fixture
    POLICY,
    _approle_source,
    vault,
)

pytestmark = pytest.mark.integration


def _db_password(namespace: str) -> Generator:
    """The value ``password`` of ``app/<namespace>/db`` through the SecretSource ``vault``."""
    spec = parse_spec(
        {"secretName": "db", "data": {"password": {"vault": {"source": {"name": "vault"},
                                                             "path": f"app/{namespace}/db"}}}}
    )  # fmt: skip
    return spec.data["password"]


def test_sources_of_names_every_source() -> None:
    spec = {
        "data": {
            "a": {"vault": {"source": {"name": "v"}, "path": "p"}},
            "b": {"awsSecretsManager": {"source": {"name": "aws", "kind": "ClusterSecretSource"}}},
            "c": {"token": {"bytes": 8}},
        },
        "push": {"source": {"name": "pushed"}, "path": "x"},
    }
    assert sources_of(spec) == {
        ("SecretSource", "v"),
        ("ClusterSecretSource", "aws"),
        ("SecretSource", "pushed"),
    }
    assert sources_of({}) == set()


def test_an_edited_source_is_used_by_the_next_read(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    vault: VaultServer,  # noqa: F811 - the fixture imported above
) -> None:
    _approle_source(kube, namespace, vault, "watcher")
    first = vault.kv_write(f"app/{namespace}/db", {"password": "watch-canary"})
    gen = _db_password(namespace)
    changes: list[tuple[str, bool]] = []

    async def body() -> None:
        client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
        reader = StoreReader(client)
        reader.watching()

        def seen(event: str, obj: Any) -> None:
            _, changed = reader.source_event("SecretSource", event, obj.to_dict())
            changes.append((event, changed))

        watch = asyncio.create_task(
            watch_forever(client, SecretSource, seen, namespace=namespace, what="SecretSource")
        )
        try:
            await _until(lambda: bool(changes), what="the source listed by the watch")
            gets: list[str] = []
            original = client.get

            async def counting(*args: Any, **kwargs: Any) -> Any:
                gets.append(str(args[0].__name__ if hasattr(args[0], "__name__") else args[0]))
                return await original(*args, **kwargs)

            client.get = counting  # type: ignore[method-assign]  # count, then call the real one
            assert await reader.version(namespace, "password", gen) == str(first)
            assert await reader.version(namespace, "password", gen) == str(first)
            assert "SecretSource" not in gets, "the watch holds the source: no GET"

            await asyncio.to_thread(
                kube.patch, SecretSource, "vault",
                {"spec": {"vault": {"address": "http://127.0.0.1:9"}}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
            await _until(lambda: ("MODIFIED", True) in changes, what="the edit")
            with pytest.raises(StoreError):
                await reader.version(namespace, "password", gen)

            await asyncio.to_thread(
                kube.patch, SecretSource, "vault",
                {"spec": {"vault": {"address": vault.address}}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
            await _until(lambda: changes.count(("MODIFIED", True)) == 2, what="the fix")
            assert await reader.version(namespace, "password", gen) == str(first)

            await asyncio.to_thread(kube.delete, SecretSource, "vault", namespace=namespace)
            await _until(lambda: ("DELETED", True) in changes, what="the deletion")
            with pytest.raises(InvalidSpecError, match="does not exist"):
                await reader.version(namespace, "password", gen)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await reader.close()
            await client.close()

    asyncio.run(body())


def test_cluster_sources_are_watched_too(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    name = f"watched-{namespace}"[:63]
    seen: list[tuple[str, str, bool]] = []

    async def body() -> None:
        client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
        reader = StoreReader(client)

        def handle(event: str, obj: Any) -> None:
            key, changed = reader.source_event("ClusterSecretSource", event, obj.to_dict())
            if key[2] == name:
                seen.append((event, key[1], changed))

        watch = asyncio.create_task(
            watch_forever(
                client, ClusterSecretSource, handle, namespace=None, what="ClusterSecretSource"
            )
        )
        try:
            await asyncio.to_thread(
                kube.create,
                ClusterSecretSource(
                    apiVersion="kustos.io/v1alpha1",
                    kind="ClusterSecretSource",
                    metadata=ObjectMeta(name=name),
                    spec={"vault": {"address": "http://127.0.0.1:9",
                                    "auth": {"appRole": {"roleId": "r", "secretRef": {
                                        "name": "s", "namespace": namespace}}}}},
                ),
            )  # fmt: skip
            await _until(lambda: ("ADDED", "", False) in seen, what="the cluster source")
            await asyncio.to_thread(kube.delete, ClusterSecretSource, name)
            await _until(lambda: ("DELETED", "", True) in seen, what="its deletion")
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await reader.close()
            await client.close()

    asyncio.run(body())


def _vault_calls(log: Path, path: str) -> int:
    """Requests to *path* (``auth/approle/login``, ...) in Vault's file audit log."""
    if not log.exists():
        return 0
    events = (json.loads(line) for line in log.read_text().splitlines() if line.strip())
    return sum(
        1
        for e in events
        if e.get("type") == "request" and (e.get("request") or {}).get("path") == path
    )


def test_a_client_and_its_token_live_until_the_credentials_secret_changes(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    vault: VaultServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    log = tmp_path / "vault-audit.log"
    vault.api("PUT", f"sys/audit/{namespace}", {"type": "file", "options": {"file_path": str(log)}})
    role = f"kept-{namespace}"
    _approle_source(kube, namespace, vault, role)
    first = vault.kv_write(f"app/{namespace}/db", {"password": "kept-canary"})
    gen = _db_password(namespace)
    clock = [1000.0]

    async def body() -> None:
        client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
        reader = StoreReader(client, clock=lambda: clock[0])
        try:
            assert await reader.version(namespace, "password", gen) == str(first)
            for _ in range(12):  # an hour of use, in five-minute steps: no new login
                clock[0] += CREDENTIALS_RECHECK
                assert await reader.version(namespace, "password", gen) == str(first)
            assert reader.builds == 1
            assert _vault_calls(log, "auth/approle/login") == 1
            assert _vault_calls(log, "auth/token/revoke-self") == 0

            # Rotated credentials: a new secret id in the Secret the source names.
            fresh = vault.approle(role, policies=[POLICY])
            await asyncio.to_thread(
                kube.patch, Secret, "approle",
                {"stringData": {"secret-id": fresh.secret_id.reveal_text()}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
            clock[0] += CREDENTIALS_RECHECK
            assert await reader.version(namespace, "password", gen) == str(first)
            assert reader.builds == 2, "a changed credentials Secret makes a new client"
            assert _vault_calls(log, "auth/approle/login") == 2
            assert _vault_calls(log, "auth/token/revoke-self") == 1, "the old token revoked"
            clock[0] += CREDENTIALS_RECHECK - 1
            assert await reader.version(namespace, "password", gen) == str(first)
            assert reader.builds == 2
        finally:
            await reader.close()
            await client.close()

    asyncio.run(body())
    assert "kept-canary" not in log.read_text()
