"""The ``v2.KeyManagementService`` servicer: Status, Encrypt and Decrypt over a provider.

Asyncio end to end; provider calls (which may talk to an HSM) run in a worker thread.
``Status`` reports ``healthz: ok`` only after a real wrap/unwrap round trip with the
current key, cached for ``probe_ttl`` seconds so that the API server's polls stay cheap.
Every failure is answered with a gRPC status and a one-line message that names no key
material, plaintext or ciphertext.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kustos.errors import ContractError, KmsError
from kustos.kms import envelope
from kustos.kms.keys import KeyState, key_id_hash
from kustos.kms.proto import kms_v2_pb2 as pb
from kustos.kms.proto import kms_v2_pb2_grpc as pb_grpc
from kustos.kms.providers import KeyProvider

log = logging.getLogger("kustos.kms.service")
API_VERSION: Final = "v2"
PROBE_TTL: Final = 5.0


@dataclass(frozen=True, slots=True)
class Metrics:
    """The plugin's Prometheus metrics, in a registry of their own."""

    registry: CollectorRegistry
    latency: Histogram
    errors: Counter
    current_key: Gauge
    healthy: Gauge

    @classmethod
    def create(cls) -> Metrics:
        """Fresh metrics in a new registry."""
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            latency=Histogram(
                "kustos_kms_operation_seconds",
                "Latency of KMS v2 calls.",
                ["method", "code"],
                registry=registry,
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            ),
            errors=Counter(
                "kustos_kms_errors_total",
                "Failed KMS v2 calls.",
                ["method", "code"],
                registry=registry,
            ),
            current_key=Gauge(
                "kustos_kms_current_key_info",
                "1 for the hash of the current key id.",
                ["key_id_hash"],
                registry=registry,
            ),
            healthy=Gauge(
                "kustos_kms_healthy",
                "1 when the last probe wrapped and unwrapped.",
                registry=registry,
            ),
        )


class KmsService(pb_grpc.KeyManagementServiceServicer):  # type: ignore[misc]  # generated, untyped
    """The servicer kube-apiserver talks to."""

    def __init__(
        self,
        provider: KeyProvider,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_ttl: float = PROBE_TTL,
    ) -> None:
        self.provider = provider
        self.metrics = metrics or Metrics.create()
        self._clock = clock
        self._probe_ttl = probe_ttl
        self._probe: tuple[float, str, str] | None = None  # (time, key id, healthz)
        self._key_label: str | None = None

    # ------------------------------------------------------------------ helpers
    async def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        name = code.name
        self.metrics.latency.labels(method, name).observe(time.perf_counter() - started)
        if code is not grpc.StatusCode.OK:
            self.metrics.errors.labels(method, name).inc()

    async def _fail(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        started: float,
        code: grpc.StatusCode,
        message: str,
    ) -> NoReturn:
        self._observe(method, code, started)
        log.warning("%s refused: %s", method, message)
        await context.abort(code, message)
        raise AssertionError("grpc abort returned")  # abort always raises

    def _show_key(self, key_id: str) -> None:
        label = key_id_hash(key_id)
        if label != self._key_label:
            if self._key_label is not None:
                self.metrics.current_key.remove(self._key_label)
            self.metrics.current_key.labels(label).set(1)
            self._key_label = label

    async def probe(self) -> tuple[str, str]:
        """(current key id, healthz) after a real round trip, cached briefly."""
        now = self._clock()
        if self._probe is not None and now - self._probe[0] < self._probe_ttl:
            return self._probe[1], self._probe[2]
        try:
            key_id = await self._call(self.provider.current_key_id)
            seed = secrets.token_bytes(32)
            aad = envelope.aad_for(key_id)
            blob = await self._call(self.provider.wrap, key_id, seed, aad)
            healthz = (
                "ok"
                if await self._call(self.provider.unwrap, key_id, blob, aad) == seed
                else "probe mismatch"
            )
        except KmsError as exc:
            key_id, healthz = (self._probe[1] if self._probe else "unknown"), f"unhealthy: {exc}"
        self.metrics.healthy.set(1 if healthz == "ok" else 0)
        if healthz == "ok":
            self._show_key(key_id)
        self._probe = (now, key_id, healthz)
        return key_id, healthz

    def invalidate(self) -> None:
        """Forget the cached probe (after a reload), so Status reports the new key at once."""
        self._probe = None

    # ------------------------------------------------------------------ RPCs
    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        """Version, health and the current key id."""
        started = time.perf_counter()
        key_id, healthz = await self.probe()
        self._observe("Status", grpc.StatusCode.OK, started)
        return pb.StatusResponse(version=API_VERSION, healthz=healthz, key_id=key_id)

    async def Encrypt(
        self, request: pb.EncryptRequest, context: grpc.aio.ServicerContext
    ) -> pb.EncryptResponse:
        """Wrap a DEK seed with the current key."""
        started = time.perf_counter()
        try:
            envelope.check_plaintext(request.plaintext)
            key_id = await self._call(self.provider.current_key_id)
            envelope.check_key_id(key_id)
            blob = await self._call(
                self.provider.wrap, key_id, request.plaintext, envelope.aad_for(key_id)
            )
            ciphertext = envelope.seal(blob)
            annotations = envelope.default_annotations()
            envelope.check_annotations(annotations)
        except ContractError as exc:
            await self._fail(
                context, "Encrypt", started, grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            )
        except KmsError as exc:
            await self._fail(context, "Encrypt", started, grpc.StatusCode.UNAVAILABLE, str(exc))
        self._observe("Encrypt", grpc.StatusCode.OK, started)
        return pb.EncryptResponse(ciphertext=ciphertext, key_id=key_id, annotations=annotations)

    async def Decrypt(
        self, request: pb.DecryptRequest, context: grpc.aio.ServicerContext
    ) -> pb.DecryptResponse:
        """Unwrap a DEK seed with the key it names, if this plugin issued that key."""
        started = time.perf_counter()
        try:
            envelope.check_key_id(request.key_id)
            blob = envelope.unseal(request.ciphertext)
            if dict(request.annotations).get(envelope.VERSION_ANNOTATION) != envelope.VERSION_VALUE:
                raise ContractError("missing or unknown version.kms.kustos.io annotation")
        except ContractError as exc:
            await self._fail(
                context, "Decrypt", started, grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            )
        records = {r.key_id: r for r in await self._call(self.provider.records)}
        record = records.get(request.key_id)
        if record is None:
            await self._fail(
                context,
                "Decrypt",
                started,
                grpc.StatusCode.NOT_FOUND,
                f"key id {key_id_hash(request.key_id)} (hash) was never issued by this plugin",
            )
        if record.state is KeyState.RETIRED:
            await self._fail(
                context,
                "Decrypt",
                started,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"key {record.key_id} is retired",
            )
        try:
            plaintext = await self._call(
                self.provider.unwrap, request.key_id, blob, envelope.aad_for(request.key_id)
            )
        except KmsError as exc:
            await self._fail(
                context, "Decrypt", started, grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            )
        self._observe("Decrypt", grpc.StatusCode.OK, started)
        return pb.DecryptResponse(plaintext=plaintext)
