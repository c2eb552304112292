"""Fixtures shared by integration tests: the ManagedSecret CRD installed once per session."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lightkube import codecs
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from kustos.kube.client import ClientSettings, make_client
from kustos.testing.controlplane import ControlPlane

CRD = Path(__file__).resolve().parents[2] / "deploy" / "rotation" / "crd-managedsecret.yaml"


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    """The ManagedSecret CRD, installed once for this module and Established."""
    with make_client(ClientSettings(kubeconfig=control_plane.kubeconfig)) as client:
        obj = codecs.load_all_yaml(CRD.read_text())[0]
        client.apply(obj, field_manager="kustos-tests", force=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = client.get(CustomResourceDefinition, "managedsecrets.kustos.io")
            conditions = got.status.conditions if got.status else None
            if any(c.type == "Established" and c.status == "True" for c in conditions or []):
                break
            time.sleep(0.2)
        time.sleep(1)  # discovery of the new group reaches the API server's handlers
