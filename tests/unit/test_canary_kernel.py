"""Canary: a Secret value passed through the kernel appears in no log record, no exception
text and no CLI output.

Aspects: parsing (valid and malformed Secret documents, JSON and YAML), the index and the
reference parser, ``repr`` of every object and reference, error messages of the loader
(an unreadable file holding the value too), every log record emitted at DEBUG level,
``kustos refs`` output in both formats, and the errors ``api_errors`` makes of API server
answers that echo the value back (422 causes, 409, 400, 5xx).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx2
import pytest
from lightkube import Client, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.resources.core_v1 import Secret

from kustos.cli.main import main
from kustos.errors import KubeError
from kustos.kube.client import api_errors
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


def test_unreadable_file_holding_the_value(tmp_path: Path) -> None:
    (tmp_path / "blob.yaml").write_bytes(b"\xff" + CANARY.encode() + b"\xfe")
    (error,) = load_manifests([tmp_path / "blob.yaml"]).errors
    assert "not UTF-8 text" in str(error)
    _assert_clean(str(error) + repr(error))


@pytest.mark.parametrize(
    ("code", "message", "causes"),
    [
        (
            422,
            f'Secret "creds" is invalid: data[p]: Invalid value: "{CANARY}": too long',
            [{"field": "data[p]", "message": f'Invalid value: "{CANARY_B64}": too long'}],
        ),
        (422, f'Secret "creds" is invalid: stringData: Invalid value: "{CANARY}": bad', []),
        (409, f'Operation cannot be fulfilled: Duplicate value: "{CANARY}"', []),
        (400, f'Unsupported value: "{CANARY_B64}": supported values: "Opaque"', []),
        (500, f'Not found: "{CANARY}"', []),
    ],
)
def test_api_errors_never_echo_the_value(
    code: int, message: str, causes: list[dict[str, str]]
) -> None:
    body = {"kind": "Status", "code": code, "message": message, "details": {"causes": causes}}
    config = KubeConfig.from_one(cluster=Cluster(server="https://k8s.test"), user=User(token="t"))
    transport = httpx2.MockTransport(lambda _: httpx2.Response(code, json=body))
    with (
        Client(config, transport=transport) as client,
        pytest.raises(KubeError) as info,
        api_errors("create Secret default/creds"),
    ):
        client.get(Secret, "creds", namespace="default")
    _assert_clean(str(info.value))
