"""A real Kubernetes control plane as plain processes on loopback: ``ControlPlane``.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kwok controller start
in that order (the order kwokctl's binary runtime uses), each in its own process group with
its log in ``<state>/logs/<name>.log`` and its pid in ``<state>/state.json``. kwok manages a
few fake nodes, so Deployments, StatefulSets and DaemonSets roll out to Ready pods without
containers. Everything binds to 127.0.0.1 on free ports.

This module orchestrates; the parts live beside it: the command lines and config files in
:mod:`~kustos.testing.flags` (pure), launching and stopping processes in
:mod:`~kustos.testing.processes`, readiness probes and admin calls in
:mod:`~kustos.testing.probing`, the typed ``state.json`` in :mod:`~kustos.testing.state`.
:func:`reuse_or_start` is what ``kustos dev-cluster up`` and ``kustos demo`` share.

Decisions (see ``docs/controlplane.md``):
- Fake nodes carry no taint: nothing but kwok's simulated kubelet runs here, and untainted
  nodes let the example manifests and users' own manifests schedule without tolerations.
- Each component authenticates with its own client certificate (``system:kube-scheduler``,
  ``system:kube-controller-manager``, ...), so RBAC answers as in a real cluster.
- Teardown sends SIGTERM to each process group in reverse start order, waits, then SIGKILLs,
  and verifies that no process is left.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import yaml

from kustos.errors import ControlPlaneError
from kustos.files import write_atomic
from kustos.testing import flags
from kustos.testing.binaries import cache_root, require_binaries
from kustos.testing.flags import KMS_PROVIDER_NAME, LOOPBACK, Layout, Ports
from kustos.testing.pki import ClusterPKI, make_pki, pki_in
from kustos.testing.probing import PROBE_ERRORS, Probe
from kustos.testing.processes import (
    Process,
    free_ports,
    launch,
    pid_alive,
    terminate,
    wait_ready,
)
from kustos.testing.state import read_state, state_file, state_of

__all__ = [
    "KMS_PROVIDER_NAME",
    "LOOPBACK",
    "START_ORDER",
    "ControlPlane",
    "ControlPlaneSettings",
    "Running",
    "default_state_dir",
    "free_ports",
    "pid_alive",
    "read_state",
    "reuse_or_start",
]

START_ORDER: Final = (
    "etcd",
    "kms-plugin",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)
#: Folders of a previous run that would clash with new certificates.
_LEFTOVERS: Final = ("etcd", "kwok-work", "kcm-certs", "scheduler-certs")


@dataclass(frozen=True, slots=True)
class ControlPlaneSettings:
    """How to run the control plane. Paths given here must stay valid while it runs."""

    state_dir: Path
    nodes: int = 3
    encryption_config: Path | None = None
    audit_policy: Path | None = None
    audit_webhook_config: Path | None = None
    #: Extra ``--flag=value`` arguments for kube-apiserver.
    apiserver_args: tuple[str, ...] = ()
    start_timeout: float = 120.0
    bin_dir: Path | None = None


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def plan(layout: Layout, settings: ControlPlaneSettings) -> dict[str, Process]:
    """The processes of a control plane laid out as *layout*, not started yet."""
    apiserver = flags.apiserver_flags(
        layout,
        encryption_config=_resolved(settings.encryption_config),
        audit_policy=_resolved(settings.audit_policy),
        audit_webhook_config=_resolved(settings.audit_webhook_config),
        extra=settings.apiserver_args,
    )
    commands = {
        "etcd": (flags.etcd_flags(layout), {}),
        "kube-apiserver": (apiserver, {}),
        "kube-controller-manager": (flags.controller_manager_flags(layout), {}),
        "kube-scheduler": (flags.scheduler_flags(layout), {}),
        "kwok": (flags.kwok_flags(layout), flags.kwok_env(layout)),
    }
    return {
        name: Process(name, argv, layout.logs_dir / f"{name}.log", env)
        for name, (argv, env) in commands.items()
    }


class ControlPlane:
    """Start, query and stop one local control plane. Use it as a context manager."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self._procs: dict[str, Process] = {}
        self._ports: Ports | None = None
        self._pki: ClusterPKI | None = None
        self._atexit: Callable[[], None] | None = None

    # ------------------------------------------------------------------ paths
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``kustos-admin`` in ``system:masters``)."""
        return self.state_dir / flags.KUBECONFIG_FILES["admin"]

    @property
    def ports(self) -> Ports:
        """The ports in use; ``ControlPlaneError`` before a start or an attach."""
        if self._ports is None:
            raise ControlPlaneError(f"no control plane started or found in {self.state_dir}")
        return self._ports

    @property
    def server(self) -> str:
        """The API server's URL."""
        return self.ports.server

    @property
    def etcd_endpoint(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        return self.ports.etcd_url

    @property
    def logs_dir(self) -> Path:
        """Where each component's log is written."""
        return self.state_dir / flags.LOGS_DIR

    @property
    def pki(self) -> ClusterPKI:
        """The certificates in use (read from the state folder when attached)."""
        if self._pki is None:
            self._pki = pki_in(self.state_dir / "pki")
        return self._pki

    def pids(self) -> dict[str, int]:
        """The pid of each started component."""
        return {n: p.pid for n, p in self._procs.items() if p.pid is not None}

    def _probe(self) -> Probe:
        return Probe(
            server=self.server,
            etcd=self.etcd_endpoint,
            scheduler=self.ports.scheduler_url,
            pki=self.pki,
        )

    def _layout(self, bins: Path) -> Layout:
        return Layout(bins=bins, state_dir=self.state_dir, pki=self.pki, ports=self.ports)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, *, detach: bool = False) -> None:
        """Start every component and wait until workloads can roll out.

        With ``detach=True`` the processes outlive this Python process (``dev-cluster up``);
        otherwise they are stopped at interpreter exit at the latest.
        """
        bins = require_binaries(self.settings.bin_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Every start is a fresh cluster: new certificates would not match old data anyway.
        for leftover in _LEFTOVERS:
            shutil.rmtree(self.state_dir / leftover, ignore_errors=True)
        self.logs_dir.mkdir(exist_ok=True)
        deadline = time.monotonic() + self.settings.start_timeout
        if not detach:
            self._atexit = self.stop
            atexit.register(self._atexit)
        try:
            self._pki = make_pki(self.state_dir / "pki")
            self._ports = Ports.of(free_ports(6))
            layout = self._layout(bins)
            self._write_files(layout)
            self._procs = plan(layout, self.settings)
            probe = self._probe()
            self._launch("etcd", probe.etcd_healthy, deadline)
            self._launch("kube-apiserver", probe.apiserver_ready, deadline)
            for name in START_ORDER[3:]:
                launch(self._procs[name])
            self._save_state()
            for i in range(self.settings.nodes):
                probe.api("POST", "/api/v1/nodes", flags.fake_node(f"kwok-node-{i}"))
            self._wait("kwok", lambda: probe.nodes_ready(self.settings.nodes), deadline)
            self._wait("kube-controller-manager", probe.default_service_account, deadline)
            self._wait("kube-scheduler", probe.scheduler_healthy, deadline)
        except BaseException:
            self.stop()
            raise
        self._save_state()

    def stop(self) -> None:
        """Stop every component (reverse order), then make sure none is left."""
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        procs = self._procs or self._procs_from_state()
        for name in reversed(START_ORDER):
            proc = procs.get(name)
            if proc is not None:
                terminate(proc)
        left = [n for n, p in procs.items() if p.alive()]
        self._procs = {}
        state_file(self.state_dir).path.unlink(missing_ok=True)
        if left:
            raise ControlPlaneError(f"processes still running after stop: {', '.join(left)}")

    def restart(self, name: str) -> None:
        """Stop and start one component with the same flags (ports and state are kept)."""
        terminate(self._procs[name])
        deadline = time.monotonic() + self.settings.start_timeout
        probe = self._probe()
        probes = {"etcd": probe.etcd_healthy, "kube-apiserver": probe.apiserver_ready}
        self._launch(name, probes.get(name), deadline)
        self._save_state()

    def kill(self, name: str) -> None:
        """Stop one component (to test what happens when it goes away)."""
        terminate(self._procs[name])

    @contextlib.contextmanager
    def audited_apiserver(
        self, policy: Path, webhook_url: str, *, tokens: Mapping[str, tuple[str, Sequence[str]]]
    ) -> Iterator[str]:
        """A second kube-apiserver on this plane's etcd that audits to *webhook_url*.

        It shares certificates, etcd and therefore every object with the main one, accepts
        the bearer *tokens* (token → user name, groups) besides certificates and
        ServiceAccount tokens, reads Secrets with the main one's EncryptionConfiguration (if
        any), and sends audit batches to *webhook_url* over TLS with its
        serving certificate as client certificate (trusted by the cluster CA). The main API
        server is left as it is, so the other tests never wait for audit. Yields its URL.
        """
        folder = self.state_dir / "audit-apiserver"
        folder.mkdir(mode=0o700, exist_ok=True)
        webhook = folder / "webhook.kubeconfig"
        config = flags.audit_webhook_kubeconfig(webhook_url, self.pki.ca.cert, self.pki.serving)
        write_atomic(webhook, yaml.safe_dump(config).encode(), what="kubeconfig", mode=0o600)
        token_file = folder / "tokens.csv"
        write_atomic(
            token_file, flags.token_auth_file(tokens).encode(), what="token file", mode=0o600
        )
        ports = dataclasses.replace(self.ports, apiserver=free_ports(1)[0])
        layout = Layout(
            bins=require_binaries(self.settings.bin_dir),
            state_dir=self.state_dir,
            pki=self.pki,
            ports=ports,
        )
        # Objects the main API server encrypts (KMS v2 enabled) must read the same here.
        main = self._procs.get("kube-apiserver")
        encryption = [a for a in main.argv if a.startswith("--encryption-provider")] if main else []
        argv = flags.apiserver_flags(
            layout,
            audit_policy=policy.resolve(),
            audit_webhook_config=webhook,
            extra=(
                *flags.AUDIT_WEBHOOK_TEST_FLAGS,
                f"--token-auth-file={token_file}",
                *encryption,
            ),
        )
        # The audit log of the main plane's layout would be shared: this one keeps its own.
        argv = [a for a in argv if not a.startswith("--audit-log-path=")]
        argv.append(f"--audit-log-path={folder / 'audit.log'}")
        proc = Process("kube-apiserver-audit", argv, self.logs_dir / "kube-apiserver-audit.log")
        probe = Probe(
            server=ports.server,
            etcd=self.etcd_endpoint,
            scheduler=ports.scheduler_url,
            pki=self.pki,
        )
        launch(proc)
        try:
            wait_ready(
                proc,
                probe.apiserver_ready,
                deadline=time.monotonic() + self.settings.start_timeout,
                patience=self.settings.start_timeout,
                errors=PROBE_ERRORS,
            )
            yield ports.server
        finally:
            terminate(proc)

    def enable_kms(self, serve_flags: Sequence[str], *, env: dict[str, str] | None = None) -> Path:
        """Start ``kustos kms serve`` as a component and restart kube-apiserver to use it.

        *serve_flags* name the key store (``--keyring F --passphrase-file P`` or the
        ``--pkcs11-*`` flags). Secrets written afterwards are encrypted with KMS v2; older
        ones stay readable through the ``identity`` provider until they are rewritten
        (``kustos kms reencrypt``). Returns the EncryptionConfiguration written.
        """
        kms_dir = self.state_dir / "kms"
        kms_dir.mkdir(mode=0o700, exist_ok=True)
        socket_path = kms_dir / "kms.sock"
        self._procs["kms-plugin"] = Process(
            "kms-plugin",
            flags.kms_plugin_flags(sys.executable, socket_path, serve_flags),
            self.logs_dir / "kms-plugin.log",
            dict(env or {}),
        )
        deadline = time.monotonic() + self.settings.start_timeout
        self._launch("kms-plugin", socket_path.exists, deadline)
        config = kms_dir / "encryption.yaml"
        text = flags.kms_encryption_config(socket_path)
        write_atomic(config, text.encode(), what="EncryptionConfiguration", mode=0o600)
        apiserver = self._procs["kube-apiserver"]
        apiserver.argv = flags.with_encryption_config(apiserver.argv, config)
        self.restart("kube-apiserver")
        self._wait("kube-apiserver", self._probe().kms_healthy, deadline + 60)
        self._save_state()
        return config

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, bool]:
        """Whether each component's process is alive."""
        procs = self._procs or self._procs_from_state()
        return {n: p.alive() for n, p in procs.items()}

    def load_state(self) -> bool:
        """Attach to a control plane started by another process; ``False`` if none."""
        procs = self._procs_from_state()
        if not procs:
            return False
        self._procs = procs
        return True

    def etcd_value(self, key: str) -> bytes | None:
        """The raw value etcd stores under *key* (``/registry/secrets/ns/name``), or ``None``."""
        return self._probe().etcd_value(key)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API server as the admin (used by the harness itself; JSON in and out)."""
        return self._probe().api(method, path, body)

    # ------------------------------------------------------------------ internals
    def _write_files(self, layout: Layout) -> None:
        for path, config in flags.kubeconfigs(layout).items():
            text = yaml.safe_dump(config, sort_keys=False)
            write_atomic(path, text.encode(), what="kubeconfig", mode=0o600)
        stages = resources.files("kustos.testing").joinpath("data/kwok-stages.yaml").read_text()
        write_atomic(layout.kwok_stages, stages.encode(), what="kwok stages")

    def _launch(self, name: str, probe: Callable[[], bool] | None, deadline: float) -> None:
        launch(self._procs[name])
        if probe is not None:
            self._wait(name, probe, deadline)

    def _wait(self, name: str, probe: Callable[[], bool], deadline: float) -> None:
        wait_ready(
            self._procs[name],
            probe,
            deadline=deadline,
            patience=self.settings.start_timeout,
            errors=PROBE_ERRORS,
        )

    def _save_state(self) -> None:
        state = state_of(
            server=self.server,
            kubeconfig=self.kubeconfig,
            etcd=self.etcd_endpoint,
            ports=self.ports.by_name(),
            procs=self._procs,
        )
        state_file(self.state_dir).write(state)

    def _procs_from_state(self) -> dict[str, Process]:
        state = read_state(self.state_dir)
        if state is None:
            return {}
        try:
            self._ports = Ports.from_names(state.ports)
        except KeyError as exc:
            raise ControlPlaneError(
                f"{state_file(self.state_dir).path}: no port recorded for {exc}"
            ) from exc
        return state.processes()


@dataclass(frozen=True, slots=True)
class Running:
    """A control plane that runs, and whether it was already running."""

    plane: ControlPlane
    reused: bool
    #: How long the start took (0 when reused).
    seconds: float


def reuse_or_start(settings: ControlPlaneSettings) -> Running:
    """The control plane in ``settings.state_dir``: the running one, or a fresh one.

    A control plane whose components all run is reused as it is (the other *settings* are
    then ignored). Leftovers of one that is partly dead are stopped first; the new one is
    started detached, so that it outlives this process (``kustos dev-cluster down`` stops
    it).
    """
    existing = ControlPlane(settings)
    if existing.load_state():
        if all(existing.status().values()):
            return Running(existing, reused=True, seconds=0.0)
        existing.stop()  # half-dead leftovers from an earlier run
    started = time.monotonic()
    plane = ControlPlane(settings)
    plane.start(detach=True)
    return Running(plane, reused=False, seconds=time.monotonic() - started)


def default_state_dir() -> Path:
    """Where ``kustos dev-cluster`` keeps its state (``KUSTOS_DEV_CLUSTER_DIR`` overrides)."""
    explicit = os.environ.get("KUSTOS_DEV_CLUSTER_DIR")
    if explicit:
        return Path(explicit)
    return cache_root() / "dev-cluster"
