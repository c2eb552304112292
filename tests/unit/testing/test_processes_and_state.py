"""Processes, ``state.json`` and "reuse or start" of the control-plane harness.

Aspects: a launched component runs in its own session and stops on SIGTERM; one that
ignores SIGTERM is killed, with its children; a pid now used by an unrelated program is
left alone; a component that exits while awaited is one line with its exit code and the
error lines of its log; a readiness wait that runs out says so; a binary that cannot be
started is one line. ``state.json`` round-trips through its pydantic model (owner-only
file, environment kept), is ``None`` when absent and one ``InputError`` naming the file
when damaged. ``reuse_or_start`` reuses a plane whose components all run, and stops the
leftovers of a half-dead one before starting afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.errors import BinaryMissingError, ControlPlaneError, InputError
from kustos.testing.controlplane import ControlPlaneSettings, reuse_or_start
from kustos.testing.processes import Process, launch, pid_alive, terminate, wait_ready
from kustos.testing.state import read_state, state_file, state_of

SLEEP = shutil.which("sleep") or "/bin/sleep"
SH = shutil.which("sh") or "/bin/sh"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Process]]:
    """Processes a test launches; whatever is left is killed afterwards."""
    procs: list[Process] = []
    yield procs
    for proc in procs:
        if proc.pid is not None and pid_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.poll()


def pid_of(proc: Process) -> int | None:
    """The pid now (a function call, so that mypy does not keep an earlier narrowing)."""
    return proc.pid


def run(procs: list[Process], tmp_path: Path, name: str, *argv: str) -> Process:
    proc = Process(name, list(argv), tmp_path / f"{name}.log")
    launch(proc)
    procs.append(proc)
    return proc


def test_a_component_runs_in_its_own_session_and_stops(
    tmp_path: Path, started: list[Process]
) -> None:
    proc = run(started, tmp_path, "etcd", SLEEP, "30")
    assert proc.pid is not None
    pid = proc.pid
    assert proc.alive()
    assert os.getsid(pid) == pid
    terminate(proc)
    assert pid_of(proc) is None
    assert not pid_alive(pid)
    assert proc.returncode == -signal.SIGTERM


def test_a_component_that_ignores_sigterm_is_killed_with_its_children(
    tmp_path: Path, started: list[Process]
) -> None:
    script = f"trap '' TERM; {SLEEP} 30 & echo $! > {tmp_path / 'child'}; wait"
    proc = run(started, tmp_path, "stubborn", SH, "-c", script)
    deadline = time.monotonic() + 5
    while not (tmp_path / "child").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int((tmp_path / "child").read_text())
    terminate(proc, grace=0.3)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child)


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    unrelated = subprocess.Popen([SLEEP, "30"])
    try:
        proc = Process("etcd", ["/opt/bin/etcd"], tmp_path / "etcd.log", pid=unrelated.pid)
        terminate(proc)
        assert proc.pid is None
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()


def test_a_component_that_exits_is_one_line_with_its_log(
    tmp_path: Path, started: list[Process]
) -> None:
    script = "echo 'I0101 starting' >&2; echo 'E0101 unknown flag: --no-such-flag' >&2; exit 3"
    proc = run(started, tmp_path, "kube-apiserver", SH, "-c", script)
    with pytest.raises(ControlPlaneError) as info:
        wait_ready(proc, lambda: False, deadline=time.monotonic() + 10, patience=10)
    assert str(info.value) == (
        "kube-apiserver exited with code 3: E0101 unknown flag: --no-such-flag "
        f"(log: {tmp_path / 'kube-apiserver.log'})"
    )


def test_a_wait_that_runs_out_names_the_last_error(tmp_path: Path, started: list[Process]) -> None:
    proc = run(started, tmp_path, "etcd", SLEEP, "30")

    def refused() -> bool:
        raise ConnectionRefusedError

    with pytest.raises(
        ControlPlaneError, match=r"^etcd not ready after 7s \(ConnectionRefusedError\): "
    ):
        wait_ready(proc, refused, deadline=time.monotonic() + 0.3, patience=7)


def test_a_binary_that_cannot_start(tmp_path: Path) -> None:
    proc = Process("kwok", [str(tmp_path / "kwok")], tmp_path / "kwok.log")
    with pytest.raises(ControlPlaneError, match=r"^cannot start kwok: No such file or directory$"):
        launch(proc)


def test_state_round_trips(tmp_path: Path) -> None:
    procs = {
        "etcd": Process("etcd", ["/b/etcd", "--x"], tmp_path / "etcd.log", pid=11),
        "kms-plugin": Process(
            "kms-plugin", ["/py"], tmp_path / "k.log", {"SOFTHSM2_CONF": "/c"}, 12
        ),
        "kwok": Process("kwok", ["/b/kwok"], tmp_path / "kwok.log"),
    }
    state = state_of(
        server="https://127.0.0.1:1",
        kubeconfig=tmp_path / "kubeconfig",
        etcd="http://127.0.0.1:2",
        ports={"apiserver": 1, "etcd": 2},
        procs=procs,
    )
    state_file(tmp_path).write(state)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    loaded = read_state(tmp_path)
    assert loaded == state
    assert loaded is not None
    assert loaded.pids == {"etcd": 11, "kms-plugin": 12}
    again = loaded.processes()
    assert set(again) == {"etcd", "kms-plugin"}
    assert again["kms-plugin"].env == {"SOFTHSM2_CONF": "/c"}
    assert again["etcd"].argv == ["/b/etcd", "--x"]


def test_no_state_is_none_damaged_state_is_one_error(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / "state.json").write_text(json.dumps({"server": "x", "pids": {"etcd": "many"}}))
    with pytest.raises(InputError) as info:
        read_state(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'state.json'}: not a valid dev-cluster state (")
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(InputError, match="not a valid dev-cluster state"):
        read_state(tmp_path)


def _record(state_dir: Path, procs: dict[str, Process]) -> None:
    ports = {"etcd": 1, "etcd-peer": 2, "apiserver": 3, "kcm": 4, "scheduler": 5, "kwok": 6}
    state = state_of(
        server="https://127.0.0.1:3",
        kubeconfig=state_dir / "kubeconfig",
        etcd="http://127.0.0.1:1",
        ports=ports,
        procs=procs,
    )
    state_file(state_dir).write(state)


def test_a_plane_whose_components_all_run_is_reused(
    tmp_path: Path, started: list[Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUSTOS_CONTROLPLANE_BIN", str(tmp_path / "no-binaries"))
    procs = {n: run(started, tmp_path, n, SLEEP, "30") for n in ("etcd", "kube-apiserver")}
    _record(tmp_path, procs)
    running = reuse_or_start(ControlPlaneSettings(tmp_path))
    assert running.reused
    assert running.seconds == 0.0
    assert running.plane.server == "https://127.0.0.1:3"
    assert running.plane.status() == {"etcd": True, "kube-apiserver": True}


def test_a_half_dead_plane_is_stopped_before_a_fresh_start(
    tmp_path: Path, started: list[Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUSTOS_CONTROLPLANE_BIN", str(tmp_path / "no-binaries"))
    etcd = run(started, tmp_path, "etcd", SLEEP, "30")
    apiserver = run(started, tmp_path, "kube-apiserver", SLEEP, "30")
    _record(tmp_path, {"etcd": etcd, "kube-apiserver": apiserver})
    assert apiserver.pid is not None
    etcd_pid = etcd.pid
    assert etcd_pid is not None
    terminate(apiserver)
    with pytest.raises(BinaryMissingError):
        reuse_or_start(ControlPlaneSettings(tmp_path))
    assert not pid_alive(etcd_pid)
    assert read_state(tmp_path) is None
