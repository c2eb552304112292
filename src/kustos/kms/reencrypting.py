"""Rewrite every stored object through the API server so that it is encrypted anew.

kube-apiserver encrypts on write, and rewrites an object whose stored form is stale (made
under an older key) even when the update changes nothing. So re-encryption is: list each
resource page by page, and send each object back unchanged (a PUT with its
resourceVersion). A conflict means someone else just wrote it, which re-encrypted it too.

Resources other than ``secrets`` and ``configmaps`` are named ``group/version/plural``
(``v1/plural`` for the core group); their kind and scope come from the API server's
discovery document for that group and version (``kustos.kube.discovery``), never from
the spelling of the plural, and their objects travel as generic resources, so that a
field lightkube's typed models do not know is sent back too.
Every name is resolved before the first object is rewritten, so a typo stops the run
before it has changed anything.

Progress is kept in a cursor file (resource and the last namespace/name done), so an
interrupted run resumes where it stopped; it is kept on any failure. Every API call goes
through ``kube.client.api_errors``: no lightkube or transport exception leaves this
module. Secret values pass through in memory only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from lightkube import Client
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_api_info,
)
from lightkube.resources.core_v1 import ConfigMap, Secret
from pydantic import ConfigDict, RootModel

from kustos.errors import (
    FileAccessError,
    KubeConflictError,
    KubeConnectionError,
    KubeError,
    KubeNotFoundError,
    UsageError,
)
from kustos.files.state import StateFile
from kustos.kube.client import api_errors
from kustos.kube.discovery import Discovery, GroupVersionResource, discovery_for

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


# ---------------------------------------------------------------------- resources
@functools.cache
def _generic(group: str, version: str, kind: str, plural: str, *, namespaced: bool) -> Any:
    """A lightkube class for *kind* that keeps every field of the objects it carries.

    Not lightkube's typed model even where it has one: a typed model drops the fields it
    does not know (added by a newer API server), and a PUT without them would change the
    object instead of rewriting it. Not registered either, so it never clashes with a
    typed class registered for the same kind.
    """
    base = GenericNamespacedResource if namespaced else GenericGlobalResource
    return type(kind, (base,), {"_api_info": create_api_info(group, version, kind, plural)})


def resolve(name: str, discovery: Discovery) -> Target:
    """The target for a resource name; ``UsageError`` naming it if the server lacks it."""
    known = KNOWN.get(name)
    if known is not None:
        return known
    if "/" not in name:
        raise UsageError(
            f"unknown resource {name!r}: use secrets, configmaps, group/version/plural or v1/plural"
        )
    gvr = GroupVersionResource.parse(name)
    try:
        found = discovery.resource(gvr.group, gvr.version, gvr.plural)
    except KubeNotFoundError as exc:
        raise UsageError(f"unknown resource {name!r}: {exc}") from None
    if not found.verbs >= NEEDED_VERBS:
        raise UsageError(
            f"resource {name!r} cannot be rewritten: the API server allows "
            f"{', '.join(sorted(found.verbs)) or 'no verbs'} on it, not list and update"
        )
    resource = _generic(
        found.group, found.version, found.kind, found.plural, namespaced=found.namespaced
    )
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


def _rewrite(client: Client, obj: Any, target: Target, key: str) -> Outcome:
    try:
        with api_errors(f"rewrite {target.name} {key}", verb="update", resource=target.name):
            client.replace(obj)
    except KubeConflictError:
        return Outcome.CONFLICT
    except KubeNotFoundError:
        return Outcome.MISSING
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
    with api_errors(f"list {name}", verb="list", resource=name):
        for obj in _objects(client, target, page_size):
            key = _key(obj)
            if after and key <= after:
                continue  # done by an earlier, interrupted run
            outcome = _rewrite(client, obj, target, key)
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
    discovery: Discovery | None = None,
) -> list[Progress]:
    """Rewrite every object of *resources*; resume after the cursor if one is saved.

    Raise ``UsageError`` for a resource the API server does not serve (before anything is
    rewritten), ``KubeError`` for a refused call, ``KubeConnectionError`` naming where a
    rerun resumes when the API server goes away; the cursor is saved in every case.
    *discovery* answers which kinds the cluster serves (by default, the one of *client*).
    """
    found = discovery if discovery is not None else discovery_for(client)
    targets = [resolve(name, found) for name in resources]
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
