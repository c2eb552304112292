"""Values from a real Vault (KV v2) through SecretSource and the rotation engine.

Aspects: a SecretSource with Vault's kubernetes auth (a TokenRequest token of the
ServiceAccount it names, checked by Vault against the real API server) brings a KV value
into the live Secret and rolls the Deployment; a new KV version is noticed from the
metadata alone and becomes a new Kustos version (``SourceChanged``); a pinned version is
never refreshed; AppRole works the same; ``push`` writes generated values to Vault before
the cluster; under the running operator, ManagedSecrets that read one path cost one
metadata read per refresh window together (Vault's own audit log counts them), and a
change reaches every one of them through one value read; the README's walk-through
(``examples/sources/vault-shop.yaml`` as a user applies it) restarts the Deployment when
the value changes in Vault; a ClusterSecretSource serves a namespace's ManagedSecret
with the credentials Secret it names, and one that names no namespace is refused in
one line; a Vault outage under the operator keeps the last value, says
``SourcesReady=False`` (``StoreUnavailable``), shows the retry delay in
``kustos_retry_backoff_seconds``, and recovers when Vault is back; no value reaches the Vault server's log, status or
Events.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Pod, Secret, ServiceAccount
from prometheus_client import generate_latest

from kustos.errors import BinaryMissingError, ControlPlaneError, InvalidSpecError
from kustos.operator.running import Operator
from kustos.sensitive import Sensitive
from kustos.sources.reading import ClusterSecretSource, SecretSource
from kustos.testing.controlplane import ControlPlane
from kustos.testing.vault import VaultServer, build_vault, require_vault, token_reviewer
from tests.integration.test_operator import _until, _with_operators
from tests.integration.test_rotation import (
    _data,
    _deployment,
    _events_text,
    _managed,
    _run,
    _status,
    _wait_available,
)

pytestmark = pytest.mark.integration
POLICY = "kustos-app"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultServer]:
    try:
        binary = require_vault()
    except BinaryMissingError:
        try:
            binary = build_vault()
        except ControlPlaneError as exc:
            pytest.skip(f"vault binary absent and cannot be built: {exc}")
    with VaultServer(tmp_path_factory.mktemp("vault-src"), binary=binary) as server:
        server.put_policy(POLICY, "app")
        server.enable_auth("approle")
        yield server


def _source(
    kube: Client, namespace: str, name: str, vault: VaultServer, auth: dict[str, Any]
) -> None:
    kube.create(
        SecretSource(
            apiVersion="kustos.io/v1alpha1",
            kind="SecretSource",
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec={"vault": {"address": vault.address, "auth": auth}},
        )
    )


def _approle_source(kube: Client, namespace: str, vault: VaultServer, role: str) -> None:
    """The SecretSource ``vault`` logging in as AppRole *role* (secret id in a Secret)."""
    creds = vault.approle(role, policies=[POLICY])
    kube.create(
        Secret(
            metadata=ObjectMeta(name="approle", namespace=namespace),
            stringData={"secret-id": creds.secret_id.reveal_text()},
        )
    )
    auth = {"appRole": {"roleId": creds.role_id, "secretRef": {"name": "approle"}}}
    _source(kube, namespace, "vault", vault, auth)


def test_vault_values_through_kubernetes_auth_change_by_metadata_version(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, vault: VaultServer
) -> None:
    # Vault reviews tokens with a reviewer ServiceAccount; the app's own account logs in.
    kube.create(ServiceAccount(metadata=ObjectMeta(name="app")), namespace=namespace)
    with token_reviewer(kube, namespace) as reviewer:
        mount = f"k8s-{namespace}"
        vault.use_control_plane(control_plane, token_reviewer_jwt=reviewer, path=mount)
        vault.kubernetes_role(
            "app", service_account="app", namespace=namespace, policies=[POLICY], path=mount
        )
        first = vault.kv_write(f"app/{namespace}/db", {"password": "vault-canary-one"})
        _source(
            kube,
            namespace,
            "vault",
            vault,
            {
                "kubernetes": {
                    "role": "app",
                    "mountPath": mount,
                    "serviceAccount": "app",
                    "audience": "vault",
                }
            },
        )
        spec = {
            "secretName": "db",
            "data": {
                "password": {"vault": {"source": {"name": "vault"}, "path": f"app/{namespace}/db"}},
                "pinned": {
                    "vault": {
                        "source": {"name": "vault"},
                        "path": f"app/{namespace}/db",
                        "key": "password",
                        "version": first,
                    }
                },
            },
            "refresh": "30s",
            "rollout": {"timeout": "60s"},
        }
        kube.create(_managed(namespace, "db", spec))
        kube.create(_deployment(namespace, "api", "db", "password"))
        _wait_available(kube, namespace, "api")

        assert _run(control_plane, lambda e: e.rotate(namespace, "db")).outcome == "rotated"
        assert _data(kube, namespace, "db") == {
            "password": b"vault-canary-one",
            "pinned": b"vault-canary-one",
        }
        assert _status(kube, namespace, "db")["sourceVersions"] == {
            "password": str(first),
            "pinned": str(first),
        }
        result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db"))
        assert result is None, "an unchanged store makes no version"

        second = vault.kv_write(f"app/{namespace}/db", {"password": "vault-canary-two"})
        result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db"))
        assert result is not None
        assert result.restarted == (f"Deployment.apps {namespace}/api",)
        assert _data(kube, namespace, "db") == {
            "password": b"vault-canary-two",
            "pinned": b"vault-canary-one",
        }
        status = _status(kube, namespace, "db")
        assert status["sourceVersions"] == {"password": str(second), "pinned": str(first)}
        assert (
            status["versions"][0]["reason"] == f"SourceChanged: password (store version {second})"
        )
        text = json.dumps(status) + _events_text(kube, namespace)
        assert "vault-canary" not in text
        assert "vault-canary" not in vault.log_text


def test_approle_and_push(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, vault: VaultServer
) -> None:
    _approle_source(kube, namespace, vault, "pusher")
    spec = {
        "secretName": "svc",
        "data": {"token": {"token": {"bytes": 24}}},
        "push": {"source": {"name": "vault"}, "path": f"app/{namespace}/svc"},
        "rollout": {"strategy": "none"},
    }
    kube.create(_managed(namespace, "svc", spec))
    assert _run(control_plane, lambda e: e.rotate(namespace, "svc")).outcome == "rotated"
    stored = vault.api("GET", f"secret/data/app/{namespace}/svc")["data"]["data"]
    assert stored == {"token": _data(kube, namespace, "svc")["token"].decode()}


def _audited(log: Path, kind: str, path: str) -> int:
    """Reads of ``secret/<kind>/<path>`` in Vault's file audit log (the harness writes)."""
    if not log.exists():
        return 0
    count = 0
    for line in log.read_text().splitlines():
        event = json.loads(line)
        request = event.get("request") or {}
        if (
            event.get("type") == "request"
            and request.get("path") == f"secret/{kind}/{path}"
            and request.get("operation") == "read"
        ):
            count += 1
    return count


def test_readers_of_one_path_share_one_check_per_window_under_the_operator(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    vault: VaultServer,
    tmp_path: Path,
) -> None:
    log = tmp_path / "vault-audit.log"
    vault.api("PUT", f"sys/audit/{namespace}", {"type": "file", "options": {"file_path": str(log)}})
    _approle_source(kube, namespace, vault, f"shared-{namespace}")
    path = f"app/{namespace}/shared"
    vault.kv_write(path, {"password": "shared-canary-one"})
    names = ("alpha", "beta", "gamma")
    for name in names:
        spec = {
            "secretName": name,
            "data": {"password": {"vault": {"source": {"name": "vault"}, "path": path}}},
            "refresh": "10s",
            "rollout": {"strategy": "none"},
        }
        kube.create(_managed(namespace, name, spec))

    def at(version: str) -> bool:
        return all(
            _status(kube, namespace, n).get("sourceVersions") == {"password": version}
            for n in names
        )

    async def body(operators: list[Operator], _: list[asyncio.Event]) -> None:
        await _until(lambda: at("1"), what="version 1 of every ManagedSecret")
        before = _audited(log, "metadata", path)
        began = time.monotonic()
        await asyncio.sleep(25)
        windows = (time.monotonic() - began) / 10
        checks = _audited(log, "metadata", path) - before
        # One per window for the three of them (three per window before they shared).
        assert 1 <= checks <= int(windows) + 1, (checks, windows)
        assert operators[0].stores.checks.paths() == 1
        metrics = generate_latest(operators[0].metrics.registry).decode()
        assert "kustos_store_paths 1.0" in metrics
        assert 'kustos_store_versions_observed_total{outcome="ok"}' in metrics
        assert "shared-canary" not in metrics

        reads = _audited(log, "data", path)
        await asyncio.to_thread(vault.kv_write, path, {"password": "shared-canary-two"})
        await _until(lambda: at("2"), timeout=40, what="the new version everywhere")
        assert _audited(log, "data", path) - reads == 1, "three readers, one value read"

    _with_operators(control_plane, namespace, body)
    assert all(_data(kube, namespace, n) == {"password": b"shared-canary-two"} for n in names)
    text = " ".join(json.dumps(_status(kube, namespace, n)) for n in names) + _events_text(
        kube, namespace
    )
    assert "shared-canary" not in text
    assert "shared-canary" not in vault.log_text
    assert "shared-canary" not in log.read_text(), "the audit device hashes values"


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sources" / "vault-shop.yaml"


def test_the_readme_walk_through_a_vault_change_restarts_the_deployment(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    vault: VaultServer,
) -> None:
    # README "Sources": the example file as a user applies it, in the test's namespace,
    # against this Vault; the AppRole with the example's fixed role id, its secret id in
    # the Secret the example names; the operator running, then a new version in Vault.
    path = f"app/{namespace}/db"  # the policy of this Vault reads app/*
    vault.kv_write(path, {"password": "readme-canary-first"})
    creds = vault.approle(f"readme-{namespace}", policies=[POLICY], role_id=f"rid-{namespace}")
    kube.create(
        Secret(
            metadata=ObjectMeta(name="vault-approle", namespace=namespace),
            stringData={"secret-id": creds.secret_id.reveal_text()},
        )
    )
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    assert [d["kind"] for d in docs] == ["SecretSource", "ManagedSecret", "Deployment"]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    source, managed, deployment = docs
    source["spec"]["vault"]["address"] = vault.address
    source["spec"]["vault"]["auth"]["appRole"]["roleId"] = creds.role_id
    managed["spec"]["data"]["password"]["vault"]["path"] = path
    managed["spec"]["refresh"] = "10s"  # the example's 30 s, shortened for the test
    kube.create(SecretSource(**source))
    kube.create(_managed(namespace, "db", managed["spec"]))
    kube.apply(codecs.from_dict(deployment), field_manager="test")

    def pods() -> set[str]:
        return {
            p.metadata.name
            for p in kube.list(Pod, namespace=namespace, labels={"app": "web"})
            if p.metadata is not None and p.metadata.name and not p.metadata.deletionTimestamp
        }

    async def body(_: list[Operator], __: list[asyncio.Event]) -> None:
        await _until(
            lambda: _status(kube, namespace, "db").get("sourceVersions") == {"password": "1"},
            what="version 1 from Vault",
        )
        await asyncio.to_thread(_wait_available, kube, namespace, "web")
        before = await asyncio.to_thread(pods)
        await asyncio.to_thread(vault.kv_write, path, {"password": "readme-canary-second"})
        await _until(
            lambda: _status(kube, namespace, "db").get("sourceVersions") == {"password": "2"},
            what="version 2 after the change in Vault",
        )
        await _until(
            lambda: bool(pods()) and not (pods() & before), what="web restarted on version 2"
        )

    _with_operators(control_plane, namespace, body)
    assert _data(kube, namespace, "db") == {"password": b"readme-canary-second"}
    status = _status(kube, namespace, "db")
    assert status["versions"][0]["reason"] == "SourceChanged: password (store version 2)"
    reasons = [e.reason for e in kube.list(Event, namespace=namespace)]
    assert "RolloutComplete" in reasons
    text = json.dumps(status) + _events_text(kube, namespace)
    assert "readme-canary" not in text


def test_a_cluster_secret_source_serves_managed_secrets_of_any_namespace(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, vault: VaultServer
) -> None:
    # The credentials Secret lives in the namespace the ClusterSecretSource names; a
    # ClusterSecretSource that does not name one is refused in one line.
    creds = vault.approle(f"cluster-{namespace}", policies=[POLICY])
    kube.create(
        Secret(
            metadata=ObjectMeta(name="approle", namespace=namespace),
            stringData={"secret-id": creds.secret_id.reveal_text()},
        )
    )
    name, nameless = f"vault-{namespace}"[:63], f"nons-{namespace}"[:63]
    for source, ref in ((name, {"name": "approle", "namespace": namespace}),
                        (nameless, {"name": "approle"})):  # fmt: skip
        kube.create(
            ClusterSecretSource(
                apiVersion="kustos.io/v1alpha1",
                kind="ClusterSecretSource",
                metadata=ObjectMeta(name=source),
                spec={"vault": {"address": vault.address,
                                "auth": {"appRole": {"roleId": creds.role_id, "secretRef": ref}}}},
            )
        )  # fmt: skip
    try:
        vault.kv_write(f"app/{namespace}/shared", {"password": "cluster-canary"})
        for ms, source in (("db", name), ("broken", nameless)):
            ref = {"kind": "ClusterSecretSource", "name": source}
            spec = {
                "secretName": ms,
                "data": {"password": {"vault": {"source": ref, "path": f"app/{namespace}/shared"}}},
                "rollout": {"strategy": "none"},
            }
            kube.create(_managed(namespace, ms, spec))
        assert _run(control_plane, lambda e: e.rotate(namespace, "db")).outcome == "rotated"
        assert _data(kube, namespace, "db") == {"password": b"cluster-canary"}
        assert _status(kube, namespace, "db")["sourceVersions"] == {"password": "1"}

        with pytest.raises(InvalidSpecError, match=r"secretRef.namespace is required") as err:
            _run(control_plane, lambda e: e.rotate(namespace, "broken"))
        assert "\n" not in str(err.value)
        assert "cluster-canary" not in str(err.value)
    finally:
        for source in (name, nameless):
            kube.delete(ClusterSecretSource, source)


@pytest.mark.timeout(300)
def test_a_vault_outage_under_the_operator_keeps_the_value_backs_off_and_recovers(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, tmp_path: Path
) -> None:
    role_id, secret_id = f"outage-{namespace}", Sensitive(secrets.token_hex(16))

    def seed(server: VaultServer) -> None:  # a dev server forgets everything on restart
        server.put_policy(POLICY, "app")
        server.enable_auth("approle")
        server.approle("outage", policies=[POLICY], role_id=role_id, secret_id=secret_id)

    path = f"app/{namespace}/db"
    with VaultServer(tmp_path / "vault", binary=require_vault()) as server:
        seed(server)
        server.kv_write(path, {"password": "outage-canary-one"})
        kube.create(
            Secret(
                metadata=ObjectMeta(name="approle", namespace=namespace),
                stringData={"secret-id": secret_id.reveal_text()},
            )
        )
        auth = {"appRole": {"roleId": role_id, "secretRef": {"name": "approle"}}}
        _source(kube, namespace, "vault", server, auth)
        spec = {
            "secretName": "db",
            "data": {"password": {"vault": {"source": {"name": "vault"}, "path": path}}},
            "refresh": "10s",
            "rollout": {"strategy": "none"},
        }
        kube.create(_managed(namespace, "db", spec))

        def ready() -> dict[str, Any]:
            conditions = _status(kube, namespace, "db").get("conditions") or []
            return next((c for c in conditions if c["type"] == "SourcesReady"), {})

        def backoff(op: Operator) -> float:
            for metric in op.metrics.registry.collect():
                for sample in metric.samples:
                    if (
                        sample.name == "kustos_retry_backoff_seconds"
                        and sample.labels.get("name") == "db"
                    ):
                        return float(sample.value)
            return 0.0

        async def body(operators: list[Operator], _: list[asyncio.Event]) -> None:
            await _until(lambda: _status(kube, namespace, "db").get("currentVersion") == 1,
                         what="version 1")  # fmt: skip
            await asyncio.to_thread(server.stop)
            await _until(
                lambda: ready().get("status") == "False", timeout=60, what="the outage seen"
            )
            assert ready()["reason"] == "StoreUnavailable"
            assert "the last good value stays live" in ready()["message"]
            # The engine writes the condition, then the operator sets the retry delay.
            await _until(lambda: backoff(operators[0]) > 0, what="the delay in /metrics")
            assert _data(kube, namespace, "db") == {"password": b"outage-canary-one"}

            await asyncio.to_thread(server.start)
            await asyncio.to_thread(seed, server)
            for value in ("outage-canary-lost", "outage-canary-two"):  # version 2 again
                await asyncio.to_thread(server.kv_write, path, {"password": value})
            await _until(lambda: ready().get("status") == "True", timeout=90, what="recovery")
            await _until(
                lambda: _data(kube, namespace, "db") == {"password": b"outage-canary-two"},
                timeout=60,
                what="the value after the outage",
            )
            await _until(lambda: backoff(operators[0]) == 0, what="no delay once recovered")

        _with_operators(control_plane, namespace, body)
        text = json.dumps(_status(kube, namespace, "db")) + _events_text(kube, namespace)
        assert "outage-canary" not in text
        assert "outage-canary" not in server.log_text
