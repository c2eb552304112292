"""``kustos scan`` over the real manifests of ``shared/corpus``: a reviewed regression.

Aspects: every finding on the whole corpus is listed, with a verdict, in the reviewed
expectation files ``tests/unit/scan/corpus/<RULE>.json`` (rule, file, object, field,
severity; see docs/scan.md, "Corpus review", and ``python -m bench.precision``): a new,
changed or vanished finding fails until it is reviewed; no finding is left unreviewed and
the verdicts meet the precision goals of issue #12; specific findings a platform engineer
would expect, each pinned to its object and field; and no finding that the review
rejected as noise (templated env values, `secretName`-style references, bootstrap roles).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kustos.kube.loading import ManifestLoader
from kustos.scan.checking import ScanInput
from kustos.scan.findings import Finding, Severity
from kustos.scan.scanning import scan

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "manifests"
EXPECTATIONS = Path(__file__).resolve().parent / "corpus"
pytestmark = [
    pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo"),
    pytest.mark.timeout(120),  # the whole corpus: longer than a unit test's own limit
]


@pytest.fixture(scope="module")
def corpus_findings() -> list[Finding]:
    loader = ManifestLoader()
    index = loader.load([CORPUS])
    return list(scan(ScanInput(index), locate=loader.line).findings)


def _expected() -> list[dict[str, Any]]:
    entries = []
    for path in sorted(EXPECTATIONS.glob("KST*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries += [{"rule": doc["rule"], **entry} for entry in doc["findings"]]
    return entries


def _identity(finding: Finding) -> tuple[str, str, str, str, str]:
    assert finding.location is not None
    file = Path(finding.location.file).resolve().relative_to(CORPUS.resolve()).as_posix()
    obj = str(finding.resource) if finding.resource else ""
    return (finding.rule_id, file, obj, finding.field, finding.severity.label)


def _has(found: list[Finding], rule_id: str, file_part: str, obj: str, field: str) -> bool:
    return any(
        f.rule_id == rule_id
        and f.location is not None
        and file_part in f.location.file
        and str(f.resource) == obj
        and f.field == field
        for f in found
    )


def test_every_finding_is_the_reviewed_one(corpus_findings: list[Finding]) -> None:
    found = Counter(_identity(f) for f in corpus_findings)
    expected = Counter(
        (e["rule"], e["file"], e["object"], e["field"], e["severity"]) for e in _expected()
    )
    assert found - expected == Counter(), "new findings: review them (bench/precision.py)"
    assert expected - found == Counter(), "reviewed findings vanished: update the review"


def test_the_review_meets_the_precision_goals() -> None:
    entries = _expected()
    assert {e["verdict"] for e in entries} <= {"true", "noise", "wrong"}, "unreviewed findings"
    medium = [e for e in entries if Severity.parse(e["severity"]) >= Severity.MEDIUM]
    true_medium = sum(e["verdict"] == "true" for e in medium) / len(medium)
    true_all = sum(e["verdict"] == "true" for e in entries) / len(entries)
    assert true_medium >= 0.97, true_medium
    assert true_all >= 0.90, true_all


@pytest.mark.parametrize(
    ("rule_id", "file_part", "obj", "field"),
    [
        ("KST012", "flux2/", "ClusterRoleBinding cluster-reconciler", "subjects[0]"),
        ("KST007", "longhorn/deploy/longhorn.yaml", "ClusterRole longhorn-role", "rules[18]"),
        ("KST026", "secrets-store-csi-driver", "DaemonSet kube-system/csi-secrets-store",
         "spec.template.spec.volumes[0].hostPath"),
        ("KST021", "pod-secret-envFrom.yaml", "Pod default/envfrom-secret", "spec.containers[0].envFrom[0]"),
        ("KST020", "secret-envars-pod.yaml", "Pod default/secret-envars-test-pod", "spec.containers[0].env[1]"),
        ("KST011", "istio/samples/security/spire", "ClusterRoleBinding spire-agent-cluster-role-binding", "subjects[0]"),
    ],
)  # fmt: skip
def test_expected_findings(
    corpus_findings: list[Finding], rule_id: str, file_part: str, obj: str, field: str
) -> None:
    assert _has(corpus_findings, rule_id, file_part, obj, field)


def test_rejected_noise_stays_out(corpus_findings: list[Finding]) -> None:
    messages = " ".join(f.message for f in corpus_findings if f.rule_id in ("KST060", "KST061"))
    assert "$(" not in messages
    assert not [
        f
        for f in corpus_findings
        if f.rule_id.startswith("KST00") and "system:" in f.message and "bootstrap" in f.message
    ]
    # Every finding from files knows its file and line.
    assert all(f.location is not None and f.location.line >= 1 for f in corpus_findings)
