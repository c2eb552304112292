"""Command lines and config files of the control-plane components, as pure functions.

Given a :class:`Layout` (where the binaries, the state folder, the certificates and the
ports are), each function returns the argv of one component: etcd, kube-apiserver (with
the optional EncryptionConfiguration, KMS v2 plugin and audit options),
kube-controller-manager, kube-scheduler and kwok; the content of the files they read
(kubeconfigs, the KMS EncryptionConfiguration); and the fake Nodes kwok manages. Nothing
here reads or writes a file or starts a process, so every flag can be unit-tested;
:mod:`kustos.testing.controlplane` writes the files and :mod:`kustos.testing.processes`
runs the commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # types only: pki is an adapter (it writes keys), this module is pure
    from kustos.testing.pki import CertPair, ClusterPKI

LOOPBACK: Final = "127.0.0.1"
SERVICE_CIDR: Final = "10.96.0.0/12"
POD_CIDR: Final = "10.244.0.0/16"
FAKE_NODE_ANNOTATION: Final = "kwok.x-k8s.io/node"
KMS_PROVIDER_NAME: Final = "kustos"
KUBECONFIG_NAME: Final = "kustos-local"
#: Each component's own kubeconfig file in the state folder (the admin's is ``kubeconfig``).
KUBECONFIG_FILES: Final = {
    "admin": "kubeconfig",
    "kube-controller-manager": "controller-manager.kubeconfig",
    "kube-scheduler": "scheduler.kubeconfig",
    "kwok": "kwok.kubeconfig",
}
_ENCRYPTION_FLAGS: Final = ("--encryption-provider-config",)
#: Folder of the component logs, inside the state folder.
LOGS_DIR: Final = "logs"
#: Port names in ``state.json`` (kept from the first format of the file).
PORT_NAMES: Final = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")


@dataclass(frozen=True, slots=True)
class Ports:
    """The loopback ports of one control plane."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def of(cls, ports: Sequence[int]) -> Ports:
        """Ports from six numbers, in the order of :data:`PORT_NAMES`."""
        return cls(*ports)

    @classmethod
    def from_names(cls, ports: Mapping[str, int]) -> Ports:
        """Ports from ``state.json``'s mapping; ``KeyError`` if one is missing."""
        return cls.of([ports[name] for name in PORT_NAMES])

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{LOOPBACK}:{self.apiserver}"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        return f"http://{LOOPBACK}:{self.etcd}"

    @property
    def scheduler_url(self) -> str:
        """The scheduler's HTTPS endpoint (``/healthz``)."""
        return f"https://{LOOPBACK}:{self.scheduler}"

    def by_name(self) -> dict[str, int]:
        """The mapping ``state.json`` stores."""
        values = (
            self.etcd,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.kwok,
        )
        return dict(zip(PORT_NAMES, values, strict=True))


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything a command line names: binaries, state folder, certificates, ports."""

    bins: Path
    state_dir: Path
    pki: ClusterPKI
    ports: Ports

    @property
    def server(self) -> str:
        """The API server's URL."""
        return self.ports.server

    @property
    def etcd_url(self) -> str:
        """etcd's client URL."""
        return self.ports.etcd_url

    @property
    def logs_dir(self) -> Path:
        """Where each component's log (and the audit log) is written."""
        return self.state_dir / LOGS_DIR

    @property
    def kwok_stages(self) -> Path:
        """The kwok lifecycle stages file, copied into the state folder."""
        return self.state_dir / "kwok.yaml"

    def kubeconfig(self, component: str) -> Path:
        """The kubeconfig file of *component* (``admin`` for the user's)."""
        return self.state_dir / KUBECONFIG_FILES[component]


def etcd_flags(layout: Layout) -> list[str]:
    """etcd: one member on loopback, no fsync (test data), compacted hourly."""
    client = f"http://{LOOPBACK}:{layout.ports.etcd}"
    peer = f"http://{LOOPBACK}:{layout.ports.etcd_peer}"
    return [
        str(layout.bins / "etcd"),
        "--name=kustos",
        f"--data-dir={layout.state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kustos={peer}",
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]


def apiserver_flags(
    layout: Layout,
    *,
    encryption_config: Path | None = None,
    audit_policy: Path | None = None,
    audit_webhook_config: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """kube-apiserver: TLS with the cluster CA, Node and RBAC authorization, options.

    *encryption_config* is reloaded automatically when it changes; with *audit_policy* the
    audit log goes to ``logs/audit.log``; *extra* flags come last, so they win.
    """
    pki = layout.pki
    argv = [
        str(layout.bins / "kube-apiserver"),
        f"--etcd-servers={layout.etcd_url}",
        "--etcd-prefix=/registry",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={layout.ports.apiserver}",
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
    if encryption_config is not None:
        argv = with_encryption_config(argv, encryption_config)
    if audit_policy is not None:
        argv += [
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={layout.logs_dir / 'audit.log'}",
        ]
    if audit_webhook_config is not None:
        argv.append(f"--audit-webhook-config-file={audit_webhook_config}")
    return argv + list(extra)


#: Audit webhook options of a test API server: batches leave within a second and a failed
#: batch is retried after one second (defaults: 30 s and 10 s), so tests wait little.
AUDIT_WEBHOOK_TEST_FLAGS: Final = (
    "--audit-webhook-batch-max-wait=1s",
    "--audit-webhook-initial-backoff=1s",
    "--audit-webhook-batch-throttle-enable=false",
)


def audit_webhook_kubeconfig(url: str, ca: Path, client: CertPair) -> dict[str, Any]:
    """The kubeconfig kube-apiserver's audit webhook reads: where to POST, whom to trust,
    and the client certificate it presents (``kustos audit serve --client-ca``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "audit-sink", "cluster": {"server": url, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": "kube-apiserver",
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [
            {"name": "webhook", "context": {"cluster": "audit-sink", "user": "kube-apiserver"}}
        ],
        "current-context": "webhook",
    }


def token_auth_file(users: Mapping[str, tuple[str, Sequence[str]]]) -> str:
    """``--token-auth-file`` content: token → (user name, groups); the uid is the name."""
    lines = []
    for token, (name, groups) in users.items():
        lines.append(f'{token},{name},{name},"{",".join(groups)}"')
    return "\n".join(lines) + "\n"


def with_encryption_config(argv: Sequence[str], config: Path) -> list[str]:
    """kube-apiserver's *argv* using *config* as its EncryptionConfiguration (any old one out)."""
    kept = [a for a in argv if not a.startswith(_ENCRYPTION_FLAGS)]
    return [
        *kept,
        f"--encryption-provider-config={config}",
        "--encryption-provider-config-automatic-reload=true",
    ]


def _common(layout: Layout, component: str, port: int) -> list[str]:
    kubeconfig = layout.kubeconfig(component)
    return [
        f"--bind-address={LOOPBACK}",
        "--leader-elect=false",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        f"--secure-port={port}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ]


def controller_manager_flags(layout: Layout) -> list[str]:
    """kube-controller-manager: one service account per controller, tokens signed here."""
    return [
        str(layout.bins / "kube-controller-manager"),
        *_common(layout, "kube-controller-manager", layout.ports.controller_manager),
        f"--service-account-private-key-file={layout.pki.sa_private}",
        f"--root-ca-file={layout.pki.ca.cert}",
        "--use-service-account-credentials=true",
        f"--cert-dir={layout.state_dir / 'kcm-certs'}",
    ]


def scheduler_flags(layout: Layout) -> list[str]:
    """kube-scheduler with its own identity."""
    return [
        str(layout.bins / "kube-scheduler"),
        *_common(layout, "kube-scheduler", layout.ports.scheduler),
        f"--cert-dir={layout.state_dir / 'scheduler-certs'}",
    ]


def kwok_flags(layout: Layout) -> list[str]:
    """kwok: simulates the nodes annotated as fake, and the kubelet on them."""
    port = layout.ports.kwok
    return [
        str(layout.bins / "kwok"),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={layout.kwok_stages}",
        f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
        f"--server-address={LOOPBACK}:{port}",
        f"--node-port={port}",
        f"--node-ip={LOOPBACK}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
    ]


def kwok_env(layout: Layout) -> dict[str, str]:
    """kwok's environment: a work folder of its own in the state folder."""
    return {"KWOK_WORKDIR": str(layout.state_dir / "kwok-work")}


def kms_plugin_flags(python: str, socket: Path, serve_flags: Sequence[str]) -> list[str]:
    """``kustos kms serve`` on *socket*, with the key-store flags in *serve_flags*."""
    return [python, "-m", "kustos", "kms", "serve", "--socket", str(socket), *serve_flags]


def kms_encryption_config(socket: Path, *, name: str = KMS_PROVIDER_NAME) -> str:
    """An EncryptionConfiguration: Secrets through the KMS v2 plugin, older ones readable.

    ``identity`` comes second so that Secrets written before the plugin stay readable
    until they are rewritten (``kustos kms reencrypt``).
    """
    return (
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "  - resources: [secrets]\n    providers:\n"
        f"      - kms: {{apiVersion: v2, name: {name}, "
        f"endpoint: 'unix://{socket}', timeout: 3s}}\n"
        "      - identity: {}\n"
    )


def kubeconfig_for(server: str, ca: Path, pair: CertPair) -> dict[str, Any]:
    """A kubeconfig for the identity of the client certificate *pair*."""
    name = KUBECONFIG_NAME
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}
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


def kubeconfigs(layout: Layout) -> dict[Path, dict[str, Any]]:
    """Every kubeconfig the state folder holds: the admin's and one per component."""
    pki = layout.pki
    identities = {
        "admin": pki.admin,
        "kube-controller-manager": pki.controller_manager,
        "kube-scheduler": pki.scheduler,
        "kwok": pki.kwok,
    }
    return {
        layout.kubeconfig(component): kubeconfig_for(layout.server, pki.ca.cert, pair)
        for component, pair in identities.items()
    }


def fake_node(name: str) -> dict[str, Any]:
    """A Node that kwok manages (by its annotation), untainted, labelled like a real one."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
    }
