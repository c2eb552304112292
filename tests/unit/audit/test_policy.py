"""``kustos audit policy``: the recommended policy.

- it is a valid audit Policy with no finding of the scanner's audit checks;
- Secrets, ConfigMaps, TokenReviews and serviceaccounts/token are at Metadata, in a rule
  before any Request or RequestResponse rule; RequestReceived is omitted;
- every rule is explained by a comment; ``--output`` writes it to a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kustos.audit.policy import RECOMMENDED, lint
from kustos.cli.main import main
from kustos.scan.checking import ConfigDocument


def test_recommended_policy_has_no_findings() -> None:
    body = yaml.safe_load(RECOMMENDED)
    assert lint(ConfigDocument("recommended.yaml", RECOMMENDED, body)).findings == ()


def test_values_at_metadata_before_any_body_rule() -> None:
    body = yaml.safe_load(RECOMMENDED)
    assert body["omitStages"] == ["RequestReceived"]
    rules = body["rules"]
    sensitive = next(i for i, r in enumerate(rules) if "secrets" in str(r.get("resources", "")))
    assert rules[sensitive]["level"] == "Metadata"
    resources = {
        (item.get("group", ""), res) for item in rules[sensitive]["resources"]
        for res in item["resources"]
    }  # fmt: skip
    assert {
        ("", "secrets"), ("", "configmaps"), ("", "serviceaccounts/token"),
        ("authentication.k8s.io", "tokenreviews"),
    } <= resources  # fmt: skip
    body_rules = [i for i, r in enumerate(rules) if r["level"] in ("Request", "RequestResponse")]
    assert all(i > sensitive for i in body_rules)


def test_every_rule_is_explained() -> None:
    lines = RECOMMENDED.splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith("- level:"):
            assert lines[number - 1].strip().startswith("#"), line


def test_cli_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "policy"]) == 0
    assert capsys.readouterr().out == RECOMMENDED
    target = tmp_path / "policy.yaml"
    assert main(["audit", "policy", "-o", str(target)]) == 0
    assert target.read_text() == RECOMMENDED
    assert main(["audit", "lint", str(target)]) == 0
