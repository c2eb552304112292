"""Pytest fixtures on the local control plane (load with ``pytest_plugins``).

``control_plane``: one real control plane for the whole test session (etcd, kube-apiserver,
controller manager, scheduler, kwok with three fake nodes), stopped at the end.
``kube``: a lightkube client for it, as the admin. ``namespace``: a fresh namespace per
test, labelled ``kustos.io/test-namespace`` and deleted afterwards.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator

import pytest
from lightkube import ApiError, Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from kustos.conventions import LABEL_TEST_NAMESPACE
from kustos.kube.client import ClientSettings, make_client
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane shared by the session."""
    plane = ControlPlane(ControlPlaneSettings(tmp_path_factory.mktemp("control-plane"), nodes=3))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[Client]:
    """An admin client for the session's control plane."""
    with make_client(ClientSettings(kubeconfig=control_plane.kubeconfig)) as client:
        yield client


@pytest.fixture
def namespace(kube: Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty namespace whose default ServiceAccount exists; deleted afterwards."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    kube.create(Namespace(metadata=ObjectMeta(name=name, labels={LABEL_TEST_NAMESPACE: "true"})))
    deadline = time.monotonic() + 30
    while True:
        try:
            kube.get(ServiceAccount, "default", namespace=name)
            break
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        kube.delete(Namespace, name)
