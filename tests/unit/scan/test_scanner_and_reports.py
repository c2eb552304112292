"""The scanner and its reports, end to end through ``kustos scan``.

Aspects: exit codes and ``--fail-on``; stdin; ``--output``; the ignore annotation (ids and
``all``); writing and reading a baseline; file and line of each finding; the documented
JSON shape; SARIF 2.1.0 as GitHub reads it (rules, security-severity, fingerprints,
regions); a self-contained HTML page; ``rules`` and ``explain``; bad input exits 2 with one
line; a canary value in Secrets, ConfigMaps, env and annotations never appears in any
format.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest

from kustos.cli.main import main
from kustos.scan.catalog import RULES

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "shop"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes_follow_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", str(EXAMPLES), "--format", "json"], capsys)[0] == 1
    assert run(["scan", str(EXAMPLES), "--format", "json", "--fail-on", "critical"], capsys)[0] == 0
    assert run(["scan", str(EXAMPLES), "--format", "json", "--fail-on", "CRITICAL"], capsys)[0] == 0
    code, _, err = run(["scan", str(EXAMPLES), "--fail-on", "severe"], capsys)
    assert code == 2
    assert "'severe' is not one of 'critical', 'high', 'medium', 'low', 'info'" in err


def test_json_shape_and_locations(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["scan", str(EXAMPLES), "--format", "json"], capsys)
    doc = json.loads(out)
    assert set(doc) == {"findings", "summary"}
    assert set(doc["summary"]) == {
        "objects", "findings", "suppressed", "by_severity", "read", "skipped", "duplicates"
    }  # fmt: skip
    assert doc["summary"]["objects"] == 21
    assert list(doc["summary"]["by_severity"]) == ["critical", "high", "medium", "low", "info"]
    for f in doc["findings"]:
        assert {
            "rule_id",
            "severity",
            "title",
            "message",
            "resource",
            "field",
            "location",
            "references",
        } <= set(f)
        assert f["severity"] in {"critical", "high", "medium", "low", "info"}
        assert f["location"]["file"].startswith(str(EXAMPLES))
        assert f["location"]["line"] >= 1
    env = [f for f in doc["findings"] if f["rule_id"] == "KST061"]
    assert env[0]["resource"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "shop",
        "name": "api",
    }
    assert env[0]["field"] == "spec.template.spec.containers[0].env[2]"
    lines = (EXAMPLES / "40-workloads.yaml").read_text().splitlines()
    assert "AWS_ACCESS_KEY_ID" in lines[env[0]["location"]["line"] - 1]
    assert code == 1


def test_stdin_and_output_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = "\n---\n".join(p.read_text() for p in sorted(EXAMPLES.glob("*.yaml")))
    monkeypatch.setattr("sys.stdin", io.StringIO(stream))
    out_file = tmp_path / "report.json"
    code, out, _ = run(["scan", "-", "--format", "json", "--output", str(out_file)], capsys)
    assert code == 1
    assert out == ""
    doc = json.loads(out_file.read_text())
    assert doc["summary"]["objects"] == 21
    assert {f["location"]["file"] for f in doc["findings"]} == {"<stdin>"}


def test_ignore_annotation_and_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "s.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n  namespace: default\n"
        "  annotations: {kustos.io/ignore: 'KST045', kustos.io/ignore-reason: legacy app}\n"
        "type: Opaque\nstringData: {tls.crt: x, tls.key: y}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: team, annotations: {kustos.io/ignore: all}}\n"
        "stringData: {tls.crt: x, tls.key: y}\n"
    )
    _, out, _ = run(["scan", str(manifest), "--format", "json"], capsys)
    doc = json.loads(out)
    assert [(f["rule_id"], f["resource"]["name"]) for f in doc["findings"]] == [("KST041", "a")]
    assert doc["summary"]["suppressed"] == 2  # KST045 on a, KST041 on b
    baseline = tmp_path / "baseline.json"
    code, _, _ = run(
        [
            "scan",
            str(manifest),
            "--format",
            "json",
            "--write-baseline",
            str(baseline),
            "--fail-on",
            "medium",
        ],
        capsys,
    )
    assert code == 1
    code, out, _ = run(
        [
            "scan",
            str(manifest),
            "--format",
            "json",
            "--baseline",
            str(baseline),
            "--fail-on",
            "medium",
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["findings"] == []
    baseline.write_text("{not json")
    code, _, err = run(["scan", str(manifest), "--baseline", str(baseline)], capsys)
    assert code == 2
    assert f"{baseline}: not a valid baseline" in err


def test_sarif_is_what_github_code_scanning_reads(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["scan", str(EXAMPLES), "--format", "sarif"], capsys)
    doc = json.loads(out)
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    (run_,) = doc["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == set(RULES)
    for r in rules:
        assert r["shortDescription"]["text"]
        assert r["fullDescription"]["text"]
        assert r["help"]["text"]
        assert 0.0 < float(r["properties"]["security-severity"]) <= 10.0
        assert "security" in r["properties"]["tags"]
    assert run_["results"]
    names = {r["id"]: r["name"] for r in rules}
    assert names["KST001"] == "SecretsReadableInEveryNamespace"
    assert names["KST006"] == "ResourceIsNotAWildcard"
    assert all(re.fullmatch(r"(?:[A-Z0-9][A-Za-z0-9]*)+", n) for n in names.values())
    root = run_["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert root == Path.cwd().resolve().as_uri() + "/"
    for res in run_["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["level"] in {"error", "warning", "note"}
        loc = res["locations"][0]["physicalLocation"]
        artifact = loc["artifactLocation"]
        assert artifact["uriBaseId"] == "%SRCROOT%"
        assert not artifact["uri"].startswith(("/", "file:"))
        assert (Path.cwd() / unquote(artifact["uri"])).is_file()
        assert loc["region"]["startLine"] >= 1
        assert len(res["partialFingerprints"]["primaryLocationLineHash"]) == 32
    fingerprints = [r["partialFingerprints"]["primaryLocationLineHash"] for r in run_["results"]]
    assert len(set(fingerprints)) == len(fingerprints)


SARIF_SCHEMA = Path(__file__).resolve().parent / "sarif-schema-2.1.0.json"


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_sarif_validates_against_the_sarif_2_1_0_schema(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The official OASIS schema (sarif-2.1/schema/sarif-schema-2.1.0.json, errata 01).
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    if where == "outside":
        monkeypatch.chdir(tmp_path)  # the scanned files are not under the working folder
    _, out, _ = run(["scan", str(EXAMPLES), "--format", "sarif"], capsys)
    doc = json.loads(out)
    jsonschema.Draft4Validator(schema).validate(doc)
    artifact = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    if where == "outside":
        assert artifact["uri"].startswith("file:///")
        assert "uriBaseId" not in artifact


def test_sarif_paths_with_spaces_are_uri_encoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "my manifests"
    folder.mkdir()
    (folder / "a b.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\n"
    )
    monkeypatch.chdir(tmp_path)
    _, out, _ = run(["scan", str(folder), "--format", "sarif", "--fail-on", "critical"], capsys)
    (result,) = json.loads(out)["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "my%20manifests/a%20b.yaml"


def test_html_is_one_self_contained_page(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["scan", str(EXAMPLES), "--format", "html"], capsys)
    assert out.startswith("<!doctype html>")
    assert "<script src" not in out
    assert "<link" not in out
    assert "KST061" in out
    assert "Deployment shop/api" in out


def test_rules_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["rules", "--format", "json"], capsys)
    assert code == 0
    catalog = json.loads(out)
    assert [r["id"] for r in catalog] == sorted(RULES)
    assert all(r["id"].startswith("KST") and len(r["id"]) == 6 for r in catalog)
    code, out, _ = run(["explain", "kst020"], capsys)
    assert code == 0
    assert "CIS 5.4.1" in out
    assert run(["explain", "KST999"], capsys)[0] == 2


def test_bad_config_file_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "enc.yaml"
    bad.write_text("resources: [\n")
    code, _, err = run(["scan", "--encryption-config", str(bad)], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert f"{bad}:1: invalid YAML" in err


CANARY = "Kq8Zp3Vt9Lm2Xw7R"


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "html"])
def test_canary_never_printed(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(f"""\
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: team}}
stringData: {{password: {CANARY}, tls.crt: x, tls.key: y, blob: "ghp_{CANARY}{CANARY}abcd"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c, namespace: team, annotations: {{api-token: "ghp_{CANARY}{CANARY}abcd"}}}}
data: {{DB_PASSWORD: "{CANARY}", token: "glpat-{CANARY}abcd"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d, namespace: team}}
spec:
  template:
    spec:
      containers:
      - name: c
        env:
        - {{name: API_PASSWORD, value: "{CANARY}"}}
        - {{name: S, valueFrom: {{secretKeyRef: {{name: s, key: password}}}}}}
        - {{name: X, valueFrom: {{secretKeyRef: {{name: s, key: blob}}}}}}
""")
    code, out, err = run(["scan", str(tmp_path), "--format", fmt], capsys)
    assert code == 1
    rules_found = {"KST060", "KST061", "KST062", "KST020", "KST041", "KST050"}
    assert all(r in out for r in rules_found), out
    # The key "blob" is judged by its value (a GitHub token): reported, value unseen.
    quoted = {
        "table": '"blob"',
        "json": '\\"blob\\"',
        "sarif": '\\"blob\\"',
        "html": "&quot;blob&quot;",
    }
    assert f"key {quoted[fmt]}" in out
    for text in (out, err):
        assert CANARY not in text
        assert CANARY[:8] not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["who-can", "get", "secrets", "s", "-n", "team"],
        ["who-can", "--matrix", "-n", "team", "--format", "json"],
        ["refs", "--format", "json"],
    ],
)
def test_canary_never_printed_by_who_can_or_refs(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text(f"""\
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: team}}
stringData: {{password: {CANARY}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: r, namespace: team}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: b, namespace: team}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}}
subjects: [{{kind: User, name: alice}}]
""")
    code, out, err = run([*argv, str(tmp_path)], capsys)
    assert code == 0
    assert "alice" in out or "references" in out
    assert CANARY not in out + err


def test_redirected_table_never_splits_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-rather-long-folder-name-for-manifests" / "overlays-production-eu"
    folder.mkdir(parents=True)
    manifest = folder / "deployment-with-secret-environment-variables.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: team}\n"
        "spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        env:\n"
        "        - {name: P, valueFrom: {secretKeyRef: {name: s, key: password}}}\n"
    )
    assert len(str(manifest)) > 80  # longer than a default console
    _, out, _ = run(["scan", str(manifest)], capsys)  # capsys: stdout is not a terminal
    assert f"{manifest}:" in out
    assert any(line.strip().startswith(f"{manifest}:") for line in out.splitlines())
