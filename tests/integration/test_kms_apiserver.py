"""The KMS v2 plugin (local keyring and SoftHSM2) behind a real kube-apiserver and etcd.

Aspects: Secrets written through the API are stored in etcd as ``k8s:enc:kms:v2:kustos:``
with the plaintext absent and the plugin's key id inside, and read back intact; after
``kms keys rotate`` and the API server's next Status poll new writes carry the new key id,
and after ``kms reencrypt`` every Secret does, with reads working throughout; the old key
can then be retired; with the plugin stopped ``/healthz/kms-providers`` fails while reads
keep working, and after a restart everything recovers with no data lost.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from kustos.kms.stored import parse_stored
from kustos.kube.client import ClientSettings, make_client, raw_get
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings
from kustos.testing.softhsm import make_token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
PREFIX = b"k8s:enc:kms:v2:kustos:"


@dataclass
class KmsCluster:
    plane: ControlPlane
    socket: Path
    root: Path
    flags: list[str]
    env: dict[str, str]
    plugin: subprocess.Popen[bytes] | None = None

    def keyring_flags(self) -> list[str]:
        return self.flags

    def start_plugin(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "kustos",
            "kms",
            "serve",
            "--socket",
            str(self.socket),
            *self.keyring_flags(),
        ]
        with (self.root / "plugin.log").open("ab") as log:
            self.plugin = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            assert self.plugin.poll() is None, "plugin exited"
            assert time.monotonic() < deadline, "plugin did not listen"
            time.sleep(0.05)

    def stop_plugin(self) -> None:
        if self.plugin is not None and self.plugin.poll() is None:
            self.plugin.send_signal(signal.SIGTERM)
            self.plugin.wait(timeout=15)
        self.plugin = None

    def raw(self, namespace: str, name: str) -> bytes:
        value = self.plane.etcd_value(f"/registry/secrets/{namespace}/{name}")
        assert value is not None
        return value

    def key_id_in_etcd(self, namespace: str, name: str) -> str:
        stored = parse_stored(self.raw(namespace, name))
        assert stored.encrypted
        assert stored.provider == "kustos"
        return stored.key_id

    def current_key(self) -> str:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "kustos",
                "kms",
                "keys",
                "list",
                *self.flags,
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **self.env},
        )
        keys = json.loads(result.stdout)["keys"]
        return str(next(k["key_id"] for k in keys if k["state"] == "current"))

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``kustos`` in a child process that sees the provider's environment."""
        return subprocess.run(
            [sys.executable, "-m", "kustos", *argv],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **self.env},
            timeout=300,
        )


@pytest.fixture(scope="module", params=["keyring", "pkcs11"])
def kms(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KmsCluster]:
    root = tmp_path_factory.mktemp(f"kms-{request.param}")
    env: dict[str, str] = {}
    if request.param == "keyring":
        passphrase = root / "passphrase"
        passphrase.write_text("integration passphrase\n")
        passphrase.chmod(0o600)
        flags = ["--keyring", str(root / "keyring.json"), "--passphrase-file", str(passphrase)]
    else:
        token = make_token(root / "hsm")
        env = {"SOFTHSM2_CONF": str(token.conf)}
        flags = [
            "--pkcs11-module",
            str(token.module),
            "--pkcs11-token",
            token.label,
            "--pkcs11-pin-file",
            str(token.pin_file),
        ]
    socket = root / "kms.sock"
    config = root / "encryption.yaml"
    config.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "  - resources: [secrets]\n    providers:\n"
        f"      - kms: {{apiVersion: v2, name: kustos, endpoint: 'unix://{socket}', timeout: 3s}}\n"
        "      - identity: {}\n"
    )
    plane = ControlPlane(ControlPlaneSettings(root / "cp", nodes=1, encryption_config=config))
    cluster = KmsCluster(plane, socket, root, flags, env)
    assert cluster.cli("kms", "keys", "init", *flags).returncode == 0
    cluster.start_plugin()
    try:
        cluster.plane.start()
        yield cluster
    finally:
        cluster.stop_plugin()
        cluster.plane.stop()


@pytest.fixture
def client(kms: KmsCluster) -> Iterator[Client]:
    with make_client(ClientSettings(kubeconfig=kms.plane.kubeconfig)) as c:
        yield c


def _secret(client: Client, name: str, value: str) -> None:
    client.create(
        Secret(metadata=ObjectMeta(name=name, namespace="default"), stringData={"v": value})
    )


def _read(client: Client, name: str) -> bytes:
    data = client.get(Secret, name, namespace="default").data or {}
    return base64.b64decode(data["v"])


def test_secrets_are_stored_encrypted_under_the_plugin_key(kms: KmsCluster, client: Client) -> None:
    canary = "kms-canary-" + os.urandom(6).hex()
    _secret(client, "first", canary)
    raw = kms.raw("default", "first")
    assert raw.startswith(PREFIX)
    assert canary.encode() not in raw
    assert kms.key_id_in_etcd("default", "first") == kms.current_key()
    assert _read(client, "first") == canary.encode()
    health = raw_get(ClientSettings(kubeconfig=kms.plane.kubeconfig), "/healthz/kms-providers")
    assert health.strip() == "ok"


def test_rotation_then_reencrypt_moves_every_secret_to_the_new_key(
    kms: KmsCluster, client: Client
) -> None:
    old = kms.current_key()
    _secret(client, "before-rotation", "old-value")
    assert kms.key_id_in_etcd("default", "before-rotation") == old
    assert kms.cli("kms", "keys", "rotate", *kms.flags).returncode == 0
    new = kms.current_key()
    assert new != old
    # reencrypt waits for the API server's Status poll (up to a minute), then rewrites.
    result = kms.cli(
        "kms",
        "reencrypt",
        "--kubeconfig",
        str(kms.plane.kubeconfig),
        "--cursor-file",
        str(kms.root / "cursor"),
        *kms.flags,
    )
    assert result.returncode == 0, result.stderr
    assert "recorded: every object rewritten" in result.stdout
    _secret(client, "after-rotation", "new-value")
    for name in ("first", "before-rotation", "after-rotation"):
        assert kms.key_id_in_etcd("default", name) == new, name
    assert _read(client, "before-rotation") == b"old-value"
    assert _read(client, "after-rotation") == b"new-value"
    assert kms.cli("kms", "keys", "retire", old, *kms.flags).returncode == 0
    assert _read(client, "before-rotation") == b"old-value"


def _wait_health(kms: KmsCluster, *, ok: bool, timeout: float = 90) -> None:
    settings = ClientSettings(kubeconfig=kms.plane.kubeconfig)
    deadline = time.monotonic() + timeout
    while True:
        try:
            healthy = raw_get(settings, "/healthz/kms-providers").strip() == "ok"
        except Exception:  # noqa: BLE001 - an unhealthy check answers 500
            healthy = False
        if healthy is ok:
            return
        assert time.monotonic() < deadline, (
            f"/healthz/kms-providers never became {'ok' if ok else 'failing'}"
        )
        time.sleep(1)


def test_plugin_stopped_reads_keep_working_and_restart_recovers(
    kms: KmsCluster, client: Client
) -> None:
    _secret(client, "during-outage", "kept")
    kms.stop_plugin()
    _wait_health(kms, ok=False)
    assert _read(client, "during-outage") == b"kept"
    assert _read(client, "first").startswith(b"kms-canary-")
    kms.start_plugin()
    _wait_health(kms, ok=True)
    _secret(client, "after-restart", "fresh")
    assert _read(client, "after-restart") == b"fresh"
    assert _read(client, "during-outage") == b"kept"
