"""Kinds from API discovery: ``kube.discovery``.

Aspects: a plural maps to the kind and scope the API server declares (``ingresses`` →
``Ingress``, ``endpoints`` → ``Endpoints``, cluster-scoped ``namespaces``), subresources
are left out; one request per group/version however many lookups, and one ``Discovery``
per client; the core group lives under ``/api/v1``; an unserved group/version or plural is
``KubeNotFoundError`` naming it; a refused discovery request is the usual ``KubeAuthError``;
``group/version/plural`` names parse, bad ones are usage errors; the lightkube class carries
the discovered kind, plural and scope (typed when lightkube has one, generic otherwise).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.core.resource import NamespacedResource

from kustos.errors import KubeAuthError, KubeNotFoundError, UsageError
from kustos.kube.discovery import (
    ApiResource,
    Discovery,
    GroupVersionResource,
    discovery_for,
    parse_resource_list,
)

NETWORKING = {
    "kind": "APIResourceList",
    "groupVersion": "networking.k8s.io/v1",
    "resources": [
        {"name": "ingresses", "kind": "Ingress", "namespaced": True, "verbs": ["get", "list"]},
        {"name": "ingresses/status", "kind": "Ingress", "namespaced": True, "verbs": ["get"]},
        {"name": "ingressclasses", "kind": "IngressClass", "namespaced": False, "verbs": ["list"]},
    ],
}
CORE = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "endpoints", "kind": "Endpoints", "namespaced": True, "verbs": ["list"]},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["list"]},
        {"name": "pods/log", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
    ],
}
WIDGETS = {
    "kind": "APIResourceList",
    "groupVersion": "example.com/v1",
    "resources": [
        {"name": "widgetries", "kind": "Widgetry", "namespaced": True, "verbs": ["list", "update"]}
    ],
}


class FakeApiServer:
    """Answers discovery paths and counts the requests."""

    def __init__(self, lists: dict[str, Any]) -> None:
        self.lists = lists
        self.requests: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request.url.path)
        body = self.lists.get(request.url.path)
        if body is None:
            return httpx2.Response(
                404, json={"kind": "Status", "code": 404, "message": "404 page not found"}
            )
        if isinstance(body, httpx2.Response):
            return body
        return httpx2.Response(200, json=body)

    def connect(self) -> httpx2.Client:
        return httpx2.Client(base_url="https://k8s.test", transport=httpx2.MockTransport(self))


def discovery(**lists: Any) -> tuple[Discovery, FakeApiServer]:
    server = FakeApiServer({"/apis/networking.k8s.io/v1": NETWORKING, "/api/v1": CORE, **lists})
    return Discovery(server.connect), server


def test_kinds_come_from_the_api_server_not_from_plurals() -> None:
    found, _ = discovery()
    assert found.kind_of("networking.k8s.io", "v1", "ingresses") == ("Ingress", True)
    assert found.kind_of("networking.k8s.io", "v1", "ingressclasses") == ("IngressClass", False)
    assert found.kind_of("", "v1", "endpoints") == ("Endpoints", True)
    assert found.kind_of("core", "v1", "namespaces") == ("Namespace", False)


def test_one_request_per_group_version() -> None:
    found, server = discovery()
    for _ in range(3):
        found.resource("networking.k8s.io", "v1", "ingresses")
        found.resource("networking.k8s.io", "v1", "ingressclasses")
        found.resource("", "v1", "endpoints")
        found.resource("core", "v1", "namespaces")
    assert server.requests == ["/apis/networking.k8s.io/v1", "/api/v1"]


def test_subresources_are_not_kinds() -> None:
    found, _ = discovery()
    assert set(found.resources("", "v1")) == {"endpoints", "namespaces"}
    with pytest.raises(KubeNotFoundError):
        found.resource("networking.k8s.io", "v1", "ingresses/status")


def test_unknown_plural_names_what_is_served() -> None:
    found, _ = discovery()
    with pytest.raises(KubeNotFoundError) as info:
        found.resource("networking.k8s.io", "v1", "ingresse")
    assert str(info.value) == (
        "networking.k8s.io/v1 has no resource 'ingresse' (it serves: ingressclasses, ingresses)"
    )


def test_unserved_group_version() -> None:
    found, _ = discovery()
    with pytest.raises(
        KubeNotFoundError, match=r"^API example\.com/v9 is not served by this cluster$"
    ):
        found.resource("example.com", "v9", "widgets")


def test_refused_discovery_is_an_auth_error() -> None:
    forbidden = httpx2.Response(
        403,
        json={
            "kind": "Status",
            "code": 403,
            "message": 'forbidden: User "bob" cannot get path "/apis/example.com/v1"',
        },
    )
    found, _ = discovery(**{"/apis/example.com/v1": forbidden})
    with pytest.raises(KubeAuthError, match=r"bob may not get path /apis/example\.com/v1$"):
        found.resource("example.com", "v1", "widgetries")


def test_parse_resource_list_keeps_verbs_and_scope() -> None:
    parsed = parse_resource_list(WIDGETS, group="example.com", version="v1")
    assert parsed == {
        "widgetries": ApiResource(
            group="example.com",
            version="v1",
            plural="widgetries",
            kind="Widgetry",
            namespaced=True,
            verbs=frozenset({"list", "update"}),
        )
    }
    assert parse_resource_list({"resources": "nonsense"}, group="", version="v1") == {}
    assert parse_resource_list([1, 2], group="", version="v1") == {}


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("apps/v1/deployments", GroupVersionResource("apps", "v1", "deployments")),
        ("v1/configmaps", GroupVersionResource("", "v1", "configmaps")),
        ("core/v1/secrets", GroupVersionResource("", "v1", "secrets")),
    ],
)
def test_group_version_resource_names(name: str, parsed: GroupVersionResource) -> None:
    assert GroupVersionResource.parse(name) == parsed


@pytest.mark.parametrize("name", ["deployments", "apps/v1/", "a/b/c/d", ""])
def test_bad_resource_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError, match="expected group/version/plural"):
        GroupVersionResource.parse(name)


def test_lightkube_class_carries_the_discovered_kind_and_plural() -> None:
    found, _ = discovery(**{"/apis/example.com/v1": WIDGETS})
    ingress = found.resource("networking.k8s.io", "v1", "ingresses").lightkube_resource()
    # lightkube's typed class, or a generic one if another module registered that first.
    assert ingress._api_info.resource.kind == "Ingress"
    assert ingress._api_info.plural == "ingresses"
    assert issubclass(ingress, NamespacedResource)
    widget = found.resource("example.com", "v1", "widgetries").lightkube_resource()
    assert widget.__name__ == "Widgetry"
    assert widget._api_info.plural == "widgetries"
    assert issubclass(widget, NamespacedResource)
    assert found.resource("example.com", "v1", "widgetries").lightkube_resource() is widget
    ingress_class = found.resource("networking.k8s.io", "v1", "ingressclasses").lightkube_resource()
    assert not issubclass(ingress_class, NamespacedResource)


def test_one_discovery_per_client() -> None:
    config = KubeConfig.from_one(cluster=Cluster(server="https://k8s.test"), user=User(token="t"))
    with Client(config) as first, Client(config) as second:
        assert discovery_for(first) is discovery_for(first)
        assert discovery_for(first) is not discovery_for(second)
