"""Values from AWS Secrets Manager (moto in server mode) through the rotation engine.

Aspects: a ManagedSecret reading a JSON key of a store secret gets its value into the live
Secret and records the store version; a new value in the store (a new version id) is
noticed by version alone and becomes a new Kustos version that rolls the Deployment; an
unchanged store makes no version; a store that goes away leaves the last value live,
``SourcesReady=False`` with the reason, and a StoreUnavailableError (exit 3); when it comes
back the condition clears; ``push`` writes generated values to the store before the
cluster; a missing SecretSource is a clear error; no value appears in status or Events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from kustos.errors import InvalidSpecError, StoreUnavailableError
from kustos.rotation.rotating import Result
from kustos.sources.reading import SecretSource
from kustos.testing.controlplane import ControlPlane
from kustos.testing.moto import MotoServer
from tests.integration.test_rotation import (
    _condition,
    _data,
    _deployment,
    _events_text,
    _managed,
    _run,
    _status,
    _wait_available,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with MotoServer(tmp_path / "moto") as server:
        yield server


def _aws(server: MotoServer, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Drive the store directly, as another team's tooling would (unsigned is fine for moto)."""
    response = httpx.post(
        server.url + "/",
        content=json.dumps(body),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"secretsmanager.{action}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        },
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _source(kube: Client, namespace: str, server: MotoServer) -> None:
    kube.create(
        Secret(
            metadata=ObjectMeta(name="aws-creds", namespace=namespace),
            stringData={"access-key-id": "AKIAEXAMPLE", "secret-access-key": "example-secret-key"},
        )
    )
    kube.create(
        SecretSource(
            apiVersion="kustos.io/v1alpha1",
            kind="SecretSource",
            metadata=ObjectMeta(name="aws", namespace=namespace),
            spec={
                "awsSecretsManager": {
                    "region": "us-east-1",
                    "endpoint": server.url,
                    "auth": {"secretRef": {"name": "aws-creds"}},
                }
            },
        )
    )


SPEC: dict[str, Any] = {
    "secretName": "db",
    "data": {
        "password": {
            "awsSecretsManager": {
                "source": {"name": "aws"},
                "secretId": "prod/db",
                "jsonKey": "password",
            }
        },
        "url": {"template": "postgresql://app:{{ password }}@db/app"},
    },
    "refresh": "30s",
    "rollout": {"timeout": "60s"},
}


def test_store_values_arrive_change_by_version_and_survive_an_outage(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, moto: MotoServer
) -> None:
    created = _aws(
        moto,
        "CreateSecret",
        {"Name": "prod/db", "SecretString": json.dumps({"password": "store-canary-one"})},
    )
    _source(kube, namespace, moto)
    kube.create(_managed(namespace, "db", SPEC))
    kube.create(_deployment(namespace, "api", "db", "password"))
    _wait_available(kube, namespace, "api")

    first: Result = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert first.outcome == "rotated", first.message
    assert _data(kube, namespace, "db")["password"] == b"store-canary-one"
    assert _data(kube, namespace, "db")["url"] == b"postgresql://app:store-canary-one@db/app"
    status = _status(kube, namespace, "db")
    assert status["sourceVersions"] == {"password": created["VersionId"]}
    assert status["versions"][0]["sourceVersions"] == {"password": created["VersionId"]}

    # Nothing changed in the store: a reconcile makes no version.
    result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db"))
    assert result is None
    assert _status(kube, namespace, "db")["currentVersion"] == 1

    put = _aws(
        moto,
        "PutSecretValue",
        {"SecretId": "prod/db", "SecretString": json.dumps({"password": "store-canary-two"})},
    )
    result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db"))
    assert result is not None
    assert result.outcome == "rotated"
    assert result.restarted == (f"Deployment.apps {namespace}/api",)
    assert _data(kube, namespace, "db")["password"] == b"store-canary-two"
    status = _status(kube, namespace, "db")
    assert status["currentVersion"] == 2
    assert status["sourceVersions"] == {"password": put["VersionId"]}
    assert status["versions"][0]["reason"].startswith("SourceChanged: password (store version ")

    moto.stop()
    with pytest.raises(StoreUnavailableError, match="prod/db: unreachable"):
        _run(control_plane, lambda e: e.reconcile(namespace, "db"))
    assert _data(kube, namespace, "db")["password"] == b"store-canary-two", "the last value stays"
    sources = _condition(_status(kube, namespace, "db"), "SourcesReady")
    assert (sources["status"], sources["reason"]) == ("False", "StoreUnavailable")
    assert "the last good value stays live" in sources["message"]

    moto.start()  # an empty store comes back: the value is put there again
    again = _aws(
        moto,
        "CreateSecret",
        {"Name": "prod/db", "SecretString": json.dumps({"password": "store-canary-two"})},
    )
    result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db"))
    status = _status(kube, namespace, "db")
    assert _condition(status, "SourcesReady")["status"] == "True"
    assert status["sourceVersions"] == {"password": again["VersionId"]}

    text = json.dumps(status) + _events_text(kube, namespace)
    assert "store-canary" not in text


def test_push_writes_generated_values_to_the_store_first(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None, moto: MotoServer
) -> None:
    _source(kube, namespace, moto)
    spec = {
        "secretName": "svc",
        "data": {"token": {"token": {"bytes": 24}}, "id": {"uuid": {}}},
        "push": {"source": {"name": "aws"}, "path": "prod/svc"},
        "rollout": {"strategy": "none"},
    }
    kube.create(_managed(namespace, "svc", spec))
    assert _run(control_plane, lambda e: e.rotate(namespace, "svc")).outcome == "rotated"
    live = _data(kube, namespace, "svc")
    stored = json.loads(_aws(moto, "GetSecretValue", {"SecretId": "prod/svc"})["SecretString"])
    assert stored == {"token": live["token"].decode(), "id": live["id"].decode()}
    _run(control_plane, lambda e: e.rotate(namespace, "svc"))
    stored = json.loads(_aws(moto, "GetSecretValue", {"SecretId": "prod/svc"})["SecretString"])
    assert stored["token"] == _data(kube, namespace, "svc")["token"].decode()


def test_a_missing_source_is_a_clear_error(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    kube.create(_managed(namespace, "db", SPEC))
    with pytest.raises(InvalidSpecError, match=f"SecretSource {namespace}/aws does not exist"):
        _run(control_plane, lambda e: e.rotate(namespace, "db"))
    rotating = _condition(_status(kube, namespace, "db"), "Rotating")
    assert rotating["reason"] == "Blocked"
