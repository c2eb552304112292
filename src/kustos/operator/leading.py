"""Leader election through a ``coordination.k8s.io/v1`` Lease (an adapter, asyncio).

The holder renews the Lease every ``renew_every`` seconds; another replica takes it over
only after ``lease_seconds`` without a renewal. Every write carries the Lease's
``resourceVersion``, so two replicas racing for an expired Lease cannot both win: the API
server refuses the second write with 409. A leader that fails to renew before its lease
runs out stops leading *first* (clears the event), then keeps trying: it never acts on a
lease it may have lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from kustos.errors import KubeConflictError, KubeError, KubeNotFoundError
from kustos.kube.client import api_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Which Lease, who we are, and the timing (seconds)."""

    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_every: float = 5.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Holds ``leading`` set while this replica owns the Lease."""

    def __init__(self, client: AsyncClient, settings: LeaseSettings) -> None:
        self.client = client
        self.settings = settings
        self.leading = asyncio.Event()
        self._held_until: dt.datetime | None = None
        self._mine: Lease | None = None  # the Lease as we last wrote it, while we hold it

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire and renew until *stop* is set; release the Lease on the way out."""
        try:
            while not stop.is_set():
                try:
                    held = await self._try()
                except KubeError as exc:
                    log.warning("lease %s: %s", self.settings.name, exc)
                    self._mine = None
                    held = False
                if held:
                    self._held_until = _now() + dt.timedelta(seconds=self.settings.lease_seconds)
                    if not self.leading.is_set():
                        log.info("leading as %s", self.settings.identity)
                    self.leading.set()
                elif self._held_until is None or _now() >= self._held_until - dt.timedelta(
                    seconds=self.settings.renew_every
                ):
                    if self.leading.is_set():
                        log.warning("lost the lease %s", self.settings.name)
                    self.leading.clear()
                    self._held_until = None
                try:
                    await asyncio.wait_for(stop.wait(), self.settings.renew_every)
                except TimeoutError:
                    continue
        finally:
            if self.leading.is_set():
                self.leading.clear()
                await self._release()

    async def _try(self) -> bool:
        s = self.settings
        if self._mine is not None:
            # Renewal: write the Lease we hold, with the resourceVersion of our last write;
            # if anyone else wrote since, the API server refuses it (409) and we read again.
            lease, self._mine = self._mine, None
            if lease.spec is not None:
                lease.spec.renewTime = _now()
            try:
                with api_errors(f"renew Lease {s.namespace}/{s.name}"):
                    self._mine = await self.client.replace(lease)
            except (KubeConflictError, KubeNotFoundError):
                return await self._try()
            return True
        try:
            with api_errors(f"read Lease {s.namespace}/{s.name}"):
                lease = await self.client.get(Lease, s.name, namespace=s.namespace)
        except KubeNotFoundError:
            now = _now()
            fresh = Lease(
                metadata=ObjectMeta(name=s.name, namespace=s.namespace),
                spec=LeaseSpec(
                    holderIdentity=s.identity,
                    leaseDurationSeconds=s.lease_seconds,
                    acquireTime=now,
                    renewTime=now,
                    leaseTransitions=0,
                ),
            )
            try:
                with api_errors(f"create Lease {s.namespace}/{s.name}"):
                    self._mine = await self.client.create(fresh)
            except KubeConflictError:
                return False
            return True
        spec = lease.spec or LeaseSpec()
        now = _now()
        renewed = spec.renewTime or spec.acquireTime
        duration = dt.timedelta(seconds=spec.leaseDurationSeconds or s.lease_seconds)
        mine = spec.holderIdentity == s.identity
        expired = renewed is None or not spec.holderIdentity or now > renewed + duration
        if not mine and not expired:
            return False
        spec.renewTime = now
        spec.leaseDurationSeconds = s.lease_seconds
        if not mine:
            spec.holderIdentity = s.identity
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        lease.spec = spec
        try:
            with api_errors(f"renew Lease {s.namespace}/{s.name}"):
                self._mine = await self.client.replace(lease)
        except KubeConflictError:
            return False  # someone else wrote first: they hold it
        return True

    async def _release(self) -> None:
        s = self.settings
        self._mine = None
        try:
            with api_errors(f"release Lease {s.namespace}/{s.name}"):
                lease = await self.client.get(Lease, s.name, namespace=s.namespace)
                if lease.spec is not None and lease.spec.holderIdentity == s.identity:
                    lease.spec.holderIdentity = None
                    lease.spec.renewTime = None
                    await self.client.replace(lease)
        except KubeError as exc:
            log.info("lease %s not released: %s", s.name, exc)
