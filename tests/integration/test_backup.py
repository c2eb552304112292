"""Backups on the real control plane, opened and written by the real ``age``.

Aspects:
- 1,000 Secrets in 20 namespaces (Opaque, TLS, dockerconfigjson, basic-auth, immutable,
  binary data, labels and annotations) and a ManagedSecret rotated twice by the real
  engine: backup, namespaces deleted, restore; every object equal to the original in
  data, type, labels, annotations and immutability; the ManagedSecret's status comes
  back with its versions, and its live and version Secrets are owned by its new uid;
- the real ``age`` decrypts a Kustos backup to the documented tar, and a backup
  encrypted by ``age`` itself restores (into another namespace with --namespace-map);
- a truncated file, a flipped byte, a wrong identity and a wrong passphrase each give one
  line and exit 1, and restore nothing; a namespace that does not exist is refused (exit
  2) and no file is written (the other bad inputs: tests/unit/backup/test_cli_usage.py);
- --dry-run writes nothing; --conflict skip keeps, overwrite replaces (an immutable
  Secret too), fail writes nothing and exits 1; --only restores just what it names;
- a backup to an SSH ed25519 key opens with ``age -d -i id_ed25519``; a changed
  ManagedSecret is overwritten (spec back, status kept at its version);
- the CronJob's ServiceAccount (deploy/backup) backs up every namespace, keeps the newest
  file with --keep, and may not get or create a Secret;
- the recovery recipe of docs/backup.md (age, tar, kubectl apply) brings a deleted
  namespace back equal, without Kustos;
- canary: a known value appears in no output, progress, dry-run table, error or log.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding
from lightkube.types import PatchType

from kustos.cli.main import main
from kustos.conventions import (
    ANNOTATION_VERSION,
    LABEL_MANAGED_SECRET,
    LABEL_TEST_NAMESPACE,
    LABEL_VERSION,
)
from kustos.crypto.certificates import make_self_signed_ca
from kustos.kube.applying import apply_manifests
from kustos.kube.client import ClientSettings, make_client
from kustos.testing.binaries import require_binaries
from kustos.testing.controlplane import ControlPlane
from kustos.testing.vault import service_account_token

pytestmark = pytest.mark.integration
MS: Any = create_namespaced_resource("kustos.io", "v1alpha1", "ManagedSecret", "managedsecrets")
CANARY = "kustos-backup-canary-5d2e91"
AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="the age binary is not installed")


class Cli:
    """``kustos`` run in this process, against the session's control plane."""

    def __init__(self, plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
        self.kubeconfig = str(plane.kubeconfig)
        self.capsys = capsys
        self.seen: list[str] = []

    def __call__(self, *args: str, cluster: bool = True) -> tuple[int, str, str]:
        argv = list(args) + (["--kubeconfig", self.kubeconfig] if cluster else [])
        code = main(argv)
        captured = self.capsys.readouterr()
        self.seen += [captured.out, captured.err]
        return code, captured.out, captured.err


@pytest.fixture
def cli(control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(control_plane, capsys)


@pytest.fixture
def key(tmp_path: Path, cli: Cli) -> tuple[str, Path]:
    path = tmp_path / "key.txt"
    code, out, _ = cli("backup", "keygen", "--output", str(path), cluster=False)
    assert code == 0
    return out.strip(), path


def _ns(kube: Client, name: str, labels: dict[str, str] | None = None) -> str:
    meta = ObjectMeta(name=name, labels={LABEL_TEST_NAMESPACE: "true", **(labels or {})})
    kube.create(Namespace(metadata=meta))
    return name


def _delete_and_wait(kube: Client, names: list[str], timeout: float = 180) -> None:
    for name in names:
        kube.delete(Namespace, name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                kube.get(Namespace, name)
            except ApiError as exc:
                if exc.status.code == 404:
                    break
                raise
            assert time.monotonic() < deadline, f"namespace {name} not deleted"
            time.sleep(0.5)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _body(secret: Secret) -> dict[str, Any]:
    """What a restore must bring back, for comparison."""
    meta = secret.metadata
    assert meta is not None
    return {
        "type": secret.type,
        "data": secret.data or {},
        "labels": meta.labels or {},
        "annotations": meta.annotations or {},
        "immutable": bool(secret.immutable),
    }


def _snapshot(kube: Client, namespaces: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for ns in namespaces:
        for secret in kube.list(Secret, namespace=ns, chunk_size=500):
            assert secret.metadata is not None
            if secret.type != "kubernetes.io/service-account-token":
                found[(ns, str(secret.metadata.name))] = _body(secret)
    return found


def _make_secrets(kube: Client, namespaces: list[str], per_namespace: int) -> None:
    ca = make_self_signed_ca("backup-test", dt.datetime.now(dt.UTC), 30)
    tls = {"tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem.reveal())}
    docker = json.dumps(
        {"auths": {"registry.example.com": {"auth": _b64(b"u:" + CANARY.encode())}}}
    )
    for ns in namespaces:
        for i in range(per_namespace):
            shape = i % 6
            meta = ObjectMeta(
                name=f"s-{i:03d}",
                namespace=ns,
                labels={"app": f"a{i % 7}", "tier": "db" if i % 2 else "web"},
                annotations={"team.example.com/owner": f"t{i % 3}", "note": "line1\nline2"},
            )
            if shape == 0:
                body = Secret(
                    metadata=meta,
                    type="Opaque",
                    data={"password": _b64(f"{CANARY}-{ns}-{i}".encode())},
                )
            elif shape == 1:
                body = Secret(metadata=meta, type="kubernetes.io/tls", data=tls)
            elif shape == 2:
                body = Secret(
                    metadata=meta,
                    type="kubernetes.io/dockerconfigjson",
                    data={".dockerconfigjson": _b64(docker.encode())},
                )
            elif shape == 3:
                body = Secret(
                    metadata=meta,
                    type="Opaque",
                    immutable=True,
                    data={"token": _b64(os.urandom(24))},
                )
            elif shape == 4:
                body = Secret(
                    metadata=meta,
                    type="Opaque",
                    data={"blob.bin": _b64(os.urandom(512) + b"\x00\xff")},
                )
            else:
                body = Secret(
                    metadata=meta,
                    type="kubernetes.io/basic-auth",
                    data={"username": _b64(b"admin"), "password": _b64(CANARY.encode())},
                )
            kube.create(body)


def _managed_secret(kube: Client, cli: Cli, namespace: str) -> None:
    kube.create(
        MS(
            apiVersion="kustos.io/v1alpha1",
            kind="ManagedSecret",
            metadata=ObjectMeta(name="db", namespace=namespace, labels={"app": "db"}),
            spec={"secretName": "db", "data": {"password": {"password": {"length": 24}}}},
        )
    )
    for _ in range(2):
        code, _, err = cli("rotate", f"{namespace}/db")
        assert code == 0, err


def _assert_no_canary(cli: Cli, caplog: pytest.LogCaptureFixture) -> None:
    for text in [*cli.seen, caplog.text]:
        assert CANARY not in text


@needs_age
@pytest.mark.timeout(1200)
def test_thousand_secrets_survive_deleting_their_namespaces(
    kube: Client,
    cli: Cli,
    crd: None,
    key: tuple[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    recipient, identity = key
    names = [_ns(kube, f"bk-{i:02d}", {"backup-test": "yes"}) for i in range(20)]
    _make_secrets(kube, names, per_namespace=50)
    _managed_secret(kube, cli, names[0])
    before = _snapshot(kube, names)
    assert len([k for k in before if not k[1].startswith("db")]) == 1000
    status_before = kube.get(MS, "db", namespace=names[0]).to_dict()["status"]
    assert status_before["currentVersion"] == 2

    backup = tmp_path / "cluster.age"
    flags = [arg for ns in names for arg in ("-n", ns)]
    code, out, err = cli("backup", "create", "-o", str(backup), "-r", recipient, *flags)
    assert code == 0, err
    assert "1003 Secret(s) (2 version Secret(s)), 1 ManagedSecret(s), 20 namespace(s)" in out
    assert "listed" in err  # progress, on stderr
    assert oct(backup.stat().st_mode & 0o777) == "0o600"

    code, out, _ = cli("backup", "verify", str(backup), "-i", str(identity), cluster=False)
    assert code == 0
    assert "every hash and count verified" in out

    _delete_and_wait(kube, names)
    code, out, err = cli("backup", "restore", str(backup), "-i", str(identity), "-q")
    assert code == 0, err
    assert "create 1024" in out  # 20 namespaces, 1 ManagedSecret, 1,003 Secrets

    after = _snapshot(kube, names)
    assert after == before
    ns_labels = kube.get(Namespace, names[3]).metadata.labels  # type: ignore[union-attr]
    assert ns_labels is not None
    assert ns_labels["backup-test"] == "yes"

    restored = kube.get(MS, "db", namespace=names[0])
    status = restored.to_dict()["status"]
    assert status["currentVersion"] == 2
    assert [v["number"] for v in status["versions"]] == [
        v["number"] for v in status_before["versions"]
    ]
    uid = restored.metadata.uid
    for name in ("db", "db-v1", "db-v2"):
        secret = kube.get(Secret, name, namespace=names[0])
        owners = secret.metadata.ownerReferences or []  # type: ignore[union-attr]
        assert [(o.kind, o.name, o.uid) for o in owners] == [("ManagedSecret", "db", uid)]
    live = kube.get(Secret, "db", namespace=names[0])
    assert live.metadata.annotations[ANNOTATION_VERSION] == "2"  # type: ignore[union-attr, index]
    version = kube.get(Secret, "db-v2", namespace=names[0])
    assert version.data == live.data
    assert version.metadata.labels[LABEL_VERSION] == "2"  # type: ignore[union-attr, index]
    assert version.metadata.labels[LABEL_MANAGED_SECRET] == "db"  # type: ignore[union-attr, index]

    # A second restore finds everything in place.
    code, out, _ = cli("backup", "restore", str(backup), "-i", str(identity), "--dry-run")
    assert code == 0
    assert "unchanged 1024" in out
    _assert_no_canary(cli, caplog)
    _delete_and_wait(kube, names)


@pytest.fixture
def small(kube: Client, namespace: str) -> str:
    """A namespace with three Secrets, one immutable, one holding the canary."""
    kube.create(
        Secret(
            metadata=ObjectMeta(name="plain", namespace=namespace),
            data={"password": _b64(CANARY.encode())},
        )
    )
    kube.create(
        Secret(
            metadata=ObjectMeta(name="frozen", namespace=namespace, labels={"x": "1"}),
            immutable=True,
            data={"token": _b64(b"first")},
        )
    )
    kube.create(
        Secret(
            metadata=ObjectMeta(name="bin", namespace=namespace), data={"b": _b64(os.urandom(64))}
        )
    )
    return namespace


@dataclass(frozen=True)
class SmallBackup:
    """A backup of the ``small`` namespace, taken by ``kustos backup create``, and its key."""

    file: Path
    recipient: str
    identity: Path


@pytest.fixture
def small_backup(cli: Cli, small: str, key: tuple[str, Path], tmp_path: Path) -> SmallBackup:
    recipient, identity = key
    backup = tmp_path / "small.age"
    code, _, err = cli("backup", "create", "-o", str(backup), "-r", recipient, "-n", small)
    assert code == 0, err
    return SmallBackup(backup, recipient, identity)


def _gone(kube: Client, namespace: str) -> bool:
    try:
        kube.get(Namespace, namespace)
    except ApiError as exc:
        return exc.status.code == 404
    return False


@needs_age
def test_real_age_opens_kustos_backups_and_kustos_restores_age_files(
    kube: Client, cli: Cli, small: str, small_backup: SmallBackup, tmp_path: Path
) -> None:
    backup, recipient, identity = small_backup.file, small_backup.recipient, small_backup.identity

    opened = subprocess.run(
        [AGE or "age", "-d", "-i", str(identity), str(backup)], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(opened.stdout)) as tar:
        assert tar.getnames() == ["manifest.json", "objects.json"]
        listing = json.load(tar.extractfile("objects.json"))  # type: ignore[arg-type]
    assert listing["kind"] == "List"
    assert {i["metadata"]["name"] for i in listing["items"]} >= {"plain", "frozen", "bin"}

    # `-o -` writes the backup to stdout, for pipes (the summary goes to stderr).
    kustos = Path(sys.executable).parent / "kustos"
    piped = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            (
                f"{kustos} backup create -q -n {small} -r {recipient} -o - "
                f"--kubeconfig {cli.kubeconfig} | {AGE} -d -i {identity} | tar -t"
            ),
        ],
        capture_output=True,
        check=True,
    )
    assert piped.stdout.split() == [b"manifest.json", b"objects.json"]
    assert b"<stdout>: 3 Secret(s)" in piped.stderr

    # The same tar, encrypted by age itself, restores into another namespace.
    by_age = tmp_path / "by-age.age"
    subprocess.run(
        [AGE or "age", "-r", recipient, "-o", str(by_age)], input=opened.stdout, check=True
    )
    target = f"{small}-copy"
    code, _out, err = cli(
        "backup",
        "restore",
        str(by_age),
        "-i",
        str(identity),
        "--namespace-map",
        f"{small}={target}",
    )
    try:
        assert code == 0, err
        copied = {name: body for (_, name), body in _snapshot(kube, [target]).items()}
        assert copied == {name: body for (_, name), body in _snapshot(kube, [small]).items()}
    finally:
        kube.delete(Namespace, target)


@needs_age
def test_damaged_files_and_wrong_keys_restore_nothing(
    kube: Client,
    cli: Cli,
    small: str,
    small_backup: SmallBackup,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backup, identity = small_backup.file, small_backup.identity
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    phrase.chmod(0o600)
    locked = tmp_path / "locked.age"
    assert (
        cli("backup", "create", "-o", str(locked), "--passphrase-file", str(phrase), "-n", small)[0]
        == 0
    )
    data = backup.read_bytes()
    truncated = tmp_path / "truncated.age"
    truncated.write_bytes(data[: len(data) - 40])
    flipped = tmp_path / "flipped.age"
    flipped.write_bytes(data[:-60] + bytes([data[-60] ^ 1]) + data[-59:])
    other = tmp_path / "other.txt"
    subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    target = f"{small}-x"
    cases = [
        ([str(truncated), "-i", str(identity)], "truncated"),
        ([str(flipped), "-i", str(identity)], "does not authenticate"),
        ([str(backup), "-i", str(other)], "none of the identities"),
        ([str(locked), "--passphrase-file", str(wrong)], "wrong passphrase"),
    ]
    for args, expected in cases:
        code, out, err = cli("backup", "restore", *args, "--namespace-map", f"{small}={target}")
        assert code == 1, err
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert expected in err
        assert _gone(kube, target)
    code, out, err = cli(
        "backup", "verify", str(locked), "--passphrase-file", str(phrase), cluster=False
    )
    assert code == 0, err
    _assert_no_canary(cli, caplog)


def test_a_namespace_that_does_not_exist_is_refused_and_nothing_written(
    cli: Cli, small: str, key: tuple[str, Path], tmp_path: Path
) -> None:
    recipient, _ = key
    output = tmp_path / "typo.age"
    argv = ["backup", "create", "-o", str(output), "-r", recipient, "-n", small]
    code, out, err = cli(*argv, "-n", f"{small}-typo", "-q")
    assert code == 2
    assert out == ""
    assert err == f"kustos: error: namespace {small}-typo not found; nothing written\n"
    assert not output.exists()  # a typo never leaves a backup that holds nothing


@needs_age
def test_conflict_policies_dry_run_and_only(
    kube: Client,
    cli: Cli,
    small: str,
    small_backup: SmallBackup,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backup, identity = small_backup.file, small_backup.identity
    # Change two objects after the backup; delete one.
    kube.delete(Secret, "frozen", namespace=small)
    kube.create(
        Secret(
            metadata=ObjectMeta(name="frozen", namespace=small),
            immutable=True,
            data={"token": _b64(b"second")},
        )
    )
    kube.patch(Secret, "plain", {"data": {"password": _b64(b"changed")}}, namespace=small)
    kube.delete(Secret, "bin", namespace=small)
    before = _snapshot(kube, [small])
    opener = ["-i", str(identity)]

    code, out, _ = cli("backup", "restore", str(backup), *opener, "--dry-run")
    assert code == 0
    assert "dry run" in out
    assert "create 1" in out
    assert "skip 2" in out
    assert _snapshot(kube, [small]) == before  # nothing written

    code, out, err = cli("backup", "restore", str(backup), *opener, "--conflict", "fail")
    assert code == 1
    assert "2 object(s) exist and differ" in err
    assert "nothing was restored" in err
    assert _snapshot(kube, [small]) == before

    code, out, _ = cli("backup", "restore", str(backup), *opener, "--only", f"{small}/bin")
    assert code == 0
    after_only = _snapshot(kube, [small])
    assert (small, "bin") in after_only
    assert after_only[(small, "plain")] == before[(small, "plain")]  # not named: untouched

    code, out, err = cli("backup", "restore", str(backup), *opener, "--conflict", "overwrite")
    assert code == 0, err
    assert "replace 1" in out
    assert "overwrite 1" in out
    frozen = kube.get(Secret, "frozen", namespace=small)
    assert frozen.immutable is True
    assert base64.b64decode((frozen.data or {})["token"]) == b"first"
    assert frozen.metadata.labels == {"x": "1"}  # type: ignore[union-attr]
    plain = kube.get(Secret, "plain", namespace=small)
    assert base64.b64decode((plain.data or {})["password"]) == CANARY.encode()
    _assert_no_canary(cli, caplog)


@needs_age
def test_the_cronjob_account_can_back_up_and_do_nothing_else(
    control_plane: ControlPlane,
    kube: Client,
    cli: Cli,
    small: str,
    key: tuple[str, Path],
    tmp_path: Path,
) -> None:
    recipient, identity = key
    manifest = Path(__file__).resolve().parents[2] / "deploy" / "backup" / "cronjob.yaml"
    applied = apply_manifests(kube, [manifest])
    assert "CronJob kustos-system/kustos-backup" in applied
    try:
        token = service_account_token(kube, "kustos-system", "kustos-backup")
        config = yaml.safe_load(control_plane.kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": token.reveal_text()}
        as_account = tmp_path / "account.kubeconfig"
        as_account.write_text(yaml.safe_dump(config))
        out_dir = tmp_path / "backups"
        out_dir.mkdir()
        argv = ["backup", "create", "-A", "-r", recipient, "-o", str(out_dir), "--keep", "1"]
        argv += ["--kubeconfig", str(as_account)]
        for _ in range(2):
            code = main(argv)
            assert code == 0, cli.capsys.readouterr().err
            time.sleep(1.1)  # a new time stamp
        written = sorted(out_dir.iterdir())
        assert len(written) == 1  # --keep 1
        assert written[0].name.startswith("kustos-backup-")
        code = main(["backup", "verify", str(written[0]), "-i", str(identity)])
        assert code == 0
        verified = cli.capsys.readouterr().out
        assert "every hash and count verified" in verified
        with make_client(ClientSettings(kubeconfig=as_account)) as limited:
            with pytest.raises(ApiError) as refused:
                limited.get(Secret, "plain", namespace=small)
            assert refused.value.status.code == 403
            with pytest.raises(ApiError):
                limited.create(Secret(metadata=ObjectMeta(name="x", namespace=small)))
    finally:
        kube.delete(Namespace, "kustos-system")
        kube.delete(ClusterRoleBinding, "kustos-backup")
        kube.delete(ClusterRole, "kustos-backup")


@needs_age
def test_ssh_recipients_open_with_age_and_managed_secrets_are_overwritten(
    kube: Client, cli: Cli, crd: None, namespace: str, tmp_path: Path
) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    ssh_key = tmp_path / "id_ed25519"
    ssh_key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    ssh_key.chmod(0o600)
    _managed_secret(kube, cli, namespace)
    backup = tmp_path / "ssh.age"
    code, _, err = cli(
        "backup", "create", "-n", namespace, "-o", str(backup), "-r", public.decode()
    )
    assert code == 0, err
    opened = subprocess.run(
        [AGE or "age", "-d", "-i", str(ssh_key), str(backup)], capture_output=True, check=True
    )
    assert opened.stdout[257:262] == b"ustar"  # a tar, as documented

    kube.patch(
        MS,
        "db",
        {"spec": {"data": {"password": {"password": {"length": 40}}}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    code, out, err = cli(
        "backup", "restore", str(backup), "-i", str(ssh_key), "--conflict", "overwrite"
    )
    assert code == 0, err
    assert "overwrite 1" in out  # the ManagedSecret; its Secrets are unchanged
    restored = kube.get(MS, "db", namespace=namespace).to_dict()
    assert restored["spec"]["data"]["password"]["password"]["length"] == 24
    assert restored["status"]["currentVersion"] == 2


@needs_age
def test_recovery_without_kustos_as_the_docs_say(
    control_plane: ControlPlane,
    kube: Client,
    small: str,
    small_backup: SmallBackup,
) -> None:
    backup, identity = small_backup.file, small_backup.identity
    before = _snapshot(kube, [small])
    _delete_and_wait(kube, [small])
    kubectl = require_binaries() / "kubectl"
    # docs/backup.md, "Recovering without Kustos": age, tar and kubectl only.
    recipe = (
        f"age -d -i {identity} {backup} | tar -xO objects.json"
        f" | {kubectl} apply --server-side --field-manager=restore -f -"
    )
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", recipe],
        check=True,
        capture_output=True,
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
    )
    assert _snapshot(kube, [small]) == before
