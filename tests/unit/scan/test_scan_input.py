"""What a check receives: ``ScanInput``, parsed once.

Aspects: ``scan_input`` parses the EncryptionConfiguration, the audit policy and the RBAC
policy once per scan, however many checks read them; the checks get typed values, not YAML
bodies; the RBAC policy always describes the input's own index; a finding that names no
object is located in the configuration file of its rule's family, whatever its id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kustos.kube.index import ObjectIndex
from kustos.scan import checking
from kustos.scan.checking import Check, ConfigDocument, ScanInput, finding, scan_input
from kustos.scan.configs import auditpolicy, encryption
from kustos.scan.findings import Finding, Location, Rule, Severity
from kustos.scan.scanning import scan
from tests.unit.manifests import index_of

ENCRYPTION_TEXT = """\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - identity: {}
"""
AUDIT_TEXT = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
"""
RBAC = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: User, name: alice}]
"""


def _document(path: str, text: str) -> ConfigDocument:
    import yaml  # noqa: PLC0415 - test input only

    return ConfigDocument(path, text, yaml.safe_load(text))


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_every_input_is_parsed_once_per_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    read_config = _counting(monkeypatch, encryption, "read_config")
    read_policy = _counting(monkeypatch, auditpolicy, "read_policy")
    build_policy = _counting(monkeypatch, checking, "build_policy")
    parsed = scan_input(
        index_of(RBAC),
        encryption_config=_document("enc.yaml", ENCRYPTION_TEXT),
        audit_policy=_document("audit.yaml", AUDIT_TEXT),
    )
    result = scan(parsed)
    # Several check functions read each of these inputs; each was parsed exactly once.
    assert {"KST091", "KST110", "KST001"} <= {f.rule_id for f in result.findings}
    assert (len(read_config), len(read_policy), len(build_policy)) == (1, 1, 1)


def test_checks_get_typed_values() -> None:
    parsed = scan_input(
        ObjectIndex(),
        encryption_config=_document("enc.yaml", ENCRYPTION_TEXT),
        audit_policy=_document("audit.yaml", AUDIT_TEXT),
    )
    assert isinstance(parsed.encryption, encryption.EncryptionConfig)
    assert [p.type for p in parsed.encryption.entries[0].providers] == ["identity"]
    assert isinstance(parsed.audit, auditpolicy.AuditPolicy)
    assert [r.level for r in parsed.audit.rules] == ["RequestResponse"]
    assert parsed.sources[encryption.FAMILY].path == "enc.yaml"
    assert parsed.sources[auditpolicy.FAMILY].path == "audit.yaml"


def test_without_files_the_config_checks_have_nothing() -> None:
    parsed = scan_input(ObjectIndex())
    assert (parsed.encryption, parsed.audit, dict(parsed.sources)) == (None, None, {})


def test_the_rbac_policy_is_the_index_s_own() -> None:
    assert [b.name for b in ScanInput(index_of(RBAC)).policy.bindings] == ["reader"]
    assert ScanInput(ObjectIndex()).policy.bindings == []


def _config_check(rule_id: str, family: str) -> Check:
    rule = Rule(
        id=rule_id, family=family, severity=Severity.LOW, title="t", rationale="r",
        remediation="f",
    )  # fmt: skip

    def run(_: ScanInput) -> Iterator[Finding]:
        yield finding(rule, None, "m", field="kind")

    return Check(rule, run)


@pytest.mark.parametrize(
    ("rule_id", "family", "expected"),
    [
        # Ids say nothing about the file: a late encryption rule and an early audit rule.
        ("KST150", encryption.FAMILY, Location("enc.yaml", 2)),
        ("KST050", auditpolicy.FAMILY, Location("audit.yaml", 2)),
        ("KST051", "rbac", None),
    ],
)
def test_config_findings_are_located_by_rule_family(
    rule_id: str, family: str, expected: Location | None
) -> None:
    parsed = scan_input(
        ObjectIndex(),
        encryption_config=_document("enc.yaml", ENCRYPTION_TEXT),
        audit_policy=_document("audit.yaml", AUDIT_TEXT),
    )
    (found,) = scan(parsed, checks=[_config_check(rule_id, family)]).findings
    assert found.location == expected
