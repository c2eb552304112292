"""Canary: a Secret value passed through the kernel appears in no log record, no exception
text and no CLI output.

Aspects: parsing (valid and malformed Secret documents, JSON and YAML), the index and the
reference parser, ``repr`` of every object and reference, error messages of the loader,
every log record emitted at DEBUG level, and ``kustos refs`` output in both formats.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from kustos.cli.main import main
from kustos.kube.loading import load_manifests

CANARY = "kustos-canary-7d1f0c9e"
CANARY_B64 = base64.b64encode(CANARY.encode()).decode()


def _write_inputs(folder: Path) -> None:
    (folder / "good.yaml").write_text(f"""\
apiVersion: v1
kind: Secret
metadata:
  name: creds
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"data": {{"password": "{CANARY_B64}"}}}}'
data:
  password: {CANARY_B64}
stringData:
  again: {CANARY}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  template:
    spec:
      containers:
      - name: c
        env:
        - name: P
          valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
""")
    # Malformed on the very line that holds the value.
    (folder / "broken.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: b}}\nstringData:\n  p: [{CANARY}\n"
    )
    (folder / "broken.json").write_text(
        f'{{"apiVersion": "v1", "kind": "Secret", "data": {{"p": "{CANARY}"'
    )


def _assert_clean(text: str) -> None:
    assert CANARY not in text
    assert CANARY_B64 not in text


def test_kernel_never_shows_the_value(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_inputs(tmp_path)
    with caplog.at_level(logging.DEBUG):
        index = load_manifests([tmp_path])
        refs = index.secret_references()
    assert len(refs) == 1
    assert len(index.errors) == 2
    for text in (
        *(repr(o) + str(o) + repr(o.body) for o in index),
        *(repr(r) for r in refs),
        *(str(e) + repr(e) for e in index.errors),
        *(r.getMessage() for r in caplog.records),
    ):
        _assert_clean(text)


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_cli_output_never_shows_the_value(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_inputs(tmp_path)
    assert main(["refs", str(tmp_path), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert "creds" in out
    _assert_clean(out)
    _assert_clean(err)
