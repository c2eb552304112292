"""Every mistake a person can make with ``kustos audit *`` and ``kustos rbac suggest``.

Aspects: a missing archive folder, a file given as the archive, an archive whose segments
are garbage, a policy or watch config that is missing, not YAML, no mapping or has an
unknown field or sink type, a sink credential variable that is unset, a bad ``--since`` /
``--until`` / ``--secret`` / ``--limit`` / ``--service-account``, a bad ``--listen``, TLS
files that are missing, unpaired or not PEM, a port in use, ``--max-waiting 0``, a
``--public-key`` or ``--signing-key`` that is missing, readable by others or a malformed
``pkcs11:`` URI: each exits non-zero with one line on stderr starting with ``kustos:
error:``, no traceback and nothing on stdout, and nothing already archived is lost (the
archive still verifies afterwards).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from kustos.audit.archive import Archive, Fsync
from kustos.cli.main import main
from tests.unit.audit.test_records import event
from tests.unit.cli.test_bad_input import fails


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """An archive with three events, and next to it every kind of bad input."""
    with Archive(tmp_path / "archive", fsync=Fsync.NONE) as archive:
        archive.append([event(n) for n in range(3)])
    garbage = tmp_path / "garbage"
    (garbage / "segments").mkdir(parents=True)
    (garbage / "segments" / "000000000001.log").write_bytes(b"not a record\n")
    (tmp_path / "file").write_text("I am a file\n")
    (tmp_path / "bad.yaml").write_text("not: [yaml\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "unknown.yaml").write_text("detectors: {bogus: 1}\n")
    (tmp_path / "kafka.yaml").write_text("sinks: [{name: k, type: kafka}]\n")
    (tmp_path / "nosinks.yaml").write_text("detectors: {}\n")
    (tmp_path / "unset.yaml").write_bytes(
        orjson.dumps(
            {"sinks": [{"name": "hec", "type": "splunk", "url": "http://127.0.0.1:9",
                        "token_env": "KUSTOS_TEST_UNSET_TOKEN"}]}
        )
    )  # fmt: skip
    (tmp_path / "not.pem").write_text("not a certificate\n")
    (tmp_path / "audit.log").write_bytes(orjson.dumps(event(9)) + b"\n")
    return tmp_path


Case = Callable[[Path], list[str]]
CASES: dict[str, tuple[Case, int, str]] = {
    # lint
    "lint: missing policy": (lambda p: ["audit", "lint", str(p / "nope.yaml")], 2, "no such file"),
    "lint: not YAML": (lambda p: ["audit", "lint", str(p / "bad.yaml")], 2, "invalid YAML"),
    "lint: no mapping": (lambda p: ["audit", "lint", str(p / "list.yaml")], 2, "no YAML mapping"),
    "lint: a folder": (lambda p: ["audit", "lint", str(p)], 2, "is a directory"),
    "lint: --fail-on": (
        lambda p: ["audit", "lint", str(p / "list.yaml"), "--fail-on", "bogus"],
        2,
        "--fail-on",
    ),
    # query
    "query: no archive": (
        lambda p: ["audit", "query", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "query: a file": (
        lambda p: ["audit", "query", "--archive", str(p / "file")],
        2,
        "not a folder",
    ),
    "query: garbage": (
        lambda p: ["audit", "query", "--archive", str(p / "garbage")],
        2,
        "no archive index",
    ),
    "query: --since": (
        lambda p: ["audit", "query", "--archive", str(p / "archive"), "--since", "yesterday"],
        2,
        "--since 'yesterday'",
    ),
    "query: --until": (
        lambda p: ["audit", "query", "--archive", str(p / "archive"), "--until", "2024-13-45"],
        2,
        "--until",
    ),
    "query: --secret": (
        lambda p: ["audit", "query", "--archive", str(p / "archive"), "--secret", "x"],
        2,
        "NAMESPACE/NAME",
    ),
    "query: --limit": (
        lambda p: ["audit", "query", "--archive", str(p / "archive"), "--limit", "0"],
        2,
        "--limit",
    ),
    # verify, reindex, signing keys
    "verify: no archive": (
        lambda p: ["audit", "verify", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "verify: a file": (
        lambda p: ["audit", "verify", "--archive", str(p / "file")],
        2,
        "not a folder",
    ),
    "verify: --public-key missing": (
        lambda p: [
            "audit",
            "verify",
            "--archive",
            str(p / "archive"),
            "--public-key",
            str(p / "nope.pub"),
        ],
        2,
        "--public-key",
    ),
    "verify: --public-key garbage": (
        lambda p: [
            "audit",
            "verify",
            "--archive",
            str(p / "archive"),
            "--public-key",
            str(p / "bad.yaml"),
        ],
        1,
        "not a checkpoint public key",
    ),
    "reindex: no archive": (
        lambda p: ["audit", "reindex", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "reindex: garbage": (
        lambda p: ["audit", "reindex", "--archive", str(p / "garbage")],
        1,
        "damaged",
    ),
    "rotate: no archive": (
        lambda p: ["audit", "signing-key", "rotate", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "rotate: bad pkcs11 URI": (
        lambda p: [
            "audit",
            "signing-key",
            "rotate",
            "--archive",
            str(p / "archive"),
            "--signing-key",
            "pkcs11:token=x",
        ],
        2,
        "module-path",
    ),
    "show: a file": (
        lambda p: ["audit", "signing-key", "show", "--archive", str(p / "file")],
        2,
        "not a folder",
    ),
    # alerts, forward
    "alerts: no archive": (
        lambda p: ["audit", "alerts", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "forward: config not YAML": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "bad.yaml"),
        ],
        2,
        "not YAML",
    ),
    "forward: config missing": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "nope.yaml"),
        ],
        2,
        "no such file",
    ),
    "forward: config no mapping": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "list.yaml"),
        ],
        2,
        "is a mapping",
    ),
    "forward: unknown sink type": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "kafka.yaml"),
        ],
        2,
        "kafka",
    ),
    "forward: no sinks": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "nosinks.yaml"),
        ],
        2,
        "no sinks configured",
    ),
    "forward: credential unset": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "unset.yaml"),
        ],
        2,
        "KUSTOS_TEST_UNSET_TOKEN is not set",
    ),
    "forward: unknown --sink": (
        lambda p: [
            "audit",
            "forward",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "unset.yaml"),
            "--sink",
            "other",
        ],
        2,
        "no sink named 'other'",
    ),
    # ingest
    "ingest: log missing": (
        lambda p: ["audit", "ingest", "--archive", str(p / "archive"), str(p / "nope.log")],
        2,
        "nope.log",
    ),
    "ingest: archive is a file": (
        lambda p: ["audit", "ingest", "--archive", str(p / "file"), str(p / "audit.log")],
        2,
        "not a folder",
    ),
    "ingest: unknown detector field": (
        lambda p: [
            "audit",
            "ingest",
            "--archive",
            str(p / "archive"),
            "--config",
            str(p / "unknown.yaml"),
            str(p / "audit.log"),
        ],
        2,
        "detectors.bogus",
    ),
    # serve (each fails before listening)
    "serve: --listen": (
        lambda p: ["audit", "serve", "--archive", str(p / "archive"), "--listen", "nonsense"],
        2,
        "HOST:PORT",
    ),
    "serve: --listen port": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:99999",
        ],
        2,
        "HOST:PORT",
    ),
    "serve: TLS file missing": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(p / "nope.pem"),
            "--tls-key",
            str(p / "not.pem"),
        ],
        2,
        "--tls-cert",
    ),
    "serve: TLS unpaired": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(p / "not.pem"),
        ],
        1,
        "go together",
    ),
    "serve: TLS not PEM": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(p / "not.pem"),
            "--tls-key",
            str(p / "not.pem"),
        ],
        1,
        "TLS files",
    ),
    "serve: client CA missing": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(p / "not.pem"),
            "--tls-key",
            str(p / "not.pem"),
            "--client-ca",
            str(p / "nope-ca.pem"),
        ],
        2,
        "--client-ca",
    ),
    "serve: --max-waiting 0": (
        lambda p: ["audit", "serve", "--archive", str(p / "archive"), "--max-waiting", "0"],
        2,
        "--max-waiting",
    ),
    "serve: archive is a file": (
        lambda p: ["audit", "serve", "--archive", str(p / "file"), "--listen", "127.0.0.1:0"],
        2,
        "not a folder",
    ),
    "serve: config not YAML": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(p / "bad.yaml"),
        ],
        2,
        "not YAML",
    ),
    "serve: credential unset": (
        lambda p: [
            "audit",
            "serve",
            "--archive",
            str(p / "archive"),
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(p / "unset.yaml"),
        ],
        2,
        "KUSTOS_TEST_UNSET_TOKEN is not set",
    ),
    # rbac suggest
    "suggest: no archive": (
        lambda p: ["rbac", "suggest", "--archive", str(p / "nope")],
        2,
        "no such folder",
    ),
    "suggest: a file": (
        lambda p: ["rbac", "suggest", "--archive", str(p / "file")],
        2,
        "not a folder",
    ),
    "suggest: garbage": (
        lambda p: ["rbac", "suggest", "--archive", str(p / "garbage")],
        1,
        "is not a record",
    ),
    "suggest: --service-account": (
        lambda p: ["rbac", "suggest", "--archive", str(p / "archive"), "--service-account", "x"],
        2,
        "NAMESPACE/NAME",
    ),
    "suggest: --compare missing": (
        lambda p: [
            "rbac",
            "suggest",
            "--archive",
            str(p / "archive"),
            "--compare",
            str(p / "nope.yaml"),
        ],
        2,
        "nope.yaml",
    ),
    "suggest: --format table alone": (
        lambda p: ["rbac", "suggest", "--archive", str(p / "archive"), "--format", "table"],
        2,
        "--compare",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_non_zero_exit_and_nothing_lost(
    case: str, place: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUSTOS_TEST_UNSET_TOKEN", raising=False)
    argv, code, phrase = CASES[case]
    line = fails(argv(place), capsys, code=code)
    assert phrase in line, line
    assert main(["audit", "verify", "--archive", str(place / "archive")]) == 0
    assert "ok: 3 records" in capsys.readouterr().out


def test_serve_on_a_port_in_use_is_one_line(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["audit", "serve", "--archive", str(place / "archive"), "--listen",
                f"127.0.0.1:{port}"]  # fmt: skip
        line = fails(argv, capsys, code=1)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "address already in use" in line


def test_a_signing_key_others_can_read_is_refused(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = place / "archive" / "keys" / "checkpoint.key"
    key.chmod(0o644)
    argv = ["audit", "ingest", "--archive", str(place / "archive"), str(place / "audit.log")]
    line = fails(argv, capsys, code=2)
    assert "readable by others" in line
    assert "chmod 600" in line
