"""The real kube-apiserver sends audit events to ``kustos audit serve`` over mutual TLS.

Aspects: token-file users and a ServiceAccount read a Secret (get, a denied list, a list
across namespaces) through an API server whose audit webhook points at the receiver; the
archive then answers ``query --secret`` with the right user, verb, code and source IP; the
policy used logs Secrets at RequestResponse (a leaking policy, on purpose), and the
Secret's value appears in no file of the archive nor in the receiver's log, while the
events say their bodies were stripped; the receiver killed with SIGKILL and started again
loses nothing the API server sent meanwhile (the webhook retries); the archive verifies,
and a tampered one fails ``verify``.

The main control plane is not changed: a second kube-apiserver on the session's etcd (the
harness's ``audited_apiserver``) carries the audit flags and a token file, for this module
only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kustos.audit.archive import Archive
from kustos.cli.main import main
from kustos.testing.controlplane import ControlPlane
from tests.integration.auditserve import AuditServe, api_client

pytestmark = pytest.mark.integration

CANARY = "audit-canary-3e1d7a"
TOKENS = {
    "token-alice-4f1c2a": ("alice", ("payments-readers",)),
    "token-bob-9b2e11": ("bob", ("developers",)),
}
LEAKY_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    resources: [{group: "", resources: ["secrets"]}]
  - level: None
"""


@pytest.fixture
def receiver(control_plane: ControlPlane, tmp_path: Path) -> Iterator[AuditServe]:
    running = AuditServe(control_plane, tmp_path / "archive", tmp_path / "receiver.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _setup(plane: ControlPlane, ns: str) -> str:
    """The Secret, a reader role for alice's group and the ServiceAccount; its token."""
    plane.api(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "db-creds"}, "stringData": {"password": CANARY}},
    )
    plane.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "secret-reader"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        },
    )
    plane.api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "app"}})
    plane.api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "secret-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "secret-reader"},
            "subjects": [
                {"kind": "Group", "name": "payments-readers",
                 "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "ServiceAccount", "name": "app", "namespace": ns},
            ],
        },
    )  # fmt: skip
    issued = plane.api(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/app/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}},
    )  # fmt: skip
    return str(issued["status"]["token"])


def _wait_for(archive: Path, predicate: Any, timeout: float = 90.0) -> list[dict[str, Any]]:
    """The archived events once *predicate* holds for them (the webhook batches each second)."""
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = [dict(e.event) for e in Archive(archive).read()] if archive.exists() else []
        if predicate(events):
            return events
        time.sleep(0.5)
    pytest.fail(f"the archive never held the expected events ({len(events)} archived)")


def _query(archive: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["audit", "query", "--archive", str(archive), "--format", "json", *args]) == 0
    found: list[dict[str, Any]] = orjson.loads(capsys.readouterr().out)["events"]
    return found


def _requests_of(events: list[dict[str, Any]], ns: str) -> set[tuple[str, str]]:
    return {
        (e["user"]["username"], e["verb"])
        for e in events
        if e.get("objectRef", {}).get("resource") == "secrets"
        and e.get("objectRef", {}).get("namespace") in (ns, None)
        and e["user"]["username"] != "kustos-admin"
    }


def test_apiserver_audits_to_the_receiver(
    control_plane: ControlPlane, namespace: str, receiver: AuditServe, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(LEAKY_POLICY)
    sa_token = _setup(control_plane, namespace)
    sa_user = f"system:serviceaccount:{namespace}:app"
    secret_path = f"/api/v1/namespaces/{namespace}/secrets/db-creds"
    with control_plane.audited_apiserver(policy, receiver.url, tokens=dict(TOKENS)) as server:
        with api_client(server, control_plane, "token-alice-4f1c2a") as alice:
            assert alice.get(secret_path).status_code == 200
        with api_client(server, control_plane, "token-bob-9b2e11") as bob:
            assert bob.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403
            assert bob.get("/api/v1/secrets").status_code == 403
        with api_client(server, control_plane, sa_token) as app:
            assert app.get(secret_path).status_code == 200
        expected = {("alice", "get"), ("bob", "list"), (sa_user, "get")}
        _wait_for(receiver.archive, lambda ev: expected <= _requests_of(ev, namespace))

        # The receiver dies without warning; the API server keeps working and retries.
        receiver.kill()
        with api_client(server, control_plane, "token-alice-4f1c2a") as alice:
            for _ in range(3):
                assert alice.get(secret_path).status_code == 200
        time.sleep(1)
        receiver.start()
        events = _wait_for(
            receiver.archive,
            lambda ev: (
                sum(1 for e in ev if e["user"]["username"] == "alice" and e.get("verb") == "get")
                >= 4
            ),
        )

    found = _query(receiver.archive, capsys, "--secret", f"{namespace}/db-creds")
    seen = {(e["user"], e["verb"], e["code"]) for e in found}
    assert {("alice", "get", 200), (sa_user, "get", 200), ("bob", "list", 403)} <= seen
    assert all(e["source_ip"] == "127.0.0.1" for e in found)
    assert all(e["namespace"] in (namespace, "") for e in found)
    alice_reads = _query(receiver.archive, capsys, "--user", "alice", "--verb", "get")
    assert len(alice_reads) == 4  # none lost across the SIGKILL, none twice

    # The leaking policy sent the Secret in the response bodies; the receiver kept none.
    bodies = [e for e in events if e.get("objectRef", {}).get("name") == "db-creds"]
    assert bodies
    assert all("responseObject" not in e for e in bodies)
    assert all(e["annotations"]["kustos.io/values-stripped"] for e in bodies)
    encoded = base64.b64encode(CANARY.encode())
    for path in [*receiver.archive.rglob("*"), receiver.log]:
        if path.is_file():
            data = path.read_bytes()
            assert CANARY.encode() not in data, path
            assert encoded not in data, path

    receiver.stop()
    assert main(["audit", "verify", "--archive", str(receiver.archive)]) == 0
    segment = next((receiver.archive / "segments").iterdir())
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"auditID":"', b'"auditID":"0', 1)
    segment.write_bytes(b"".join(lines))
    capsys.readouterr()
    assert main(["audit", "verify", "--archive", str(receiver.archive)]) == 1
    assert "record 2 " in capsys.readouterr().out
