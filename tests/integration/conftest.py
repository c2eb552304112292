"""Fixtures shared by integration tests: the ManagedSecret CRD installed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kustos.kube.applying import apply_manifests, wait_established
from kustos.kube.client import ClientSettings, make_client
from kustos.testing.controlplane import ControlPlane

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRD = DEPLOY / "rotation" / "crd-managedsecret.yaml"
SOURCES_CRD = DEPLOY / "sources" / "crd-secretsource.yaml"
SEALED_CRD = DEPLOY / "sources" / "crd-sealedsecret.yaml"


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    """The Kustos CRDs, installed once per session, Established and served."""
    with make_client(ClientSettings(kubeconfig=control_plane.kubeconfig)) as client:
        apply_manifests(client, [CRD, SOURCES_CRD, SEALED_CRD])
        for name in ("managedsecrets", "secretsources", "clustersecretsources", "sealedsecrets"):
            wait_established(client, f"{name}.kustos.io")
