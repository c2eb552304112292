"""Watch wiring: the config file, baselines that survive a restart, the ingest hook.

Aspects covered: an empty or absent config gives the defaults; each kind of mistake (not
YAML, not a mapping, an unknown key, a bad duration, a bad time zone, two sinks with one
name, a credential written as a value) is one ``ConfigError`` line naming the file and
the field; the hook stores alerts durably and a new hook on the same folder does not
learn again (no second "first read"); a hook that starts after events were archived
catches up from its baseline, and replaying events whose alerts were already stored
stores none twice; the baseline never holds a body; a detector process dropped without
being closed ends (and saves) instead of keeping its command alive; the detector thread
(the writer's process) saves when closed or dropped, and when detection fails it says so
once without event content, keeps the last baseline and never makes the writer wait.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kustos.audit.alerts import AlertStore
from kustos.audit.detecting import DetectorsConfig
from kustos.audit.watching import (
    DetectorHook,
    DetectorProcess,
    DetectorThread,
    baseline_file,
    load_config,
)
from kustos.errors import ConfigError, FileMissingError

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Archived:
    seq: int
    event: Mapping[str, Any]


def read_event(seq: int, *, user: str = "alice", name: str = "db", verb: str = "get") -> Archived:
    when = (T0 + dt.timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Archived(
        seq,
        {
            "auditID": f"id-{seq}",
            "stage": "ResponseComplete",
            "verb": verb,
            "user": {"username": user},
            "sourceIPs": ["10.0.0.1"],
            "objectRef": {"resource": "secrets", "namespace": "payments", "name": name},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": when,
        },
    )


@dataclass
class Events:
    items: list[Archived]

    def read(self, after_seq: int = 0) -> Iterator[Archived]:
        return (a for a in self.items if a.seq > after_seq)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    return path


NOW = "detectors: {learning_period: '0'}\n"


# --------------------------------------------------------------------------- config
def test_no_config_and_an_empty_one_are_the_defaults(tmp_path: Path) -> None:
    assert load_config(None) == load_config(write(tmp_path, ""))
    assert load_config(None).detectors.off_hours.enabled is False
    assert load_config(None).sinks == ()


def test_a_full_config_loads(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
detectors:
  learning_period: 7d
  off_hours: {enabled: true, timezone: Europe/Paris, hours: "07:30-19:00"}
  bulk_read: {distinct_secrets: 20, window: 5m}
  secret_changed: {allow_users: ["system:serviceaccount:ci:deployer"]}
  new_source_ip: {enabled: false}
sinks:
  - {name: siem, type: syslog, address: "logs.example:6514", tls: true}
  - {name: hec, type: splunk, url: "https://splunk:8088", token_env: HEC_TOKEN}
  - {name: es, type: elasticsearch, url: "https://es:9200", send: [alerts]}
  - {name: loki, type: loki, url: "http://loki:3100"}
  - {name: hook, type: webhook, url: "https://hooks.example/kustos", secret_env: HOOK_KEY}
retry: {initial_seconds: 2, max_seconds: 120}
""",
        )
    )
    assert [s.type for s in config.sinks] == [
        "syslog",
        "splunk",
        "elasticsearch",
        "loki",
        "webhook",
    ]
    assert config.detectors.bulk_read.distinct_secrets == 20
    assert config.sinks[2].send == ("alerts",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detectors: [", "not YAML"),
        ("- a\n- b\n", "is a mapping"),
        ("detectors: {first_read: {}}\n", "detectors.first_read: Extra inputs are not permitted"),
        ("detectors: {bulk_read: {window: soon}}\n", "detectors.bulk_read.window:"),
        ("detectors: {off_hours: {timezone: Mars/Base}}\n", "unknown time zone"),
        ("detectors: {off_hours: {hours: '9-5'}}\n", "use HH:MM-HH:MM"),
        ("detectors: {denied_burst: {threshold: 1}}\n", "detectors.denied_burst.threshold:"),
        (
            "sinks: [{name: a, type: loki, url: 'http://l'}, {name: a, type: loki, url: 'http://m'}]\n",
            "two sinks are named 'a'",
        ),
        (
            "sinks: [{name: s, type: splunk, url: 'http://s', token_env: 'abc-123-secret'}]\n",
            "name of an environment variable",
        ),
        ("sinks: [{name: s, type: kafka}]\n", "sinks.0:"),
    ],
)
def test_config_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(str(path))
    assert message in line
    assert "abc-123-secret" not in line  # a value pasted by mistake is not echoed


def test_a_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileMissingError, match=r"watch\.yaml: cannot read watch config"):
        load_config(tmp_path / "watch.yaml")


# --------------------------------------------------------------------------- hook
def test_the_hook_stores_alerts_and_a_restart_does_not_learn_again(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, NOW)).detectors
    archive = tmp_path / "archive"
    hook = DetectorHook(archive, config)
    hook([read_event(1)])
    hook.save()
    assert [s.alert.detector for s in AlertStore(archive).read()] == ["first_secret_read"]

    again = DetectorHook(archive, config)
    again([read_event(2)])  # same principal, same Secret: known from the baseline
    again([read_event(3, name="other")])
    assert [s.alert.name for s in AlertStore(archive).read()] == ["db", "other"]
    assert baseline_file(archive).read().last_seq == 1  # alerts at once, the baseline when due
    again.save()
    assert baseline_file(archive).read().last_seq == 3


def test_catch_up_replays_from_the_baseline_without_storing_alerts_twice(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, NOW)).detectors
    archive = tmp_path / "archive"
    events = Events([read_event(1), read_event(2, name="b"), read_event(3, name="c")])
    crashed = DetectorHook(archive, config, save_every=3600)
    crashed(events.items[:1])  # alert stored; the baseline is not due yet: then a crash
    assert not baseline_file(archive).exists()
    restarted = DetectorHook(archive, config)
    stored = restarted.catch_up(events)
    assert stored == 2
    assert [s.alert.name for s in AlertStore(archive).read()] == ["db", "b", "c"]
    assert restarted.detector.state.last_seq == 3


def test_the_baseline_holds_no_body(tmp_path: Path) -> None:
    canary = "canary-baseline-7Yx"
    leaked = read_event(1)
    event = dict(leaked.event, responseObject={"data": {"k": canary}})
    hook = DetectorHook(tmp_path, load_config(None).detectors)
    hook([Archived(1, event)])
    hook.save()
    assert canary not in baseline_file(tmp_path).path.read_text()
    assert canary not in AlertStore(tmp_path).path.read_text()


def test_short_windows_survive_a_restart(tmp_path: Path) -> None:
    """Six Secrets read before a restart and four after, within a minute: one bulk read."""
    config = load_config(write(tmp_path, "detectors: {first_secret_read: {enabled: false}}\n"))
    archive = tmp_path / "archive"
    before = DetectorHook(archive, config.detectors)
    before([read_event(i, name=f"s{i}") for i in range(1, 7)])
    before.save()
    after = DetectorHook(archive, config.detectors)
    after([read_event(i, name=f"s{i}") for i in range(7, 11)])
    alerts = [s.alert for s in AlertStore(archive).read()]
    assert [a.detector for a in alerts] == ["bulk_read"]
    assert len(alerts[0].audit_ids) == 10


def test_a_detector_process_dropped_unclosed_ends(tmp_path: Path) -> None:
    """A command that fails before it closes the archive drops its detector process: the
    pipe closes, the child sees the end, saves its baseline and exits (nothing hangs;
    before, the sender thread kept the pipe open and the command waited forever)."""
    hook = DetectorProcess(tmp_path, DetectorsConfig())
    child = hook._process  # the child is what must end
    hook([Archived(1, read_event(1).event)])
    del hook
    gc.collect()
    child.join(30)
    assert child.exitcode == 0
    # It saved what it saw (a batch still queued is caught up at the next start).
    assert baseline_file(tmp_path).read().last_seq in (0, 1)


def test_the_detector_thread_saves_when_closed_or_dropped(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, NOW)).detectors
    closed = DetectorThread(DetectorHook(tmp_path / "closed", config))
    closed([read_event(i) for i in (1, 2)])
    closed([read_event(3, name="other")])
    closed.close()
    assert baseline_file(tmp_path / "closed").read().last_seq == 3
    assert [a.alert.name for a in AlertStore(tmp_path / "closed").read()] == ["db", "other"]
    dropped = DetectorThread(DetectorHook(tmp_path / "dropped", config))
    thread = dropped._thread
    dropped([read_event(1)])
    del dropped
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()
    assert baseline_file(tmp_path / "dropped").read().last_seq == 1


def test_a_failing_detector_thread_lets_ingest_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The alert file cannot be written: one error line naming the record, no content;
    the batches after it are taken without waiting; the baseline stays where it was."""
    canary = "user-CANARY-7d1f"
    hook = DetectorHook(tmp_path, load_config(write(tmp_path, NOW)).detectors)
    AlertStore(tmp_path).path.mkdir(parents=True)  # a folder where the file should be
    thread = DetectorThread(hook)
    with caplog.at_level(logging.ERROR):
        for seq in range(1, 21):  # more than the queue holds
            thread([read_event(seq, user=canary)])
        thread.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        (
            "detection stopped at record 1 (FileAccessError); it resumes from its baseline "
            "at the next start"
        )
    ]
    assert canary not in caplog.text
    assert not baseline_file(tmp_path).path.exists()
