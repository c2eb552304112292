"""The checks ``tests/conftest.py`` adds to every test run, proven able to fail.

Aspects: an asyncio test that leaks a task fails (at teardown), naming the task, while tests
that cancel or await their tasks, or whose fixtures stop them, pass; the check itself (``assert_no_leaked_tasks``) fails on a loop
with a leaked task and cancels it; tasks already running when a test starts are not its
leak; tests under ``unit/`` get the short timeout unless they carry their own, others do
not; a test asking for ``corpus_dir`` is skipped with the reason when the corpus is absent.

The conftest under test is the real one, copied into a pytester folder.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from kustos.testing.leaks import assert_no_leaked_tasks, no_leaked_tasks, pending_tasks

CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    return pytester


def test_an_asyncio_test_that_leaks_a_task_fails(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_leaky="""
        import asyncio
        import contextlib

        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def server():
            handlers = []
            yield handlers
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        @pytest.mark.asyncio
        async def test_leaks():
            asyncio.create_task(asyncio.sleep(30), name="forgotten")

        @pytest.mark.asyncio
        async def test_awaits_its_task():
            task = asyncio.create_task(asyncio.sleep(30))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        @pytest.mark.asyncio
        async def test_cancels_on_the_way_out():
            asyncio.create_task(asyncio.sleep(30)).cancel()

        @pytest.mark.asyncio
        async def test_tasks_its_fixture_stops(server):
            server.append(asyncio.create_task(asyncio.sleep(30)))

        def test_sync():
            pass
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaks*", "*leaked asyncio tasks: forgotten (sleep)*"]
    )


def test_the_check_fails_on_a_loop_with_a_leaked_task() -> None:
    async def scenario() -> asyncio.Task[None]:
        leaked = asyncio.create_task(asyncio.sleep(30), name="leaked")
        with pytest.raises(AssertionError, match=r"^leaked asyncio tasks: leaked \(sleep\)$"):
            await assert_no_leaked_tasks()
        assert pending_tasks() == []
        return leaked

    leaked = asyncio.run(scenario())
    assert leaked.cancelled()


def test_tasks_running_before_the_block_are_not_its_leak() -> None:
    async def scenario() -> None:
        server = asyncio.create_task(asyncio.sleep(30), name="fixture-server")
        try:
            async with no_leaked_tasks():
                await asyncio.sleep(0)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    asyncio.run(scenario())


def test_unit_tests_get_the_short_timeout(project: pytest.Pytester) -> None:
    check = """
    def test_timeout(request):
        mark = request.node.get_closest_marker("timeout")
        assert (mark.args if mark else None) == {expected}
    """
    project.mkpydir("unit")
    project.mkpydir("integration")
    (project.path / "unit" / "test_default.py").write_text(
        check.replace("{expected}", "(20.0,)").replace("\n    ", "\n")
    )
    (project.path / "unit" / "test_own.py").write_text(
        "import pytest\n\n@pytest.mark.timeout(300)\n"
        + check.replace("{expected}", "(300,)").replace("\n    ", "\n").lstrip()
    )
    (project.path / "integration" / "test_long.py").write_text(
        check.replace("{expected}", "None").replace("\n    ", "\n")
    )
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_corpus_tests_skip_when_the_corpus_is_missing(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = project.path / "no-corpus"
    monkeypatch.setenv("KUSTOS_CORPUS_DIR", str(missing))
    project.makepyfile(test_corpus="def test_reads(corpus_dir):\n    assert False\n")
    result = project.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*corpus not found at {missing}*"])
