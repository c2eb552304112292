"""SealedSecrets opened by the operator and delivered through the rotation engine.

Aspects: a SealedSecret applied to the cluster becomes a ManagedSecret of the same name
(owned by it) and a live Secret with the unsealed values, rolled out to the Deployment that
uses it; re-sealing a new value makes a new version and rolls again; a copy of the file
moved to another name is refused with ``Ready=False`` (``CannotUnseal``) on the
SealedSecret and a Warning Event, and nothing is made for it; a SealedSecret encrypted by
the real ``sops -e`` (the rule docs/seal.md gives) is unsealed into its Secret, and files
tampered with in Git (two ciphertexts swapped, a key removed so the MAC fails) are
refused with ``CannotUnseal`` saying which; no value appears in status, Events or logs.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml
from lightkube import ApiError, Client

from kustos.conventions import ANNOTATION_SEALED_FOR
from kustos.crypto import sops
from kustos.kube.client import ClientSettings, make_async_client
from kustos.operator.running import Operator, OperatorSettings
from kustos.sources.reading import SealedSecret
from kustos.sources.sealing import SEALED_REGEX, seal
from kustos.testing.controlplane import ControlPlane
from tests.integration.test_operator import _port, _until
from tests.integration.test_rotation import (
    MS,
    _data,
    _deployment,
    _events_text,
    _status,
    _wait_available,
)
from tests.integration.test_sops_interop import _sops, sops_bin  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def _secret(namespace: str, name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": password, "username": "app"},
    }


def _ready(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    """The SealedSecret's ``Ready`` condition (empty until the operator has set one)."""
    obj: Any = kube.get(SealedSecret, name, namespace=namespace)
    conditions = (obj.to_dict().get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def _with_operator(
    plane: ControlPlane,
    namespace: str,
    identities: sops.Identities,
    body: Callable[[], Awaitable[None]],
) -> None:
    """Run *body* while an operator with the unsealing *identities* serves *namespace*."""

    async def go() -> None:
        client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig))
        stop = asyncio.Event()
        settings = OperatorSettings(
            namespaces=(namespace,), listen=f"127.0.0.1:{_port()}", unseal_identities=identities
        )
        task = asyncio.create_task(Operator(client, settings).run(stop))
        try:
            await body()
        finally:
            stop.set()
            await task
            await client.close()

    asyncio.run(go())


def test_sealed_secrets_become_versions_and_moved_copies_are_refused(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    identity = pyrage.x25519.Identity.generate()
    recipient = sops.Recipient.parse(str(identity.to_public()))
    identities = sops.Identities.parse(str(identity), source="test identity")
    now = dt.datetime.now(dt.UTC)
    sealed = seal(_secret(namespace, "db", "sealed-canary-one"), [recipient], now=now)
    kube.create(_deployment(namespace, "api", "db", "password"))
    kube.create(SealedSecret.from_dict(sealed))
    moved = copy.deepcopy(sealed)
    moved["metadata"]["name"] = "stolen"
    kube.create(SealedSecret.from_dict(moved))

    def ready(name: str) -> dict[str, Any]:
        return _ready(kube, namespace, name)

    def version() -> int | None:
        try:
            return _status(kube, namespace, "db").get("currentVersion")
        except ApiError:
            return None  # not made yet

    async def body() -> None:
        await _until(lambda: version() == 1, what="v1")
        await _until(lambda: ready("stolen").get("reason") == "CannotUnseal", what="refusal")
        _wait_available(kube, namespace, "api")
        resealed = seal(
            _secret(namespace, "db", "sealed-canary-two"),
            [recipient],
            now=dt.datetime.now(dt.UTC),
        )
        current: Any = kube.get(SealedSecret, "db", namespace=namespace)
        resealed["metadata"]["resourceVersion"] = current.metadata.resourceVersion
        kube.replace(SealedSecret.from_dict(resealed))
        await _until(lambda: version() == 2, what="v2")

    _with_operator(control_plane, namespace, identities, body)
    assert _data(kube, namespace, "db") == {"password": b"sealed-canary-two", "username": b"app"}
    assert ready("db").get("reason") == "Unsealed"
    refused = ready("stolen")
    assert refused["status"] == "False"
    assert "sealed for" in refused["message"]
    assert "moved or renamed" in refused["message"]
    names = {m.metadata.name for m in kube.list(MS, namespace=namespace) if m.metadata}
    assert names == {"db"}, "nothing is made for a refused copy"
    child: Any = kube.get(MS, "db", namespace=namespace)
    owners = child.to_dict()["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("SealedSecret", "db")]
    status = _status(kube, namespace, "db")
    assert status["versions"][0]["reason"].startswith("SourceChanged: ")
    text = str(status) + _events_text(kube, namespace) + caplog.text
    assert "sealed-canary" not in text


def test_a_sealed_secret_made_by_sops_is_unsealed_and_tampered_ones_are_refused(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    sops_bin: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{identity}\n")
    recipient = sops.Recipient.parse(str(identity.to_public()))
    identities = sops.Identities.parse(str(identity), source="test identity")
    # Encrypted by the real `sops -e`, as docs/seal.md says: the plain SealedSecret with its
    # binding annotation, the sealed rule, MAC over encrypted values only.
    plain = {
        "apiVersion": "kustos.io/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {
            "name": "bysops",
            "namespace": namespace,
            "annotations": {ANNOTATION_SEALED_FOR: f"{namespace}/bysops"},
        },
        "spec": {
            "template": {"type": "Opaque"},
            "stringData": {"password": "sops-canary-one", "username": "app"},
        },
    }
    source = tmp_path / "bysops.yaml"
    source.write_text(yaml.safe_dump(plain))
    by_sops = _sops(
        sops_bin, key_file, "-e", "--age", str(identity.to_public()),
        "--encrypted-regex", SEALED_REGEX, "--mac-only-encrypted", str(source),
    )  # fmt: skip
    kube.create(SealedSecret.from_dict(yaml.safe_load(by_sops)))
    # Sealed by kustos, then tampered with in Git: two ciphertexts swapped; a key removed.
    now = dt.datetime.now(dt.UTC)
    swapped = seal(_secret(namespace, "swapped", "sealed-canary-swap"), [recipient], now=now)
    values = swapped["spec"]["stringData"]
    values["password"], values["username"] = values["username"], values["password"]
    dropped = seal(_secret(namespace, "dropped", "sealed-canary-drop"), [recipient], now=now)
    del dropped["spec"]["stringData"]["username"]
    for doc in (swapped, dropped):
        kube.create(SealedSecret.from_dict(doc))

    def ready(name: str) -> dict[str, Any]:
        return _ready(kube, namespace, name)

    def _refused(name: str) -> bool:
        return ready(name).get("reason") == "CannotUnseal"

    def delivered() -> bool:
        try:
            return bool(_status(kube, namespace, "bysops").get("currentVersion"))
        except ApiError:
            return False  # not made yet

    async def body() -> None:
        await _until(lambda: ready("bysops").get("reason") == "Unsealed", what="sops's file")
        await _until(delivered, what="its Secret")
        for name in ("swapped", "dropped"):
            await _until(partial(_refused, name), what=name)

    _with_operator(control_plane, namespace, identities, body)
    assert _data(kube, namespace, "bysops") == {"password": b"sops-canary-one", "username": b"app"}
    assert "fails authentication" in ready("swapped")["message"]
    assert "MAC mismatch" in ready("dropped")["message"]
    names = {m.metadata.name for m in kube.list(MS, namespace=namespace) if m.metadata}
    assert names == {"bysops"}, "nothing is made for a tampered file"
    text = (
        " ".join(str(ready(n)) for n in ("bysops", "swapped", "dropped"))
        + _events_text(kube, namespace)
        + caplog.text
    )
    for canary in ("sops-canary", "sealed-canary"):
        assert canary not in text
