"""``kms reencrypt`` against a small fake API server (a real lightkube client over HTTP).

Aspects:
- kinds come from discovery: ``networking.k8s.io/v1/ingresses`` is rewritten as kind
  ``Ingress`` (never ``Ingresse``) at the namespaced URL, and a field lightkube's typed
  model does not know is sent back unchanged; a cluster-scoped resource is
  listed without a namespace and its cursor key is the bare name; ``v1/endpoints`` names
  the core group;
- a resource the server does not serve (unknown plural, unknown group/version, no
  ``update`` verb), or a malformed name, is a ``UsageError`` naming it, before any object
  is rewritten;
- no lightkube ``ApiError`` escapes: a 403 from a list is a ``KubeAuthError``/``KubeError``
  with one line; a 500 from a rewrite is a ``KubeError``; a transport failure is a
  ``KubeConnectionError`` that says where a rerun resumes; 409 and 404 are counted;
- the cursor is kept on every failure and a rerun resumes after it; it is removed after a
  complete run; a cursor written by an earlier version (a plain mapping) still resumes;
  an invalid cursor file or a cursor in a missing folder is one line naming the path,
  before anything is rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.core.resource_registry import resource_registry

from kustos.errors import (
    FileMissingError,
    InputError,
    KubeConnectionError,
    KubeError,
    KustosError,
    UsageError,
)
from kustos.kms.reencrypting import Progress, reencrypt
from kustos.kube.discovery import Discovery

CORE: dict[str, Any] = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "endpoints", "kind": "Endpoints", "namespaced": True,
         "verbs": ["get", "list", "update"]},
        {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["get", "list", "update"]},
        {"name": "pods/log", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "bindings", "kind": "Binding", "namespaced": True, "verbs": ["create"]},
    ],
}  # fmt: skip
NETWORKING: dict[str, Any] = {
    "kind": "APIResourceList",
    "groupVersion": "networking.k8s.io/v1",
    "resources": [
        {"name": "ingresses", "singularName": "ingress", "kind": "Ingress", "namespaced": True,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
        {"name": "ingressclasses", "kind": "IngressClass", "namespaced": False,
         "verbs": ["get", "list", "update"]},
    ],
}  # fmt: skip


@dataclass
class FakeApiServer:
    """Discovery, paged lists and PUTs for a few resources; failures on demand."""

    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    put: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    fail_list: dict[str, int] = field(default_factory=dict)  # path -> HTTP status
    fail_put: dict[str, int] = field(default_factory=dict)  # object path -> HTTP status
    drop_after_puts: int | None = None  # transport failure once this many PUTs are done

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if request.method == "GET" and path == "/api/v1":
            return httpx2.Response(200, json=CORE)
        if request.method == "GET" and path == "/apis/networking.k8s.io/v1":
            return httpx2.Response(200, json=NETWORKING)
        if request.method == "GET" and path in self.objects:
            return self._list(path, request)
        if request.method == "PUT":
            return self._put(path, json.loads(request.content))
        return _status(404, f"the server could not find the requested resource {path}")

    def _list(self, path: str, request: httpx2.Request) -> httpx2.Response:
        if path in self.fail_list:
            code = self.fail_list[path]
            return _status(code, f'ingresses is forbidden: User "bob" cannot list {path}')
        if self.drop_after_puts is not None and len(self.put) >= self.drop_after_puts:
            raise httpx2.ConnectError("connection refused", request=request)
        items = self.objects[path]
        start = int(request.url.params.get("continue") or 0)
        limit = int(request.url.params.get("limit") or len(items) or 1)
        page = items[start : start + limit]
        following = start + limit
        meta: dict[str, Any] = {"resourceVersion": "7"}
        if following < len(items):
            meta["continue"] = str(following)
        return httpx2.Response(
            200, json={"kind": "List", "apiVersion": "v1", "metadata": meta, "items": page}
        )

    def _put(self, path: str, body: dict[str, Any]) -> httpx2.Response:
        if path in self.fail_put:
            return _status(self.fail_put[path], "etcdserver: request timed out")
        self.put.append((path, body))
        return httpx2.Response(200, json=body)


def _status(code: int, message: str) -> httpx2.Response:
    return httpx2.Response(
        code,
        json={"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
              "code": code},
    )  # fmt: skip


def _object(kind: str, api_version: str, name: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "1"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": {"x": name}}


def _secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "data": {"v": "c2VjcmV0"},
    }


@pytest.fixture
def server() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
def discovery(server: FakeApiServer) -> Discovery:
    return Discovery(
        lambda: httpx2.Client(base_url="http://kube.test", transport=httpx2.MockTransport(server))
    )


@pytest.fixture
def client(server: FakeApiServer) -> Iterator[Client]:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "fake", "cluster": {"server": "http://kube.test"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
            "current-context": "fake",
        }
    )
    made = Client(config, transport=httpx2.MockTransport(server))
    try:
        yield made
    finally:
        made.close()


def test_kind_and_scope_come_from_discovery(
    server: FakeApiServer, client: Client, discovery: Discovery
) -> None:
    server.objects["/apis/networking.k8s.io/v1/ingresses"] = [
        _object("Ingress", "networking.k8s.io/v1", "web", "shop"),
        _object("Ingress", "networking.k8s.io/v1", "api", "tools"),
    ]
    server.objects["/apis/networking.k8s.io/v1/ingressclasses"] = [
        _object("IngressClass", "networking.k8s.io/v1", "nginx", None),
    ]
    server.objects["/api/v1/endpoints"] = [_object("Endpoints", "v1", "db", "shop")]
    results = reencrypt(
        client,
        ["networking.k8s.io/v1/ingresses", "networking.k8s.io/v1/ingressclasses", "v1/endpoints"],
        discovery=discovery,
    )
    assert [(r.resource, r.done) for r in results] == [
        ("networking.k8s.io/v1/ingresses", 2),
        ("networking.k8s.io/v1/ingressclasses", 1),
        ("v1/endpoints", 1),
    ]
    assert [(path, body["kind"]) for path, body in server.put] == [
        ("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web", "Ingress"),
        ("/apis/networking.k8s.io/v1/namespaces/tools/ingresses/api", "Ingress"),
        ("/apis/networking.k8s.io/v1/ingressclasses/nginx", "IngressClass"),
        ("/api/v1/namespaces/shop/endpoints/db", "Endpoints"),
    ]
    assert server.put[0][1]["spec"] == {"x": "web"}  # sent back unchanged


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("networking.k8s.io/v1/ingresss", "networking.k8s.io/v1 has no resource 'ingresss'"),
        ("example.com/v1/widgets", "example.com/v1 is not served"),
        ("v1/bindings", "not list and update"),
        ("v1/pods/log", "v1/pods is not served"),
        ("ingresses", "use secrets, configmaps, group/version/plural"),
        ("a/b/c/d", "expected group/version/plural"),
    ],
)
def test_unknown_resources_are_refused_before_any_write(
    server: FakeApiServer,
    client: Client,
    discovery: Discovery,
    tmp_path: Path,
    name: str,
    message: str,
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", "s1")]
    cursor = tmp_path / "cursor"
    with pytest.raises(UsageError, match=message) as info:
        reencrypt(client, ["secrets", name], cursor_file=cursor, discovery=discovery)
    assert repr(name) in str(info.value) or name in str(info.value)
    assert server.put == []
    assert not cursor.exists()


def test_fields_lightkube_does_not_know_are_sent_back(
    server: FakeApiServer, client: Client, discovery: Discovery
) -> None:
    resource_registry.load("networking.k8s.io/v1", "Ingress")  # lightkube's typed model
    ingress = _object("Ingress", "networking.k8s.io/v1", "web", "shop")
    ingress["spec"]["fieldOfAFutureRelease"] = {"kept": True}
    server.objects["/apis/networking.k8s.io/v1/ingresses"] = [ingress]
    reencrypt(client, ["networking.k8s.io/v1/ingresses"], discovery=discovery)
    ((_, sent),) = server.put
    assert sent["spec"] == {"x": "web", "fieldOfAFutureRelease": {"kept": True}}


def test_a_forbidden_list_is_one_kustos_line_and_keeps_the_cursor(
    server: FakeApiServer, client: Client, tmp_path: Path
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", f"s{i}") for i in range(3)]
    server.objects["/api/v1/configmaps"] = []
    server.fail_list["/api/v1/configmaps"] = 403
    cursor = tmp_path / "cursor"
    with pytest.raises(KubeError) as info:
        reencrypt(client, ["secrets", "configmaps"], cursor_file=cursor)
    assert not isinstance(info.value, ApiError)
    assert isinstance(info.value.__cause__, ApiError)
    assert "list configmaps" in str(info.value)
    assert "403" in str(info.value) or "forbidden" in str(info.value).lower()
    assert "\n" not in str(info.value)
    assert json.loads(cursor.read_text()) == {"secrets": "*done*"}


def test_a_failed_rewrite_keeps_the_cursor_and_the_rerun_resumes(
    server: FakeApiServer, client: Client, tmp_path: Path
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", f"s{i}") for i in range(5)]
    server.fail_put["/api/v1/namespaces/a/secrets/s3"] = 500
    cursor = tmp_path / "cursor"
    with pytest.raises(KubeError, match=r"rewrite secrets a/s3: .*500") as info:
        reencrypt(client, ["secrets"], cursor_file=cursor, page_size=2)
    assert not isinstance(info.value, ApiError)
    assert json.loads(cursor.read_text()) == {"secrets": "a/s2"}
    assert "c2VjcmV0" not in str(info.value)  # the value never reaches a message

    del server.fail_put["/api/v1/namespaces/a/secrets/s3"]
    server.put.clear()
    (result,) = reencrypt(client, ["secrets"], cursor_file=cursor, page_size=2)
    assert result.done == 2
    assert [p for p, _ in server.put] == [
        "/api/v1/namespaces/a/secrets/s3",
        "/api/v1/namespaces/a/secrets/s4",
    ]
    assert not cursor.exists()


def test_conflicts_and_deletions_are_counted(server: FakeApiServer, client: Client) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", f"s{i}") for i in range(3)]
    server.fail_put["/api/v1/namespaces/a/secrets/s0"] = 409
    server.fail_put["/api/v1/namespaces/a/secrets/s1"] = 404
    seen: list[Progress] = []
    (result,) = reencrypt(client, ["secrets"], on_progress=seen.append)
    assert (result.done, result.conflicts, result.missing) == (3, 1, 1)
    assert seen[-1] == result


def test_the_api_server_going_away_says_where_to_resume(
    server: FakeApiServer, client: Client, tmp_path: Path
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", f"s{i}") for i in range(6)]
    server.drop_after_puts = 2  # the second page never comes
    cursor = tmp_path / "cursor"
    with pytest.raises(KubeConnectionError, match="run again to resume after a/s1") as info:
        reencrypt(client, ["secrets"], cursor_file=cursor, page_size=2)
    assert info.value.exit_code == 3
    assert json.loads(cursor.read_text()) == {"secrets": "a/s1"}


def test_cursor_of_an_earlier_version_resumes(
    server: FakeApiServer, client: Client, tmp_path: Path
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", f"s{i}") for i in range(3)]
    server.objects["/api/v1/configmaps"] = []
    cursor = tmp_path / "cursor"
    cursor.write_text('{\n "configmaps": "*done*",\n "secrets": "a/s0"\n}')
    (result,) = reencrypt(client, ["configmaps", "secrets"], cursor_file=cursor)
    assert result.done == 2
    assert "GET /api/v1/configmaps" not in server.requests
    assert not cursor.exists()


@pytest.mark.parametrize(
    ("content", "error"),
    [("[1, 2]", InputError), ('{"secrets": 3}', InputError), ("{", InputError)],
)
def test_an_invalid_cursor_is_one_line_naming_it(
    server: FakeApiServer,
    client: Client,
    tmp_path: Path,
    content: str,
    error: type[KustosError],
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", "s0")]
    cursor = tmp_path / "cursor"
    cursor.write_text(content)
    with pytest.raises(error) as info:
        reencrypt(client, ["secrets"], cursor_file=cursor)
    assert str(cursor) in str(info.value)
    assert "\n" not in str(info.value)
    assert server.put == []


def test_a_cursor_in_a_missing_folder_fails_before_any_write(
    server: FakeApiServer, client: Client, tmp_path: Path
) -> None:
    server.objects["/api/v1/secrets"] = [_secret("a", "s0")]
    cursor = tmp_path / "no-such-folder" / "cursor"
    with pytest.raises(FileMissingError, match="no-such-folder"):
        reencrypt(client, ["secrets"], cursor_file=cursor)
    assert server.put == []
