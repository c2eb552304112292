"""Every mistake a person can make with ``scan``, ``rules``, ``explain``, ``refs`` and ``who-can``.

Aspects: each command, given a missing file, a binary file (named or on stdin), a file it
may not read, an unwritable ``--output`` or ``--write-baseline``, an invalid ``--format`` or
``--fail-on``, a baseline that is not JSON, has the wrong shape or is missing, or a
configuration file that is binary, not YAML, a YAML alias bomb or no mapping, exits 2 with
one line on stderr that starts with ``kustos: error:``, names the path, and never shows a
traceback; an API server that does not answer is exit code 3, one line; a binary file or a
malformed document found inside a named folder is only skipped (a note on stderr, the exit
code unchanged); nothing is written to stdout when the command fails.
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import pytest

from kustos.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "shop"
BINARY = bytes(range(256)) * 4
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team}\nimmutable: true\n"
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *, code: int = 2) -> str:
    """Run *argv*, check the one-line failure contract, return the error line."""
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert err.startswith("kustos: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert out == ""
    return err


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "image.yaml"
    path.write_bytes(BINARY)
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "ok.yaml"
    path.write_text(SECRET)
    return path


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    "command",
    [
        ["scan"],
        ["refs"],
        ["who-can", "get", "secrets", "-n", "team"],
        ["who-can", "--matrix", "-n", "team"],
    ],
)
def test_a_named_binary_file_is_refused(
    command: list[str], binary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails([*command, str(binary)], capsys)
    assert f"{binary}: cannot read manifest: not UTF-8 text" in err


@pytest.mark.parametrize("command", [["scan"], ["refs"], ["who-can", "--matrix", "-n", "team"]])
def test_a_missing_file_is_refused(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert str(missing) in fails([*command, str(missing)], capsys)


@pytest.mark.parametrize("command", [["scan"], ["refs"]])
def test_binary_stdin_is_refused(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"kind: Secret\n" + BINARY), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert "<stdin>: cannot read manifest: not UTF-8 text" in fails([*command, "-"], capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_named_file_without_permission_is_refused(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest.chmod(0)
    try:
        assert f"{manifest}: cannot read manifest: Permission denied" in fails(
            ["scan", str(manifest)], capsys
        )
    finally:
        manifest.chmod(0o600)


def test_what_a_folder_holds_is_skipped_not_refused(
    tmp_path: Path, binary: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [broken\n")
    assert main(["scan", str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["summary"]["objects"] == 1
    assert f"kustos: skipped {binary}" in err
    assert f"kustos: skipped {tmp_path / 'broken.yaml'}:1: invalid YAML" in err
    assert "error" not in err


def test_an_empty_folder_is_a_clean_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["objects"] == 0


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["scan", str(EXAMPLES), "--format", "xml"],
            "'xml' is not one of 'table', 'json', 'sarif', 'html'",
        ),
        (["scan", str(EXAMPLES), "--fail-on", "severe"], "'severe' is not one of 'critical'"),
        (["rules", "--format", "yaml"], "'yaml' is not one of 'table', 'json'"),
        (["refs", str(EXAMPLES), "--format", "xml"], "'xml' is not one of 'table', 'json'"),
        (["who-can", "get", "secrets", str(EXAMPLES), "--format", "csv"], "'csv' is not one of"),
        (["who-can", "--matrix", str(EXAMPLES)], "--matrix needs -n NAMESPACE"),
        (["who-can", "get"], "usage: kustos who-can VERB RESOURCE"),
        (["explain", "KST999"], "no check 'KST999'"),
        (["scan"], "nothing to read"),
    ],
)
def test_invalid_options_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in fails(argv, capsys)


# --------------------------------------------------------------------------- files scan writes


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "html"])
def test_an_unwritable_output_is_refused(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "report"
    err = fails(["scan", str(EXAMPLES), "--format", fmt, "--output", str(missing)], capsys)
    assert f"{missing}: cannot write report: the folder does not exist" in err
    err = fails(["scan", str(EXAMPLES), "--format", fmt, "--output", str(tmp_path)], capsys)
    assert f"{tmp_path}: cannot write report: Is a directory" in err


def test_an_unwritable_baseline_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "baseline.json"
    err = fails(["scan", str(EXAMPLES), "--write-baseline", str(missing)], capsys)
    assert f"{missing}: cannot write baseline: the folder does not exist" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not a valid baseline (document: Invalid JSON"),
        (BINARY, "not a valid baseline (document: Invalid JSON"),
        (b"[1, 2]", "not a valid baseline (document: Input should be an object)"),
        (b'{"kustos_baseline": 1, "fingerprints": "abc"}', "not a valid baseline (fingerprints:"),
        (b'{"kustos_baseline": 2, "fingerprints": []}', "not a valid baseline (kustos_baseline:"),
        (b'{"kustos_baseline": 1}', "not a valid baseline (fingerprints: Field required)"),
        (b'{"kustos_baseline": 1, "fingerprints": [], "x": 1}', "not a valid baseline (x:"),
    ],
)
def test_a_bad_baseline_is_refused(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(content)
    assert f"{baseline}: {message}" in fails(
        ["scan", str(EXAMPLES), "--baseline", str(baseline)], capsys
    )


def test_a_missing_baseline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "baseline.json"
    err = fails(["scan", str(EXAMPLES), "--baseline", str(missing)], capsys)
    assert f"{missing}: cannot read baseline: no such file" in err


def test_the_baseline_keeps_its_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    assert main(["scan", str(EXAMPLES), "--format", "json", "--write-baseline", str(baseline)]) == 1
    found = {f["rule_id"] for f in json.loads(capsys.readouterr().out)["findings"]}
    doc = json.loads(baseline.read_text())
    assert set(doc) == {"kustos_baseline", "fingerprints"}
    assert doc["kustos_baseline"] == 1
    assert doc["fingerprints"] == sorted(set(doc["fingerprints"]))
    assert len(doc["fingerprints"]) >= len(found) > 0
    assert main(["scan", str(EXAMPLES), "--format", "json", "--baseline", str(baseline)]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []


# --------------------------------------------------------------------------- config files


@pytest.mark.parametrize("option", ["--encryption-config", "--audit-policy"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (BINARY, "cannot read {what}: not UTF-8 text"),
        (b"resources: [\n", ":1: invalid YAML"),
        (ALIAS_BOMB.encode(), "YAML aliases expand to more than"),
        (b"- just\n- a list\n", "{what} holds no YAML mapping"),
        (b"", "{what} holds no YAML mapping"),
    ],
)
def test_a_bad_config_file_is_refused(
    tmp_path: Path,
    option: str,
    content: bytes,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    what = "encryption config" if option == "--encryption-config" else "audit policy"
    err = fails(["scan", option, str(path)], capsys)
    assert f"{path}" in err
    assert message.format(what=what) in err


@pytest.mark.parametrize("option", ["--encryption-config", "--audit-policy"])
def test_a_missing_config_file_is_refused(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"{missing}: cannot read" in fails(["scan", option, str(missing)], capsys)


# --------------------------------------------------------------------------- the cluster


def _unanswered_kubeconfig(folder: Path) -> Path:
    with socket.socket() as probe:  # a loopback port where, once closed, nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = folder / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    "command",
    [["scan"], ["refs"], ["who-can", "get", "secrets"], ["who-can", "--matrix", "-n", "team"]],
)
def test_an_api_server_that_does_not_answer_is_exit_3(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = _unanswered_kubeconfig(tmp_path)
    err = fails([*command, "--cluster", "--kubeconfig", str(kubeconfig)], capsys, code=3)
    assert "127.0.0.1" in err
