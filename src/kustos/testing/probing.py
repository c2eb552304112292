"""The harness talking to its own components: readiness probes and admin calls (an adapter).

Each probe answers "ready yet?" with one short HTTP request; while a component comes up
the request may fail in any of the ways in :data:`PROBE_ERRORS`, which the caller counts as
"not yet". The admin identity (``system:masters``) is used for the API server; etcd is
asked over its plain-HTTP client URL on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import Iterator
from typing import Any, Final

import httpx

from kustos.errors import ControlPlaneError, quote_foreign
from kustos.testing.pki import ClusterPKI

#: What a probe may raise while its component is still coming up.
PROBE_ERRORS: Final = (httpx.HTTPError, OSError, ssl.SSLError)
TIMEOUT: Final = 5.0


class Probe:
    """Probes and admin calls for one control plane."""

    def __init__(self, *, server: str, etcd: str, scheduler: str, pki: ClusterPKI) -> None:
        self.server = server
        self.etcd = etcd
        self.scheduler = scheduler
        self.pki = pki

    @contextlib.contextmanager
    def _http(self) -> Iterator[httpx.Client]:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        with httpx.Client(base_url=self.server, verify=ctx, timeout=TIMEOUT) as client:
            yield client

    def _status(self, path: str) -> int:
        with self._http() as client:
            return client.get(path).status_code

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API server as the admin; JSON in and out; ``ControlPlaneError`` on 4xx/5xx."""
        with self._http() as client:
            response = client.request(method, path, json=body)
        if response.status_code >= 400:
            raise ControlPlaneError(
                f"{method} {path}: HTTP {response.status_code}: {quote_foreign(response.text)}"
            )
        return response.json() if response.content else None

    def etcd_healthy(self) -> bool:
        """etcd answers ``/health`` with ``"health":"true"``."""
        response = httpx.get(f"{self.etcd}/health", timeout=2.0)
        return response.status_code == 200 and '"true"' in response.text

    def apiserver_ready(self) -> bool:
        """kube-apiserver's ``/readyz`` is 200 (etcd reachable, post-start hooks done)."""
        return self._status("/readyz") == 200

    def kms_healthy(self) -> bool:
        """kube-apiserver reaches its KMS v2 plugin."""
        return self._status("/healthz/kms-providers") == 200

    def scheduler_healthy(self) -> bool:
        """kube-scheduler answers its ``/healthz``."""
        # The scheduler serves a self-signed certificate on loopback; only liveness matters.
        return httpx.get(f"{self.scheduler}/healthz", verify=False, timeout=2.0).text == "ok"  # noqa: S501

    def nodes_ready(self, count: int) -> bool:
        """At least *count* nodes are Ready (kwok is simulating them)."""
        nodes = self.api("GET", "/api/v1/nodes")["items"]
        ready = [
            n
            for n in nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= count

    def default_service_account(self) -> bool:
        """The controller manager has created ``default/default`` (so it works)."""
        return self._status("/api/v1/namespaces/default/serviceaccounts/default") == 200

    def etcd_value(self, key: str) -> bytes | None:
        """The raw value etcd stores under *key*, or ``None``."""
        encoded = base64.b64encode(key.encode()).decode()
        reply = httpx.post(f"{self.etcd}/v3/kv/range", json={"key": encoded}, timeout=TIMEOUT)
        kvs = reply.json().get("kvs") or []
        return base64.b64decode(kvs[0]["value"]) if kvs else None
