"""The local control plane is a real cluster: workloads roll out on KWOK nodes.

Aspects: a 3-replica Deployment becomes available with its pods Ready on fake nodes; a
Secret round-trips through the API server and the live index, binary values intact; a
rolling restart replaces every pod and is observed as complete; the index loaded from the
live cluster equals the index loaded from the same YAML files.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret

from kustos.kube.applying import apply_manifests
from kustos.kube.client import ClientSettings, make_async_client
from kustos.kube.index import ObjectIndex
from kustos.kube.listing import list_cluster
from kustos.kube.loading import load_manifests
from kustos.kube.rollout import restart, wait_for_rollout
from kustos.sensitive import Sensitive
from kustos.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "shop"


def _deployment(name: str, namespace: str, replicas: int) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(
                    containers=[Container(name="app", image="registry.example.invalid/app:1")]
                ),
            ),
        ),
    )


def _wait(plane: ControlPlane, namespace: str, name: str) -> str:
    async def go() -> str:
        client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig))
        try:
            progress = await wait_for_rollout(client, "Deployment", namespace, name, timeout=60)
        finally:
            await client.close()
        return progress.message

    return asyncio.run(go())


def test_deployment_becomes_available_on_kwok_nodes(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    kube.create(_deployment("web", namespace, 3))
    assert _wait(control_plane, namespace, "web") == "3 replicas available"
    pods = list(kube.list(Pod, namespace=namespace, labels={"app": "web"}))
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec is not None
        assert pod.status is not None
        assert (pod.spec.nodeName or "").startswith("kwok-node-")
        assert pod.status.phase == "Running"
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    dep = kube.get(Deployment, "web", namespace=namespace)
    assert dep.status is not None
    assert dep.status.availableReplicas == 3


def test_secret_round_trips_through_the_api_and_the_live_index(
    kube: Client, namespace: str
) -> None:
    binary = bytes(range(256))
    kube.create(
        Secret(
            metadata=ObjectMeta(name="creds", namespace=namespace),
            data={"blob": base64.b64encode(binary).decode()},
            stringData={"password": "round-trip-value"},
        )
    )
    stored = kube.get(Secret, "creds", namespace=namespace)
    assert stored.data is not None
    assert base64.b64decode(stored.data["blob"]) == binary
    assert base64.b64decode(stored.data["password"]) == b"round-trip-value"
    index = list_cluster(kube, namespaces=[namespace], kinds=["Secret"])
    secret = index.secret(namespace, "creds")
    assert secret is not None
    assert secret.body["data"]["blob"] == Sensitive(binary)
    assert secret.body["data"]["password"] == Sensitive(b"round-trip-value")


def test_rolling_restart_completes_and_is_observed(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    kube.create(_deployment("api", namespace, 3))
    _wait(control_plane, namespace, "api")
    before = {p.metadata.name for p in kube.list(Pod, namespace=namespace) if p.metadata}

    async def roll() -> str:
        client = make_async_client(ClientSettings(kubeconfig=control_plane.kubeconfig))
        try:
            await restart(client, "Deployment", namespace, "api", now=dt.datetime.now(dt.UTC))
            progress = await wait_for_rollout(client, "Deployment", namespace, "api", timeout=60)
        finally:
            await client.close()
        return progress.message

    assert asyncio.run(roll()) == "3 replicas available"
    pods = [
        p
        for p in kube.list(Pod, namespace=namespace)
        if p.metadata and not p.metadata.deletionTimestamp
    ]
    after = {p.metadata.name for p in pods if p.metadata}
    assert len(after) == 3
    assert before.isdisjoint(after), "every pod must have been replaced"
    dep = kube.get(Deployment, "api", namespace=namespace)
    assert dep.spec is not None
    assert dep.spec.template.metadata is not None
    assert "kustos.io/restarted-at" in (dep.spec.template.metadata.annotations or {})


def test_live_index_equals_the_index_of_the_same_files(
    kube: Client, namespace: str, tmp_path: Path
) -> None:
    # The example app, moved into this test's namespace (its Namespace object left out).
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name.startswith("00-"):
            continue
        text = path.read_text().replace("namespace: shop", f"namespace: {namespace}")
        (tmp_path / path.name).write_text(text)
    apply_manifests(kube, [tmp_path])
    from_files = load_manifests([tmp_path])
    live = list_cluster(kube, namespaces=[namespace])

    assert len(from_files) == 20
    for obj in from_files:
        assert obj.ref in live, f"{obj.ref} missing from the live index"
    # Objects only the cluster has in the namespace are ones its controllers made.
    extra = {(r.kind, r.name) for r in live.refs() - from_files.refs() if r.namespace == namespace}
    assert {kind for kind, _ in extra} <= {"Pod", "ReplicaSet", "ConfigMap"}
    assert ("ConfigMap", "kube-root-ca.crt") in extra

    def refs(index: ObjectIndex) -> set[tuple[str, str, str, str, str | None]]:
        return {
            (str(r.consumer), r.secret, r.via.value, r.field, r.key)
            for s in index.of_kind("Secret")
            for r in index.top_level_consumers(s.namespace, s.name)
        }

    assert refs(live) == refs(from_files)
    assert len(refs(live)) == 9
    for secret in from_files.of_kind("Secret"):
        live_secret = live.secret(secret.namespace, secret.name)
        assert live_secret is not None
        file_values = dict(secret.body.get("data") or {}) | dict(
            secret.body.get("stringData") or {}
        )
        assert dict(live_secret.body["data"]) == file_values
