"""``kustos audit lint``: the scanner's audit-policy checks on one file, exit codes as scan.

- a policy logging Secrets at RequestResponse is a leak (KST110, exit 1);
- a policy that never logs Secrets is a blind spot (KST111, exit 1 at the default
  ``--fail-on medium``, 0 with ``--fail-on high``);
- a rule shadowed by an earlier one is reported (KST112, low: exit 0 unless asked);
- the findings are exactly those of ``kustos scan --audit-policy`` (one implementation);
- an unreadable or non-mapping file exits 2 with one line.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kustos.cli.main import main

LEAK = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
"""
BLIND = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: "", resources: ["secrets"]}]
  - level: Metadata
"""
SHADOWED = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
  - level: None
    resources: [{group: "", resources: ["events"]}]
"""


def _ids(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["audit", "lint", str(path), "--format", "json", *args])
    report = orjson.loads(capsys.readouterr().out)
    return code, [f["rule_id"] for f in report["findings"]]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_leak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, ids = _ids(_write(tmp_path, LEAK), capsys)
    assert code == 1
    assert "KST110" in ids


def test_blind_spot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, BLIND)
    assert _ids(path, capsys) == (1, ["KST111"])
    assert _ids(path, capsys, "--fail-on", "high") == (0, ["KST111"])


def test_shadowed_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SHADOWED)
    assert _ids(path, capsys) == (0, ["KST112"])
    assert _ids(path, capsys, "--fail-on", "low") == (1, ["KST112"])


@pytest.mark.parametrize("text", [LEAK, BLIND, SHADOWED])
def test_same_findings_as_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = _write(tmp_path, text)
    _, lint_ids = _ids(path, capsys)
    main(["scan", "--audit-policy", str(path), "--format", "json"])
    scanned = orjson.loads(capsys.readouterr().out)
    assert lint_ids == [f["rule_id"] for f in scanned["findings"]]


def test_corpus_policies_agree_with_scan(
    corpus_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = sorted((corpus_dir / "policies" / "audit-policy").rglob("*.yaml"))
    assert policies
    for path in policies:
        capsys.readouterr()
        lint_code = main(["audit", "lint", str(path), "--format", "json"])
        lint_out = capsys.readouterr().out
        scan_code = main(["scan", "--audit-policy", str(path), "--format", "json"])
        scan_out = capsys.readouterr().out
        if lint_code == 2:
            assert scan_code == 2, path
            continue
        lint_ids = [f["rule_id"] for f in orjson.loads(lint_out)["findings"]]
        scan_ids = [f["rule_id"] for f in orjson.loads(scan_out)["findings"]]
        assert lint_ids == scan_ids, path


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "lint", str(tmp_path / "missing.yaml")]) == 2
    assert main(["audit", "lint", str(_write(tmp_path, "- a list\n"))]) == 2
    assert main(["audit", "lint", str(_write(tmp_path, LEAK)), "--fail-on", "worst"]) == 2
    err = capsys.readouterr().err
    assert err.count("kustos: error:") == 3
