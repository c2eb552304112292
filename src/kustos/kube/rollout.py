"""Rolling restarts and watching a rollout to completion (an adapter, asyncio).

``rollout_progress`` is pure: it reads a workload's ``status`` the way ``kubectl rollout
status`` does and says whether the rollout is done, still going, or failed. ``restart`` sets
the ``kustos.io/restarted-at`` annotation on the pod template, which makes the controller
replace every pod; ``wait_for_rollout`` polls until ``rollout_progress`` says done.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from lightkube import AsyncClient
from lightkube.resources import apps_v1
from lightkube.types import PatchType

from kustos.conventions import ANNOTATION_RESTARTED_AT
from kustos.errors import RolloutError, UsageError
from kustos.kube.client import api_errors

ROLLABLE: Final[dict[str, Any]] = {
    "Deployment": apps_v1.Deployment,
    "StatefulSet": apps_v1.StatefulSet,
    "DaemonSet": apps_v1.DaemonSet,
}


@dataclass(frozen=True, slots=True)
class RolloutProgress:
    """Where a rollout stands."""

    done: bool
    failed: bool
    message: str


def _going(message: str) -> RolloutProgress:
    return RolloutProgress(done=False, failed=False, message=message)


def _done(message: str) -> RolloutProgress:
    return RolloutProgress(done=True, failed=False, message=message)


def _failed(message: str) -> RolloutProgress:
    return RolloutProgress(done=False, failed=True, message=message)


def rollout_progress(kind: str, body: Mapping[str, Any]) -> RolloutProgress:
    """Judge a workload's rollout from its spec and status (pure)."""
    if kind not in ROLLABLE:
        raise UsageError(f"cannot follow the rollout of a {kind}")
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    generation = meta.get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return _going("waiting for the controller to see the change")
    if kind == "Deployment":
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                return _failed("progress deadline exceeded")
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas") or 0
        total = status.get("replicas") or 0
        available = status.get("availableReplicas") or 0
        if updated < want:
            return _going(f"{updated} of {want} replicas updated")
        if total > updated:
            return _going(f"{total - updated} old replicas pending termination")
        if available < updated:
            return _going(f"{available} of {updated} updated replicas available")
        return _done(f"{available} replicas available")
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        ready = status.get("readyReplicas") or 0
        updated = status.get("updatedReplicas") or 0
        if updated < want or status.get("updateRevision") != status.get("currentRevision"):
            return _going(f"{updated} of {want} pods updated")
        if ready < want:
            return _going(f"{ready} of {want} pods ready")
        return _done(f"{ready} pods ready at the new revision")
    # DaemonSet
    want = status.get("desiredNumberScheduled") or 0
    updated = status.get("updatedNumberScheduled") or 0
    available = status.get("numberAvailable") or 0
    if updated < want:
        return _going(f"{updated} of {want} pods updated")
    if available < want:
        return _going(f"{available} of {want} updated pods available")
    return _done(f"{available} pods available")


def _resource(kind: str) -> Any:
    try:
        return ROLLABLE[kind]
    except KeyError:
        raise UsageError(
            f"{kind} cannot be restarted (Deployment, StatefulSet or DaemonSet)"
        ) from None


async def restart(
    client: AsyncClient, kind: str, namespace: str, name: str, *, now: dt.datetime
) -> None:
    """Ask the controller to replace every pod of a workload."""
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        ANNOTATION_RESTARTED_AT: now.astimezone(dt.UTC).isoformat(
                            timespec="seconds"
                        )
                    }
                }
            }
        }
    }
    resource = _resource(kind)
    with api_errors(
        f"restart {kind} {namespace}/{name}", verb="patch", resource=resource._api_info.plural
    ):
        await client.patch(resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE)


async def wait_for_rollout(
    client: AsyncClient,
    kind: str,
    namespace: str,
    name: str,
    *,
    timeout: float,  # noqa: ASYNC109 - the error must say how far the rollout got
    poll: float = 0.25,
) -> RolloutProgress:
    """Poll until the rollout completes; raise ``RolloutError`` on failure or timeout."""
    resource = _resource(kind)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    progress = _going("not observed yet")
    while loop.time() < deadline:
        with api_errors(
            f"read {kind} {namespace}/{name}", verb="get", resource=resource._api_info.plural
        ):
            obj = await client.get(resource, name, namespace=namespace)
        progress = rollout_progress(kind, obj.to_dict())
        if progress.failed:
            raise RolloutError(f"{kind} {namespace}/{name}: rollout failed: {progress.message}")
        if progress.done:
            return progress
        await asyncio.sleep(poll)
    raise RolloutError(
        f"{kind} {namespace}/{name}: rollout not complete after {timeout:.0f}s: {progress.message}"
    )
