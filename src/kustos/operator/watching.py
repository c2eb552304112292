"""One way the operator watches a kind: forever, restarted with backoff when it breaks.

lightkube's watch lists first (``ADDED`` for every object) and then streams changes; it
reconnects by itself when the server closes a quiet stream. What it does not do is survive
an error, so every watcher of the operator runs through :func:`watch_forever`: an error is
logged in one line and the watch starts again after 1 s, doubling to 60 s. A kind whose
CRD is not installed (404) is watched no longer when ``optional``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.resource import GlobalResource

log = logging.getLogger(__name__)
Handler = Callable[[str, Any], Awaitable[None] | None]


async def watch_forever(
    client: AsyncClient,
    resource: Any,
    handle: Handler,
    *,
    namespace: str | None,
    what: str,
    labels: dict[str, Any] | None = None,
    optional: bool = False,
) -> None:
    """Call ``handle(event_type, obj)`` for every event of *resource*, until cancelled."""
    delay = 1.0
    scope = namespace or "all namespaces"
    while True:
        try:
            # A cluster-scoped kind takes no namespace at all ("*" is for namespaced ones).
            cluster = isinstance(resource, type) and issubclass(resource, GlobalResource)
            scoped = None if cluster else (namespace or "*")
            stream = client.watch(resource, namespace=scoped, labels=labels)
            async for kind, obj in stream:
                delay = 1.0
                done = handle(kind, obj)
                if inspect.isawaitable(done):
                    await done
        except asyncio.CancelledError:
            raise
        except httpx2.HTTPStatusError as exc:
            # lightkube's async watch raises the HTTP library's own error for a refused
            # request (its ApiError is a subclass, raised by lists): one check for both.
            if optional and exc.response.status_code == 404:
                log.info("%s: not installed in this cluster; not watched", what)
                return
            _ended(what, scope, exc, delay)
        except Exception as exc:  # noqa: BLE001 - a watch that breaks is started again
            _ended(what, scope, exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 60)


def _ended(what: str, scope: str, exc: BaseException, delay: float) -> None:
    reason = str(exc)[:200] or type(exc).__name__
    log.warning("%s watch (%s) ended: %s; retrying in %.0fs", what, scope, reason, delay)
