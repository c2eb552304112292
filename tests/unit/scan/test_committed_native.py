"""KST050 gives the same findings with the native credential detector and without it.

Aspects: on generated Secret manifests of every type with credential keys, keyword-named
keys, settings and plain keys (``data`` base64 of text and of binary content, ``stringData``,
SOPS values, placeholders, templates, values spelling their key's name, adversarial
values), the findings of ``check_committed`` with the core (short ASCII values answered
directly, per-key answers remembered) equal those of the reference path
(``KUSTOS_SCAN_NATIVE=0``: no core, memories emptied); and on the generated bench set.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
from bench.synth import generate_cluster

from kustos.kube.loading import load_manifests
from kustos.scan import credentials
from kustos.scan.checking import ScanInput
from kustos.scan.checks import secrets
from kustos.scan.findings import Finding
from tests.unit.manifests import index_of
from tests.unit.scan.test_credentials_native import KEYS, _adversarial

pytest.importorskip("kustos._native", reason="the native core is not built")

TYPES = ("Opaque", *secrets._CREDENTIAL_KEYS)
TYPE_KEYS = tuple(k for keys in secrets._CREDENTIAL_KEYS.values() for k in keys)
MORE_KEYS = ("ssh-privatekey", "tls.crt", "ca.crt", "ClientSecret", "api_key", "region", "port")


def _value(rng: random.Random, key: str) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return "ENC[AES256_GCM,data:AbCd,iv:AAAA,tag:BBBB,type:str]"
    if choice == 1:
        return rng.choice(["changeme", "<password>", "{{ .Values.pw }}", "${PW}", "", " "])
    if choice == 2:
        return f"my-{key}-value"  # spells its key's name
    if choice == 3:
        return base64.b64encode(rng.choice([b"changeme-please!", b"a" * 20])).decode()
    # YAML holds no lone surrogate: those become "?".
    return _adversarial(rng).encode("utf-8", "replace").decode("utf-8")


def _secret(rng: random.Random, n: int) -> dict[str, object]:
    keys = rng.sample([k for k in (*KEYS, *TYPE_KEYS, *MORE_KEYS) if k is not None], 5)
    data: dict[str, str] = {}
    string_data: dict[str, str] = {}
    for key in keys:
        value = _value(rng, key)
        if rng.random() < 0.2:
            data[key] = base64.b64encode(rng.randbytes(rng.randint(1, 40))).decode()
        elif rng.random() < 0.5 and value.isprintable():  # YAML text holds it as it is
            string_data[key] = value
        else:
            data[key] = base64.b64encode(value.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"s{n}", "namespace": "ns"},
        "type": rng.choice(TYPES),
        "data": data,
        "stringData": string_data,
    }


def _committed(scan: ScanInput) -> list[Finding]:
    return list(secrets.check_committed(scan))


def _both(scan: ScanInput, monkeypatch: pytest.MonkeyPatch) -> list[Finding]:
    with_core = _committed(scan)
    with monkeypatch.context() as off:
        off.setattr(credentials, "_core", None)
        off.setattr(secrets, "_NAMED_KINDS", {})
        credentials._detected.clear()
        reference = _committed(scan)
    assert with_core == reference
    return with_core


@pytest.mark.parametrize("seed", range(3))
def test_generated_secrets_give_the_same_findings(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    text = "\n---\n".join(json.dumps(_secret(rng, n), ensure_ascii=False) for n in range(600))
    found = _both(ScanInput(index=index_of(text)), monkeypatch)
    assert 100 < len(found) < 600  # both kinds of Secret: with and without credentials
    kinds = {dict(f.details)["kinds"] for f in found}
    assert any("binary key material" in k for k in kinds)
    assert any("credential-named key" in k for k in kinds)


def test_bench_set_gives_the_same_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_cluster(tmp_path / "set", 3000, per_file=500)
    assert len(_both(ScanInput(index=load_manifests([tmp_path / "set"])), monkeypatch)) > 50
