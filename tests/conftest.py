"""Shared test setup: leaked asyncio tasks fail the test that leaked them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

# Control-plane fixtures (control_plane, kube, namespace); they start nothing until used.
pytest_plugins = ["kustos.testing.fixtures"]


@pytest.fixture(autouse=True)
def _no_leaked_tasks() -> Iterator[None]:
    """Fail any test that leaves an asyncio task running on a loop it created."""
    yield
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    leaked = [
        t for t in asyncio.all_tasks(loop) if not t.done() and t is not asyncio.current_task()
    ]
    assert not leaked, f"leaked asyncio tasks: {leaked}"
