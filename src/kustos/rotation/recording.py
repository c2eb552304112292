"""Kubernetes Events for rotations and rollouts (an adapter, asyncio).

One ``core/v1`` Event per step a person cares about (rotation started, version live,
workload restarted, rollout failed, rolled back), on the ManagedSecret and on each rolled
workload. An Event that cannot be written is logged and dropped: recording never fails a
rotation. Messages come from the engine and carry names and version numbers only.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources import core_v1

from kustos import conventions as c
from kustos.errors import KubeError
from kustos.kube.client import api_errors
from kustos.kube.objects import ObjectRef

log = logging.getLogger(__name__)


class KubeRecorder:
    """Writes Events as *component* and keeps no state (metrics live in the operator)."""

    def __init__(self, client: AsyncClient, component: str) -> None:
        self.client = client
        self.component = component

    async def event(
        self, obj: ObjectRef, *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Record one Event on *obj*; failures are logged, never raised."""
        now = dt.datetime.now(dt.UTC)
        api_version = (
            c.API_VERSION if obj.group == c.GROUP else (f"{obj.group}/v1" if obj.group else "v1")
        )
        event = core_v1.Event(
            metadata=ObjectMeta(name=f"{obj.name}.{secrets.token_hex(8)}", namespace=obj.namespace),
            involvedObject=ObjectReference(
                apiVersion=api_version, kind=obj.kind, name=obj.name, namespace=obj.namespace
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=EventSource(component=self.component),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
            reportingComponent=f"kustos.io/{self.component}",
            reportingInstance=self.component,
        )
        try:
            with api_errors(f"record event {reason} on {obj}"):
                await self.client.create(event)
        except KubeError as exc:
            log.warning("event not recorded: %s", exc)

    def finished(self, outcome: str, *, duration: float, rollout_seconds: float | None) -> None:
        """Nothing to count here (the operator's metrics observer does)."""
