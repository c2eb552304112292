"""A real Vault dev server for tests, built from the Go module proxy, on loopback.

``VaultServer(folder).start()`` runs ``vault server -dev`` (in-memory storage, unsealed,
KV v2 mounted at ``secret/``, plain HTTP) on a free loopback port with a random root token,
in its own session like the control plane's components, and waits for
``/v1/sys/health``. The root token goes to the server through ``VAULT_DEV_ROOT_TOKEN_ID``
rather than ``-dev-root-token-id`` so that it is not readable in ``/proc/*/cmdline``;
``-dev-no-store-token`` keeps it out of ``~/.vault-token``. ``stop`` sends SIGTERM to the
process group, then SIGKILL. ``restart`` keeps the port and the root token, but a dev
server keeps nothing else: mounts, policies and roles must be set up again.

The helpers set up what a Kustos source needs, as the root token: a policy over
``secret/data/<prefix>/*`` (and the metadata the version checks read), the kubernetes auth
method pointed at a local control plane (its URL and CA; a token reviewer JWT, or each
client's own JWT reviewing itself), a role bound to a ServiceAccount, and AppRole
credentials. On the cluster side, :func:`token_reviewer` makes the reviewer account
(``system:auth-delegator``) and :func:`service_account_token` mints tokens with the
TokenRequest API.

The binary comes from ``tools/vault/build.sh`` (cached in ``~/.cache/kustos/vault/``);
``KUSTOS_VAULT_BIN`` points at another one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx
from lightkube import Client
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import RoleRef, Subject
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from kustos.errors import BinaryMissingError, ControlPlaneError, quote_foreign
from kustos.sensitive import Sensitive
from kustos.testing.binaries import cache_root
from kustos.testing.controlplane import ControlPlane
from kustos.testing.flags import LOOPBACK
from kustos.testing.probing import PROBE_ERRORS
from kustos.testing.processes import Process, free_ports, launch, terminate, wait_ready

#: The version ``tools/vault/build.sh`` builds (the require line of tools/vault/go.mod).
VAULT_VERSION: Final = "v1.21.0"
#: The build script, when running from a checkout of the repository.
BUILD_SCRIPT: Final = Path(__file__).resolve().parents[3] / "tools" / "vault" / "build.sh"
#: A cold build takes about 9 minutes on 2 cores, plus the module downloads.
BUILD_TIMEOUT: Final = 3600.0
START_TIMEOUT: Final = 60.0
TIMEOUT: Final = 10.0


def vault_binary() -> Path:
    """Where the ``vault`` binary of the pinned version is (or will be)."""
    explicit = os.environ.get("KUSTOS_VAULT_BIN")
    if explicit:
        return Path(explicit)
    return cache_root() / "vault" / VAULT_VERSION / "bin" / "vault"


def require_vault() -> Path:
    """The ``vault`` binary, or ``BinaryMissingError`` saying how to build it."""
    binary = vault_binary()
    if not os.access(binary, os.X_OK):
        raise BinaryMissingError(
            f"vault {VAULT_VERSION} is not built ({binary}); build it with "
            "tools/vault/build.sh (10 to 40 minutes and about 6 GB of Go modules)"
        )
    return binary


def build_vault(*, timeout: float = BUILD_TIMEOUT) -> Path:
    """The ``vault`` binary: from the cache, or built now; ``ControlPlaneError`` if it cannot be.

    Runs ``tools/vault/build.sh`` under ``nice -n 10``: the build takes both cores for
    minutes, and the machine is usually shared.
    """
    with contextlib.suppress(BinaryMissingError):
        return require_vault()
    if os.environ.get("KUSTOS_VAULT_BIN"):
        return require_vault()  # a binary named explicitly is not built
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(f"cannot build vault: {BUILD_SCRIPT} is not here (no checkout)")
    try:
        done = subprocess.run(
            ["nice", "-n", "10", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ControlPlaneError(f"the vault build took more than {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise ControlPlaneError(f"the vault build failed: {quote_foreign(tail, 400)}")
    return require_vault()


@dataclass(frozen=True, slots=True)
class AppRoleCredentials:
    """What an AppRole login needs."""

    role_id: str
    secret_id: Sensitive


def policy_text(prefix: str, *, mount: str = "secret") -> str:
    """An ACL policy: read and write values under *prefix*, read their metadata."""
    return (
        f'path "{mount}/data/{prefix}/*" {{\n'
        '  capabilities = ["create", "read", "update"]\n'
        "}\n"
        f'path "{mount}/metadata/{prefix}/*" {{\n'
        '  capabilities = ["read", "list"]\n'
        "}\n"
    )


def service_account_token(
    kube: Client,
    namespace: str,
    account: str,
    *,
    audiences: Sequence[str] = (),
    seconds: int = 600,
) -> Sensitive:
    """A token of *namespace*/*account* from the TokenRequest API (no audience: the API's)."""
    spec = TokenRequestSpec(audiences=list(audiences), expirationSeconds=seconds)
    made = kube.create(
        ServiceAccount.Token(metadata=ObjectMeta(), spec=spec), name=account, namespace=namespace
    )
    if made.status is None or not made.status.token:
        raise ControlPlaneError(f"TokenRequest for {namespace}/{account} returned no token")
    return Sensitive(made.status.token)


@contextlib.contextmanager
def token_reviewer(
    kube: Client, namespace: str, *, account: str = "vault-reviewer"
) -> Iterator[Sensitive]:
    """A ServiceAccount that may review tokens for Vault, and a token of it.

    Creates the account in *namespace* and binds it to ``system:auth-delegator`` (a
    ClusterRoleBinding, deleted on exit; the namespace's deletion takes the account).
    """
    kube.create(ServiceAccount(metadata=ObjectMeta(name=account)), namespace=namespace)
    binding = f"{account}-{namespace}"
    kube.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=binding),
            roleRef=RoleRef(
                apiGroup="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[Subject(kind="ServiceAccount", name=account, namespace=namespace)],
        )
    )
    try:
        yield service_account_token(kube, namespace, account)
    finally:
        kube.delete(ClusterRoleBinding, binding)


class VaultServer:
    """One throwaway Vault dev server. Use it as a context manager."""

    def __init__(self, folder: Path, *, binary: Path | None = None) -> None:
        self.folder = folder
        self.binary = binary
        self.port = free_ports(1)[0]
        self.root_token = Sensitive(secrets.token_hex(18))
        self.proc: Process | None = None

    @property
    def address(self) -> str:
        """The server's URL (plain HTTP on loopback)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log(self) -> Path:
        """The server's log (stdout and stderr, appended across restarts)."""
        return self.folder / "vault.log"

    @property
    def log_text(self) -> str:
        """Everything the server logged."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Start the dev server and wait until it is unsealed and active."""
        binary = self.binary or require_vault()
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "server",
            "-dev",
            f"-dev-listen-address={LOOPBACK}:{self.port}",
            "-dev-no-store-token",
        ]
        env = {
            "VAULT_DEV_ROOT_TOKEN_ID": self.root_token.reveal_text(),
            # The server must not pick up a developer's client settings.
            "VAULT_ADDR": self.address,
            "HOME": str(self.folder),
        }
        self.proc = Process("vault", argv, self.log, env)
        launch(self.proc)
        try:
            wait_ready(
                self.proc,
                self._healthy,
                deadline=time.monotonic() + START_TIMEOUT,
                patience=START_TIMEOUT,
                errors=PROBE_ERRORS,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM to its group, then SIGKILL) and wait for it."""
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def restart(self) -> Self:
        """Stop and start on the same port with the same root token (and empty storage)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _healthy(self) -> bool:
        # 200 only when initialised, unsealed and active.
        return httpx.get(f"{self.address}/v1/sys/health", timeout=2.0).status_code == 200

    # ------------------------------------------------------------------ admin calls
    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/v1/<path>`` as root; JSON in and out; ``ControlPlaneError`` on 4xx/5xx."""
        headers = {"X-Vault-Token": self.root_token.reveal_text()}
        try:
            response = httpx.request(
                method, f"{self.address}/v1/{path}", json=body, headers=headers, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise ControlPlaneError(f"vault {method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise ControlPlaneError(
                f"vault {method} {path}: HTTP {response.status_code}: "
                f"{quote_foreign(response.text)}"
            )
        return response.json() if response.content else None

    def put_policy(self, name: str, prefix: str, *, mount: str = "secret") -> None:
        """Write the policy *name* over ``<mount>/data/<prefix>/*`` (see :func:`policy_text`)."""
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": policy_text(prefix, mount=mount)})

    def enable_auth(self, kind: str, *, path: str | None = None) -> None:
        """Enable the auth method *kind* (``kubernetes``, ``approle``) at *path*."""
        self.api("POST", f"sys/auth/{path or kind}", {"type": kind})

    def configure_kubernetes(
        self,
        *,
        host: str,
        ca_cert: str,
        token_reviewer_jwt: Sensitive | None = None,
        path: str = "kubernetes",
    ) -> None:
        """Point the kubernetes auth method at an API server (URL and CA PEM).

        Without *token_reviewer_jwt*, each client's own JWT reviews itself, so its
        ServiceAccount needs ``system:auth-delegator``. Outside a pod Vault must not look
        for the pod's CA and token files (``disable_local_ca_jwt``).
        """
        body: dict[str, Any] = {
            "kubernetes_host": host,
            "kubernetes_ca_cert": ca_cert,
            "disable_local_ca_jwt": True,
        }
        if token_reviewer_jwt is not None:
            body["token_reviewer_jwt"] = token_reviewer_jwt.reveal_text()
        self.api("POST", f"auth/{path}/config", body)

    def use_control_plane(
        self,
        plane: ControlPlane,
        *,
        token_reviewer_jwt: Sensitive | None = None,
        path: str = "kubernetes",
    ) -> None:
        """Enable the kubernetes auth method at *path* against a local control plane."""
        self.enable_auth("kubernetes", path=path)
        self.configure_kubernetes(
            host=plane.server,
            ca_cert=plane.pki.ca.cert.read_text(),
            token_reviewer_jwt=token_reviewer_jwt,
            path=path,
        )

    def kubernetes_role(
        self,
        name: str,
        *,
        service_account: str,
        namespace: str,
        policies: Iterable[str],
        audience: str = "vault",
        ttl: str = "1h",
        path: str = "kubernetes",
    ) -> None:
        """A role that logs in *namespace*/*service_account* with *policies*.

        Vault 1.21 only warns about a role without an ``audience``; set one anyway, and
        request the ServiceAccount token for it.
        """
        self.api(
            "POST",
            f"auth/{path}/role/{name}",
            {
                "bound_service_account_names": [service_account],
                "bound_service_account_namespaces": [namespace],
                "audience": audience,
                "token_policies": list(policies),
                "token_ttl": ttl,
            },
        )

    def approle(
        self,
        name: str,
        *,
        policies: Iterable[str],
        role_id: str | None = None,
        secret_id: Sensitive | None = None,
        ttl: str = "1h",
        max_ttl: str = "4h",
        path: str = "approle",
    ) -> AppRoleCredentials:
        """An AppRole role and one secret id (the given ones, to survive a restart)."""
        role = f"auth/{path}/role/{name}"
        self.api(
            "POST",
            role,
            {"token_policies": list(policies), "token_ttl": ttl, "token_max_ttl": max_ttl},
        )
        if role_id is not None:
            self.api("POST", f"{role}/role-id", {"role_id": role_id})
        got_role_id = self.api("GET", f"{role}/role-id")["data"]["role_id"]
        if secret_id is not None:
            self.api("POST", f"{role}/custom-secret-id", {"secret_id": secret_id.reveal_text()})
            return AppRoleCredentials(got_role_id, secret_id)
        made = self.api("POST", f"{role}/secret-id")["data"]["secret_id"]
        return AppRoleCredentials(got_role_id, Sensitive(made))

    def kv_write(self, path: str, values: Mapping[str, str], *, mount: str = "secret") -> int:
        """Write a KV v2 version as root (a change made outside Kustos); its version."""
        answer = self.api("POST", f"{mount}/data/{path}", {"data": dict(values)})
        return int(answer["data"]["version"])

    def kv_delete_latest(self, path: str, *, mount: str = "secret") -> None:
        """Soft-delete the latest version at *path*."""
        self.api("DELETE", f"{mount}/data/{path}")
