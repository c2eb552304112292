"""Rewrite every stored object through the API server so that it is encrypted anew.

kube-apiserver encrypts on write, and rewrites an object whose stored form is stale (made
under an older key) even when the update changes nothing. So re-encryption is: list each
resource page by page, and send each object back unchanged (a PUT with its
resourceVersion). A conflict means someone else just wrote it, which re-encrypted it too.

Resources other than ``secrets`` and ``configmaps`` are named ``group/version/plural``
(``v1/plural`` for the core group); their kind and scope come from the API server's
discovery document for that group and version, never from the spelling of the plural.
Every name is resolved before the first object is rewritten, so a typo stops the run
before it has changed anything.

Progress is kept in a cursor file (resource and the last namespace/name done), so an
interrupted run resumes where it stopped; it is kept on any failure. Every API call goes
through ``kube.client.api_errors``: no lightkube or transport exception leaves this
module. Secret values pass through in memory only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from lightkube import ApiError, Client
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, Secret
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from kustos.errors import (
    FileAccessError,
    KubeConnectionError,
    KubeError,
    KubeNotFoundError,
    UsageError,
)
from kustos.files import StateFile
from kustos.kube.client import api_errors

log = logging.getLogger("kustos.kms.reencrypt")

#: Cursor value of a resource whose every object has been rewritten.
DONE: Final = "*done*"
#: The verbs a resource must allow to be rewritten in place.
NEEDED_VERBS: Final = frozenset({"list", "update"})


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts after each page."""

    resource: str
    done: int
    conflicts: int
    missing: int


@dataclass(frozen=True, slots=True)
class Target:
    """One resource to rewrite: the name the user gave and the lightkube class for it."""

    name: str
    resource: Any
    namespaced: bool


#: Resource names → targets that need no discovery (the ones KMS encrypts most).
KNOWN: Final = {
    "secrets": Target("secrets", Secret, namespaced=True),
    "configmaps": Target("configmaps", ConfigMap, namespaced=True),
}

STATUS_METRIC = "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds"


def api_server_key_hash(key_id: str) -> str:
    """How kube-apiserver labels a key id in its metrics: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key_id.encode()).hexdigest()


def api_server_has_seen(metrics_text: str, key_id: str) -> bool:
    """Whether the API server's Status poll has returned *key_id* (from its /metrics)."""
    label = f'key_id_hash="{api_server_key_hash(key_id)}"'
    return any(
        line.startswith(STATUS_METRIC) and label in line for line in metrics_text.splitlines()
    )


def wait_for_key(
    fetch_metrics: Callable[[], str],
    key_id: str,
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    interval: float = 2.0,
) -> None:
    """Block until the API server has picked up *key_id* (it polls the plugin once a minute).

    Rewriting before that would re-encrypt under the old key and prove nothing.
    """
    deadline = clock() + timeout
    while not api_server_has_seen(fetch_metrics(), key_id):
        if clock() >= deadline:
            raise KubeError(
                f"kube-apiserver has not reported key {key_id} after {timeout:.0f}s; is the "
                "plugin it uses the one holding that key?"
            )
        sleep(interval)
    sleep(interval)  # the seed rotation completes in the same poll; leave it a moment


# ---------------------------------------------------------------------- discovery
class ApiResource(BaseModel):
    """One entry of an ``APIResourceList`` (the fields re-encryption needs)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()


class ApiResourceList(BaseModel):
    """The discovery document of one group/version (``/api/v1``, ``/apis/G/V``)."""

    model_config = ConfigDict(frozen=True)

    resources: tuple[ApiResource, ...] = ()


def find_resource(doc: ApiResourceList, plural: str) -> ApiResource | None:
    """The resource named *plural* in *doc* (subresources such as ``pods/log`` excluded)."""
    for resource in doc.resources:
        if resource.name == plural:
            return resource
    return None


def _split(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) == 2:  # "v1/endpoints": the core group
        return "", parts[0], parts[1]
    if len(parts) == 3 and all(parts[1:]):  # group/version/plural
        return parts[0], parts[1], parts[2]
    raise UsageError(
        f"unknown resource {name!r}: use secrets, configmaps, group/version/plural or v1/plural"
    )


def _discovery(client: Client, group: str, version: str) -> ApiResourceList:
    """GET the discovery document of *group*/*version* (``KubeNotFoundError`` if not served)."""
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    with api_errors(f"GET {path}"):
        # lightkube has no public call for a non-resource path; its generic client builds,
        # sends and checks the request so that errors come out as its ApiError.
        http = client._client
        response = http.send(http._client.build_request("GET", path))
        http.raise_for_status(response)  # type: ignore[no-untyped-call]
    try:
        return ApiResourceList.model_validate_json(response.content)
    except ValidationError:
        raise KubeError(f"GET {path}: not an APIResourceList") from None


def resolve(client: Client, name: str) -> Target:
    """The target for a resource name; ``UsageError`` naming it if the server lacks it."""
    known = KNOWN.get(name)
    if known is not None:
        return known
    group, version, plural = _split(name)
    group_version = f"{group}/{version}" if group else version
    try:
        doc = _discovery(client, group, version)
    except KubeNotFoundError:
        raise UsageError(
            f"unknown resource {name!r}: the API server does not serve {group_version}"
        ) from None
    found = find_resource(doc, plural)
    if found is None:
        raise UsageError(f"unknown resource {name!r}: {group_version} has no resource {plural!r}")
    if not set(found.verbs) >= NEEDED_VERBS:
        raise UsageError(
            f"resource {name!r} cannot be rewritten: the API server allows "
            f"{', '.join(found.verbs) or 'no verbs'} on it, not list and update"
        )
    create = create_namespaced_resource if found.namespaced else create_global_resource
    try:
        resource: Any = create(group, version, found.kind, plural)
    except ValueError:
        # lightkube already registered another class for this kind (its typed model).
        resource = resource_registry.get(group_version, found.kind)
        if resource is None:
            raise
    return Target(name, resource, namespaced=found.namespaced)


# ---------------------------------------------------------------------- the cursor
class Cursor(RootModel[dict[str, str]]):
    """Resource name → the last ``namespace/name`` rewritten, or ``*done*``.

    A mapping at the top level, not a ``StateModel``: its keys are resource names such as
    ``apps/v1/deployments``, and files left by earlier interrupted runs keep resuming.
    """

    model_config = ConfigDict(frozen=True)


class _CursorFile:
    """The cursor on disk, or nowhere when no file was given."""

    def __init__(self, path: Path | None) -> None:
        self._file = None if path is None else StateFile(path, Cursor, what="reencrypt cursor")

    def load(self) -> dict[str, str]:
        if self._file is None:
            return {}
        return dict(self._file.read_or(lambda: Cursor({})).root)

    def save(self, cursor: Mapping[str, str]) -> None:
        if self._file is not None:
            self._file.write(Cursor(dict(cursor)))

    def remove(self) -> None:
        if self._file is None:
            return
        try:
            self._file.path.unlink(missing_ok=True)
        except OSError as exc:
            raise FileAccessError(
                self._file.path, "remove reencrypt cursor", exc.strerror or "error"
            ) from exc


# ---------------------------------------------------------------------- rewriting
class Outcome(Enum):
    """What happened to one object."""

    REWRITTEN = "rewritten"
    CONFLICT = "conflict"  # written by someone else meanwhile: re-encrypted too
    MISSING = "missing"  # deleted meanwhile


def _rewrite(client: Client, obj: Any, what: str) -> Outcome:
    with api_errors(what):
        try:
            client.replace(obj)
        except ApiError as exc:
            code = exc.status.code if exc.status else None
            if code == 409:  # HTTP Conflict
                return Outcome.CONFLICT
            if code == 404:  # HTTP Not Found
                return Outcome.MISSING
            raise
    return Outcome.REWRITTEN


def _objects(client: Client, target: Target, page_size: int) -> Iterator[Any]:
    if target.namespaced:
        return iter(client.list(target.resource, namespace="*", chunk_size=page_size))
    return iter(client.list(target.resource, chunk_size=page_size))


def _key(obj: Any) -> str:
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


def _rewrite_all(
    client: Client,
    target: Target,
    *,
    cursor: dict[str, str],
    store: _CursorFile,
    page_size: int,
    on_progress: Callable[[Progress], None] | None,
) -> Progress:
    name = target.name
    after = cursor.get(name, "")
    done = conflicts = missing = 0
    with api_errors(f"list {name}"):
        for obj in _objects(client, target, page_size):
            key = _key(obj)
            if after and key <= after:
                continue  # done by an earlier, interrupted run
            outcome = _rewrite(client, obj, f"rewrite {name} {key}")
            if outcome is Outcome.CONFLICT:
                conflicts += 1
            elif outcome is Outcome.MISSING:
                missing += 1
            done += 1
            cursor[name] = key
            if done % page_size == 0:
                store.save(cursor)
                if on_progress:
                    on_progress(Progress(name, done, conflicts, missing))
    return Progress(name, done, conflicts, missing)


def reencrypt(
    client: Client,
    resources: Sequence[str],
    *,
    cursor_file: Path | None = None,
    page_size: int = 250,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[Progress]:
    """Rewrite every object of *resources*; resume after the cursor if one is saved.

    Raise ``UsageError`` for a resource the API server does not serve (before anything is
    rewritten), ``KubeError`` for a refused call, ``KubeConnectionError`` naming where a
    rerun resumes when the API server goes away; the cursor is saved in every case.
    """
    targets = [resolve(client, name) for name in resources]
    store = _CursorFile(cursor_file)
    cursor = store.load()
    store.save(cursor)  # an unwritable cursor path fails now, not after the first page
    results = []
    for target in targets:
        name = target.name
        if cursor.get(name) == DONE:
            continue
        try:
            progress = _rewrite_all(
                client,
                target,
                cursor=cursor,
                store=store,
                page_size=page_size,
                on_progress=on_progress,
            )
        except KubeConnectionError as exc:
            store.save(cursor)
            raise KubeConnectionError(
                f"API server went away during re-encryption of {name}; "
                f"run again to resume after {cursor.get(name, 'the start')}"
            ) from exc
        except BaseException:
            store.save(cursor)  # resumable from the last object done
            raise
        cursor[name] = DONE
        store.save(cursor)
        if on_progress:
            on_progress(progress)
        results.append(progress)
    store.remove()
    return results
