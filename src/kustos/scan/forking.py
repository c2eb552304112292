"""Run the same work in this process and in forked copies of it (an adapter: processes, pipes).

A large scan's checks run after the index is built, when the parsing processes are gone
and every core but one is idle. A forked copy of this process has the index, the policy
and the loader already (copy on write: nothing is sent to it), so the checks can be
shared out without turning them into per-file pieces. Each process draws item numbers
from one counter in shared memory until none is left, so a process that drew a long item
draws fewer others. A child sends back its result pickled through a pipe; the scan's
results are located findings, which hold names and places, never values.

A child that dies (killed for memory, a signal) or fails is one clear error naming
``--jobs 1``, as a parsing process that dies is (:mod:`kustos.kube.loading`).
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kustos.errors import KustosError
from kustos.scan.scanning import Take

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Forking:
    """:func:`in_processes` with a number of processes (a ``scanning.Share``)."""

    processes: int

    def __call__(
        self,
        work: Callable[[Take, int], T],
        items: int,
        *,
        send: Callable[[T], Any] | None = None,
        receive: Callable[[Any], T] | None = None,
    ) -> list[T]:
        """``work(take, process)`` in :attr:`processes` processes; see :func:`in_processes`."""
        return in_processes(work, items, processes=self.processes, send=send, receive=receive)


def in_processes(
    work: Callable[[Take, int], T],
    items: int,
    *,
    processes: int = 2,
    send: Callable[[T], Any] | None = None,
    receive: Callable[[Any], T] | None = None,
) -> list[T]:
    """``work(take, process)`` in this process (``process`` 0) and in ``processes - 1``
    forked copies (1, 2, ... in the order they are started); every result.

    The results come in a fixed order (this process's first, then the children's in the
    order they were started); which process drew which item depends on timing, so the
    caller must put the pieces back together by item number. A child's result crosses
    the pipe as ``send(result)`` and is read back with ``receive`` (a form that pickles
    faster); this process's own result is used as it is.
    """
    # Imported here: only large scans fork, and small commands should not pay for it.
    import multiprocessing  # noqa: PLC0415

    counter = multiprocessing.get_context("fork").Value("i", 0)

    def take() -> int | None:
        with counter.get_lock():
            item = int(counter.value)
            if item >= items:
                return None
            counter.value = item + 1
            return item

    children: list[tuple[int, int]] = []
    try:
        for process in range(1, processes):
            children.append(_start(work, take, process, send))
        results = [work(take, 0)]
    except BaseException:
        for pid, read_end in children:  # no orphan left working for nobody
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        raise
    failed: list[str] = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as source:
            payload = source.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not payload:
            failed.append(f"signal {-code}" if code < 0 else f"exit code {code}")
            continue
        received = pickle.loads(payload)  # noqa: S301 - our own child, through our own pipe
        results.append(receive(received) if receive is not None else received)
    if failed:
        raise KustosError(
            f"a checking process stopped before the end ({', '.join(failed)}); "
            "retry with --jobs 1 to check in one process"
        )
    return results


def _start(
    work: Callable[[Take, int], T], take: Take, process: int, send: Callable[[T], Any] | None
) -> tuple[int, int]:
    """Fork a child that runs *work* and writes its pickled result; (its pid, the read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, send the result, leave without cleaning up after the parent
        os.close(read_end)
        code = 1
        try:
            result = work(take, process)
            sent = send(result) if send is not None else result
            payload = pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as sink:
                sink.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end
