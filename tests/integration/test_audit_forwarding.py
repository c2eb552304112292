"""Forwarding to a real rsyslog, over TCP and TLS, through ``kustos audit forward``.

Aspects: archived events and the alerts the detectors raised reach rsyslog as RFC 5424
messages it parses (PRI, APP-NAME, MSGID, structured data, JSON message); a receiver that
is down makes the command fail with one line and keep its cursor, and once it is back it
receives every record exactly once; a second run sends only what arrived since; TLS with a
private CA works and an untrusted one is refused; a Secret value sent in an event body
appears in no syslog message, alert, cursor, command output or log line (canary); through
a real kube-apiserver auditing to ``kustos audit serve --config``, planted behaviours raise
their alerts while a workload's reads and a rotation by the operator's ServiceAccount raise
none, and the alerts reach rsyslog; ``kustos audit serve`` with a sink in its config
forwards by itself (no ``forward`` process): a sink down while the API server audits
receives, once it is up, every archived event and alert exactly once, and later events
follow within seconds.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kustos.audit.alerts import AlertStore
from kustos.audit.archive import Archive
from kustos.audit.watching import hooks_for
from kustos.cli.main import main
from kustos.testing.controlplane import ControlPlane
from kustos.testing.pki import ClusterPKI, make_pki
from kustos.testing.processes import free_ports
from kustos.testing.rsyslog import Rsyslog
from tests.integration.auditserve import AuditServe, api_client

pytestmark = pytest.mark.integration

CANARY = "canary-syslog-Vq7Lm2-do-not-forward"
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def audit_event(i: int, **fields: Any) -> dict[str, Any]:
    when = (T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"00000000-0000-0000-0000-{i:012d}",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/payments/secrets/s{i}",
        "verb": "get",
        "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["192.0.2.10"],
        "objectRef": {"resource": "secrets", "namespace": "payments", "name": f"s{i}"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": when,
        "stageTimestamp": when,
    }
    event.update(fields)
    return event


def archive_events(directory: Path, events: list[dict[str, Any]], config: Path) -> None:
    """Archive *events* with the detectors plugged in, as ``audit ingest`` does."""
    archive = Archive(directory)
    archive.hooks.extend(hooks_for(directory, config))
    with archive:
        archive.append(events)


def write_config(tmp_path: Path, address: str, **sink: Any) -> Path:
    doc = {
        "detectors": {"learning_period": "0"},
        "sinks": [{"name": "siem", "type": "syslog", "address": address, **sink}],
        "retry": {"initial_seconds": 0.05, "max_seconds": 0.2},
    }
    path = tmp_path / "watch.yaml"
    path.write_bytes(orjson.dumps(doc))  # JSON is YAML
    return path


def forward(archive: Path, config: Path) -> int:
    return main(
        ["audit", "forward", "--archive", str(archive), "--config", str(config), "--attempts", "2"]
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_outage_then_everything_once_and_no_value_anywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    archive = tmp_path / "archive"
    receiver = Rsyslog(tmp_path / "rsyslog")
    config = write_config(tmp_path, receiver.address)
    leaked = audit_event(
        0,
        verb="update",
        level="RequestResponse",
        requestObject={"kind": "Secret", "data": {"password": CANARY}},
        responseObject={"kind": "Secret", "data": {"password": CANARY}},
    )
    archive_events(archive, [leaked, *(audit_event(i) for i in range(1, 13))], config)
    alerts = [s.alert for s in AlertStore(archive).read()]
    detectors = Counter(a.detector for a in alerts)
    assert detectors["policy_leak"] == 1
    assert detectors["secret_changed"] == 1
    assert detectors["bulk_read"] == 1

    # The receiver is down: one line, exit 1, nothing acknowledged.
    assert forward(archive, config) == 1
    assert "siem" in capsys.readouterr().err

    with receiver:
        assert forward(archive, config) == 0
        expected = 13 + len(alerts)
        messages = receiver.wait_for(expected)
        # More events arrive; the next run sends only those.
        archive_events(archive, [audit_event(i) for i in range(13, 16)], config)
        assert forward(archive, config) == 0
        messages = receiver.wait_for(expected + 3 + 0)
    keys = [m[3] for m in messages]
    assert len(keys) == len(set(keys)), "a record was delivered twice"
    assert sum(1 for m in messages if m[2] == "event") == 16
    first = next(m for m in messages if m[2] == "event")
    assert first[0] == str(13 * 8 + 6)  # log audit, informational
    assert first[1] == "kustos"
    body = orjson.loads(first[4].lstrip("\ufeff"))
    assert body["auditID"] == "00000000-0000-0000-0000-000000000000"
    alert_lines = [m for m in messages if m[2] == "alert"]
    assert {orjson.loads(m[4].lstrip("\ufeff"))["detector"] for m in alert_lines} >= {
        "policy_leak",
        "secret_changed",
        "bulk_read",
    }

    out = capsys.readouterr()
    for text in (
        receiver.output.read_text(),
        AlertStore(archive).path.read_text(),
        *(p.read_text() for p in (archive / "watch").rglob("*.json")),
        out.out,
        out.err,
        caplog.text,
    ):
        assert CANARY not in text


def test_tls_with_a_private_ca(tmp_path: Path, pki: ClusterPKI) -> None:
    archive = tmp_path / "archive"
    receiver = Rsyslog(tmp_path / "rsyslog", tls=pki.serving, ca=pki.ca.cert)
    config = write_config(tmp_path, receiver.address, tls=True, ca=str(pki.ca.cert))
    archive_events(archive, [audit_event(i) for i in range(1, 6)], config)
    with receiver:
        assert forward(archive, config) == 0
        messages = receiver.wait_for(5)
    assert sum(1 for m in messages if m[2] == "event") == 5


def test_tls_refuses_an_untrusted_receiver(
    tmp_path: Path, pki: ClusterPKI, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_pki(tmp_path / "other-pki")
    archive = tmp_path / "archive"
    receiver = Rsyslog(tmp_path / "rsyslog", port=free_ports(1)[0], tls=pki.serving)
    config = write_config(tmp_path, receiver.address, tls=True, ca=str(other.ca.cert))
    archive_events(archive, [audit_event(1)], config)
    with receiver:
        assert forward(archive, config) == 1
    assert "TLS failed" in capsys.readouterr().err
    assert receiver.messages() == []


# --------------------------------------------------------------------------- live
LIVE_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    resources: [{group: "", resources: ["secrets"]}]
  - level: Metadata
"""
LIVE_TOKENS = {
    "token-alice-7d2e": ("alice", ("system:masters",)),
    "token-bob-1c9a": ("bob", ("developers",)),
}


def _sa_token(plane: ControlPlane, namespace: str, name: str) -> str:
    plane.api(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
    )
    issued = plane.api(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}},
    )  # fmt: skip
    return str(issued["status"]["token"])


def _bind(plane: ControlPlane, namespace: str, account: str, verbs: list[str]) -> None:
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    plane.api(
        "POST",
        f"{rbac}/roles",
        {"metadata": {"name": account},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]},
    )  # fmt: skip
    plane.api(
        "POST",
        f"{rbac}/rolebindings",
        {"metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
    )  # fmt: skip


def _archived_keys(archive: Path) -> set[str]:
    """The forwarding keys of every archived event and stored alert, as sinks see them."""
    from kustos.audit.forwarding import alert_record, event_record  # noqa: PLC0415

    keys = {event_record(a).key for a in Archive(archive).read()}
    return keys | {alert_record(s).key for s in AlertStore(archive).read()}


def test_serve_forwards_by_itself_and_a_sink_back_from_an_outage_gets_everything_once(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The real kube-apiserver audits to ``kustos audit serve --config`` with a syslog sink
    and no `forward` process beside it: while rsyslog is down the receiver keeps storing
    (and acknowledging), once rsyslog is up every archived event and alert reaches it,
    each once, and what arrives next follows within seconds; no value is forwarded."""
    secret = f"/api/v1/namespaces/{namespace}/secrets"
    control_plane.api(
        "POST", secret, {"metadata": {"name": "db-creds"}, "stringData": {"password": CANARY}}
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(LIVE_POLICY)
    receiver = Rsyslog(tmp_path / "rsyslog")  # not started yet: the sink is down
    config = write_config(tmp_path, receiver.address)
    doc = orjson.loads(config.read_bytes())
    config.write_bytes(orjson.dumps({**doc, "poll_seconds": 0.5}))
    archive = tmp_path / "archive"
    serve = AuditServe(control_plane, archive, tmp_path / "serve.log", config=config)
    url = serve.url
    reads = f"{secret}/db-creds"

    def alice_reads(server: str, count: int) -> None:
        with api_client(server, control_plane, "token-alice-7d2e") as alice:
            for _ in range(count):
                assert alice.get(reads).status_code == 200

    def alice_read_events() -> set[str]:
        return {
            f"{a.event['auditID']}:{a.event['stage']}"
            for a in Archive(archive).read()
            if a.event.get("user", {}).get("username") == "alice" and a.event.get("verb") == "get"
        }

    def wait(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def delivered() -> list[str]:
        return [re.search(r' key="([^"]+)"', m[3]).group(1) for m in receiver.messages()]  # type: ignore[union-attr]

    with serve, control_plane.audited_apiserver(policy, url, tokens=dict(LIVE_TOKENS)) as server:
        alice_reads(server, 8)  # acknowledged and archived while the sink is down
        wait(lambda: len(alice_read_events()) >= 8, "the first reads in the archive")
        assert receiver.messages() == []
        with receiver:
            snapshot = _archived_keys(archive)
            wait(lambda: snapshot <= set(delivered()), "the backlog at rsyslog")
            alice_reads(server, 4)  # arrives while the sink is up: follows promptly
            wait(lambda: len(alice_read_events()) >= 12, "the later reads in the archive")
            later = alice_read_events()
            wait(lambda: later <= set(delivered()), "the later reads at rsyslog")
            keys = delivered()
    assert len(keys) == len(set(keys)), "a record was delivered twice"
    assert any(m[2] == "alert" for m in receiver.messages()), "no alert was forwarded"
    assert "forwarding to 1 sink(s)" in (tmp_path / "serve.log").read_text()
    assert CANARY not in receiver.output.read_text()
    assert CANARY not in (tmp_path / "serve.log").read_text()


def test_live_api_server_planted_behaviours_alert_and_normal_traffic_does_not(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through a real kube-apiserver: the app and the operator's ServiceAccount read and
    rotate their Secret (normal: no alert); alice lists every namespace's Secrets and
    deletes one, bob is refused a dozen times, an anonymous client tries, and the leaking
    policy sends a body (planted: one alert each); the alerts then reach rsyslog."""
    secret = f"/api/v1/namespaces/{namespace}/secrets"
    control_plane.api(
        "POST", secret, {"metadata": {"name": "db-creds"}, "stringData": {"password": CANARY}}
    )
    control_plane.api("POST", secret, {"metadata": {"name": "old"}, "stringData": {"k": "v"}})
    app = _sa_token(control_plane, namespace, "app")
    _bind(control_plane, namespace, "app", ["get", "list"])
    operator = _sa_token(control_plane, namespace, "rotator")
    _bind(control_plane, namespace, "rotator", ["get", "update"])
    policy = tmp_path / "policy.yaml"
    policy.write_text(LIVE_POLICY)
    receiver = Rsyslog(tmp_path / "rsyslog")
    rotator = f"system:serviceaccount:{namespace}:rotator"
    config = tmp_path / "watch.yaml"
    config.write_bytes(
        orjson.dumps(
            {
                "detectors": {"learning_period": "1h", "secret_changed": {"operator": rotator}},
                "sinks": [{"name": "siem", "type": "syslog", "address": receiver.address,
                           "send": ["alerts"]}],
            }
        )
    )  # fmt: skip
    archive = tmp_path / "archive"
    serve = AuditServe(control_plane, archive, tmp_path / "serve.log", config=config)
    url = serve.url
    with serve, control_plane.audited_apiserver(policy, url, tokens=dict(LIVE_TOKENS)) as server:
        with api_client(
            server, control_plane, app
        ) as client:  # normal: the workload reads its Secret
            for _ in range(3):
                assert client.get(f"{secret}/db-creds").status_code == 200
        with api_client(server, control_plane, operator) as client:  # normal: a rotation
            current = client.get(f"{secret}/db-creds").json()
            current["stringData"] = {"password": CANARY + "-v2"}
            assert client.put(f"{secret}/db-creds", json=current).status_code == 200
        with api_client(server, control_plane, "token-alice-7d2e") as alice:
            assert alice.get("/api/v1/secrets").status_code == 200
            assert alice.delete(f"{secret}/old").status_code == 200
        with api_client(server, control_plane, "token-bob-1c9a") as bob:
            for _ in range(12):
                assert bob.get(f"{secret}/db-creds").status_code == 403
        with api_client(server, control_plane, None) as anonymous:
            assert anonymous.get(secret).status_code in (401, 403)
        expected = {
            ("bulk_read", "alice"),
            ("secret_changed", "alice"),
            ("denied_burst", "bob"),
            ("anonymous", "system:anonymous"),
        }
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            alerts = [s.alert for s in AlertStore(archive).read()]
            if expected <= {(a.detector, a.user) for a in alerts}:
                break
            time.sleep(0.5)
    seen = {(a.detector, a.user) for a in alerts}
    assert expected <= seen
    assert any(a.detector == "policy_leak" for a in alerts)
    noisy = {a.user for a in alerts if a.detector != "policy_leak"} - {
        "alice", "bob", "system:anonymous"
    }  # fmt: skip
    assert noisy == set(), f"normal traffic raised alerts: {sorted(seen)}"

    with receiver:
        assert forward(archive, config) == 0
        messages = receiver.wait_for(len(alerts))
    assert {orjson.loads(m[4].lstrip("\ufeff"))["detector"] for m in messages} >= {
        d for d, _ in expected
    }
    for path in [*archive.rglob("*"), receiver.output, tmp_path / "serve.log"]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path

    # Least privilege: what the live cluster grants the app but it never used ...
    capsys.readouterr()
    kubeconfig = str(control_plane.kubeconfig)
    compare = ["rbac", "suggest", "--archive", str(archive), "--service-account",
               f"{namespace}/app", "--cluster", "--kubeconfig", kubeconfig, "--format", "json"]  # fmt: skip
    assert main(compare) == 0
    unused = orjson.loads(capsys.readouterr().out)["unused"]
    assert [(u["role"], u["unused"]) for u in unused] == [
        (f"Role {namespace}/app", ["list secrets"])
    ]
    # ... and the suggested Role, applied alone, allows exactly what the app did.
    assert main(["rbac", "suggest", "--archive", str(archive), "--service-account",
                 f"{namespace}/app"]) == 0  # fmt: skip
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [o["kind"] for o in objects] == ["Role", "RoleBinding"]
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    control_plane.api("DELETE", f"{rbac}/rolebindings/app")
    control_plane.api("POST", f"{rbac}/roles", objects[0])
    control_plane.api("POST", f"{rbac}/rolebindings", objects[1])

    def may(verb: str, name: str | None) -> bool:
        attributes = {"namespace": namespace, "verb": verb, "resource": "secrets"}
        if name is not None:
            attributes["name"] = name
        review = control_plane.api(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
             "spec": {"user": f"system:serviceaccount:{namespace}:app",
                      "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                      "resourceAttributes": attributes}},
        )  # fmt: skip
        return bool(review["status"].get("allowed"))

    deadline = time.monotonic() + 30  # the RBAC authorizer's cache catches up
    while not may("get", "db-creds") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert may("get", "db-creds")
    assert not may("get", "old")
    assert not may("list", None)
    assert not may("update", "db-creds")
