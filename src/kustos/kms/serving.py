"""The plugin as a service: the gRPC server on a UNIX socket, key reloads and metrics.

``serve`` runs until its ``stop`` event is set (SIGTERM/SIGINT in ``kustos kms serve``).
It fails at start with one ``ServiceError`` line when it cannot listen (the socket's
folder is missing or not writable, the path is taken, the metrics port is in use): a
plugin that is not listening must not look as if it were running. Rotated keys are
picked up within ``reload_interval`` seconds by polling the provider (the keyring file's
mtime, the token's state object) and at once on SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import start_http_server

from kustos.errors import InputError, KmsError, ServiceError, UsageError
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


def _check_socket(path: Path) -> None:
    """Raise ``ServiceError`` unless a socket can be created at *path*; remove a stale one.

    The bind is tried here with a plain socket, so the reason (no such folder, permission
    denied, path too long) reaches the user as one line; gRPC would only log it.
    """
    folder = path.parent
    if not folder.is_dir():
        raise ServiceError(f"cannot listen on {path}: the folder {folder} does not exist")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot listen on {path}: {_reason(exc)}") from exc
    else:
        if not stat.S_ISSOCK(mode):
            raise ServiceError(f"{path} exists and is not a socket; refusing to replace it")
        if _answers(path):
            raise ServiceError(f"cannot listen on {path}: another process is serving on it")
        try:
            path.unlink()  # a stale socket from an earlier run
        except OSError as exc:
            raise ServiceError(f"cannot remove the stale socket {path}: {_reason(exc)}") from exc
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(str(path))
        except OSError as exc:
            raise ServiceError(f"cannot listen on {path}: {_reason(exc)}") from exc
    with contextlib.suppress(OSError):
        path.unlink()


def _answers(path: Path) -> bool:
    """True if a process accepts connections on the UNIX socket *path*."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--metrics-address {address!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def check_listen(settings: ServeSettings) -> None:
    """Raise now if the socket (``ServiceError``) or the metrics address (``UsageError``) is bad.

    ``serve`` checks again; calling this first lets a command fail before it opens a key
    store (an HSM login) for a server that could not start anyway.
    """
    _check_socket(settings.socket)
    if settings.metrics_address is not None:
        _split_address(settings.metrics_address)


@contextlib.contextmanager
def _metrics_server(service: KmsService, address: str | None) -> Iterator[None]:
    if address is None:
        yield
        return
    host, port = _split_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=service.metrics.registry)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on {address}: {_reason(exc)}") from exc
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def serve(provider: KeyProvider, settings: ServeSettings, stop: asyncio.Event) -> None:
    """Serve ``v2.KeyManagementService`` until *stop* is set.

    Every start failure is raised before anything listens: ``ServiceError`` for the
    socket and the metrics address, ``KmsError`` for a key store that fails its first
    wrap/unwrap probe.
    """
    check_listen(settings)
    service = KmsService(provider)
    key_id, healthz = await service.probe()
    if healthz != "ok":
        raise KmsError(f"key provider failed its first wrap/unwrap probe: {healthz}")
    with _metrics_server(service, settings.metrics_address):
        _check_socket(settings.socket)  # again: the probe may have taken a while
        server = grpc.aio.server()
        pb_grpc.add_KeyManagementServiceServicer_to_server(service, server)
        try:
            bound = server.add_insecure_port(f"unix://{settings.socket}")
        except RuntimeError as exc:  # how grpc says that the bind failed
            raise ServiceError(f"cannot listen on {settings.socket}") from exc
        if bound == 0:
            raise ServiceError(f"cannot listen on {settings.socket}")
        reload_now = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload_now.set)
        await server.start()
        try:
            os.chmod(settings.socket, 0o600)  # noqa: PTH101 - the socket path is a str for grpc
            log.info("serving KMS v2 on %s, current key %s", settings.socket, key_id_hash(key_id))
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
        except (KmsError, InputError) as exc:  # InputError: the keyring file is unreadable
            log.warning("key reload failed, keeping the keys in memory: %s", exc)
            continue
        if changed:
            service.invalidate()
            key_id, healthz = await service.probe()
            log.info("current key is now %s (%s)", key_id_hash(key_id), healthz)
