"""The cluster's sealing key in the key store, published, rotated and resealed.

Aspects (real control plane, real keyring file, real SoftHSM2 token):
- the operator reads the sealing keys from the keyring (``--sealing-keyring``), publishes
  the current recipient in a ConfigMap, and ``kustos seal --fetch-recipient`` (kubeconfig)
  seals for it; the SealedSecret it wrote becomes the Secret;
- ``kustos kms sealing-key rotate`` while the operator runs: it reads the new key within
  ``--sealing-reload``, publishes it with the old one under ``previous``, opens a file
  sealed for the new key (also one applied before it had read the key) and still opens the
  old files; ``seal --reseal --fetch-recipient`` moves a file to the new key keeping the
  backup recipient, ``kms sealing-key reseal`` does it with the store's keys, and the old
  key can then be retired without any SealedSecret failing;
- the same with a PKCS#11 token: the identity is a private data object, invisible to a
  session that has not logged in, read by a second provider, published and fetched;
- ``deploy/sources/sealing-recipient-rbac.yaml``: the operator's ServiceAccount may
  create and patch the ConfigMap, every signed-in user may read it and nothing else;
- canary: no value or identity in any output, status, Event or log line, and no Secret
  of the cluster holds an age identity (the key never sits in etcd).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pkcs11
import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Secret
from pkcs11 import Attribute, ObjectClass

from kustos.cli.main import main
from kustos.crypto import sops
from kustos.kms.providers.keyring import LocalKeyring
from kustos.kms.providers.pkcs11 import SEALING_LABEL
from kustos.kube.client import ClientSettings, make_async_client
from kustos.operator.running import Operator, OperatorSettings
from kustos.operator.unsealing import SealingKeys
from kustos.sensitive import Sensitive
from kustos.sources import sealing
from kustos.sources.reading import SealedSecret
from kustos.testing.controlplane import ControlPlane
from tests.integration.test_operator import _port, _until
from tests.integration.test_pkcs11_provider import (  # noqa: F401 - softhsm is a fixture
    LABEL,
    MODULE,
    PIN,
    open_provider,
    softhsm,
)
from tests.integration.test_rotation import _data, _events_text, _status

pytestmark = pytest.mark.integration
CANARY = "seal-keystore-canary-51d0"
RBAC = Path(__file__).resolve().parents[2] / "deploy" / "sources" / "sealing-recipient-rbac.yaml"
PASS = "keyring passphrase 9c1e"


def _secret(namespace: str, name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": password},
    }


def _manifest(tmp_path: Path, namespace: str, name: str, password: str) -> Path:
    path = tmp_path / f"{name}.secret.yaml"
    path.write_text(yaml.safe_dump(_secret(namespace, name, password)))
    return path


def _sealed_for(recipient: str, namespace: str, name: str, password: str) -> dict[str, Any]:
    """A SealedSecret of one password for *recipient* (as a file made elsewhere would be)."""
    return sealing.seal(
        _secret(namespace, name, password),
        [sops.Recipient.parse(recipient)],
        now=dt.datetime.now(dt.UTC),
    )


def _private(path: Path, text: str) -> Path:
    """*path* holding *text* and a newline, readable by its owner only."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log line, for the canary checks."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def keyring_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """A keyring file with a key-encryption key and a sealing key; its store flags."""
    passphrase = _private(tmp_path / "pass", PASS)
    store = ["--keyring", str(tmp_path / "ring.json"), "--passphrase-file", str(passphrase)]
    _cli(capsys, "kms", "keys", "init", *store)
    _cli(capsys, "kms", "sealing-key", "create", *store)
    return store


@pytest.fixture
def token_store(tmp_path: Path) -> list[str]:
    """The store flags of the SoftHSM2 token (the ``softhsm`` fixture makes it)."""
    pin = _private(tmp_path / "pin", PIN)
    return ["--pkcs11-module", str(MODULE), "--pkcs11-token", LABEL, "--pkcs11-pin-file", str(pin)]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def _published(kube: Client, namespace: str) -> dict[str, str] | None:
    try:
        found: Any = kube.get(ConfigMap, "kustos-sealing", namespace=namespace)
    except ApiError:
        return None
    return dict(found.data or {})


def _ready(kube: Client, namespace: str, name: str) -> str | None:
    obj: Any = kube.get(SealedSecret, name, namespace=namespace)
    conditions = (obj.to_dict().get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def _apply(kube: Client, path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    try:
        current: Any = kube.get(
            SealedSecret, document["metadata"]["name"], namespace=document["metadata"]["namespace"]
        )
    except ApiError:
        kube.create(SealedSecret.from_dict(document))
        return
    document["metadata"]["resourceVersion"] = current.metadata.resourceVersion
    kube.replace(SealedSecret.from_dict(document))


def test_operator_publishes_rotates_and_files_are_resealed(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    debug_log: pytest.LogCaptureFixture,
    keyring_store: list[str],
) -> None:
    store = keyring_store
    recipient, identity = sops.new_identity()
    backup = _private(tmp_path / "backup.txt", identity.reveal_text())
    configmap = f"{namespace}/kustos-sealing"
    fetch = ["--fetch-recipient", "--recipient-configmap", configmap,
             "--kubeconfig", str(control_plane.kubeconfig)]  # fmt: skip
    ring = LocalKeyring(tmp_path / "ring.json", Sensitive(PASS))
    outputs: list[str] = []

    def version(name: str) -> int | None:
        try:
            return _data_version(kube, namespace, name)
        except ApiError:
            return None

    async def body() -> None:
        client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
        stop = asyncio.Event()
        settings = OperatorSettings(
            namespaces=(namespace,),
            listen=f"127.0.0.1:{_port()}",
            sealing_store=ring,
            sealing_reload=1.0,
            recipient_configmap=configmap,
        )
        task = asyncio.create_task(Operator(client, settings).run(stop))
        try:
            await _until(lambda: _published(kube, namespace) is not None, what="published")
            first = (_published(kube, namespace) or {})["recipient"].strip()
            assert first == ring.sealing_keys()[0].recipient
            # Seal for the cluster (fetched) and a backup key; the operator opens it.
            db = tmp_path / "db.sealed.yaml"
            out, err = await asyncio.to_thread(
                _cli, capsys, "seal", "-f", str(_manifest(tmp_path, namespace, "db", CANARY)),
                "-r", recipient, "-o", str(db), *fetch,
            )  # fmt: skip
            outputs.append(out + err)
            _apply(kube, db)
            await _until(lambda: version("db") == 1, what="db v1")
            # Rotate while the operator runs; a file for the new key applied at once.
            out, _ = await asyncio.to_thread(_cli, capsys, "kms", "sealing-key", "rotate", *store)
            outputs.append(out)
            new = LocalKeyring(tmp_path / "ring.json", Sensitive(PASS)).sealing_keys()[0]
            api = tmp_path / "api.sealed.yaml"
            api.write_text(
                sops.to_yaml(_sealed_for(new.recipient, namespace, "api", CANARY + "-api"))
            )
            _apply(kube, api)
            await _until(lambda: version("api") == 1, what="api v1 (new key read)")
            await _until(
                lambda: (
                    (_published(kube, namespace) or {}).get("recipient", "").strip()
                    == new.recipient
                ),
                what="new recipient published",
            )
            data = _published(kube, namespace) or {}
            assert data["previous"].strip() == first
            # Reseal db for the new key, keeping the backup recipient; values stay.
            before = yaml.safe_load(db.read_text())
            out, err = await asyncio.to_thread(
                _cli, capsys, "seal", "--reseal", "-i", str(backup), str(db), *fetch
            )
            outputs.append(out + err)
            after = yaml.safe_load(db.read_text())
            assert [s["recipient"] for s in after["sops"]["age"]] == [recipient, new.recipient]
            assert after["spec"] == before["spec"]
            assert after["sops"]["mac"] == before["sops"]["mac"]
            _apply(kube, db)
            # The old key can go: every SealedSecret still opens, nothing new is made.
            _cli(capsys, "kms", "sealing-key", "retire", ring_key_id(first, tmp_path), *store)
            await _until(
                lambda: (_published(kube, namespace) or {}).get("previous", "x") == "",
                what="old key gone from the ConfigMap",
            )
            moved = copy.deepcopy(after)
            moved["metadata"]["name"] = "db-copy"
            moved_path = tmp_path / "db-copy.yaml"
            moved_path.write_text(sops.to_yaml(moved))
            _apply(kube, moved_path)
            await _until(
                lambda: _ready(kube, namespace, "db-copy") == "CannotUnseal", what="refusal"
            )
            assert _ready(kube, namespace, "db") == "Unsealed"
            assert _ready(kube, namespace, "api") == "Unsealed"
            assert version("db") == 1
        finally:
            stop.set()
            await task
            await client.close()

    asyncio.run(body())
    assert _data(kube, namespace, "db") == {"password": CANARY.encode()}
    assert _data(kube, namespace, "api") == {"password": (CANARY + "-api").encode()}
    secrets = [s.reveal_text() for _, s in ring.sealing_identities()]
    events = _events_text(kube, namespace)
    text = "".join(outputs) + events + debug_log.text + str(_published(kube, namespace))
    assert CANARY not in text
    assert "AGE-SECRET-KEY" not in text
    assert all(s not in text for s in secrets)
    # The unsealing identity lives in the key store, never in an etcd Secret (of this
    # test, or of the namespaces an operator would use; other tests' may hold their own).
    stored = " ".join(
        base64.b64decode(value).decode(errors="replace")
        for where in (namespace, "kube-system", "default")
        for secret in kube.list(Secret, namespace=where)
        for value in (secret.data or {}).values()
    )
    assert "AGE-SECRET-KEY" not in stored.upper()


def _data_version(kube: Client, namespace: str, name: str) -> int | None:
    return _status(kube, namespace, name).get("currentVersion")


def ring_key_id(recipient: str, tmp_path: Path) -> str:
    """The id of the sealing key whose recipient is *recipient*."""
    ring = LocalKeyring(tmp_path / "ring.json", Sensitive(PASS))
    return next(k.key_id for k in ring.sealing_keys() if k.recipient == recipient)


def test_pkcs11_token_holds_private_sealing_keys_that_are_published(
    softhsm: Any,  # noqa: F811 - the fixture imported above
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    debug_log: pytest.LogCaptureFixture,
    token_store: list[str],
) -> None:
    store = token_store
    out1, _ = _cli(capsys, "kms", "sealing-key", "create", *store)
    out2, _ = _cli(capsys, "kms", "sealing-key", "rotate", *store)
    listing, _ = _cli(capsys, "kms", "sealing-key", "list", "--format", "json", *store)
    rows = yaml.safe_load(listing)["sealing_keys"]
    assert [r["state"] for r in rows] == ["current", "previous"]
    # Without a login the token shows no sealing key object at all.
    session = pkcs11.lib(str(MODULE)).get_token(token_label=LABEL).open()
    try:
        hidden = list(session.get_objects({Attribute.CLASS: ObjectClass.DATA}))
        assert [o for o in hidden if o[Attribute.LABEL] == SEALING_LABEL] == []
    finally:
        session.close()
    provider = open_provider()
    try:
        held = provider.sealing_identities()
        assert [k.recipient for k, _ in held] == [r["recipient"] for r in rows]
        old_file = _sealed_for(rows[1]["recipient"], namespace, "db", CANARY)
        identities = sops.Identities.of([s for _, s in held], source="token")
        assert sealing.unseal(old_file, identities)["stringData"]["password"] == CANARY
        path = tmp_path / "db.yaml"
        path.write_text(sops.to_yaml(old_file))

        async def publish() -> None:
            client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
            try:
                keys = SealingKeys(
                    provider, client, configmap=f"{namespace}/kustos-sealing", every=1.0,
                    component="test",
                )  # fmt: skip
                assert await keys.load()
                await keys.publish()
            finally:
                await client.close()

        asyncio.run(publish())
    finally:
        provider.close()
    out3, _ = _cli(capsys, "kms", "sealing-key", "reseal", *store, str(path))
    resealed = yaml.safe_load(path.read_text())
    assert [s["recipient"] for s in resealed["sops"]["age"]] == [rows[0]["recipient"]]
    fetched = tmp_path / "fetched.yaml"
    _cli(
        capsys, "seal", "-f", str(_manifest(tmp_path, namespace, "api", CANARY)), "-o",
        str(fetched), "--fetch-recipient", "--recipient-configmap", f"{namespace}/kustos-sealing",
        "--kubeconfig", str(control_plane.kubeconfig),
    )  # fmt: skip
    sealed = yaml.safe_load(fetched.read_text())
    assert [s["recipient"] for s in sealed["sops"]["age"]] == [rows[0]["recipient"]]
    # Retiring the old key destroys its object; the current one stays.
    _cli(capsys, "kms", "sealing-key", "retire", rows[1]["key_id"], *store)
    again = open_provider()
    try:
        assert [k.key_id for k in again.sealing_keys()] == [rows[0]["key_id"]]
        secrets = [s.reveal_text() for _, s in again.sealing_identities()]
    finally:
        again.close()
    text = out1 + out2 + listing + out3 + debug_log.text
    assert PIN not in text
    assert CANARY not in text
    assert "AGE-SECRET-KEY" not in text
    assert all(s not in text for s in secrets)


def test_recipient_rbac_lets_the_operator_write_and_everyone_read(
    control_plane: ControlPlane, kube: Client
) -> None:
    from lightkube.models.authorization_v1 import (  # noqa: PLC0415
        ResourceAttributes,
        SubjectAccessReviewSpec,
    )
    from lightkube.resources.authorization_v1 import SubjectAccessReview  # noqa: PLC0415

    from kustos.kube.applying import apply_manifests  # noqa: PLC0415

    apply_manifests(kube, [RBAC])

    def allowed(user: str, groups: list[str], verb: str, name: str | None) -> bool:
        review = kube.create(
            SubjectAccessReview(
                spec=SubjectAccessReviewSpec(
                    user=user,
                    groups=groups,
                    resourceAttributes=ResourceAttributes(
                        namespace="kube-system", verb=verb, resource="configmaps", name=name
                    ),
                )
            )
        )
        return bool(review.status and review.status.allowed)

    operator = "system:serviceaccount:kustos-system:kustos-operator"
    anyone = ("alice", ["system:authenticated"])
    assert allowed(*anyone, "get", "kustos-sealing")
    assert not allowed(*anyone, "get", "other")
    assert not allowed(*anyone, "patch", "kustos-sealing")
    assert not allowed(*anyone, "list", None)
    assert allowed(operator, ["system:serviceaccounts"], "patch", "kustos-sealing")
    assert allowed(operator, ["system:serviceaccounts"], "create", None)
    assert not allowed(operator, ["system:serviceaccounts"], "patch", "other")
