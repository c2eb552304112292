"""Object kinds from API discovery: group/version/plural → kind and scope (an adapter).

URLs name a resource by its plural (``ingresses``, ``endpoints``, ``networkpolicies``) and
objects by their kind (``Ingress``, ``Endpoints``, ``NetworkPolicy``); neither can be
derived from the other (``ingresses`` is not ``Ingresse``). The API server says which is
which in its resource lists, ``GET /api/v1`` and ``GET /apis/<group>/<version>``.
:class:`Discovery` asks once per group/version and keeps the answer; :func:`discovery_for`
keeps one ``Discovery`` per lightkube client, so a command pays one request per
group/version it touches, whatever the number of objects.

``parse_resource_list`` and ``GroupVersionResource.parse`` are pure; the requests go
through ``kustos.kube.client`` (``api_errors``), so a refused or unreachable API server is
the same one-line error as everywhere else.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import httpx2
from lightkube import Client
from lightkube.config.client_adapter import Client as HttpClient
from lightkube.config.client_adapter import ConnectionParams
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from kustos.errors import KubeNotFoundError, UsageError, quote_foreign
from kustos.kube.client import api_errors, raise_for_status

#: Names accepted for the core group, whose resources live under ``/api/v1``.
CORE_GROUP_NAMES: Final = frozenset({"", "core"})
DISCOVERY_TIMEOUT: Final = 30.0


class GroupVersionResource(NamedTuple):
    """A resource as URLs name it: ``("apps", "v1", "deployments")``; group ``""`` is core."""

    group: str
    version: str
    plural: str

    @classmethod
    def parse(cls, name: str) -> GroupVersionResource:
        """Parse ``group/version/plural`` (``apps/v1/deployments``) or ``version/plural``
        (``v1/configmaps``, the core group); ``UsageError`` for anything else."""
        parts = name.split("/")
        if len(parts) == 2 and all(parts):
            return cls("", parts[0], parts[1])
        if len(parts) == 3 and all(parts[1:]):
            group = "" if parts[0] in CORE_GROUP_NAMES else parts[0]
            return cls(group, parts[1], parts[2])
        raise UsageError(
            f"resource {quote_foreign(name, 80)!r}: expected group/version/plural "
            "(apps/v1/deployments) or version/plural (v1/configmaps)"
        )

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.api_version}/{self.plural}"


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One resource the API server serves, as its discovery document describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def lightkube_resource(self) -> Any:
        """The lightkube resource class for ``client.list/get/replace`` on this resource.

        lightkube's own typed class when it has one (``apps_v1.Deployment``), otherwise a
        generic one with this kind, plural and scope (custom resources).
        """
        try:
            return resource_registry.load(self.api_version, self.kind)
        except (LoadResourceError, ImportError):
            make = create_namespaced_resource if self.namespaced else create_global_resource
            return make(self.group, self.version, self.kind, self.plural)


def resource_list_path(group: str, version: str) -> str:
    """The discovery URL of one group/version: ``/api/v1`` or ``/apis/<group>/<version>``."""
    if group in CORE_GROUP_NAMES:
        return f"/api/{version}"
    return f"/apis/{group}/{version}"


def parse_resource_list(body: Any, *, group: str, version: str) -> dict[str, ApiResource]:
    """An ``APIResourceList`` body → plural → ``ApiResource`` (pure).

    Subresources (``pods/log``, ``deployments/scale``) are left out: they are not kinds
    of objects one lists.
    """
    group = "" if group in CORE_GROUP_NAMES else group
    out: dict[str, ApiResource] = {}
    items = body.get("resources") if isinstance(body, Mapping) else None
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        plural, kind = item.get("name"), item.get("kind")
        if not isinstance(plural, str) or not isinstance(kind, str) or "/" in plural:
            continue
        verbs = item.get("verbs")
        out[plural] = ApiResource(
            group=group,
            version=version,
            plural=plural,
            kind=kind,
            namespaced=bool(item.get("namespaced")),
            verbs=frozenset(v for v in verbs if isinstance(v, str))
            if isinstance(verbs, list)
            else frozenset(),
        )
    return out


class Discovery:
    """Resource lists of one cluster, fetched once per group/version and kept.

    *connect* opens an HTTP client on the cluster (base URL and credentials set); it is
    called once per group/version not yet known, and the client closed after the request.
    """

    def __init__(self, connect: Callable[[], httpx2.Client]) -> None:
        self._connect = connect
        self._lists: dict[tuple[str, str], dict[str, ApiResource]] = {}
        self._lock = threading.Lock()

    def resources(self, group: str, version: str) -> Mapping[str, ApiResource]:
        """Every resource of *group*/*version*, by plural; ``KubeNotFoundError`` if unserved."""
        key = ("" if group in CORE_GROUP_NAMES else group, version)
        with self._lock:
            known = self._lists.get(key)
            if known is None:
                known = self._lists[key] = self._fetch(*key)
        return known

    def resource(self, group: str, version: str, plural: str) -> ApiResource:
        """The resource *plural* of *group*/*version*; ``KubeNotFoundError`` if not served."""
        served = self.resources(group, version)
        found = served.get(plural)
        if found is None:
            gv = GroupVersionResource(group, version, plural).api_version
            names = ", ".join(sorted(served)) or "nothing"
            raise KubeNotFoundError(
                f"{gv} has no resource {quote_foreign(plural, 80)!r} "
                f"(it serves: {quote_foreign(names, 160)})"
            )
        return found

    def kind_of(self, group: str, version: str, plural: str) -> tuple[str, bool]:
        """``(kind, namespaced)`` of *group*/*version*/*plural*."""
        found = self.resource(group, version, plural)
        return found.kind, found.namespaced

    def _fetch(self, group: str, version: str) -> dict[str, ApiResource]:
        path = resource_list_path(group, version)
        gv = f"{group}/{version}" if group else version
        try:
            with (
                api_errors(f"discover the resources of {gv}", verb="get", resource=path),
                self._connect() as http,
            ):
                response = http.get(path)
                raise_for_status(response)
                body = response.json()
        except KubeNotFoundError as exc:
            raise KubeNotFoundError(f"API {gv} is not served by this cluster") from exc
        return parse_resource_list(body, group=group, version=version)


_BY_CLIENT: weakref.WeakKeyDictionary[Client, Discovery] = weakref.WeakKeyDictionary()
_BY_CLIENT_LOCK = threading.Lock()


def discovery_for(client: Client, *, timeout: float = DISCOVERY_TIMEOUT) -> Discovery:
    """The ``Discovery`` of the cluster *client* talks to, shared for the client's lifetime."""
    with _BY_CLIENT_LOCK:
        found = _BY_CLIENT.get(client)
        if found is None:
            config = client.config
            params = ConnectionParams(timeout=httpx2.Timeout(timeout))
            found = _BY_CLIENT[client] = Discovery(lambda: HttpClient(config, params))
        return found


def resolve(client: Client, group: str, version: str, plural: str) -> ApiResource:
    """What the cluster behind *client* serves as *group*/*version*/*plural* (cached).

    ``kms reencrypt apps/v1/deployments`` → ``ApiResource(kind="Deployment",
    namespaced=True, ...)``; ``.lightkube_resource()`` gives the class to list it with.
    ``KubeNotFoundError`` if the cluster does not serve it.
    """
    return discovery_for(client).resource(group, version, plural)
