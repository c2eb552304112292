"""The dev-cluster's ``state.json``: what runs, where, with which command line (typed).

``kustos dev-cluster up`` starts the control plane and exits; ``status``, ``env``,
``down`` and ``demo`` are later processes that find it again through this file. It is a
:class:`kustos.files.state.StateModel` read and written through
:class:`kustos.files.state.StateFile` (atomic replace, owner-only mode): a file that is
damaged or from an unknown format is one ``InputError`` naming it, never a traceback or a
silent "not running".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic import Field

from kustos.errors import FileMissingError
from kustos.files.state import StateFile, StateModel
from kustos.testing.processes import Process

STATE_FILE: Final = "state.json"


class ControlPlaneState(StateModel):
    """One running control plane, as ``state.json`` records it."""

    #: The API server's URL.
    server: str
    #: The admin kubeconfig.
    kubeconfig: str
    #: etcd's client URL.
    etcd: str
    #: Port by name: etcd, etcd-peer, apiserver, kcm, scheduler, kwok.
    ports: dict[str, int]
    #: Component → pid, for the components started.
    pids: dict[str, int]
    #: Component → command line (so one component can be restarted alike).
    argv: dict[str, list[str]]
    #: Component → log file.
    logs: dict[str, str]
    #: Component → extra environment (``kms-plugin``'s SoftHSM configuration).
    env: dict[str, dict[str, str]] = Field(default_factory=dict)

    def processes(self) -> dict[str, Process]:
        """The recorded processes, ready to be watched or stopped by another process."""
        procs = {}
        for name, pid in self.pids.items():
            argv, log = self.argv.get(name), self.logs.get(name)
            if argv is None or log is None:
                continue  # written by hand or damaged: nothing safe to signal
            procs[name] = Process(name, list(argv), Path(log), dict(self.env.get(name, {})), pid)
        return procs


def state_file(state_dir: Path) -> StateFile[ControlPlaneState]:
    """The ``state.json`` of the control plane in *state_dir*."""
    return StateFile(state_dir / STATE_FILE, ControlPlaneState, what="dev-cluster state")


def state_of(
    *,
    server: str,
    kubeconfig: Path,
    etcd: str,
    ports: Mapping[str, int],
    procs: Mapping[str, Process],
) -> ControlPlaneState:
    """The state to record for *procs* (only those with a pid count as started)."""
    return ControlPlaneState(
        server=server,
        kubeconfig=str(kubeconfig),
        etcd=etcd,
        ports=dict(ports),
        pids={n: p.pid for n, p in procs.items() if p.pid is not None},
        argv={n: list(p.argv) for n, p in procs.items()},
        logs={n: str(p.log) for n, p in procs.items()},
        env={n: dict(p.env) for n, p in procs.items() if p.env},
    )


def read_state(state_dir: Path) -> ControlPlaneState | None:
    """The saved state in *state_dir*, ``None`` if there is none; ``InputError`` if damaged."""
    try:
        return state_file(state_dir).read()
    except FileMissingError:
        return None
