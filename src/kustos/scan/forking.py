"""Run the same work in this process and in forked copies of it (an adapter: processes, pipes).

A large scan's checks run after the index is built, when the parsing processes are gone
and every core but one is idle. A forked copy of this process has the index, the policy
and the loader already (copy on write: nothing is sent to it), so the checks can be
shared out without turning them into per-file pieces. Each process draws item numbers
from one counter in shared memory until none is left, so a process that drew a long item
draws fewer others; items that must run together in one process (they read a table that
process builds) are *reserved* to the first forked copy, which runs them before it draws.

A child sends each item's result as soon as it has it, pickled, through a pipe; a thread
of this process reads the pipe as it fills, and this process reads the results back
between its own items and while it waits, so that little is left to read back once
every process is done. The scan's results are located findings, which hold names and
places, never values.

A child that dies (killed for memory, a signal) or fails is one clear error naming
``--jobs 1``, as a parsing process that dies is (:mod:`kustos.kube.loading`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from kustos.errors import KustosError

T = TypeVar("T")

#: Each result crosses the pipe as its length (8 bytes, little-endian) and its pickle.
_LENGTH = 8
#: The pipe's buffer: a child writes on while this process's reading thread waits its turn
#: to run Python (up to the interpreter's switch interval), instead of stalling at 64 KiB.
_PIPE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Forking:
    """:func:`in_processes` with a number of processes (a ``scanning.Share``)."""

    processes: int

    def __call__(
        self,
        run: Callable[[int], T],
        order: Sequence[int],
        *,
        reserved: Sequence[int] = (),
        send: Callable[[T], Any] | None = None,
        receive: Callable[[Any], T] | None = None,
    ) -> dict[int, T]:
        """Every item's result, by number; see :func:`in_processes`."""
        return in_processes(
            run, order, processes=self.processes, reserved=reserved, send=send, receive=receive
        )


def in_processes(
    run: Callable[[int], T],
    order: Sequence[int],
    *,
    processes: int = 2,
    reserved: Sequence[int] = (),
    send: Callable[[T], Any] | None = None,
    receive: Callable[[Any], T] | None = None,
) -> dict[int, T]:
    """``run(number)`` for every number of *order* and of *reserved*, each once, in this
    process and in ``processes - 1`` forked copies; every result, by number.

    The numbers of *order* are drawn in that order by every process from one counter;
    those of *reserved* are run by the first forked copy before it draws (here when there
    is no copy). Which process ran which item depends on timing, so the caller must not
    depend on it. A child's result crosses the pipe as ``send(result)`` and is read back
    with ``receive`` (a form that pickles faster); this process's own are used as they are.
    """
    results: dict[int, T] = {}
    if processes < 2:
        for number in (*reserved, *order):
            results[number] = run(number)
        return results
    # Imported here: only large scans fork, and small commands should not pay for it.
    import multiprocessing  # noqa: PLC0415

    counter = multiprocessing.get_context("fork").Value("i", 0)

    def take() -> int | None:
        with counter.get_lock():
            item = int(counter.value)
            if item >= len(order):
                return None
            counter.value = item + 1
            return order[item]

    children: list[_Child] = []
    try:
        for process in range(1, processes):
            children.append(_start(run, take, reserved if process == 1 else (), send))
        for child in children:  # threads started once every fork is done
            child.thread.start()
        while (drawn := take()) is not None:
            results[drawn] = run(drawn)
            for child in children:  # what they have sent meanwhile
                child.read_back(results, receive, wait=False)
        for child in children:
            child.read_back(results, receive, wait=True)
    except BaseException:
        for child in children:  # no orphan left working for nobody
            child.kill()
        raise
    # Reaped last: a child's exit (its copied pages freed) overlaps reading its results.
    failed = [f for child in children if (f := child.reap())]
    if failed:
        raise KustosError(
            f"a checking process stopped before the end ({', '.join(failed)}); "
            "retry with --jobs 1 to check in one process"
        )
    return results


class _Child:
    """A forked process, the pipe its results come through and the thread reading it."""

    def __init__(self, pid: int, read_end: int) -> None:
        self.pid = pid
        self.source: BinaryIO = os.fdopen(read_end, "rb")
        #: Each pickled result as it arrives; ``None`` once the pipe is closed.
        self.frames: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        #: Whether every result arrived whole before the pipe was closed.
        self.complete = False
        self.ended = False
        self.thread = threading.Thread(target=self._read, name=f"checks-{pid}", daemon=True)

    def _read(self) -> None:
        try:
            while header := self.source.read(_LENGTH):
                if len(header) < _LENGTH:
                    return
                frame = self.source.read(int.from_bytes(header, "little"))
                if len(frame) < int.from_bytes(header, "little"):
                    return  # cut short: the child died while writing
                if not frame:  # the child's last word: everything was sent
                    self.complete = True
                    return
                self.frames.put(frame)
        except OSError:
            return
        finally:
            self.frames.put(None)

    def read_back(
        self, results: dict[int, Any], receive: Callable[[Any], Any] | None, *, wait: bool
    ) -> None:
        """Put the results received into *results*: those already here, or (*wait*) all."""
        while not self.ended:
            try:
                frame = self.frames.get(block=wait)
            except queue.Empty:
                return
            if frame is None:
                self.ended = True
                return
            number, sent = pickle.loads(frame)  # noqa: S301 - our own child, through our own pipe
            results[number] = receive(sent) if receive is not None else sent

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        if self.thread.ident is not None:
            self.thread.join()
        self.source.close()

    def reap(self) -> str | None:
        """Wait for the child's end: ``None`` if it sent everything and exited cleanly,
        else what went wrong."""
        self.thread.join()
        self.source.close()
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            return f"signal {-code}"
        if code != 0 or not self.complete:
            return f"exit code {code}"
        return None


def _start(
    run: Callable[[int], T],
    take: Callable[[], int | None],
    reserved: Sequence[int],
    send: Callable[[T], Any] | None,
) -> _Child:
    """Fork a child that runs its items and writes each result as it has it."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a smaller pipe only makes the child wait more
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    pid = os.fork()
    if pid == 0:  # the child: work, send, leave without cleaning up after the parent
        os.close(read_end)
        code = 1
        try:
            with os.fdopen(write_end, "wb") as sink:

                def put(number: int, result: T) -> None:
                    sent = send(result) if send is not None else result
                    payload = pickle.dumps((number, sent), protocol=pickle.HIGHEST_PROTOCOL)
                    sink.write(len(payload).to_bytes(_LENGTH, "little"))
                    sink.write(payload)
                    sink.flush()

                for number in reserved:
                    put(number, run(number))
                while (drawn := take()) is not None:
                    put(drawn, run(drawn))
                sink.write(bytes(_LENGTH))  # an empty result: the end
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return _Child(pid, read_end)
