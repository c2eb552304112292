"""``kustos audit query``: filters and the documented JSON shape.

- ``--secret NS/NAME``: gets on it, lists and watches in its namespace and across all
  namespaces; not other Secrets, not other resources, not RequestReceived duplicates;
- ``-n``, ``--user``, ``--verb``, ``--since``/``--until`` (times and durations);
- table output names user, verb, object, source; bad flags exit 2;
- a watch logged at ResponseStarted and ResponseComplete is one row (the final code), from
  the index and from a full read, in JSON and in the table; a watch still running is one
  row too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from kustos.audit.archive import Archive
from kustos.audit.records import format_time
from kustos.cli.main import main
from tests.unit.audit.test_records import event

NOW = dt.datetime.now(dt.UTC)


def _at(days_ago: float) -> str:
    return format_time(NOW - dt.timedelta(days=days_ago))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    with Archive(tmp_path) as store:
        store.append(
            [
                event(1, user="alice", time=_at(1)),
                event(2, user="bob", verb="list", name=None, time=_at(2)),
                event(3, user="carol", verb="list", namespace="", name=None, time=_at(3)),
                event(4, user="dave", name="other", time=_at(1)),
                event(5, user="erin", resource="configmaps", name="db-creds", time=_at(1)),
                event(6, user="frank", verb="watch", namespace="web", name=None, time=_at(1)),
                event(7, user="alice", time=_at(10), ip="10.9.9.9"),
                event(8, user="grace", time=_at(1), stage="RequestReceived"),
                event(9, user="heidi", verb="update", time=_at(0.5), code=409),
            ]
        )
    return tmp_path


def _query(
    archive: Path, *args: str, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["audit", "query", "--archive", str(archive), "--format", "json", *args]) == 0
    events: list[dict[str, object]] = orjson.loads(capsys.readouterr().out)["events"]
    return events


def test_who_read_a_secret(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = _query(archive, "--secret", "payments/db-creds", capsys=capsys)
    assert [e["user"] for e in found] == ["alice", "carol", "bob", "alice", "heidi"]
    first = found[0]
    assert set(first) == {
        "time", "user", "groups", "verb", "namespace", "name", "source_ip", "user_agent",
        "code", "audit_id",
    }  # fmt: skip
    assert (first["source_ip"], first["code"]) == ("10.9.9.9", 200)


def test_this_week(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = _query(archive, "--secret", "payments/db-creds", "--since", "7d", capsys=capsys)
    assert [e["user"] for e in found] == ["carol", "bob", "alice", "heidi"]
    until = _at(1.5)
    found = _query(
        archive, "--secret", "payments/db-creds", "--since", "7d", "--until", until, capsys=capsys
    )
    assert [e["user"] for e in found] == ["carol", "bob"]


def test_filters(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {e["user"] for e in _query(archive, "-n", "web", capsys=capsys)} == {"frank"}
    assert len(_query(archive, "--user", "alice", capsys=capsys)) == 2
    assert [e["user"] for e in _query(archive, "--verb", "update", capsys=capsys)] == ["heidi"]
    assert {e["user"] for e in _query(archive, "--resource", "configmaps", capsys=capsys)} == {
        "erin"
    }
    assert "grace" not in {e["user"] for e in _query(archive, capsys=capsys)}


def test_table_and_bad_flags(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["audit", "query", "--archive", str(archive), "--user", "heidi"]) == 0
    out = capsys.readouterr().out
    assert "heidi" in out
    assert "update" in out
    assert "secrets payments/db-creds" in out
    assert main(["audit", "query", "--archive", str(archive), "--secret", "nope"]) == 2
    assert main(["audit", "query", "--archive", str(archive), "--since", "last tuesday"]) == 2
    assert main(["audit", "query", "--archive", str(archive.parent / "none")]) == 2


def test_one_row_per_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def watch(n: int, stage: str, code: int) -> dict[str, object]:
        return event(n, user="frank", verb="watch", name=None, time=_at(1), stage=stage, code=code)

    with Archive(tmp_path) as store:
        store.append(
            [
                watch(1, "ResponseStarted", 200),
                event(2, user="alice", time=_at(0.5)),
                watch(1, "ResponseComplete", 500),
                watch(3, "ResponseStarted", 200),  # still running
            ]
        )
    watch_id, other_id, running_id = (event(n)["auditID"] for n in (1, 2, 3))
    expected = [(watch_id, 500), (running_id, 200), (other_id, 200)]
    by_index = _query(tmp_path, "--secret", "payments/db-creds", capsys=capsys)
    full_read = _query(tmp_path, capsys=capsys)
    for found in (by_index, full_read):
        assert [(e["audit_id"], e["code"]) for e in found] == expected
    assert [e["audit_id"] for e in _query(tmp_path, "--user", "frank", capsys=capsys)] == [
        watch_id,
        running_id,
    ]
    assert main(["audit", "query", "--archive", str(tmp_path), "--verb", "watch"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].endswith(" 500")
