"""Time one command: wall seconds, exit code, peak RSS, and a bound on time and memory.

The child runs in its own session so that giving up kills it with everything it forked.
A watchdog thread enforces the bounds while the main thread blocks in ``wait4``, so
polling adds nothing to the measured time.

Peak RSS needs care. Linux carries a process's memory high-water mark across ``execve``,
and a child forked (or vforked) from this harness starts with the harness's own pages,
which after generating 50k objects are hundreds of MB: ``wait4`` on a tool started
directly would report ``max(harness, tool)``. So every tool is started through a tiny
launcher (``_LAUNCHER``, a bare ``python -I -S``) that forks the tool from its own small
address space and reports the tool's ``ru_maxrss`` (the largest of it and the
descendants it reaped) back through a file. ``getrusage(RUSAGE_CHILDREN)`` would have the
same flaw and mix every tool run so far. The launcher costs about 10 ms a run, the same
for every tool.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = REPO / "bench" / "results"
WORK: Final = REPO / "bench" / ".work"
PEERS: Final = Path(os.environ.get("KUSTOS_PEERS_DIR", Path.home() / ".cache/kustos/peers"))
_STDERR_TAIL: Final = 256
_LAUNCHER: Final = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as exc:
        sys.stderr.write(f"cannot run {sys.argv[2]}: {exc}\\n")
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a command."""

    seconds: float
    exit_code: int
    peak_rss_mb: float
    gave_up: str | None
    stderr_tail: str
    #: User and system CPU of the tool and every process it waited for (parse workers).
    cpu_seconds: float = 0.0


def _rss_mb(pid: int) -> float:
    """Return the resident memory of *pid* and all its descendants, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return 0.0
    own = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
    return own / 1024 + sum(_rss_mb(int(child)) for child in children.split())


def run_once(
    argv: Sequence[str],
    *,
    timeout: float,
    max_rss_mb: float,
    stdout: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run *argv* once; kill it after *timeout* seconds or past *max_rss_mb* of RSS."""
    full_env = {**os.environ, **(env or {})}
    with (
        stdout.open("wb") if stdout else Path(os.devnull).open("wb") as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", encoding="ascii") as rss,
    ):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, rss.name, *argv],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
            cwd=REPO,
        )
        done = threading.Event()
        reason: list[str] = []
        observed = [0.0]  # the largest RSS the watchdog saw, for runs that never report

        def watchdog() -> None:
            while not done.wait(0.25):
                elapsed = time.perf_counter() - started
                if elapsed > timeout:
                    reason.append(f"gave up after {timeout:.0f} s")
                elif (rss := _rss_mb(proc.pid)) > max_rss_mb:
                    observed[0] = max(observed[0], rss)
                    reason.append(f"gave up at {rss:.0f} MB RSS after {elapsed:.0f} s")
                else:
                    observed[0] = max(observed[0], rss)
                    continue
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return

        guard = threading.Thread(target=watchdog, daemon=True)
        guard.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        guard.join()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # reaped by wait4 above; tell Popen so it does not try again
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the tool left running
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()
        reported = rss.read().strip()  # empty when the launcher itself was killed
    return Run(
        seconds=seconds,
        exit_code=code,
        peak_rss_mb=int(reported) / 1024 if reported.isdigit() else observed[0],
        gave_up=reason[0] if reason else None,
        stderr_tail=(tail[-1] if tail else "")[:_STDERR_TAIL],
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def measure(
    make_argv: Callable[[str], list[str]],
    *,
    ok_codes: Collection[int],
    repeats: int,
    timeout: float,
    max_rss_mb: float,
    report: Path | None = None,
    stdout_is_report: bool = False,
    env: Mapping[str, str] | None = None,
    repeat_budget: float = 60.0,
) -> dict[str, Any]:
    """Time a command up to *repeats* times and keep the best; JSON-ready.

    ``make_argv(output)`` builds the command for an output path: the first run writes its
    report to *report* (to tell how much the tool really scanned), later runs to
    ``/dev/null``. A run slower than *repeat_budget* seconds is not repeated: one run of
    minutes already dwarfs the noise. A tool killed by a bound yields a lower bound.
    """
    runs: list[Run] = []
    for attempt in range(repeats):
        target = report if attempt == 0 and report is not None else None
        output = str(target) if target is not None and not stdout_is_report else os.devnull
        argv = make_argv(output)
        run = run_once(
            argv,
            timeout=timeout,
            max_rss_mb=max_rss_mb,
            stdout=target if stdout_is_report else None,
            env=env,
        )
        runs.append(run)
        if run.gave_up or run.exit_code not in ok_codes or run.seconds > repeat_budget:
            break
    last = runs[-1]
    good = [r.seconds for r in runs if r.exit_code in ok_codes and not r.gave_up]
    result: dict[str, Any] = {
        "command": shlex.join(make_argv(os.devnull)),
        "env": dict(env or {}),
        "seconds": round(min(good), 3) if good else None,
        "lower_bound": False,
        "runs": [round(r.seconds, 3) for r in runs],
        "exit_codes": [r.exit_code for r in runs],
        "peak_rss_mb": round(max(r.peak_rss_mb for r in runs), 1),
        # CPU of every process of each run: unlike seconds, barely moved by other work.
        "cpu_seconds": [round(r.cpu_seconds, 2) for r in runs],
        "error": None,
        # Other work on a shared machine skews a run; this says how busy it was meanwhile.
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    if not good and last.gave_up:
        result["seconds"] = round(last.seconds, 3)
        result["lower_bound"] = True
        result["error"] = last.gave_up
    elif not good:
        result["error"] = f"exit {last.exit_code}: {last.stderr_tail}"
    return result


def ratio(peer: Mapping[str, Any] | None, kustos: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``peer seconds / kustos seconds``, flagged when the peer's time is a bound."""
    if not peer or not kustos or not peer.get("seconds") or not kustos.get("seconds"):
        return {"value": None, "lower_bound": False}
    return {
        "value": round(peer["seconds"] / kustos["seconds"], 2),
        "lower_bound": bool(peer.get("lower_bound")),
    }


def target(
    name: str,
    value: float | None,
    limit: float,
    *,
    at_least: bool = False,
    value_is_lower_bound: bool = False,
) -> dict[str, Any]:
    """Judge *value* against *limit* without asserting; ``pass`` is null when unknown."""
    passed: bool | None
    if value is None:
        passed = None
    elif at_least:
        # A lower bound that already clears the bar passes; one below it proves nothing.
        passed = True if value >= limit else (None if value_is_lower_bound else False)
    else:
        passed = value < limit
    return {"target": name, "value": value, "limit": limit, "pass": passed}


def tool_version(argv: Sequence[str]) -> str | None:
    """Return the first line a ``--version`` command prints, or ``None``."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def kustos_command() -> str | None:
    """Find the ``kustos`` next to this interpreter, else on ``PATH``."""
    beside = Path(sys.executable).parent / "kustos"
    if beside.exists():
        return str(beside)
    from shutil import which  # noqa: PLC0415 - only needed outside a virtualenv

    return which("kustos")


def kustos_unavailable(subcommand: str) -> str | None:
    """Return why ``kustos SUBCOMMAND`` cannot run, or ``None`` when its ``--help`` works."""
    exe = kustos_command()
    if exe is None:
        return "kustos is not installed in this environment"
    try:
        done = subprocess.run(
            [exe, subcommand, "--help"], capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kustos {subcommand} --help failed: {exc}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"kustos {subcommand} unavailable: {said[-1] if said else done.returncode}"[:256]
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def provenance(reproduce: str) -> dict[str, Any]:
    """Return the facts every results file carries: when, where, which commit, how to redo."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "worktree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "reproduce": reproduce,
        "machine": {
            "nproc": os.cpu_count(),
            "memory_gb": _mem_total_gb(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def kustos_version() -> str | None:
    """Return the installed Kustos distribution's version."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("kustos")
    except PackageNotFoundError:
        return None


def floor_argv(dataset: Path) -> list[str]:
    """Return the command that only parses every YAML document of *dataset* (the floor)."""
    return [sys.executable, "-m", "bench.floor", str(dataset)]
