"""SealedSecrets against the real ``sops`` (3.13.2, built from the Go module proxy), ``age``
and API server.

Aspects: ``sops -d`` opens a SealedSecret that ``kustos seal`` wrote (each of several
recipients alone) and shows the binding in clear; ``sops set`` edits a value and leaves the
others byte-identical, and ``kustos unseal`` reads the edit; a Secret encrypted by
``sops -e --age … --encrypted-regex '^(data|stringData)$'`` (both MAC modes) is accepted by
``kustos unseal``, and renaming it breaks sops's MAC for both tools; ``kustos unseal``
refuses what ``sops -d`` refuses (a tampered value); Debian's ``age -d`` opens the ``enc``
stanza, and the 32 bytes it returns decrypt the values with AES-GCM and the key path; the
API server accepts the SealedSecret CRD and object (top-level ``sops`` kept), the object
read back unseals, and the same file applied in another namespace is refused; encrypted
keys out of sorted order come back sorted and fail the MAC (why kustos seal sorts them).

The sops binary comes from ``tools/sops/build.sh`` (cached; a few minutes the first time);
when it cannot be built the sops tests are skipped with the build's own reason.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from kustos.cli.main import main
from kustos.conventions import ANNOTATION_SEALED_FOR, LABEL_TEST_NAMESPACE
from kustos.crypto import sops
from kustos.kube.applying import apply_manifests, wait_established
from kustos.sources import sealing
from tests.unit.sources.sealkit import CANARY, CANARY_B64, Key, secret_manifest

# The first build of sops takes minutes; once cached each test takes about a second.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "sops" / "build.sh"
CRD = ROOT / "deploy" / "sources" / "crd-sealedsecret.yaml"
SealedSecret: Any = create_namespaced_resource(
    "kustos.io", "v1alpha1", "SealedSecret", "sealedsecrets"
)


@pytest.fixture(scope="module")
def sops_bin() -> Path:
    """The real sops binary, built (or found in the cache) by tools/sops/build.sh."""
    result = subprocess.run(
        ["nice", "-n", "10", str(BUILD)], capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the sops binary cannot be built: {last}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Key, Path]:
    key = Key()
    path = tmp_path / "key.txt"
    path.write_text(key.identity_text)
    path.chmod(0o600)
    return key, path


def _sops(sops_bin: Path, key_file: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env.pop("SOPS_AGE_KEY", None)
    result = subprocess.run(
        [str(sops_bin), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        return result.stderr
    return result.stdout


def _kustos(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _seal_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, *recipients: Key) -> Path:
    source = tmp_path / "secret.yaml"
    source.write_text(yaml.safe_dump(secret_manifest()))
    flags = [arg for key in recipients for arg in ("--recipient", key.public)]
    code, out, err = _kustos(capsys, "seal", "-f", str(source), *flags)
    assert (code, err) == (0, "")
    sealed = tmp_path / "sealed.yaml"
    sealed.write_text(out)
    return sealed


def test_sops_decrypts_what_kustos_seal_wrote(
    sops_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster, backup = Key(), Key()
    sealed = _seal_file(capsys, tmp_path, cluster, backup)
    for key in (cluster, backup):
        key_file = tmp_path / f"{key.public[:12]}.txt"
        key_file.write_text(key.identity_text)
        plain = yaml.safe_load(_sops(sops_bin, key_file, "decrypt", str(sealed)))
        assert plain["metadata"]["annotations"] == {ANNOTATION_SEALED_FOR: "prod/db"}
        assert plain["spec"]["data"] == {"token": CANARY_B64}
        assert plain["spec"]["stringData"] == {"password": CANARY, "username": "admin"}
        assert "sops" not in plain


def test_sops_edits_a_sealed_secret_and_kustos_reads_the_edit(
    sops_bin: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: tuple[Key, Path],
) -> None:
    key, key_file = keys
    sealed = _seal_file(capsys, tmp_path, key)
    before = yaml.safe_load(sealed.read_text())
    _sops(sops_bin, key_file, "set", str(sealed), '["spec"]["stringData"]["password"]', '"rotated"')
    after = yaml.safe_load(sealed.read_text())
    # sops reuses the IV of an unchanged value: Git diffs show only the key that changed.
    assert after["spec"]["stringData"]["username"] == before["spec"]["stringData"]["username"]
    assert after["spec"]["stringData"]["password"] != before["spec"]["stringData"]["password"]
    assert after["sops"]["mac_only_encrypted"] is True
    code, out, err = _kustos(capsys, "unseal", "-i", str(key_file), str(sealed))
    assert (code, err) == (0, "")
    assert yaml.safe_load(out)["stringData"] == {"password": "rotated", "username": "admin"}


@pytest.mark.parametrize("mac_only", [False, True])
def test_kustos_unseal_accepts_a_secret_encrypted_by_sops(
    sops_bin: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: tuple[Key, Path],
    mac_only: bool,
) -> None:
    key, key_file = keys
    plain = tmp_path / "secret.yaml"
    plain.write_text(yaml.safe_dump(secret_manifest(), sort_keys=False))
    # `sops -e`, as documented; 3.13.2's `encrypt` subcommand has no --mac-only-encrypted.
    args = ["-e", "--age", key.public, "--encrypted-regex", "^(data|stringData)$"]
    if mac_only:
        args.append("--mac-only-encrypted")
    encrypted = tmp_path / "secret.enc.yaml"
    encrypted.write_text(_sops(sops_bin, key_file, *args, str(plain)))
    assert CANARY not in encrypted.read_text()
    code, out, err = _kustos(capsys, "unseal", "-i", str(key_file), str(encrypted))
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == secret_manifest()
    # Renamed: sops's own MAC covers the name in its default mode, and both tools agree.
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(encrypted.read_text().replace("name: db", "name: db-admin"))
    code, out, err = _kustos(capsys, "unseal", "-i", str(key_file), str(renamed))
    if mac_only:
        assert code == 0
        _sops(sops_bin, key_file, "decrypt", str(renamed))
    else:
        assert (code, out) == (2, "")
        assert "MAC mismatch" in err
        assert "MAC mismatch" in _sops(sops_bin, key_file, "decrypt", str(renamed), check=False)


def test_both_tools_refuse_a_tampered_value(
    sops_bin: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keys: tuple[Key, Path],
) -> None:
    key, key_file = keys
    sealed = _seal_file(capsys, tmp_path, key)
    document = yaml.safe_load(sealed.read_text())
    stolen = document["spec"]["stringData"]["username"]
    document["spec"]["stringData"]["password"] = stolen  # a value moved to another key
    sealed.write_text(sops.to_yaml(document))
    assert "Could not decrypt" in _sops(sops_bin, key_file, "decrypt", str(sealed), check=False)
    code, _, err = _kustos(capsys, "unseal", "-i", str(key_file), str(sealed))
    assert code == 2
    assert "spec.stringData.password: the value fails authentication" in err


@pytest.mark.skipif(shutil.which("age") is None, reason="the age binary is not installed")
def test_age_opens_the_enc_stanza_and_its_key_opens_the_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: tuple[Key, Path]
) -> None:
    key, key_file = keys
    sealed = yaml.safe_load(_seal_file(capsys, tmp_path, key).read_text())
    stanza = tmp_path / "stanza.age"
    stanza.write_text(sealed["sops"]["age"][0]["enc"])
    result = subprocess.run(
        ["age", "--decrypt", "-i", str(key_file), str(stanza)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    data_key = result.stdout
    assert len(data_key) == 32
    value = sealed["spec"]["stringData"]["password"]
    fields = dict(part.split(":", 1) for part in value[len("ENC[AES256_GCM,") : -1].split(","))
    data, iv, tag = (base64.b64decode(fields[k]) for k in ("data", "iv", "tag"))
    plain = AESGCM(data_key).decrypt(iv, data + tag, b"spec:stringData:password:")
    assert plain.decode() == CANARY
    assert fields["type"] == "str"


def test_the_api_server_keeps_a_sealed_secret_that_unseals_only_where_it_was_sealed(
    kube: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apply_manifests(kube, [CRD])
    wait_established(kube, "sealedsecrets.kustos.io")
    key = Key()
    manifest = secret_manifest()
    manifest["stringData"] = {"zeta": CANARY, "alpha": "a"}  # sorted by seal, as the server does
    namespaces = []
    try:
        for name in ("sealed-home", "sealed-elsewhere"):
            kube.create(
                Namespace(metadata=ObjectMeta(name=name, labels={LABEL_TEST_NAMESPACE: "true"}))
            )
            namespaces.append(name)
        manifest["metadata"]["namespace"] = "sealed-home"
        sealed = sealing.seal(manifest, [key.recipient], now=datetime.now(UTC))
        kube.create(SealedSecret.from_dict(sealed))
        served = kube.get(SealedSecret, "db", namespace="sealed-home").to_dict()
        assert served["sops"]["mac"] == sealed["sops"]["mac"]
        assert served["sops"]["age"] == sealed["sops"]["age"]
        unsealed = sealing.unseal(served, key.identities, source="sealed-home/db")
        assert unsealed["stringData"] == {"alpha": "a", "zeta": CANARY}
        # The same file applied to another namespace: the API server takes it, unseal refuses.
        moved = {**sealed, "metadata": {**sealed["metadata"], "namespace": "sealed-elsewhere"}}
        kube.create(SealedSecret.from_dict(moved))
        copy = kube.get(SealedSecret, "db", namespace="sealed-elsewhere").to_dict()
        with pytest.raises(sealing.BindingError, match="was sealed for sealed-home/db"):
            sealing.unseal(copy, key.identities, source="sealed-elsewhere/db")
        # Keys out of sorted order (as `sops edit` appends them) come back sorted: the MAC,
        # which follows document order, no longer verifies on the cluster's copy.
        plain_doc = sops.decrypt(sealed, key.identities).document
        plain_doc["metadata"]["name"] = "unsorted"
        plain_doc["metadata"]["annotations"][ANNOTATION_SEALED_FOR] = "sealed-home/unsorted"
        plain_doc["spec"]["stringData"] = {"zeta": CANARY, "alpha": "a"}
        unsorted = sops.encrypt(
            plain_doc,
            [key.recipient],
            now=datetime.now(UTC),
            rule=sops.Rule("encrypted_regex", sealing.SEALED_REGEX),
            mac_only_encrypted=True,
        )
        assert sealing.unseal(unsorted, key.identities)["stringData"]["zeta"] == CANARY
        kube.create(SealedSecret.from_dict(unsorted))
        served = kube.get(SealedSecret, "unsorted", namespace="sealed-home").to_dict()
        assert list(served["spec"]["stringData"]) == ["alpha", "zeta"]
        with pytest.raises(sops.MacMismatchError):
            sealing.unseal(served, key.identities)
        # The schema refuses a value that is not a SOPS ciphertext.
        plain = {**sealed, "metadata": {**sealed["metadata"], "name": "plain"}}
        plain["spec"] = {**sealed["spec"], "stringData": {"password": CANARY}}
        with pytest.raises(ApiError) as err:
            kube.create(SealedSecret.from_dict(plain))
        assert err.value.status.code == 422
    finally:
        for name in namespaces:
            kube.delete(Namespace, name)


def test_sops_opens_and_edits_a_resealed_file(
    sops_bin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, backup = Key(), Key(), Key()
    sealed = _seal_file(capsys, tmp_path, old, backup)
    (tmp_path / "backup.txt").write_text(backup.identity_text)
    (tmp_path / "backup.txt").chmod(0o600)
    (tmp_path / "new.txt").write_text(new.identity_text)
    (tmp_path / "new.txt").chmod(0o600)
    code, out, err = _kustos(
        capsys, "seal", "--reseal", "-i", str(tmp_path / "backup.txt"), "-r", new.public,
        "--drop-recipient", old.public, str(sealed),
    )  # fmt: skip
    assert code == 0, err
    assert CANARY not in out + err
    decrypted = yaml.safe_load(_sops(sops_bin, tmp_path / "new.txt", "-d", str(sealed)))
    assert decrypted["spec"]["stringData"]["password"] == CANARY
    assert decrypted["metadata"]["annotations"][ANNOTATION_SEALED_FOR] == "prod/db"
    (tmp_path / "old.txt").write_text(old.identity_text)
    (tmp_path / "old.txt").chmod(0o600)
    _sops(sops_bin, tmp_path / "old.txt", "-d", str(sealed), check=False)  # old key: refused
    _sops(sops_bin, tmp_path / "new.txt", "set", str(sealed),
          '["spec"]["stringData"]["username"]', '"root"')  # fmt: skip
    edited = yaml.safe_load(sealed.read_text())
    opened = sealing.unseal(edited, new.identities, source="edited")
    assert opened["stringData"] == {"password": CANARY, "username": "root"}
    assert [s["recipient"] for s in edited["sops"]["age"]] == [backup.public, new.public]
