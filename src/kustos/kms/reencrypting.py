"""Rewrite every stored object through the API server so that it is encrypted anew.

kube-apiserver encrypts on write, and rewrites an object whose stored form is stale (made
under an older key) even when the update changes nothing. So re-encryption is: list each
resource page by page, and send each object back unchanged (a PUT with its
resourceVersion). A conflict means someone else just wrote it, which re-encrypted it too.

Progress is kept in a cursor file (resource and the last namespace/name done), so an
interrupted run resumes where it stopped. Secret values pass through in memory only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, Secret

from kustos.errors import KubeConnectionError, KubeError, UsageError, quote_foreign

log = logging.getLogger("kustos.kms.reencrypt")

#: resource name → lightkube class, for the names users give on the command line.
KNOWN: dict[str, Any] = {"secrets": Secret, "configmaps": ConfigMap}


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts after each page."""

    resource: str
    done: int
    conflicts: int
    missing: int


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


def _resource(name: str) -> Any:
    if name in KNOWN:
        return KNOWN[name]
    # group/version/plural for anything else: "apps/v1/deployments"
    parts = name.split("/")
    if len(parts) != 3:
        raise UsageError(
            f"unknown resource {name!r}: use secrets, configmaps or group/version/plural"
        )
    group, version, plural = parts
    kind = plural.rstrip("s").capitalize()
    return create_namespaced_resource(group, version, kind, plural)


def _load_cursor(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable cursor file") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_cursor(path: Path | None, cursor: dict[str, str]) -> None:
    if path is not None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(cursor, indent=1))
        tmp.replace(path)


def reencrypt(
    client: Client,
    resources: Sequence[str],
    *,
    cursor_file: Path | None = None,
    page_size: int = 250,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[Progress]:
    """Rewrite every object of *resources*; resume after the cursor if one is saved."""
    cursor = _load_cursor(cursor_file)
    results = []
    for name in resources:
        resource = _resource(name)
        if cursor.get(name) == "*done*":
            continue
        after = cursor.get(name, "")
        done = conflicts = missing = 0
        try:
            for obj in client.list(resource, namespace="*", chunk_size=page_size):
                meta = obj.metadata
                key = f"{meta.namespace}/{meta.name}"
                if after and key <= after:
                    continue  # done by an earlier, interrupted run
                try:
                    client.replace(obj)
                except ApiError as exc:
                    code = exc.status.code if exc.status else None
                    if code == 409:
                        conflicts += 1  # written by someone else meanwhile: re-encrypted too
                    elif code == 404:
                        missing += 1  # deleted meanwhile
                    else:
                        _save_cursor(cursor_file, cursor)  # resumable from the last one done
                        raise KubeError(
                            f"rewrite {name} {key}: HTTP {code}: "
                            f"{quote_foreign(str(exc.status.message if exc.status else ''))}"
                        ) from exc
                done += 1
                cursor[name] = key
                if done % page_size == 0:
                    _save_cursor(cursor_file, cursor)
                    if on_progress:
                        on_progress(Progress(name, done, conflicts, missing))
        except httpx2.TransportError as exc:
            _save_cursor(cursor_file, cursor)
            raise KubeConnectionError(
                f"API server went away during re-encryption of {name}; "
                f"run again to resume after {cursor.get(name, 'the start')}"
            ) from exc
        cursor[name] = "*done*"
        _save_cursor(cursor_file, cursor)
        progress = Progress(name, done, conflicts, missing)
        if on_progress:
            on_progress(progress)
        results.append(progress)
    if cursor_file is not None and cursor_file.exists():
        cursor_file.unlink()
    return results
