"""Starting and stopping the control plane leaves nothing behind.

Aspects: ``kustos dev-cluster up/status/env/down`` on a state folder of its own; every
component process is gone after ``down``; a start that fails part-way (a bad API server
flag) raises one clear error and stops what had already started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kustos.cli.main import main
from kustos.errors import ControlPlaneError
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings, pid_alive

pytestmark = pytest.mark.integration


def test_dev_cluster_up_status_env_down_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "dev"
    assert main(["dev-cluster", "up", "--state-dir", str(state), "--nodes", "1"]) == 0
    pids = json.loads((state / "state.json").read_text())["pids"]
    try:
        assert set(pids) == {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        }
        assert all(pid_alive(p) for p in pids.values())
        assert main(["dev-cluster", "status", "--state-dir", str(state)]) == 0
        capsys.readouterr()
        assert main(["dev-cluster", "env", "--state-dir", str(state)]) == 0
        assert capsys.readouterr().out.strip() == f"export KUBECONFIG={state / 'kubeconfig'}"
        # A second `up` reuses the running cluster.
        assert main(["dev-cluster", "up", "--state-dir", str(state)]) == 0
        assert "already running" in capsys.readouterr().out
    finally:
        assert main(["dev-cluster", "down", "--state-dir", str(state)]) == 0
    assert [n for n, p in pids.items() if pid_alive(p)] == []
    assert main(["dev-cluster", "status", "--state-dir", str(state)]) == 1
    # Up again in the same folder: a fresh cluster, not a clash with the old data.
    assert main(["dev-cluster", "up", "--state-dir", str(state), "--nodes", "1"]) == 0
    assert main(["dev-cluster", "down", "--state-dir", str(state)]) == 0


def test_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    plane = ControlPlane(
        ControlPlaneSettings(
            tmp_path, nodes=1, apiserver_args=("--no-such-flag=1",), start_timeout=30
        )
    )
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited with code") as info:
        plane.start()
    assert "\n" not in str(info.value)
    assert "unknown flag" in str(info.value)
    assert plane.pids() == {}
    assert not (tmp_path / "state.json").exists()
    assert (tmp_path / "logs" / "etcd.log").exists()  # etcd was started before the failure
    assert plane.status() == {}
    # No process anywhere still runs from this state folder.
    leftovers = [
        proc.name
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and str(tmp_path) in _cmdline(proc) and pid_alive(int(proc.name))
    ]
    assert leftovers == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
