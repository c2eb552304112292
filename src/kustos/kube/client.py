"""The one way Kustos gets a Kubernetes client (an adapter around lightkube).

``ClientSettings`` says where the cluster is: a kubeconfig file and context, the
in-cluster service account, or the environment (``KUBECONFIG``, then ``~/.kube/config``,
then in-cluster). A kubeconfig that cannot be used (missing, not YAML, no such context, a
certificate file it names is missing) is one ``ConfigError`` naming the file.

``api_errors`` translates lightkube and transport exceptions into the Kustos error tree,
once, at this edge: every status a user meets has its own error and a sentence that says
what was refused, never a value the API server echoed back.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, Client, KubeConfig
from lightkube.config.client_adapter import Client as HttpClient
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from kustos.errors import (
    ConfigError,
    FileAccessError,
    InputError,
    KubeAuthError,
    KubeConflictError,
    KubeConnectionError,
    KubeError,
    KubeInvalidError,
    KubeNotFoundError,
    quote_foreign,
)
from kustos.files import read_text
from kustos.kube.documents import load_yaml

FIELD_MANAGER = "kustos"
DEFAULT_KUBECONFIG: Final = Path("~/.kube/config")
#: A kubeconfig is a few kilobytes; anything this large is not one.
MAX_KUBECONFIG_BYTES: Final = 16 * 1024 * 1024

C = TypeVar("C", Client, AsyncClient)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where to find the cluster and how to talk to it."""

    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespace: str | None = None
    timeout: float = 30.0


# --------------------------------------------------------------------------- kubeconfig
def _kubeconfig_path(settings: ClientSettings) -> Path | None:
    """The kubeconfig file to read, or ``None`` to fall back to the in-cluster account."""
    if settings.kubeconfig is not None:
        return settings.kubeconfig
    env = os.environ.get("KUBECONFIG")
    if env:
        # KUBECONFIG may list several files; the first existing one is used (as kubectl
        # merges them, the first one wins for the current context).
        candidates = [Path(c) for c in env.split(os.pathsep) if c]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return candidates[0] if candidates else None
    default = DEFAULT_KUBECONFIG.expanduser()
    return default if default.is_file() else None


def _read_kubeconfig(path: Path) -> KubeConfig:
    """Parse the kubeconfig at *path*; ``ConfigError`` naming the file and the reason."""
    where = f"no usable kubeconfig at {path}"
    try:
        text = read_text(path, what="kubeconfig", limit=MAX_KUBECONFIG_BYTES)
    except FileAccessError as exc:
        # FileAccessError's own message already names the path; keep the reason only.
        raise ConfigError(f"{where}: {str(exc).rsplit(': ', 1)[-1]}") from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{where}: not YAML{line}") from exc
    except InputError as exc:  # the alias-bomb guard
        raise ConfigError(f"{where}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise ConfigError(f"{where}: not a kubeconfig (no list of clusters)")
    try:
        return KubeConfig.from_dict(data, fname=path.expanduser().resolve())
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # lightkube lets the shape errors of a malformed file through as these.
        raise ConfigError(
            f"{where}: malformed entry ({type(exc).__name__}: {quote_foreign(str(exc), 80)})"
        ) from exc


def load_config(settings: ClientSettings) -> KubeConfig:
    """Resolve ``settings`` into a lightkube ``KubeConfig``; raise ``ConfigError`` if unusable."""
    path = None if settings.in_cluster else _kubeconfig_path(settings)
    if path is not None:
        return _read_kubeconfig(path)
    try:
        return KubeConfig.from_service_account()
    except (LightkubeConfigError, OSError, KeyError) as exc:
        if settings.in_cluster:
            raise ConfigError(
                f"not running in a pod with a service account: {quote_foreign(str(exc), 80)}"
            ) from exc
        raise ConfigError(
            f"no usable kubeconfig at {DEFAULT_KUBECONFIG}: no such file, KUBECONFIG is not "
            "set and no in-cluster service account was found"
        ) from exc


def _single(settings: ClientSettings) -> SingleConfig:
    """The context to use; ``ConfigError`` if it is missing or points at nothing."""
    config = load_config(settings)
    source = config.fname or "the in-cluster configuration"
    name = settings.context or config.current_context
    try:
        single = config.get(context_name=settings.context)
    except LightkubeConfigError as exc:
        raise ConfigError(f"kubeconfig {source}: {quote_foreign(str(exc), 80)}") from exc
    except KeyError as exc:
        raise ConfigError(
            f"kubeconfig {source}: context {name!r} names a cluster or user that is not "
            f"defined ({quote_foreign(str(exc), 80)})"
        ) from exc
    if single is None or single.user is None:
        raise ConfigError(f"kubeconfig {source}: context {name!r} has no user")
    return single


def _tls_error(single: SingleConfig, exc: OSError) -> ConfigError:
    """A certificate or key file the kubeconfig names is missing or unreadable."""
    filename = getattr(exc, "filename", None)
    what = f"{filename}: {exc.strerror}" if filename else quote_foreign(str(exc), 80)
    return ConfigError(
        f"kubeconfig {single.fname or ''} context {single.context_name!r}: cannot load "
        f"its TLS files ({what})"
    )


def _build(settings: ClientSettings, factory: Callable[..., C]) -> C:
    single = _single(settings)
    try:
        return factory(
            single,
            namespace=settings.namespace,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(settings.timeout),
        )
    except OSError as exc:  # ssl.SSLError is an OSError
        raise _tls_error(single, exc) from exc
    except LightkubeConfigError as exc:
        raise ConfigError(
            f"kubeconfig context {single.context_name!r}: {quote_foreign(str(exc), 80)}"
        ) from exc


def make_client(settings: ClientSettings) -> Client:
    """A synchronous client (CLI commands)."""
    return _build(settings, Client)


def make_async_client(settings: ClientSettings) -> AsyncClient:
    """An asyncio client (services)."""
    return _build(settings, AsyncClient)


def http_client(settings: ClientSettings) -> httpx2.Client:
    """A plain HTTP client for the cluster (for paths lightkube does not model)."""
    single = _single(settings)
    params = ConnectionParams(timeout=httpx2.Timeout(settings.timeout))
    try:
        return HttpClient(single, params)
    except OSError as exc:
        raise _tls_error(single, exc) from exc


# --------------------------------------------------------------------------- API errors
#: ``User "u" cannot list resource "secrets" in API group "" in the namespace "ns"`` (RBAC's
#: own wording, stable since Kubernetes 1.8); ``cannot get path "/metrics"`` for URLs.
_FORBIDDEN: Final = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) '
    r'(?:resource "(?P<resource>[^"]+)"(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?|path "(?P<path>[^"]*)")'
)
#: Field errors print the offending value after their type (``Invalid value: "x": ...``);
#: the value is dropped before a message is quoted, since it may be secret.
_VALUE: Final = re.compile(
    r"(?P<type>Invalid value|Unsupported value|Duplicate value|Not found|Too many): "
    r'(?:"(?:[^"\\]|\\.)*"|-?\d[\d.e+-]*|true|false|null|\{[^{}]*\}|\[[^\[\]]*\])'
)
_MAX_CAUSES: Final = 3


def redact_values(message: str) -> str:
    """*message* with the values that Kubernetes field errors quote replaced by ``…``."""
    return _VALUE.sub(r"\g<type>: …", message)


def _quote(message: str) -> str:
    return quote_foreign(redact_values(message))


def _response(exc: httpx2.HTTPStatusError) -> httpx2.Response | None:
    # Typed as always set, but lightkube builds an ``ApiError`` from a bare Status too.
    return cast("httpx2.Response | None", exc.response)


def _status(exc: httpx2.HTTPStatusError) -> Mapping[str, Any]:
    """The ``Status`` body of an HTTP error as a dict (empty when the body is not one)."""
    if isinstance(exc, ApiError) and exc.status is not None:
        return exc.status.to_dict()
    response = _response(exc)
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) and body.get("kind") == "Status" else {}


def _code(exc: httpx2.HTTPStatusError, status: Mapping[str, Any]) -> int:
    code = status.get("code")
    if isinstance(code, int):
        return code
    response = _response(exc)
    return response.status_code if response is not None else 0


def _forbidden(
    what: str, status: Mapping[str, Any], verb: str | None, resource: str | None
) -> KubeAuthError:
    message = str(status.get("message") or "")
    found = _FORBIDDEN.search(message)
    details = status.get("details") or {}
    if found is not None:
        user = quote_foreign(found["user"], 80)
        verb = found["verb"]
        if found["path"] is not None:
            target = f"path {quote_foreign(found['path'], 80)}"
        else:
            group = found["group"]
            target = quote_foreign(found["resource"] + (f".{group}" if group else ""), 80)
            namespace = found["namespace"]
            target += f" in namespace {namespace}" if namespace else " cluster-wide"
        return KubeAuthError(f"{what}: forbidden: {user} may not {verb} {target}")
    resource = resource or details.get("kind")
    if verb and resource:
        return KubeAuthError(f"{what}: forbidden: the API server refused to {verb} {resource}")
    return KubeAuthError(f"{what}: forbidden (403): {_quote(message)}")


def _invalid(what: str, status: Mapping[str, Any]) -> KubeInvalidError:
    details = status.get("details") or {}
    causes = [c for c in details.get("causes") or [] if isinstance(c, dict)]
    parts = []
    for cause in causes[:_MAX_CAUSES]:
        field = cause.get("field") or ""
        text = redact_values(str(cause.get("message") or cause.get("reason") or "invalid"))
        parts.append(f"{field}: {text}" if field else text)
    if len(causes) > _MAX_CAUSES:
        parts.append(f"and {len(causes) - _MAX_CAUSES} more")
    reason = "; ".join(parts) if parts else redact_values(str(status.get("message") or ""))
    return KubeInvalidError(f"{what}: rejected as invalid: {quote_foreign(reason)}")


def translate_status(
    what: str,
    exc: httpx2.HTTPStatusError,
    *,
    verb: str | None = None,
    resource: str | None = None,
) -> KubeError:
    """The Kustos error for an HTTP error status from the API server (pure)."""
    status = _status(exc)
    code = _code(exc, status)
    message = str(status.get("message") or "")
    if code == 401:
        return KubeAuthError(
            f"{what}: the API server refused the credentials (401 Unauthorized); "
            "check the kubeconfig's user, token or client certificate"
        )
    if code == 403:
        return _forbidden(what, status, verb, resource)
    if code == 404:
        return KubeNotFoundError(
            f"{what}: not found" + (f" ({_quote(message)})" if message else "")
        )
    if code == 409:
        return KubeConflictError(f"{what}: conflict: {_quote(message)}")
    if code == 422:
        return _invalid(what, status)
    reason = str(status.get("reason") or "")
    response = _response(exc)
    if not message and response is not None:
        message = response.reason_phrase
    label = f"HTTP {code}" + (f" {reason}" if reason else "")
    if code >= 500:
        return KubeError(f"{what}: API server error ({label}): {_quote(message)}")
    return KubeError(f"{what}: {label}: {_quote(message)}")


def _endpoint(exc: httpx2.RequestError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # the request was never attached
        return "the API server"
    return f"{url.scheme}://{url.netloc.decode()}"


def translate_transport(what: str, exc: httpx2.RequestError) -> KubeError:
    """The Kustos error for a request that got no HTTP answer (pure)."""
    where = _endpoint(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return KubeConnectionError(f"{what}: no answer from {where} ({type(exc).__name__})")
    if isinstance(exc, httpx2.TransportError):
        reason = quote_foreign(str(exc), 120) or type(exc).__name__
        return KubeConnectionError(f"{what}: cannot reach {where}: {reason}")
    return KubeError(f"{what}: bad answer from {where} ({type(exc).__name__})")


@contextlib.contextmanager
def api_errors(
    what: str, *, verb: str | None = None, resource: str | None = None
) -> Iterator[None]:
    """Translate client exceptions raised while doing *what* into ``KubeError``s.

    *verb* and *resource* (``"list"``, ``"secrets"``) name what was asked for when the API
    server's 403 message does not say it. 401 and 403 become ``KubeAuthError``, 404
    ``KubeNotFoundError``, 409 ``KubeConflictError``, 422 ``KubeInvalidError`` (quoting
    its causes, without values), other statuses ``KubeError`` with the code, and a
    transport failure or timeout ``KubeConnectionError`` (exit code 3).
    """
    try:
        yield
    except httpx2.HTTPStatusError as exc:  # lightkube's ApiError is one
        raise translate_status(what, exc, verb=verb, resource=resource) from exc
    except httpx2.RequestError as exc:
        raise translate_transport(what, exc) from exc
    except LightkubeConfigError as exc:
        # Raised mid-request by exec credential plugins and unreadable token files.
        raise ConfigError(f"{what}: credentials: {quote_foreign(str(exc), 120)}") from exc


def raise_for_status(response: httpx2.Response) -> None:
    """Raise ``httpx2.HTTPStatusError`` for a 4xx/5xx answer (for ``api_errors`` to translate)."""
    if response.is_error:
        response.raise_for_status()


def raw_get(settings: ClientSettings, path: str) -> str:
    """GET a non-resource path (``/metrics``, ``/healthz/kms-providers``) as text."""
    with api_errors(f"GET {path}", verb="get", resource=path), http_client(settings) as http:
        response = http.get(path)
        raise_for_status(response)
        return response.text
