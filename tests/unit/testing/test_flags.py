"""The command lines and config files of the control-plane components (``testing.flags``).

Aspects: etcd listens and advertises on its loopback ports with its data in the state
folder; kube-apiserver serves TLS with the cluster's certificates, talks to that etcd,
authorizes with Node and RBAC, and takes an EncryptionConfiguration (reloaded
automatically), an audit policy (log in ``logs/``), an audit webhook and extra flags last;
switching to the KMS configuration replaces any earlier one; the KMS EncryptionConfiguration
puts the plugin first and ``identity`` second; the controller manager and scheduler use
their own kubeconfigs on their own ports; kwok manages only annotated nodes; every
kubeconfig names its own certificate; ports round-trip through ``state.json`` names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kustos.testing import flags
from kustos.testing.flags import Layout, Ports
from kustos.testing.pki import pki_in

BINS = Path("/opt/bin")
STATE = Path("/state")
PKI = Path("/state/pki")


@pytest.fixture
def layout() -> Layout:
    return Layout(
        bins=BINS,
        state_dir=STATE,
        pki=pki_in(PKI),
        ports=Ports(
            etcd=2379,
            etcd_peer=2380,
            apiserver=6443,
            controller_manager=10257,
            scheduler=10259,
            kwok=10247,
        ),
    )


def test_etcd(layout: Layout) -> None:
    assert flags.etcd_flags(layout) == [
        "/opt/bin/etcd",
        "--name=kustos",
        "--data-dir=/state/etcd",
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=kustos=http://127.0.0.1:2380",
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]


def test_apiserver_defaults(layout: Layout) -> None:
    argv = flags.apiserver_flags(layout)
    assert argv[0] == "/opt/bin/kube-apiserver"
    for flag in (
        "--etcd-servers=http://127.0.0.1:2379",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--secure-port=6443",
        "--tls-cert-file=/state/pki/apiserver.crt",
        "--tls-private-key-file=/state/pki/apiserver.key",
        "--client-ca-file=/state/pki/ca.crt",
        "--service-account-key-file=/state/pki/sa.pub",
        "--service-account-signing-key-file=/state/pki/sa.key",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--authorization-mode=Node,RBAC",
        "--endpoint-reconciler-type=none",
    ):
        assert flag in argv
    assert not [a for a in argv if a.startswith(("--encryption-", "--audit-"))]


def test_apiserver_encryption_audit_and_extra_flags(layout: Layout) -> None:
    argv = flags.apiserver_flags(
        layout,
        encryption_config=Path("/cfg/enc.yaml"),
        audit_policy=Path("/cfg/audit.yaml"),
        audit_webhook_config=Path("/cfg/webhook.kubeconfig"),
        extra=("--v=4", "--authorization-mode=RBAC"),
    )
    options = argv[argv.index("--endpoint-reconciler-type=none") + 1 :]
    assert options == [
        "--encryption-provider-config=/cfg/enc.yaml",
        "--encryption-provider-config-automatic-reload=true",
        "--audit-policy-file=/cfg/audit.yaml",
        "--audit-log-path=/state/logs/audit.log",
        "--audit-webhook-config-file=/cfg/webhook.kubeconfig",
        "--v=4",
        "--authorization-mode=RBAC",  # extra flags come last, so they win
    ]


def test_kms_configuration_replaces_the_earlier_one(layout: Layout) -> None:
    argv = flags.apiserver_flags(layout, encryption_config=Path("/cfg/enc.yaml"))
    switched = flags.with_encryption_config(argv, Path("/state/kms/encryption.yaml"))
    assert [a for a in switched if a.startswith("--encryption-")] == [
        "--encryption-provider-config=/state/kms/encryption.yaml",
        "--encryption-provider-config-automatic-reload=true",
    ]
    assert switched[: len(argv) - 2] == argv[:-2]


def test_kms_encryption_configuration() -> None:
    config = yaml.safe_load(flags.kms_encryption_config(Path("/state/kms/kms.sock")))
    assert config["kind"] == "EncryptionConfiguration"
    (rule,) = config["resources"]
    assert rule["resources"] == ["secrets"]
    assert rule["providers"] == [
        {
            "kms": {
                "apiVersion": "v2",
                "name": "kustos",
                "endpoint": "unix:///state/kms/kms.sock",
                "timeout": "3s",
            }
        },
        {"identity": {}},
    ]


def test_kms_plugin_command() -> None:
    serve = ["--keyring", "/k.json", "--passphrase-file", "/p"]
    assert flags.kms_plugin_flags("/py", Path("/s/kms.sock"), serve) == [
        "/py",
        "-m",
        "kustos",
        "kms",
        "serve",
        "--socket",
        "/s/kms.sock",
        *serve,
    ]


def test_controller_manager(layout: Layout) -> None:
    assert flags.controller_manager_flags(layout) == [
        "/opt/bin/kube-controller-manager",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--secure-port=10257",
        "--kubeconfig=/state/controller-manager.kubeconfig",
        "--authentication-kubeconfig=/state/controller-manager.kubeconfig",
        "--authorization-kubeconfig=/state/controller-manager.kubeconfig",
        "--service-account-private-key-file=/state/pki/sa.key",
        "--root-ca-file=/state/pki/ca.crt",
        "--use-service-account-credentials=true",
        "--cert-dir=/state/kcm-certs",
    ]


def test_scheduler(layout: Layout) -> None:
    assert flags.scheduler_flags(layout) == [
        "/opt/bin/kube-scheduler",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--secure-port=10259",
        "--kubeconfig=/state/scheduler.kubeconfig",
        "--authentication-kubeconfig=/state/scheduler.kubeconfig",
        "--authorization-kubeconfig=/state/scheduler.kubeconfig",
        "--cert-dir=/state/scheduler-certs",
    ]


def test_kwok(layout: Layout) -> None:
    assert flags.kwok_flags(layout) == [
        "/opt/bin/kwok",
        "--kubeconfig=/state/kwok.kubeconfig",
        "--config=/state/kwok.yaml",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--server-address=127.0.0.1:10247",
        "--node-port=10247",
        "--node-ip=127.0.0.1",
        "--cidr=10.244.0.0/16",
        "--node-lease-duration-seconds=40",
    ]
    assert flags.kwok_env(layout) == {"KWOK_WORKDIR": "/state/kwok-work"}


def test_fake_nodes_are_managed_by_kwok_and_untainted() -> None:
    node = flags.fake_node("kwok-node-0")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "kwok-node-0"
    assert "spec" not in node


def test_each_kubeconfig_carries_its_own_identity(layout: Layout) -> None:
    configs = flags.kubeconfigs(layout)
    users = {
        path.name: config["users"][0]["user"]["client-certificate"]
        for path, config in configs.items()
    }
    assert users == {
        "kubeconfig": "/state/pki/admin.crt",
        "controller-manager.kubeconfig": "/state/pki/controller-manager.crt",
        "scheduler.kubeconfig": "/state/pki/scheduler.crt",
        "kwok.kubeconfig": "/state/pki/kwok.crt",
    }
    cluster = configs[STATE / "kubeconfig"]["clusters"][0]["cluster"]
    assert cluster == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority": "/state/pki/ca.crt",
    }


def test_ports_round_trip_through_state_names(layout: Layout) -> None:
    names = layout.ports.by_name()
    assert names == {
        "etcd": 2379,
        "etcd-peer": 2380,
        "apiserver": 6443,
        "kcm": 10257,
        "scheduler": 10259,
        "kwok": 10247,
    }
    assert Ports.from_names(names) == layout.ports
