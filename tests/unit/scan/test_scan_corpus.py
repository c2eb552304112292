"""``kustos scan`` over the real manifests of ``shared/corpus``: a reviewed regression.

Aspects: the number of findings per rule over the whole corpus, recorded after reviewing
samples of every rule by hand (see docs/scan.md, "Corpus review"); specific findings a
platform engineer would expect, each pinned to its object and field; and no finding that
the review rejected as noise (templated env values, `secretName`-style references,
bootstrap roles).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kustos.kube.loading import ManifestLoader
from kustos.scan.checking import ScanInput
from kustos.scan.findings import Finding
from kustos.scan.scanning import scan

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "manifests"
pytestmark = [
    pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo"),
    pytest.mark.timeout(120),  # the whole corpus: longer than a unit test's own limit
]

#: Reviewed by hand on 2026-11-29; a change here needs a new review of the affected rule.
EXPECTED_COUNTS = {
    "KST001": 54, "KST004": 33, "KST005": 5, "KST007": 3, "KST008": 19, "KST009": 12,
    "KST010": 18, "KST011": 5, "KST012": 5, "KST020": 231, "KST021": 2, "KST022": 595,
    "KST023": 98, "KST024": 2, "KST025": 1, "KST026": 14, "KST040": 83, "KST042": 20,
    "KST045": 5, "KST050": 14, "KST061": 22, "KST080": 12,
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus_findings() -> list[Finding]:
    loader = ManifestLoader()
    index = loader.load([CORPUS])
    return list(scan(ScanInput(index), locate=loader.line).findings)


def _has(found: list[Finding], rule_id: str, file_part: str, obj: str, field: str) -> bool:
    return any(
        f.rule_id == rule_id
        and f.location is not None
        and file_part in f.location.file
        and str(f.resource) == obj
        and f.field == field
        for f in found
    )


def test_counts_per_rule(corpus_findings: list[Finding]) -> None:
    assert dict(sorted(Counter(f.rule_id for f in corpus_findings).items())) == EXPECTED_COUNTS


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
