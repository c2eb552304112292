"""A real Kubernetes control plane as plain processes on loopback: ``ControlPlane``.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kwok controller start
in that order (the order kwokctl's binary runtime uses), each in its own process group with
its log in ``<state>/logs/<name>.log`` and its pid in ``<state>/state.json``. kwok manages a
few fake nodes, so Deployments, StatefulSets and DaemonSets roll out to Ready pods without
containers. Everything binds to 127.0.0.1 on free ports.

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
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx
import yaml

from kustos.errors import ControlPlaneError, quote_foreign
from kustos.testing.binaries import cache_root, require_binaries
from kustos.testing.pki import CertPair, ClusterPKI, make_pki, pki_in

LOOPBACK: Final = "127.0.0.1"
START_ORDER: Final = (
    "etcd",
    "kms-plugin",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)
KMS_PROVIDER_NAME: Final = "kustos"
SERVICE_CIDR: Final = "10.96.0.0/12"
POD_CIDR: Final = "10.244.0.0/16"
FAKE_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node"
STOP_GRACE_SECONDS: Final = 10.0


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


@dataclass(slots=True)
class _Proc:
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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class ControlPlane:
    """Start, query and stop one local control plane. Use it as a context manager."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self._procs: dict[str, _Proc] = {}
        self._ports: dict[str, int] = {}
        self._pki: ClusterPKI | None = None
        self._atexit: Callable[[], None] | None = None

    # ------------------------------------------------------------------ paths
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (user ``kustos-admin`` in ``system:masters``)."""
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{LOOPBACK}:{self._ports['apiserver']}"

    @property
    def etcd_endpoint(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        return f"http://{LOOPBACK}:{self._ports['etcd']}"

    @property
    def logs_dir(self) -> Path:
        """Where each component's log is written."""
        return self.state_dir / "logs"

    @property
    def pki(self) -> ClusterPKI:
        """The certificates in use (read from the state folder when attached)."""
        if self._pki is None:
            self._pki = pki_in(self.state_dir / "pki")
        return self._pki

    def pids(self) -> dict[str, int]:
        """The pid of each started component."""
        return {n: p.pid for n, p in self._procs.items() if p.pid is not None}

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
        for leftover in ("etcd", "kwok-work", "kcm-certs", "scheduler-certs"):
            shutil.rmtree(self.state_dir / leftover, ignore_errors=True)
        self.logs_dir.mkdir(exist_ok=True)
        deadline = time.monotonic() + self.settings.start_timeout
        if not detach:
            self._atexit = self.stop
            atexit.register(self._atexit)
        try:
            self._pki = make_pki(self.state_dir / "pki")
            ports = free_ports(6)
            self._ports = dict(
                zip(
                    ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok"),
                    ports,
                    strict=True,
                )
            )
            self._write_kubeconfigs()
            self._plan(bins)
            self._launch("etcd")
            self._wait("etcd", self._etcd_healthy, deadline)
            self._launch("kube-apiserver")
            self._wait("kube-apiserver", self._apiserver_ready, deadline)
            for name in START_ORDER[3:]:
                self._launch(name)
            self._save_state()
            self._create_nodes()
            self._wait("kwok", self._nodes_ready, deadline)
            self._wait("kube-controller-manager", self._default_sa_exists, deadline)
            self._wait("kube-scheduler", self._scheduler_healthy, deadline)
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
                self._terminate(proc)
        left = [n for n, p in procs.items() if p.pid is not None and pid_alive(p.pid)]
        self._procs = {}
        state = self.state_dir / "state.json"
        if state.exists():
            state.unlink()
        if left:
            raise ControlPlaneError(f"processes still running after stop: {', '.join(left)}")

    def restart(self, name: str) -> None:
        """Stop and start one component with the same flags (ports and state are kept)."""
        proc = self._procs[name]
        self._terminate(proc)
        self._launch(name)
        deadline = time.monotonic() + self.settings.start_timeout
        probe = {"etcd": self._etcd_healthy, "kube-apiserver": self._apiserver_ready}
        if name in probe:
            self._wait(name, probe[name], deadline)
        self._save_state()

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
        argv = [
            sys.executable,
            "-m",
            "kustos",
            "kms",
            "serve",
            "--socket",
            str(socket_path),
            *serve_flags,
        ]
        self._procs["kms-plugin"] = _Proc(
            "kms-plugin", argv, self.logs_dir / "kms-plugin.log", dict(env or {})
        )
        self._launch("kms-plugin")
        deadline = time.monotonic() + self.settings.start_timeout
        self._wait("kms-plugin", socket_path.exists, deadline)
        config = kms_dir / "encryption.yaml"
        config.write_text(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
            "  - resources: [secrets]\n    providers:\n"
            f"      - kms: {{apiVersion: v2, name: {KMS_PROVIDER_NAME}, "
            f"endpoint: 'unix://{socket_path}', timeout: 3s}}\n"
            "      - identity: {}\n"
        )
        apiserver = self._procs["kube-apiserver"]
        apiserver.argv = [
            a for a in apiserver.argv if not a.startswith("--encryption-provider-config")
        ]
        apiserver.argv += [
            f"--encryption-provider-config={config}",
            "--encryption-provider-config-automatic-reload=true",
        ]
        self.restart("kube-apiserver")
        self._wait("kube-apiserver", self._kms_healthy, deadline + 60)
        self._save_state()
        return config

    def etcd_value(self, key: str) -> bytes | None:
        """The raw value etcd stores under *key* (``/registry/secrets/ns/name``), or ``None``."""
        encoded = base64.b64encode(key.encode()).decode()
        reply = httpx.post(f"{self.etcd_endpoint}/v3/kv/range", json={"key": encoded}, timeout=5.0)
        kvs = reply.json().get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def _kms_healthy(self) -> bool:
        with self._http() as client:
            return client.get("/healthz/kms-providers").status_code == 200

    def kill(self, name: str) -> None:
        """Stop one component (to test what happens when it goes away)."""
        self._terminate(self._procs[name])

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, bool]:
        """Whether each component's process is alive."""
        procs = self._procs or self._procs_from_state()
        return {n: p.pid is not None and pid_alive(p.pid) for n, p in procs.items()}

    def load_state(self) -> bool:
        """Attach to a control plane started by another process; ``False`` if none."""
        procs = self._procs_from_state()
        if not procs:
            return False
        self._procs = procs
        return True

    # ------------------------------------------------------------------ internals
    def _write_kubeconfigs(self) -> None:
        pki = self.pki
        for stem, pair in (
            ("kubeconfig", pki.admin),
            ("controller-manager.kubeconfig", pki.controller_manager),
            ("scheduler.kubeconfig", pki.scheduler),
            ("kwok.kubeconfig", pki.kwok),
        ):
            path = self.state_dir / stem
            path.write_text(yaml.safe_dump(self._kubeconfig_for(pair), sort_keys=False))
            path.chmod(0o600)

    def _kubeconfig_for(self, pair: CertPair) -> dict[str, Any]:
        name = "kustos-local"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": f"https://{LOOPBACK}:{self._ports['apiserver']}",
                        "certificate-authority": str(self.pki.ca.cert),
                    },
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }

    def _plan(self, bins: Path) -> None:
        s, p, pki, state = self.settings, self._ports, self.pki, self.state_dir
        etcd = [
            str(bins / "etcd"),
            "--name=kustos",
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls=http://{LOOPBACK}:{p['etcd']}",
            f"--advertise-client-urls=http://{LOOPBACK}:{p['etcd']}",
            f"--listen-peer-urls=http://{LOOPBACK}:{p['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{p['etcd-peer']}",
            f"--initial-cluster=kustos=http://{LOOPBACK}:{p['etcd-peer']}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--auto-compaction-retention=1",
            "--log-level=warn",
        ]
        apiserver = [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://{LOOPBACK}:{p['etcd']}",
            "--etcd-prefix=/registry",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--client-ca-file={pki.ca.cert}",
            f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            # Endpoints may not point at loopback; with no reconciler the `kubernetes`
            # Service simply has no endpoints, which nothing here needs.
            "--endpoint-reconciler-type=none",
        ]
        if s.encryption_config is not None:
            apiserver += [
                f"--encryption-provider-config={s.encryption_config.resolve()}",
                "--encryption-provider-config-automatic-reload=true",
            ]
        if s.audit_policy is not None:
            apiserver += [
                f"--audit-policy-file={s.audit_policy.resolve()}",
                f"--audit-log-path={self.logs_dir / 'audit.log'}",
            ]
        if s.audit_webhook_config is not None:
            apiserver.append(f"--audit-webhook-config-file={s.audit_webhook_config.resolve()}")
        apiserver += list(s.apiserver_args)
        common = [
            f"--bind-address={LOOPBACK}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        kcm_cfg = state / "controller-manager.kubeconfig"
        kcm = [
            str(bins / "kube-controller-manager"),
            *common,
            f"--secure-port={p['kcm']}",
            f"--kubeconfig={kcm_cfg}",
            f"--authentication-kubeconfig={kcm_cfg}",
            f"--authorization-kubeconfig={kcm_cfg}",
            f"--service-account-private-key-file={pki.sa_private}",
            f"--root-ca-file={pki.ca.cert}",
            "--use-service-account-credentials=true",
            f"--cert-dir={state / 'kcm-certs'}",
        ]
        sched_cfg = state / "scheduler.kubeconfig"
        scheduler = [
            str(bins / "kube-scheduler"),
            *common,
            f"--secure-port={p['scheduler']}",
            f"--kubeconfig={sched_cfg}",
            f"--authentication-kubeconfig={sched_cfg}",
            f"--authorization-kubeconfig={sched_cfg}",
            f"--cert-dir={state / 'scheduler-certs'}",
        ]
        stages = state / "kwok.yaml"
        stages.write_text(
            resources.files("kustos.testing").joinpath("data/kwok-stages.yaml").read_text()
        )
        kwok = [
            str(bins / "kwok"),
            f"--kubeconfig={state / 'kwok.kubeconfig'}",
            f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--server-address={LOOPBACK}:{p['kwok']}",
            f"--node-port={p['kwok']}",
            f"--node-ip={LOOPBACK}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ]
        kwok_env = {"KWOK_WORKDIR": str(state / "kwok-work")}
        for name, argv, env in (
            ("etcd", etcd, {}),
            ("kube-apiserver", apiserver, {}),
            ("kube-controller-manager", kcm, {}),
            ("kube-scheduler", scheduler, {}),
            ("kwok", kwok, kwok_env),
        ):
            self._procs[name] = _Proc(name, argv, self.logs_dir / f"{name}.log", env)

    def _launch(self, name: str) -> None:
        proc = self._procs[name]
        env = {**os.environ, **proc.env}
        # A service-account token in the environment would make components think they run
        # in a pod (local-control-plane.md, pitfall 7); never pass one through.
        env.pop("KUBERNETES_SERVICE_HOST", None)
        # posix_spawn rather than Popen: the process gets its own session (so its whole
        # group can be signalled) and, with `dev-cluster up`, simply outlives us.
        log_fd = os.open(proc.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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
            raise ControlPlaneError(f"cannot start {name}: {exc.strerror}") from exc
        finally:
            os.close(log_fd)
        proc.returncode = None

    def _terminate(self, proc: _Proc) -> None:
        pid = proc.pid
        if pid is None:
            return
        if proc.poll() is None and proc.argv and proc.argv[0] not in _cmdline(pid):
            proc.pid = None  # the pid was reused by an unrelated process: leave it alone
            return
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            end = time.monotonic() + grace
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            if proc.poll() is not None:
                break
        proc.pid = None

    def _wait(self, name: str, probe: Callable[[], bool], deadline: float) -> None:
        last_error = ""
        while time.monotonic() < deadline:
            code = self._procs[name].poll()
            if code is not None:
                raise ControlPlaneError(f"{name} exited with code {code}: {self._log_tail(name)}")
            try:
                if probe():
                    return
            except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
                last_error = type(exc).__name__
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} not ready after {self.settings.start_timeout:.0f}s"
            f"{' (' + last_error + ')' if last_error else ''}: {self._log_tail(name)}"
        )

    def _log_tail(self, name: str) -> str:
        try:
            lines = self._procs[name].log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        lines = [ln for ln in lines if ln.strip()]
        # klog marks errors with E/F; prefer those over the warnings that precede them.
        errors = [ln for ln in lines if ln[:1] in ("E", "F") or "error" in ln.lower()]
        useful = (errors or lines)[-2:]
        return quote_foreign(" | ".join(useful)) + f" (log: {self._procs[name].log})"

    @contextlib.contextmanager
    def _http(self) -> Iterator[httpx.Client]:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        with httpx.Client(base_url=self.server, verify=ctx, timeout=5.0) as client:
            yield client

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API server as the admin (used by the harness itself; JSON in and out)."""
        with self._http() as client:
            response = client.request(method, path, json=body)
        if response.status_code >= 400:
            raise ControlPlaneError(
                f"{method} {path}: HTTP {response.status_code}: {quote_foreign(response.text)}"
            )
        return response.json() if response.content else None

    def _etcd_healthy(self) -> bool:
        response = httpx.get(f"{self.etcd_endpoint}/health", timeout=2.0)
        return response.status_code == 200 and '"true"' in response.text

    def _apiserver_ready(self) -> bool:
        with self._http() as client:
            return client.get("/readyz").status_code == 200

    def _scheduler_healthy(self) -> bool:
        url = f"https://{LOOPBACK}:{self._ports['scheduler']}/healthz"
        # The scheduler serves a self-signed certificate on loopback; only liveness matters.
        return httpx.get(url, verify=False, timeout=2.0).text == "ok"  # noqa: S501

    def _create_nodes(self) -> None:
        for i in range(self.settings.nodes):
            name = f"kwok-node-{i}"
            self.api(
                "POST",
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            FAKE_NODE_ANNOTATION: "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                    },
                },
            )

    def _nodes_ready(self) -> bool:
        nodes = self.api("GET", "/api/v1/nodes")["items"]
        ready = [
            n
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.settings.nodes

    def _default_sa_exists(self) -> bool:
        with self._http() as client:
            return (
                client.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200
            )

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "etcd": self.etcd_endpoint,
            "ports": self._ports,
            "pids": {n: p.pid for n, p in self._procs.items() if p.pid is not None},
            "argv": {n: p.argv for n, p in self._procs.items()},
            "logs": {n: str(p.log) for n, p in self._procs.items()},
        }
        path = self.state_dir / "state.json"
        path.write_text(json.dumps(state, indent=2))

    def _procs_from_state(self) -> dict[str, _Proc]:
        path = self.state_dir / "state.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        self._ports = {str(k): int(v) for k, v in state.get("ports", {}).items()}
        procs = {}
        for name, pid in state.get("pids", {}).items():
            proc = _Proc(name, list(state["argv"][name]), Path(state["logs"][name]))
            proc.pid = int(pid)
            procs[name] = proc
        return procs


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The saved state of a control plane in *state_dir*, or ``None``."""
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def default_state_dir() -> Path:
    """Where ``kustos dev-cluster`` keeps its state (``KUSTOS_DEV_CLUSTER_DIR`` overrides)."""
    explicit = os.environ.get("KUSTOS_DEV_CLUSTER_DIR")
    if explicit:
        return Path(explicit)
    return cache_root() / "dev-cluster"
