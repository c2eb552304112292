"""The one way Kustos gets a Kubernetes client (an adapter around lightkube).

``ClientSettings`` says where the cluster is: a kubeconfig file and context, the
in-cluster service account, or the environment (``KUBECONFIG``, then ``~/.kube/config``,
then in-cluster). ``api_errors`` translates lightkube and transport exceptions into the
Kustos error tree, once, at this edge.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, Client, KubeConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from kustos.errors import (
    ConfigError,
    KubeConnectionError,
    KubeError,
    KubeNotFoundError,
    quote_foreign,
)

FIELD_MANAGER = "kustos"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where to find the cluster and how to talk to it."""

    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespace: str | None = None
    timeout: float = 30.0


def load_config(settings: ClientSettings) -> KubeConfig:
    """Resolve ``settings`` into a lightkube ``KubeConfig``; raise ``ConfigError`` if unusable."""
    try:
        if settings.in_cluster:
            return KubeConfig.from_service_account()
        if settings.kubeconfig is not None:
            return KubeConfig.from_file(settings.kubeconfig)
        env = os.environ.get("KUBECONFIG")
        if env:
            # KUBECONFIG may list several files; the first existing one is used.
            for candidate in env.split(os.pathsep):
                if candidate and Path(candidate).is_file():
                    return KubeConfig.from_file(candidate)
        return KubeConfig.from_env()
    except (LightkubeConfigError, OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        # lightkube lets the shape errors of a malformed file through as KeyError/TypeError.
        where = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(f"no usable kubeconfig at {where}: {quote_foreign(str(exc))}") from exc


def make_client(settings: ClientSettings) -> Client:
    """A synchronous client (CLI commands)."""
    config = load_config(settings)
    try:
        return Client(
            config.get(context_name=settings.context),
            namespace=settings.namespace,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(settings.timeout),
        )
    except LightkubeConfigError as exc:
        raise ConfigError(
            f"kubeconfig context {settings.context!r}: {quote_foreign(str(exc))}"
        ) from exc


def make_async_client(settings: ClientSettings) -> AsyncClient:
    """An asyncio client (services)."""
    config = load_config(settings)
    try:
        return AsyncClient(
            config.get(context_name=settings.context),
            namespace=settings.namespace,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(settings.timeout),
        )
    except LightkubeConfigError as exc:
        raise ConfigError(
            f"kubeconfig context {settings.context!r}: {quote_foreign(str(exc))}"
        ) from exc


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Translate client exceptions raised while doing *what* into ``KubeError``s."""
    try:
        yield
    except ApiError as exc:
        status = exc.status
        message = quote_foreign(status.message or "") if status is not None else ""
        if status is not None and status.code == 404:
            raise KubeNotFoundError(f"{what}: not found") from exc
        code = status.code if status is not None else "?"
        raise KubeError(f"{what}: HTTP {code}: {message}") from exc
    except httpx2.TransportError as exc:
        raise KubeConnectionError(f"{what}: API server unreachable ({type(exc).__name__})") from exc


def raw_get(settings: ClientSettings, path: str) -> str:
    """GET a non-resource path (``/metrics``, ``/healthz/kms-providers``) as text."""
    from lightkube.config.client_adapter import Client as HttpClient  # noqa: PLC0415
    from lightkube.config.client_adapter import ConnectionParams  # noqa: PLC0415

    config = load_config(settings).get(context_name=settings.context)
    if config is None:
        raise ConfigError("kubeconfig has no usable context")
    params = ConnectionParams(timeout=httpx2.Timeout(settings.timeout))
    try:
        with HttpClient(config, params) as http:
            response = http.get(path)
    except httpx2.TransportError as exc:
        raise KubeConnectionError(
            f"GET {path}: API server unreachable ({type(exc).__name__})"
        ) from exc
    if response.status_code >= 400:
        raise KubeError(f"GET {path}: HTTP {response.status_code}: {quote_foreign(response.text)}")
    return response.text
