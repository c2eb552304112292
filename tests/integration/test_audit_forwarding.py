"""Forwarding to a real rsyslog, over TCP and TLS, through ``kustos audit forward``.

Aspects: archived events and the alerts the detectors raised reach rsyslog as RFC 5424
messages it parses (PRI, APP-NAME, MSGID, structured data, JSON message); a receiver that
is down makes the command fail with one line and keep its cursor, and once it is back it
receives every record exactly once; a second run sends only what arrived since; TLS with a
private CA works and an untrusted one is refused; a Secret value sent in an event body
appears in no syslog message, alert, cursor, command output or log line (canary).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from kustos.audit.alerts import AlertStore
from kustos.audit.archive import Archive
from kustos.audit.watching import hooks_for
from kustos.cli.main import main
from kustos.testing.pki import ClusterPKI, make_pki
from kustos.testing.processes import free_ports
from kustos.testing.rsyslog import Rsyslog

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
