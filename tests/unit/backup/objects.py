"""Helpers shared by the backup unit tests: Secrets and ManagedSecrets as the API gives them."""

from __future__ import annotations

import base64
from typing import Any

CANARY = "kustos-canary-8a1f3e0c"


def secret(
    name: str,
    namespace: str = "app",
    *,
    data: dict[str, bytes] | None = None,
    type_: str = "Opaque",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    immutable: bool = False,
) -> dict[str, Any]:
    """A Secret body as the API server returns it, server-set fields included."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "0b7c-uid",
            "resourceVersion": "123",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "type": type_,
        "data": {
            k: base64.b64encode(v).decode()
            for k, v in (data if data is not None else {"password": CANARY.encode()}).items()
        },
    }
    if immutable:
        body["immutable"] = True
    return body
