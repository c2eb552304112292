"""Run the catalog over a ``ScanInput``: findings, suppressions, locations, order.

Purely data: the caller passes a ``locate`` function (from the loader that read the files)
to turn a field path into a line. Suppression: the annotation ``kustos.io/ignore`` on an
object (a comma-separated list of rule ids, or ``all``) and a baseline of fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from kustos.conventions import ANNOTATION_IGNORE
from kustos.kube.documents import line_of
from kustos.kube.objects import ObjectRef, Source, api_group
from kustos.scan.catalog import CHECKS
from kustos.scan.checking import Check, CheckFunction, ScanInput
from kustos.scan.findings import Finding, Location

Locate = Callable[[Source, str], int]


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan found."""

    findings: tuple[Finding, ...]
    #: Findings hidden by an ignore annotation or the baseline.
    suppressed: tuple[Finding, ...]
    objects: int


def run_checks(scan: ScanInput, checks: Iterable[Check] = CHECKS) -> list[Finding]:
    """Every finding of the enabled checks, each distinct check function run once."""
    enabled = {c.rule.id for c in checks}
    functions: dict[CheckFunction, None] = {}
    for check in checks:
        functions.setdefault(check.run, None)
    found: list[Finding] = []
    for function in functions:
        found.extend(f for f in function(scan) if f.rule_id in enabled)
    return found


def _ignored(scan: ScanInput, finding: Finding) -> bool:
    res = finding.resource
    if res is None:
        return False
    obj = scan.index.get(ObjectRef(api_group(res.api_version), res.kind, res.namespace, res.name))
    raw = obj.annotations.get(ANNOTATION_IGNORE) if obj is not None else None
    if not isinstance(raw, str):
        return False
    ids = {part.strip().upper() for part in raw.split(",")}
    return "ALL" in ids or finding.rule_id in ids


def _locate(scan: ScanInput, finding: Finding, family: str, locate: Locate | None) -> Finding:
    """Fill in the file and line: the object's, or the config file its rule family checks."""
    if finding.origin is not None:
        line = locate(finding.origin, finding.field) if locate and finding.field else None
        return replace(finding, location=Location(finding.origin.file, line or finding.origin.line))
    source = scan.sources.get(family) if finding.resource is None else None
    if source is not None:
        line = line_of(source.text, 1, finding.field)
        return replace(finding, location=Location(source.path, line))
    return finding


def _order(finding: Finding) -> tuple[int, str, str, str, str, str]:
    res = finding.resource
    return (
        -finding.severity,
        res.namespace if res else "",
        res.kind if res else "",
        res.name if res else "",
        finding.field,
        finding.rule_id,
    )


def scan(
    scan_input: ScanInput,
    *,
    checks: Iterable[Check] = CHECKS,
    locate: Locate | None = None,
    baseline: frozenset[str] = frozenset(),
) -> ScanResult:
    """Run the checks, drop suppressed findings, fill locations and sort (worst first)."""
    checks = tuple(checks)
    family = {c.rule.id: c.rule.family for c in checks}
    kept: list[Finding] = []
    suppressed: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for finding in run_checks(scan_input, checks):
        located = _locate(scan_input, finding, family[finding.rule_id], locate)
        key = (located.fingerprint, str(located.location), located.message)
        if key in seen:
            continue
        seen.add(key)
        if _ignored(scan_input, finding) or located.fingerprint in baseline:
            suppressed.append(located)
        else:
            kept.append(located)
    kept.sort(key=_order)
    return ScanResult(tuple(kept), tuple(suppressed), len(scan_input.index))
