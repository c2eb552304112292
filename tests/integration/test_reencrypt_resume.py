"""``kms reencrypt`` when the API server goes away in the middle, and the resumed run.

Aspects: the run stops with a ``KubeConnectionError`` that names where to resume, the
cursor file holds the last object done, nothing is lost, and a second run after the API
server is back starts after the cursor, finishes the rest and removes the cursor.
Kinds come from the real API server's discovery: ``networking.k8s.io/v1/ingresses`` is
rewritten as ``Ingress`` objects, a cluster-scoped ``networking.k8s.io/v1/ingressclasses``
too, and a plural the server does not serve is a ``UsageError`` before anything is
rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.networking_v1 import (
    IngressBackend,
    IngressClassSpec,
    IngressServiceBackend,
    IngressSpec,
    ServiceBackendPort,
)
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.networking_v1 import Ingress, IngressClass

from kustos.errors import KubeConnectionError, UsageError
from kustos.kms.reencrypting import Progress, reencrypt
from kustos.kube.client import ClientSettings, make_client
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
COUNT = 120


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneSettings(tmp_path_factory.mktemp("resume"), nodes=1)) as running:
        yield running


def test_api_server_gone_mid_run_then_resume(plane: ControlPlane, tmp_path: Path) -> None:
    settings = ClientSettings(kubeconfig=plane.kubeconfig, timeout=5)
    with make_client(settings) as client:
        client.create(Namespace(metadata=ObjectMeta(name="many")))
        for i in range(COUNT):
            client.create(
                Secret(
                    metadata=ObjectMeta(name=f"s-{i:03d}", namespace="many"),
                    stringData={"v": str(i)},
                )
            )
    cursor = tmp_path / "cursor"
    seen: list[Progress] = []

    def kill_after_first_page(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 1:
            plane.kill("kube-apiserver")

    with (
        make_client(settings) as client,
        pytest.raises(KubeConnectionError, match="run again to resume after") as info,
    ):
        reencrypt(
            client, ["secrets"], cursor_file=cursor, page_size=25, on_progress=kill_after_first_page
        )
    assert "\n" not in str(info.value)
    saved = json.loads(cursor.read_text())["secrets"]
    assert saved.startswith("many/s-")
    done_before = int(saved.rsplit("-", 1)[1]) + 1
    assert 25 <= done_before < COUNT

    plane.restart("kube-apiserver")
    with make_client(settings) as client:
        (result,) = reencrypt(client, ["secrets"], cursor_file=cursor, page_size=25)
        # Only what was left is rewritten (plus Secrets outside "many", listed after it).
        assert result.done <= COUNT - done_before + 5
        assert result.done >= COUNT - done_before
        assert not cursor.exists()
        values = {
            s.metadata.name: s.data for s in client.list(Secret, namespace="many") if s.metadata
        }
    assert len(values) == COUNT


def test_kinds_come_from_the_api_servers_discovery(plane: ControlPlane, tmp_path: Path) -> None:
    settings = ClientSettings(kubeconfig=plane.kubeconfig, timeout=10)
    with make_client(settings) as client:
        client.create(Namespace(metadata=ObjectMeta(name="web")))
        client.create(
            IngressClass(
                metadata=ObjectMeta(name="kustos"), spec=IngressClassSpec(controller="x/y")
            )
        )
        for name in ("a", "b"):
            client.create(
                Ingress(
                    metadata=ObjectMeta(name=name, namespace="web"),
                    spec=IngressSpec(
                        ingressClassName="kustos",
                        defaultBackend=IngressBackend(
                            service=IngressServiceBackend(
                                name="web", port=ServiceBackendPort(number=80)
                            )
                        ),
                    ),
                )
            )
        cursor = tmp_path / "cursor"
        with pytest.raises(UsageError, match="ingresss"):
            reencrypt(client, ["networking.k8s.io/v1/ingresss"], cursor_file=cursor)
        ingresses, classes = reencrypt(
            client,
            ["networking.k8s.io/v1/ingresses", "networking.k8s.io/v1/ingressclasses"],
            cursor_file=cursor,
        )
        assert (ingresses.done, ingresses.conflicts, ingresses.missing) == (2, 0, 0)
        assert classes.done >= 1
        assert not cursor.exists()
        spec = client.get(Ingress, "a", namespace="web").spec
        assert spec is not None
        assert spec.ingressClassName == "kustos"
