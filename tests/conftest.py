"""Shared test setup: leaked asyncio tasks fail their test, unit tests have a short timeout,
tests that need ``../shared/corpus`` skip when it is not there.

- ``_no_leaked_tasks`` (autouse): an asyncio test that leaves a task pending once it and its
  fixtures are done fails at teardown (``kustos.testing.leaks``); the check runs inside the
  test's event loop, before pytest-asyncio closes it and silently cancels what is left.
  Tests on a wider loop (``loop_scope="module"``) would need a watch of that scope.
- Tests under ``tests/unit`` get a timeout of :data:`UNIT_TIMEOUT` seconds unless they carry
  their own ``timeout`` mark or ``--timeout`` is given; integration tests keep the
  project-wide one from ``pyproject.toml``.
- ``corpus_dir``: the shared corpus of real manifests and policies; a test that asks for it
  is skipped, with the reason, when the folder is missing (as in a bare CI checkout).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from pytest_asyncio import is_async_test

from kustos.testing.leaks import no_leaked_tasks

# Control-plane fixtures (control_plane, kube, namespace); they start nothing until used.
# pytester runs this very conftest in a scratch folder to prove the leak check fails.
pytest_plugins = ["kustos.testing.fixtures", "pytester"]

#: Seconds a unit test may take; a hang fails fast instead of stalling the run.
UNIT_TIMEOUT: Final = 20.0
UNIT_TESTS: Final = Path(__file__).resolve().parent / "unit"
#: ``KUSTOS_CORPUS_DIR`` points elsewhere; by default the corpus sits beside the repository.
CORPUS: Final = Path(
    os.environ.get("KUSTOS_CORPUS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)


@pytest.fixture(autouse=True)
def _no_leaked_tasks(request: pytest.FixtureRequest) -> None:
    """Fail any asyncio test that leaves a task running once its fixtures are torn down."""
    if is_async_test(request.node):
        # Requested before the test's own fixtures, so torn down after them, in the loop.
        request.getfixturevalue(_leak_watch.__name__)


@pytest_asyncio.fixture(loop_scope="function")
async def _leak_watch() -> AsyncIterator[None]:
    """The check itself, inside the test's event loop (the default, function-scoped one)."""
    async with no_leaked_tasks():
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give unit tests their short timeout (an explicit mark or ``--timeout`` wins)."""
    if config.getoption("timeout", None) is not None:
        return
    for item in items:
        if item.path.is_relative_to(UNIT_TESTS) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus folder (``manifests/``, ``policies/``, ``audit/``), or a skip."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set KUSTOS_CORPUS_DIR to its folder)")
    return CORPUS
