"""Run the catalog over a ``ScanInput``: findings, suppressions, locations, order.

Purely data: the caller passes a ``locate`` function (from the loader that read the files)
to turn a field path into a line. Suppression: the annotation ``kustos.io/ignore`` on an
object (a comma-separated list of rule ids, or ``all``) and a baseline of fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kustos.conventions import ANNOTATION_IGNORE
from kustos.kube.documents import line_of
from kustos.kube.index import ReadSummary
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
    #: What was read and what was left out (files, documents, duplicates).
    read: ReadSummary | None = None


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


def _located(finding: Finding, location: Location | None) -> Finding:
    """*finding* with its location: one new value, built directly (no ``replace``)."""
    return Finding(
        finding.rule_id,
        finding.severity,
        finding.message,
        finding.resource,
        finding.field,
        location,
        finding.details,
        finding.origin,
    )


def _locate_all(
    scan: ScanInput, found: list[Finding], family: dict[str, str], locate: Locate | None
) -> list[Finding]:
    """Fill in the file and line of each finding: the object's, or its config file's.

    A finding about a whole object (no field) points at the object's first line of
    content. Lines are asked in file and document order, so that the loader splits each
    file and indexes each document once, whatever order the checks found them in; the
    findings keep their order.
    """
    out = list(found)
    asked: list[int] = []
    config_lines: dict[tuple[str, str], int] = {}
    for i, finding in enumerate(found):
        origin = finding.origin
        if origin is not None:
            if locate is None:
                out[i] = _located(finding, Location(origin.file, origin.line))
            else:
                asked.append(i)
            continue
        source = scan.sources.get(family[finding.rule_id]) if finding.resource is None else None
        if source is not None:
            key = (source.path, finding.field)
            if key not in config_lines:
                config_lines[key] = line_of(source.text, 1, finding.field)
            out[i] = _located(finding, Location(source.path, config_lines[key]))
    if locate is not None:

        def where(i: int) -> tuple[str, int]:
            origin = found[i].origin
            assert origin is not None  # noqa: S101 - only findings with an origin are asked
            return origin.file, origin.line

        for i in sorted(asked, key=where):
            finding = found[i]
            assert finding.origin is not None  # noqa: S101 - as above
            line = locate(finding.origin, finding.field)
            out[i] = _located(finding, Location(finding.origin.file, line or finding.origin.line))
    return out


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
    found = run_checks(scan_input, checks)
    for finding, located in zip(found, _locate_all(scan_input, found, family, locate), strict=True):
        key = (located.fingerprint, str(located.location), located.message)
        if key in seen:
            continue
        seen.add(key)
        if _ignored(scan_input, finding) or located.fingerprint in baseline:
            suppressed.append(located)
        else:
            kept.append(located)
    kept.sort(key=_order)
    index = scan_input.index
    return ScanResult(tuple(kept), tuple(suppressed), len(index), index.read_summary())
