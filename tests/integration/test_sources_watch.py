"""SecretSource changes reach the store clients through a watch, not a periodic re-read.

Aspects (real control plane, real Vault): once the watch has seen a SecretSource, reading
a value asks the API server nothing about the source; an edit (Vault's address) is used
by the very next read (before, the old client answered for up to 30 s); putting it back
works again; a deleted source is reported as missing; ``sources_of`` finds every source a
ManagedSecret names (data and push, namespaced and cluster-wide).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from kustos.errors import InvalidSpecError, StoreError
from kustos.kube.client import ClientSettings, make_async_client
from kustos.operator.watching import watch_forever
from kustos.rotation.spec import parse_spec
from kustos.sources.reading import ClusterSecretSource, SecretSource, StoreReader, sources_of
from kustos.testing.controlplane import ControlPlane
from kustos.testing.vault import VaultServer
from tests.integration.test_operator import _until
from tests.integration.test_sources_vault import (  # noqa: F401 - vault is a fixture
    _approle_source,
    vault,
)

pytestmark = pytest.mark.integration


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
    spec = parse_spec(
        {"secretName": "db", "data": {"password": {"vault": {"source": {"name": "vault"},
                                                             "path": f"app/{namespace}/db"}}}}
    )  # fmt: skip
    gen = spec.data["password"]
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
