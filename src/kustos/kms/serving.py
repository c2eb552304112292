"""The plugin as a service: the gRPC server on a UNIX socket, key reloads and metrics.

``serve`` runs until its ``stop`` event is set (SIGTERM/SIGINT in ``kustos kms serve``).
Rotated keys are picked up within ``reload_interval`` seconds by polling the provider
(the keyring file's mtime, the token's state object) and at once on SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import start_http_server

from kustos.errors import KmsError
from kustos.kms.keys import key_id_hash
from kustos.kms.proto import kms_v2_pb2_grpc as pb_grpc
from kustos.kms.providers import KeyProvider
from kustos.kms.service import KmsService

log = logging.getLogger("kustos.kms.serving")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Where to listen and how often to look for rotated keys."""

    socket: Path
    metrics_address: str | None = None
    reload_interval: float = 1.0
    grace: float = 2.0


def _prepare_socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise KmsError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()  # a stale socket from an earlier run


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise KmsError(f"--metrics-address {address!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


@contextlib.contextmanager
def _metrics_server(service: KmsService, address: str | None) -> Iterator[None]:
    if address is None:
        yield
        return
    host, port = _split_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=service.metrics.registry)
    except OSError as exc:
        raise KmsError(f"cannot serve metrics on {address}: {exc.strerror}") from exc
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)


async def serve(provider: KeyProvider, settings: ServeSettings, stop: asyncio.Event) -> None:
    """Serve ``v2.KeyManagementService`` until *stop* is set."""
    service = KmsService(provider)
    key_id, healthz = await service.probe()
    if healthz != "ok":
        raise KmsError(f"key provider failed its first wrap/unwrap probe: {healthz}")
    _prepare_socket(settings.socket)
    server = grpc.aio.server()
    pb_grpc.add_KeyManagementServiceServicer_to_server(service, server)
    if server.add_insecure_port(f"unix://{settings.socket}") == 0:
        raise KmsError(f"cannot listen on {settings.socket}")
    reload_now = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reload_now.set)
    with _metrics_server(service, settings.metrics_address):
        await server.start()
        os.chmod(settings.socket, 0o600)  # noqa: PTH101 - the socket path is a str for grpc
        log.info("serving KMS v2 on %s, current key %s", settings.socket, key_id_hash(key_id))
        try:
            await _reload_loop(provider, service, settings, stop, reload_now)
        finally:
            await server.stop(settings.grace)
            with contextlib.suppress(FileNotFoundError):
                settings.socket.unlink()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGHUP)


async def _reload_loop(
    provider: KeyProvider,
    service: KmsService,
    settings: ServeSettings,
    stop: asyncio.Event,
    reload_now: asyncio.Event,
) -> None:
    while not stop.is_set():
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload_now.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=settings.reload_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if stop.is_set():
            return
        reload_now.clear()
        try:
            changed = await asyncio.to_thread(provider.reload)
        except KmsError as exc:
            log.warning("key reload failed, keeping the keys in memory: %s", exc)
            continue
        if changed:
            service.invalidate()
            key_id, healthz = await service.probe()
            log.info("current key is now %s (%s)", key_id_hash(key_id), healthz)
