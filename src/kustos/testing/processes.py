"""Starting, watching and stopping the control plane's processes (an adapter).

Each component runs in its own session (``posix_spawn`` with ``setsid``), so that its whole
process group can be signalled and, for ``dev-cluster up``, it outlives the Python process
that started it. Its output goes to its log file, appended across restarts. Stopping sends
SIGTERM to the group, waits, then SIGKILLs; a pid that now belongs to an unrelated program
(the cluster was stopped long ago and the pid reused) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kustos.errors import ControlPlaneError, quote_foreign
from kustos.testing.flags import LOOPBACK

STOP_GRACE_SECONDS: Final = 10.0
KILL_GRACE_SECONDS: Final = 5.0
POLL_SECONDS: Final = 0.05


@dataclass(slots=True)
class Process:
    """One component: its command line, log and environment, and its pid once started."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    #: Exit code once this process (a child of ours) has been reaped.
    returncode: int | None = None

    def poll(self) -> int | None:
        """Reap the process if it is our child and has exited; return its exit code."""
        if self.returncode is None and self.pid is not None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Not our child (started by another `kustos` process): ask /proc instead.
                return None if pid_alive(self.pid) else -1
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def alive(self) -> bool:
        """Whether the process runs now."""
        return self.pid is not None and pid_alive(self.pid)


def free_ports(count: int) -> list[int]:
    """Ask the kernel for *count* distinct free loopback ports."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pid_alive(pid: int) -> bool:
    """Tell whether *pid* runs (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 is the state; the command name before it is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The command line of *pid*, arguments separated by spaces ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def launch(proc: Process) -> None:
    """Start *proc* in a session of its own, output appended to its log."""
    env = {**os.environ, **proc.env}
    # A service-account token in the environment would make components think they run
    # in a pod (local-control-plane.md, pitfall 7); never pass one through.
    env.pop("KUBERNETES_SERVICE_HOST", None)
    # posix_spawn rather than Popen: the process gets its own session (so its whole
    # group can be signalled) and, with `dev-cluster up`, simply outlives us.
    try:
        log_fd = os.open(proc.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise ControlPlaneError(
            f"cannot open the log of {proc.name}: {proc.log}: {exc.strerror}"
        ) from exc
    try:
        proc.pid = os.posix_spawn(
            proc.argv[0],
            proc.argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise ControlPlaneError(f"cannot start {proc.name}: {exc.strerror}") from exc
    finally:
        os.close(log_fd)
    proc.returncode = None


def terminate(proc: Process, *, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop *proc*'s process group: SIGTERM, up to *grace* seconds, then SIGKILL."""
    pid = proc.pid
    if pid is None:
        return
    # A pid read back from a state file may have been reused by an unrelated process. A
    # child of ours cannot be (its pid is held until we reap it), and right after the
    # spawn its command line may still be ours, so the check applies to others only.
    reused = proc.argv and proc.argv[0] not in cmdline(pid)
    if proc.poll() is None and not _our_child(proc) and reused:
        proc.pid = None  # the pid was reused by an unrelated process: leave it alone
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(POLL_SECONDS)
        if proc.poll() is not None:
            break
    proc.pid = None


def _our_child(proc: Process) -> bool:
    """True if *proc* is a child of this process (then its pid cannot have been reused)."""
    if proc.pid is None:
        return False
    try:
        done, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:
        return False
    if done:  # it exited just now: keep its status for poll()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return True


def wait_ready(
    proc: Process,
    probe: Callable[[], bool],
    *,
    deadline: float,
    patience: float,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Poll *probe* until it says ready; ``ControlPlaneError`` if *proc* exits or time runs out.

    *errors* raised by the probe count as "not ready yet" (the last one is named in the
    error); *patience* is the timeout the message quotes.
    """
    last_error = ""
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ControlPlaneError(f"{proc.name} exited with code {code}: {log_tail(proc)}")
        try:
            if probe():
                return
        except errors as exc:
            last_error = type(exc).__name__
        time.sleep(0.1)
    raise ControlPlaneError(
        f"{proc.name} not ready after {patience:.0f}s"
        f"{' (' + last_error + ')' if last_error else ''}: {log_tail(proc)}"
    )


def log_tail(proc: Process) -> str:
    """The last error lines of *proc*'s log on one line, and where the log is."""
    try:
        lines = proc.log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    lines = [ln for ln in lines if ln.strip()]
    # klog marks errors with E/F; prefer those over the warnings that precede them.
    errors = [ln for ln in lines if ln[:1] in ("E", "F") or "error" in ln.lower()]
    useful = (errors or lines)[-2:]
    return quote_foreign(" | ".join(useful)) + f" (log: {proc.log})"


def stop_session(
    proc: subprocess.Popen[bytes] | None,
    *,
    sig: signal.Signals = signal.SIGTERM,
    grace: float = 10.0,
) -> None:
    """Send *sig* to the session a helper server was started in; SIGKILL after *grace* s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for_port(
    proc: subprocess.Popen[bytes], port: int, *, name: str, log: Path, timeout: float = 30.0
) -> None:
    """Wait until *proc* accepts TCP on the loopback *port*; ``ControlPlaneError`` if it
    exits first or does not answer within *timeout* seconds (it is then stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(f"{name} exited at start; see {log}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    stop_session(proc)
    raise ControlPlaneError(f"{name} did not accept connections within {timeout:.0f} s; see {log}")
