"""The operator's one watch loop: a missing CRD stops an optional watch, errors retry.

Aspects: a 404 from the HTTP layer (what lightkube's async watch raises) or an ApiError
404 ends an optional watch at once, with no retry storm; the same error on a required
watch is retried; events reach the handler, sync or async.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from kustos.operator.watching import watch_forever


class _Client:
    def __init__(self, errors: list[BaseException], events: list[tuple[str, Any]]) -> None:
        self.errors = errors
        self.events = events
        self.calls = 0

    def watch(self, resource: Any, **_: Any) -> AsyncIterator[tuple[str, Any]]:
        self.calls += 1

        async def stream() -> AsyncIterator[tuple[str, Any]]:
            for event in self.events:
                yield event
            if self.errors:
                raise self.errors.pop(0)
            await asyncio.sleep(3600)

        return stream()


def _not_found() -> httpx2.HTTPStatusError:
    request = httpx2.Request("GET", "https://127.0.0.1/apis/kustos.io/v1alpha1/sealedsecrets")
    return httpx2.HTTPStatusError(
        "404", request=request, response=httpx2.Response(404, request=request)
    )


@pytest.mark.asyncio
async def test_a_missing_crd_ends_an_optional_watch() -> None:
    client = _Client([_not_found()], [])
    await asyncio.wait_for(
        watch_forever(client, object(), lambda k, o: None, namespace=None, what="X", optional=True),  # type: ignore[arg-type]
        timeout=2,
    )
    assert client.calls == 1


@pytest.mark.asyncio
async def test_a_required_watch_retries_and_delivers_events() -> None:
    seen: list[str] = []

    async def handle(kind: str, obj: Any) -> None:
        seen.append(kind)

    client = _Client([_not_found()], [("ADDED", 1)])
    task = asyncio.create_task(
        watch_forever(client, object(), handle, namespace="ns", what="X")  # type: ignore[arg-type]
    )
    await asyncio.sleep(1.3)  # first failure, 1 s backoff, second watch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls == 2
    assert seen == ["ADDED", "ADDED"]
