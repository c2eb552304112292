"""``kustos kms`` on the command line: misconfiguration fails at start with one line.

Aspects: wrong passphrase, a world-readable keyring, a missing keyring, an empty
passphrase file, conflicting store flags, a path that is not a socket, a bad metrics
address; ``keys list`` shows no key material; ``export``/``import`` through the CLI with
an age identity restore a working keyring.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyrage
import pytest

from kustos.cli.main import main


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    passphrase = tmp_path / "pass"
    passphrase.write_text("a passphrase\n")
    passphrase.chmod(0o600)
    flags = ["--keyring", str(tmp_path / "ring.json"), "--passphrase-file", str(passphrase)]
    assert main(["kms", "keys", "init", *flags]) == 0
    return flags


def _serve(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kustos", "kms", "serve", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(60)  # nine `kustos kms serve` subprocesses, one after another
def test_serve_misconfigurations_fail_with_one_line(store: list[str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    wrong.chmod(0o600)
    ring = Path(store[1])
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("x")
    cases = [
        (["--keyring", str(ring), "--passphrase-file", str(wrong)], "wrong passphrase"),
        (
            ["--keyring", str(tmp_path / "none.json"), "--passphrase-file", store[3]],
            "does not exist",
        ),
        (["--keyring", str(ring)], "--keyring needs --passphrase-file"),
        ([*store, "--pkcs11-token", "x"], "not both"),
        ([], "name a key store"),
        ([*store, "--metrics-address", "nonsense"], "is not HOST:PORT"),
    ]
    for argv, message in cases:
        result = _serve(["--socket", str(tmp_path / "kms.sock"), *argv])
        assert result.returncode != 0, argv
        assert message in result.stderr, (argv, result.stderr)
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "Traceback" not in result.stderr
    result = _serve(["--socket", str(not_a_socket), *store])
    assert result.returncode != 0
    assert "is not a socket" in result.stderr
    ring.chmod(0o644)
    result = _serve(["--socket", str(tmp_path / "kms.sock"), *store])
    assert "accessible by group or others" in result.stderr
    assert result.returncode != 0


def test_keys_list_export_import(
    store: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kms", "keys", "rotate", *store]) == 0
    capsys.readouterr()
    assert main(["kms", "keys", "list", *store, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [k["state"] for k in doc["keys"]] == ["previous", "current"]
    assert set(doc["keys"][0]) == {"key_id", "state", "created", "key_id_hash"}
    identity = pyrage.x25519.Identity.generate()
    (tmp_path / "id.txt").write_text(f"# test identity\n{identity}\n")
    backup = tmp_path / "backup.age"
    assert (
        main(
            [
                "kms",
                "keys",
                "export",
                *store,
                "--recipient",
                str(identity.to_public()),
                "-o",
                str(backup),
            ]
        )
        == 0
    )
    assert backup.stat().st_mode & 0o777 == 0o600
    assert b"material" not in backup.read_bytes()
    new_ring = tmp_path / "restored.json"
    assert (
        main(
            [
                "kms",
                "keys",
                "import",
                str(backup),
                "--identity-file",
                str(tmp_path / "id.txt"),
                "--keyring",
                str(new_ring),
                "--passphrase-file",
                store[3],
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "kms",
                "keys",
                "list",
                "--keyring",
                str(new_ring),
                "--passphrase-file",
                store[3],
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["keys"] == doc["keys"]
    assert (
        main(["kms", "keys", "export", *store, "--recipient", "age1notakey", "-o", str(backup)])
        == 2
    )


def test_serve_logs_json_lines_without_keys_or_passphrase(store: list[str], tmp_path: Path) -> None:
    socket = tmp_path / "kms.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kustos",
            "kms",
            "serve",
            "--socket",
            str(socket),
            *store,
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if socket.exists():
                break
            time.sleep(0.05)
        assert socket.exists()
        assert socket.stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any("serving KMS v2" in entry["message"] for entry in lines)
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    ring = json.loads(Path(store[1]).read_text())
    assert "kek-0001" not in err  # key ids appear as hashes only
    assert Path(store[3]).read_text().strip() not in err
    assert ring["ciphertext"] not in err
    assert not socket.exists()  # removed on shutdown
