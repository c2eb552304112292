"""How a failed API call reaches the user: ``kube.client.api_errors``.

Aspects: each status a user meets becomes its own error type with one line that says what
was refused — 401 (credentials), 403 (who may not do which verb on which resource, from
the API server's message or from the caller), 404, 409, 422 (the causes, without the
values they echo), 5xx and other codes (with the code), bodies that are not a ``Status``;
timeouts and refused connections are ``KubeConnectionError`` (exit code 3), including a
real client pointed at a loopback port where nothing listens; ``listing`` goes through the
same translation; ``raw_get`` too.

The API server is replaced by an ``httpx2.MockTransport`` behind a real lightkube client,
so lightkube's own error handling is exercised exactly as in production.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.resources.core_v1 import Secret

from kustos.errors import (
    KubeAuthError,
    KubeConflictError,
    KubeConnectionError,
    KubeError,
    KubeInvalidError,
    KubeNotFoundError,
)
from kustos.kube.client import ClientSettings, api_errors, make_client, raw_get, redact_values
from kustos.kube.listing import list_cluster

Handler = Callable[[httpx2.Request], httpx2.Response]
CANARY = "canary-Zq8vP3xw"


def status(code: int, reason: str, message: str, **details: Any) -> httpx2.Response:
    """A ``Status`` body as kube-apiserver sends it."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return httpx2.Response(code, json=body)


def mock_client(handler: Handler) -> Client:
    config = KubeConfig.from_one(
        cluster=Cluster(server="https://k8s.test:6443"), user=User(token="t")
    )
    return Client(config, transport=httpx2.MockTransport(handler))


def failing_get(response: httpx2.Response, **context: str) -> KubeError:
    """Read a Secret through a client whose API server answers *response*; the error."""
    with (
        mock_client(lambda _: response) as client,
        pytest.raises(KubeError) as info,
        api_errors("read Secret shop/db", **context),
    ):
        client.get(Secret, "db", namespace="shop")
    return info.value


def test_401_says_the_credentials_were_refused() -> None:
    error = failing_get(status(401, "Unauthorized", "Unauthorized"))
    assert type(error) is KubeAuthError
    assert str(error).startswith("read Secret shop/db: the API server refused the credentials")
    assert error.exit_code == 2  # credentials are input: 1 is for findings


def test_403_names_the_user_the_verb_and_the_resource() -> None:
    message = (
        'secrets "db" is forbidden: User "system:serviceaccount:ci:reader" cannot get resource '
        '"secrets" in API group "" in the namespace "shop"'
    )
    error = failing_get(status(403, "Forbidden", message, name="db", kind="secrets"))
    assert type(error) is KubeAuthError
    assert str(error) == (
        "read Secret shop/db: forbidden: system:serviceaccount:ci:reader may not get "
        "secrets in namespace shop"
    )


def test_403_cluster_wide_and_grouped() -> None:
    message = (
        'deployments.apps is forbidden: User "alice" cannot list resource "deployments" '
        'in API group "apps" at the cluster scope'
    )
    error = failing_get(status(403, "Forbidden", message))
    assert str(error).endswith("forbidden: alice may not list deployments.apps cluster-wide")


def test_403_without_rbac_wording_takes_verb_and_resource_from_the_caller() -> None:
    error = failing_get(
        status(403, "Forbidden", "denied by a webhook"), verb="get", resource="secrets"
    )
    assert type(error) is KubeAuthError
    assert str(error) == "read Secret shop/db: forbidden: the API server refused to get secrets"


def test_404_is_not_found() -> None:
    error = failing_get(
        status(404, "NotFound", 'secrets "db" not found', name="db", kind="secrets")
    )
    assert type(error) is KubeNotFoundError
    assert str(error) == 'read Secret shop/db: not found (secrets "db" not found)'


def test_409_is_a_conflict() -> None:
    message = 'Operation cannot be fulfilled on secrets "db": the object has been modified'
    error = failing_get(status(409, "Conflict", message))
    assert type(error) is KubeConflictError
    assert "conflict: Operation cannot be fulfilled" in str(error)


def test_422_quotes_the_causes_but_never_the_values() -> None:
    causes = [
        {
            "reason": "FieldValueInvalid",
            "message": f'Invalid value: "{CANARY}": a lowercase RFC 1123 subdomain must ...',
            "field": "metadata.name",
        },
        {
            "reason": "FieldValueNotSupported",
            "message": f'Unsupported value: "{CANARY}": supported values: "Opaque"',
            "field": "type",
        },
        {"reason": "FieldValueRequired", "message": "Required value", "field": "data"},
        {
            "reason": "FieldValueTooMany",
            "message": "Too many: 9: must have at most 3",
            "field": "x",
        },
    ]
    message = f'Secret "{CANARY}" is invalid: metadata.name: Invalid value: "{CANARY}"'
    error = failing_get(status(422, "Invalid", message, causes=causes, kind="Secret"))
    assert type(error) is KubeInvalidError
    text = str(error)
    assert CANARY not in text
    assert text.startswith(
        "read Secret shop/db: rejected as invalid: metadata.name: Invalid value: …: "
        "a lowercase RFC 1123 subdomain must ...; type: Unsupported value: …"
    )
    assert text.endswith("; data: Required value; and 1 more")
    assert "\n" not in text


def test_422_long_causes_are_truncated() -> None:
    causes = [{"message": "x" * 1000, "field": "spec"}]
    error = failing_get(status(422, "Invalid", "invalid", causes=causes))
    assert len(str(error)) < 320


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('Invalid value: "s3cr3t": bad', "Invalid value: …: bad"),
        ("Invalid value: 70000: must be a port", "Invalid value: …: must be a port"),
        ("Invalid value: must be set", "Invalid value: must be set"),
        ('Duplicate value: {"k":"v"}', "Duplicate value: …"),
        ('Not found: "a\\"b"', "Not found: …"),
    ],
)
def test_values_are_redacted(message: str, expected: str) -> None:
    assert redact_values(message) == expected


def test_5xx_is_a_kube_error_with_its_code() -> None:
    error = failing_get(status(503, "ServiceUnavailable", "etcdserver: request timed out"))
    assert type(error) is KubeError
    assert str(error) == (
        "read Secret shop/db: API server error (HTTP 503 ServiceUnavailable): "
        "etcdserver: request timed out"
    )


def test_a_body_that_is_not_a_status_still_gives_the_code() -> None:
    error = failing_get(httpx2.Response(502, text="<html>bad gateway</html>"))
    assert type(error) is KubeError
    assert str(error) == "read Secret shop/db: API server error (HTTP 502): Bad Gateway"


def test_other_4xx_names_the_code() -> None:
    error = failing_get(status(429, "TooManyRequests", "slow down"))
    assert str(error) == "read Secret shop/db: HTTP 429 TooManyRequests: slow down"


def test_timeout_is_a_connection_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with (
        mock_client(handler) as client,
        pytest.raises(KubeConnectionError) as info,
        api_errors("list Secret"),
    ):
        client.get(Secret, "db", namespace="shop")
    assert str(info.value) == "list Secret: no answer from https://k8s.test:6443 (ReadTimeout)"
    assert info.value.exit_code == 3


def test_listing_translates_its_list_calls() -> None:
    message = 'User "bob" cannot list resource "secrets" in API group "" at the cluster scope'
    with (
        mock_client(lambda _: status(403, "Forbidden", message)) as client,
        pytest.raises(KubeAuthError, match="list Secret: forbidden: bob may not list secrets"),
    ):
        list_cluster(client, kinds=["Secret"])


def test_listing_names_verb_and_resource_when_the_server_does_not() -> None:
    with (
        mock_client(lambda _: status(403, "Forbidden", "denied by policy")) as client,
        pytest.raises(KubeAuthError) as info,
    ):
        list_cluster(client, namespaces=["shop"], kinds=["NetworkPolicy"])
    assert str(info.value) == (
        "list NetworkPolicy in shop: forbidden: the API server refused to list networkpolicies"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


def test_nothing_listening_is_a_connection_error_with_exit_code_3(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "config", f"https://127.0.0.1:{port}")
    with (
        make_client(ClientSettings(kubeconfig=kubeconfig, timeout=5)) as client,
        pytest.raises(KubeConnectionError) as info,
    ):
        list_cluster(client, kinds=["Secret"])
    assert str(info.value).startswith(f"list Secret: cannot reach https://127.0.0.1:{port}: ")
    assert info.value.exit_code == 3


def test_raw_get_translates_statuses_and_transport_errors(tmp_path: Path) -> None:
    port = free_port()
    settings = ClientSettings(
        kubeconfig=write_kubeconfig(tmp_path / "c", f"https://127.0.0.1:{port}")
    )
    with pytest.raises(KubeConnectionError, match=r"^GET /metrics: cannot reach"):
        raw_get(settings, "/metrics")
