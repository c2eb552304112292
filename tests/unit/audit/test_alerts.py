"""The alert file and ``kustos audit alerts``, plus the end-to-end canary of the alert side.

Aspects covered: alerts are appended and read back in order with their sequence numbers;
a torn last line (a crash mid-write) is ignored on read and replaced by the next append;
a damaged line is one error naming the file and line; ``kustos audit alerts`` prints the
documented JSON and a table, "no alerts" for an archive without any, and one line with
exit 2 for a folder that does not exist; a Secret value sent in an event body reaches no
alert, baseline, cursor, sink payload (webhook, Splunk, Elasticsearch, Loki, syslog) or
command output (canary).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from kustos.audit.alerts import Alert, AlertStore, Severity
from kustos.audit.archive import Archive
from kustos.audit.forwarding import alert_record, event_record
from kustos.audit.sinks.base import Record
from kustos.audit.sinks.http import Elasticsearch, Loki, Splunk, Webhook
from kustos.audit.sinks.syslog import format_message
from kustos.audit.watching import WatchConfig, hooks_for
from kustos.cli.main import main
from kustos.errors import InputError

FIELDS = ["detector", "severity", "time", "user", "source_ip", "namespace", "name", "audit_ids", "message"]  # fmt: skip
CANARY = "canary-alerts-Pq93Ztt-never-shown"


def alert(n: int) -> Alert:
    return Alert(
        detector="first_secret_read",
        severity=Severity.MEDIUM,
        time=f"2026-03-02T10:00:{n:02d}.000000Z",
        user="alice",
        message=f"alice read Secret payments/s{n} (get) for the first time",
        source_ip="10.0.0.5",
        namespace="payments",
        name=f"s{n}",
        audit_ids=(f"id-{n}",),
    )


def test_alerts_are_appended_and_read_in_order(tmp_path: Path) -> None:
    store = AlertStore(tmp_path)
    assert list(store.read()) == []
    store.append([alert(1), alert(2)])
    store.append([alert(3)])
    assert [(s.seq, s.alert.name) for s in store.read()] == [(1, "s1"), (2, "s2"), (3, "s3")]
    assert [s.seq for s in store.read(after_seq=2)] == [3]
    assert store.count() == 3


def test_a_torn_last_line_is_ignored_then_overwritten(tmp_path: Path) -> None:
    store = AlertStore(tmp_path)
    store.append([alert(1)])
    with store.path.open("ab") as fh:
        fh.write(b'{"detector": "half')
    assert store.count() == 1
    store.append([alert(2)])
    assert [s.alert.name for s in store.read()] == ["s1", "s2"]


def test_a_damaged_line_names_the_file_and_line(tmp_path: Path) -> None:
    store = AlertStore(tmp_path)
    store.append([alert(1)])
    with store.path.open("ab") as fh:
        fh.write(b'{"detector": 3}\n')
    with pytest.raises(InputError, match=r"alerts\.jsonl:2: not an alert"):
        list(store.read())


def test_alerts_command_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    AlertStore(tmp_path).append([alert(1), alert(2)])
    assert main(["audit", "alerts", "--archive", str(tmp_path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [list(a) for a in doc["alerts"]] == [FIELDS, FIELDS]
    assert doc["alerts"][0]["audit_ids"] == ["id-1"]
    assert main(["audit", "alerts", "--archive", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["TIME", "SEVERITY", "DETECTOR", "USER"]
    assert "payments/s2" in table[2]


def test_alerts_command_empty_and_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "alerts", "--archive", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no alerts\n"
    assert main(["audit", "alerts", "--archive", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_forward_refuses_a_missing_archive_and_a_config_without_sinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "watch.yaml"
    config.write_text("detectors: {}\n")
    forward = ["audit", "forward", "--config", str(config), "--archive"]
    assert main([*forward, str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([*forward, str(tmp_path)]) == 2
    assert "no sinks configured" in capsys.readouterr().err


def test_canary_reaches_no_alert_state_payload_or_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "t")
    folder = tmp_path / "archive"
    config = tmp_path / "watch.yaml"
    config.write_text("detectors: {learning_period: '0'}\n")
    stamp = "2026-03-02T10:00:00.000000Z"
    body = {"kind": "Secret", "data": {"password": CANARY}, "stringData": {"token": CANARY}}
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "c0ffee",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/payments/secrets/db",
        "verb": "update",
        "user": {"username": "mallory"},
        "sourceIPs": ["192.0.2.1"],
        "objectRef": {"resource": "secrets", "namespace": "payments", "name": "db"},
        "responseStatus": {"code": 200},
        "requestObject": body,
        "responseObject": body,
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
    }
    archive = Archive(folder)
    archive.hooks.extend(hooks_for(folder, config))
    with archive:
        archive.append([event])
    stored = list(AlertStore(folder).read())
    assert {s.alert.detector for s in stored} >= {"policy_leak", "secret_changed"}

    records: Sequence[Record] = [
        *(event_record(a) for a in Archive(folder).read()),
        *(alert_record(s) for s in stored),
    ]
    settings = WatchConfig.model_validate(
        {
            "sinks": [
                {"name": "w", "type": "webhook", "url": "http://h"},
                {"name": "s", "type": "splunk", "url": "http://h", "token_env": "TOKEN"},
                {"name": "e", "type": "elasticsearch", "url": "http://h"},
                {"name": "l", "type": "loki", "url": "http://h"},
            ]
        }
    ).sinks
    payloads = [
        Webhook(settings[0]).encode(records)[2],  # type: ignore[arg-type]
        Splunk(settings[1]).encode(records)[2],  # type: ignore[arg-type]
        Elasticsearch(settings[2]).encode(records)[2],  # type: ignore[arg-type]
        Loki(settings[3]).encode(records)[2],  # type: ignore[arg-type]
        *(format_message(r, facility=13, hostname="h", app_name="kustos") for r in records),
    ]
    assert main(["audit", "alerts", "--archive", str(folder), "--format", "json"]) == 0
    assert main(["audit", "alerts", "--archive", str(folder)]) == 0
    out = capsys.readouterr()
    files = [p.read_bytes() for p in (folder / "watch").rglob("*") if p.is_file()]
    for blob in [*payloads, *files, out.out.encode(), out.err.encode()]:
        assert CANARY.encode() not in blob
