"""Every mistake a person can make with ``rotate``, ``versions``, ``rollback``,
``operator run`` and ``pull-secret create``.

Aspects: a target that is not NAMESPACE/NAME, a missing or malformed kubeconfig, an
unknown context, an API server that does not answer (exit 3), an invalid ``--format`` or
``--to``, an operator without namespaces or with both ``-n`` and ``-A``, a bad log level,
a listen address already taken, and a pull secret without its password on stdin: each
exits with its documented code and one line on stderr starting ``kustos: error:``, with
no traceback and nothing on stdout.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from tests.unit.cli.test_bad_input import fails


@pytest.fixture
def dead_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig pointing at a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["rotate", "no-slash"],
        ["rotate", "ns/"],
        ["rotate", "a/b/c"],
        ["versions", "/name"],
        ["rollback", "nsonly", "--to", "1"],
    ],
)
def test_targets_must_be_namespace_slash_name(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(argv, capsys)
    assert "give the ManagedSecret as NAMESPACE/NAME" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["versions", "ns/x", "--format", "xml"],
        ["rollback", "ns/x", "--to", "0"],
        ["rollback", "ns/x", "--to", "two"],
        ["rollback", "ns/x"],
        ["operator", "run", "-n", "a", "--max-parallel", "0"],
    ],
)
def test_invalid_options_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fails(argv, capsys)


@pytest.mark.parametrize(
    "command", [["rotate", "ns/x"], ["versions", "ns/x"], ["rollback", "ns/x", "--to", "1"]]
)
def test_unreachable_api_server_is_exit_3(
    command: list[str], dead_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails([*command, "--kubeconfig", str(dead_kubeconfig)], capsys, code=3)
    assert "read ManagedSecret ns/x: cannot reach https://127.0.0.1:" in err


@pytest.mark.parametrize("command", [["rotate", "ns/x"], ["versions", "ns/x"]])
def test_bad_kubeconfigs(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert str(missing) in fails([*command, "--kubeconfig", str(missing)], capsys)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(range(256)))
    fails([*command, "--kubeconfig", str(garbage)], capsys)


def test_unknown_context(dead_kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(
        ["rotate", "ns/x", "--kubeconfig", str(dead_kubeconfig), "--context", "nowhere"], capsys
    )
    assert "nowhere" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["operator", "run"], "say which namespaces to watch"),
        (["operator", "run", "-n", "a", "-A"], "not both"),
        (["operator", "run", "-A", "--log-level", "loud"], "--log-level"),
    ],
)
def test_operator_usage(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert says in fails(argv, capsys)


def test_operator_cannot_listen(dead_kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = fails(
            [
                "operator",
                "run",
                "-A",
                "--no-leader-elect",
                "--listen",
                f"127.0.0.1:{port}",
                "--kubeconfig",
                str(dead_kubeconfig),
            ],
            capsys,
            code=1,
        )
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_pull_secret_needs_the_password_on_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "pull-secret",
        "create",
        "r",
        "-n",
        "ns",
        "--registry",
        "registry.example",
        "--username",
        "u",
    ]
    assert "--password-stdin" in fails(base, capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "stdin held no password" in fails([*base, "--password-stdin"], capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    bad_user = [
        "pull-secret",
        "create",
        "r",
        "-n",
        "ns",
        "--registry",
        "registry.example",
        "--username",
        "a:b",
        "--password-stdin",
    ]
    assert "--username" in fails(bad_user, capsys)
