"""Leaked asyncio tasks fail the test that leaked them.

A task still pending when an asyncio test and its fixtures are done is work nobody waits
for: it may raise later, in another test, or hold a socket open. pytest-asyncio's runner
cancels such tasks silently when it closes the loop, so the check must run inside the
test's own loop, after every fixture of the test is torn down and before the loop closes.
``tests/conftest.py`` does that with :func:`no_leaked_tasks` in an async fixture set up
first (so torn down last) for every asyncio test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any


def pending_tasks(baseline: Collection[asyncio.Task[Any]] = ()) -> list[asyncio.Task[Any]]:
    """Tasks of the running loop not done, other than the current one and *baseline*."""
    current = asyncio.current_task()
    return [
        t for t in asyncio.all_tasks() if not t.done() and t is not current and t not in baseline
    ]


async def assert_no_leaked_tasks(baseline: Collection[asyncio.Task[Any]] = ()) -> None:
    """Raise ``AssertionError`` naming every task leaked since *baseline*; cancel them.

    Tasks the test cancelled on its way out get one turn of the loop to finish first.
    """
    await asyncio.sleep(0)
    leaked = pending_tasks(baseline)
    if not leaked:
        return
    names = ", ".join(sorted(_describe(t) for t in leaked))
    for task in leaked:
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    raise AssertionError(f"leaked asyncio tasks: {names}")


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    return f"{task.get_name()} ({name})"


@contextlib.asynccontextmanager
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail on leaving the block if a task started inside it is still pending.

    Tasks already running on entry (a server started on a wider loop) are not the block's.
    """
    baseline = set(asyncio.all_tasks())
    yield
    await assert_no_leaked_tasks(baseline)
