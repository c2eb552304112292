"""A kubeconfig Kustos cannot use is one ``ConfigError`` line naming it (``kube.client``).

Aspects: a missing file, a folder, binary data, text that is not YAML, YAML that is not a
kubeconfig, an alias bomb, malformed entries, a context that does not exist, a context that
points at a user that does not exist, a certificate file that is missing; ``KUBECONFIG``
with several files uses the first existing one; every message is one line, names the
file and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kustos.errors import ConfigError
from kustos.kube.client import (
    ClientSettings,
    load_config,
    make_async_client,
    make_client,
    raw_get,
)


def kubeconfig(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    config.update(overrides)
    return config


def refused(path: Path, context: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        make_client(ClientSettings(kubeconfig=path, context=context))
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


def test_a_good_kubeconfig_gives_a_client(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(kubeconfig()))
    with make_client(ClientSettings(kubeconfig=path)) as client:
        assert client.config.context_name == "x"


def test_missing_file(tmp_path: Path) -> None:
    assert (
        refused(tmp_path / "nope") == f"no usable kubeconfig at {tmp_path / 'nope'}: no such file"
    )


def test_a_folder(tmp_path: Path) -> None:
    assert refused(tmp_path) == f"no usable kubeconfig at {tmp_path}: is a directory"


def test_binary_data(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"\x00\xff\xfe")
    assert refused(path).startswith(f"no usable kubeconfig at {path}: not UTF-8 text")


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nclusters: [oops\n")
    assert refused(path) == f"no usable kubeconfig at {path}: not YAML (line 3)"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "apiVersion: v1\nkind: Config\n"])
def test_yaml_that_is_not_a_kubeconfig(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    assert (
        refused(path) == f"no usable kubeconfig at {path}: not a kubeconfig (no list of clusters)"
    )


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "config"
    path.write_text("\n".join(lines) + "\nclusters: *a8\n")
    assert refused(path).startswith(f"no usable kubeconfig at {path}: YAML aliases expand")


def test_malformed_entries(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(kubeconfig(clusters=[{"cluster": {"server": "x"}}])))
    assert refused(path).startswith(f"no usable kubeconfig at {path}: malformed entry (KeyError")


def test_no_such_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(kubeconfig()))
    assert refused(path, "prod") == f"kubeconfig {path}: Context 'prod' not found"


def test_context_pointing_at_an_undefined_user(tmp_path: Path) -> None:
    path = tmp_path / "config"
    contexts = [{"name": "x", "context": {"cluster": "c", "user": "ghost"}}]
    path.write_text(json.dumps(kubeconfig(contexts=contexts)))
    assert refused(path).startswith(
        f"kubeconfig {path}: context 'x' names a cluster or user that is not defined"
    )


def test_missing_client_certificate(tmp_path: Path) -> None:
    path = tmp_path / "config"
    user = {"client-certificate": str(tmp_path / "c.crt"), "client-key": str(tmp_path / "c.key")}
    path.write_text(json.dumps(kubeconfig(users=[{"name": "u", "user": user}])))
    message = refused(path)
    assert message.startswith(f"kubeconfig {path} context 'x': cannot load its TLS files")
    with pytest.raises(ConfigError, match="cannot load its TLS files"):
        make_async_client(ClientSettings(kubeconfig=path))
    with pytest.raises(ConfigError, match="cannot load its TLS files"):
        raw_get(ClientSettings(kubeconfig=path), "/metrics")


def test_kubeconfig_variable_uses_the_first_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = tmp_path / "second"
    second.write_text(json.dumps(kubeconfig(**{"current-context": "x"})))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'first'}:{second}")
    assert load_config(ClientSettings()).fname == second.resolve()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"no usable kubeconfig at .*none: no such file"):
        load_config(ClientSettings())
