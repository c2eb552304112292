"""The Vault client against a real Vault dev server built from the Go module proxy.

Aspects: the binary is the pinned v1.21.0 (built on first use, cached); KV v2 through
AppRole: check-and-set create and update, a lost check-and-set, versions and the metadata
version, reads by version and key, a soft-deleted latest version, a path the policy does
not cover, a wrong secret id; the kubernetes auth method against the local control plane
with a reviewer ServiceAccount and a real TokenRequest token for the role's audience (a
ServiceAccount the role is not bound to is refused); a server stopped mid-way makes each
call fail fast with ``StoreUnavailableError`` and, once it is back, the same client logs
in again by itself and reads; the canary value never reaches the server's log.

The first test builds the binary when it is missing (about 10 minutes, so it carries its
own timeout); every test is skipped, with the build's own words, only when the binary is
absent and cannot be built.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

from kustos.errors import (
    ControlPlaneError,
    StoreAuthError,
    StoreConflictError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from kustos.sensitive import Sensitive
from kustos.sources.vault import (
    AppRoleAuth,
    KubernetesAuth,
    VaultClient,
    VaultSettings,
)
from kustos.testing.controlplane import ControlPlane
from kustos.testing.vault import (
    VAULT_VERSION,
    VaultServer,
    build_vault,
    service_account_token,
    token_reviewer,
)

pytestmark = pytest.mark.integration

GO_MOD = Path(__file__).resolve().parents[2] / "tools" / "vault" / "go.mod"
CANARY = "vault-canary-" + secrets.token_hex(8)
POLICY = "kustos-app"


@pytest.fixture(scope="session")
def vault_bin() -> Path:
    """The pinned ``vault`` binary: cached, or built now; a skip only if it cannot be."""
    try:
        return build_vault()
    except ControlPlaneError as exc:
        pytest.skip(f"vault binary absent and cannot be built: {exc}")


@pytest.fixture(scope="module")
def vault(vault_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultServer]:
    """One dev server for this module, with the ``kustos-app`` policy over ``app/``."""
    with VaultServer(tmp_path_factory.mktemp("vault"), binary=vault_bin) as server:
        server.put_policy(POLICY, "app")
        server.enable_auth("approle")
        yield server


def _approle(server: VaultServer, name: str = "app") -> VaultSettings:
    creds = server.approle(name, policies=[POLICY])
    return VaultSettings(server.address, AppRoleAuth(creds.role_id, creds.secret_id))


@pytest.mark.timeout(3600)  # builds the binary when the cache is empty
def test_the_binary_is_the_pinned_version(vault_bin: Path) -> None:
    pinned = re.search(r"github\.com/hashicorp/vault (v\S+)", GO_MOD.read_text())
    assert pinned is not None
    assert pinned.group(1) == VAULT_VERSION
    out = subprocess.run(
        [str(vault_bin), "version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.startswith(f"Vault {VAULT_VERSION}"), out.stdout


@pytest.mark.asyncio
async def test_kv_v2_versions_and_check_and_set_through_approle(vault: VaultServer) -> None:
    async with VaultClient(_approle(vault)) as client:
        assert await client.write("app/db", {"password": Sensitive(CANARY)}, cas=0) == 1
        assert await client.write("app/db", {"password": Sensitive("second")}, cas=1) == 2
        with pytest.raises(StoreConflictError, match=r"secret/data/app/db: check-and-set"):
            await client.write("app/db", {"password": Sensitive("lost")}, cas=1)
        with pytest.raises(StoreConflictError):
            await client.write("app/db", {"password": Sensitive("lost")}, cas=0)
        assert await client.current_version("app/db") == 2

        latest = await client.read("app/db")
        first = await client.read("app/db", version=1, key="password")
        assert (latest.version, latest.values["password"].reveal_text()) == (2, "second")
        assert first.values["password"].reveal_text() == CANARY
        assert re.match(r"^\d{4}-\d\d-\d\dT", latest.created)

        # A change made outside Kustos shows in the metadata before any value is read.
        vault.kv_write("app/db", {"password": "third", "user": "app"})
        assert await client.current_version("app/db") == 3
        assert (await client.read("app/db", key="user")).values["user"].reveal_text() == "app"

        vault.kv_delete_latest("app/db")
        with pytest.raises(StoreNotFoundError, match=r"\(3\) was deleted at "):
            await client.read("app/db")
        with pytest.raises(StoreNotFoundError, match=r"secret/data/app/nothing"):
            await client.read("app/nothing")
        with pytest.raises(StoreAuthError, match=r"secret/data/other/x: HTTP 403"):
            await client.read("other/x")
    assert CANARY not in vault.log_text


@pytest.mark.asyncio
async def test_a_wrong_secret_id_is_refused(vault: VaultServer) -> None:
    creds = vault.approle("wrong", policies=[POLICY])
    settings = VaultSettings(vault.address, AppRoleAuth(creds.role_id, Sensitive("not-it")))
    async with VaultClient(settings) as client:
        with pytest.raises(StoreAuthError, match=r"^vault login refused \(approle\)") as caught:
            await client.read("app/db")
    assert "not-it" not in str(caught.value)


@pytest.mark.asyncio
async def test_kubernetes_login_with_a_real_serviceaccount_token(
    vault: VaultServer, control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    # The reviewer calls TokenReview for Vault (system:auth-delegator); the app only logs in.
    kube.create(ServiceAccount(metadata=ObjectMeta(name="app")), namespace=namespace)
    with token_reviewer(kube, namespace) as reviewer:
        mount = f"k8s-{namespace}"
        vault.use_control_plane(control_plane, token_reviewer_jwt=reviewer, path=mount)
        vault.kubernetes_role(
            "app", service_account="app", namespace=namespace, policies=[POLICY], path=mount
        )
        logins: list[str] = []

        def jwt() -> Sensitive:  # a fresh TokenRequest per login, as a projected token would be
            logins.append(namespace)
            return service_account_token(kube, namespace, "app", audiences=["vault"])

        settings = VaultSettings(vault.address, KubernetesAuth("app", jwt, path=mount))
        async with VaultClient(settings) as client:
            version = await client.write("app/k8s", {"token": Sensitive(CANARY)})
            got = await client.read("app/k8s", key="token")
            assert got.version == version
            assert got.values["token"].reveal_text() == CANARY
            assert await client.current_version("app/k8s") == version
        assert len(logins) == 1

        stranger = service_account_token(kube, namespace, "default", audiences=["vault"])
        settings = VaultSettings(vault.address, KubernetesAuth("app", stranger, path=mount))
        async with VaultClient(settings) as client:
            with pytest.raises(StoreAuthError, match=r"kubernetes role 'app'"):
                await client.read("app/k8s")
    assert CANARY not in vault.log_text


@pytest.mark.asyncio
async def test_a_stopped_server_is_unavailable_and_the_client_recovers_after_restart(
    vault_bin: Path, tmp_path: Path
) -> None:
    role_id, secret_id = "kustos-restart-role", Sensitive(secrets.token_hex(16))

    def seed(server: VaultServer) -> None:  # a dev server forgets everything on restart
        server.put_policy(POLICY, "app")
        server.enable_auth("approle")
        server.approle("app", policies=[POLICY], role_id=role_id, secret_id=secret_id)

    with VaultServer(tmp_path / "vault", binary=vault_bin) as server:
        seed(server)
        settings = VaultSettings(server.address, AppRoleAuth(role_id, secret_id), timeout=3.0)
        async with VaultClient(settings) as client:
            assert await client.write("app/db", {"password": Sensitive("before")}) == 1

            server.stop()
            with pytest.raises(StoreUnavailableError, match=r"cannot reach http://127\.0\.0\.1"):
                await client.current_version("app/db")
            with pytest.raises(StoreUnavailableError, match=r"GET secret/data/app/db"):
                await client.read("app/db")

            server.start()
            seed(server)
            server.kv_write("app/db", {"password": "after"})
            # The old token is unknown to the new server: one re-login, then the read.
            got = await client.read("app/db")
            assert got.values["password"].reveal_text() == "after"
            assert await client.current_version("app/db") == 1
