"""Helpers for unit tests: YAML text → index → findings."""

from __future__ import annotations

from kustos.kube.documents import parse_stream
from kustos.kube.index import ObjectIndex
from kustos.scan.checking import ScanInput
from kustos.scan.findings import Finding
from kustos.scan.scanning import run_checks


def index_of(text: str) -> ObjectIndex:
    """Parse a multi-document YAML string into an index; fail on malformed documents."""
    result = parse_stream(text, "test.yaml")
    assert result.errors == (), result.errors
    return ObjectIndex.of(result.objects)


def findings(text: str, rule_id: str, **scan: object) -> list[Finding]:
    """The findings of one rule on the objects in *text*."""
    scan_input = ScanInput(index=index_of(text), **scan)  # type: ignore[arg-type]
    return [f for f in run_checks(scan_input) if f.rule_id == rule_id]


def where(found: list[Finding]) -> list[tuple[str, str]]:
    """(object, field) of each finding, for compact assertions."""
    return sorted((str(f.resource), f.field) for f in found)
