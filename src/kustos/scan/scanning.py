"""Run the catalog over a ``ScanInput``: findings, suppressions, locations, order.

Purely data: the caller passes a ``locate`` function (from the loader that read the files)
to turn a field path into a line. Suppression: the annotation ``kustos.io/ignore`` on an
object (a comma-separated list of rule ids, or ``all``) and a baseline of fingerprints.

**Checks in several processes.** The caller may also pass ``share``
(:class:`kustos.scan.forking.Forking`): the distinct check functions are then drawn,
heaviest first (``Check.weight``), by this process and forked copies of it, and their
findings, located by the process that found them (most lines are looked up in the lines
the parse recorded), put back in catalog order. The tables built when first asked (every
object's Secret references, consumers by Secret, the RBAC policy) are built by the first
forked process, which runs every function that reads them (``Check.reads_tables``) before
it draws, so that no other process builds its own and none waits for them. The result is
the same as running everything here (unit tests hold the two to the same report, byte for
byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kustos.conventions import ANNOTATION_IGNORE
from kustos.kube.documents import line_of
from kustos.kube.index import ReadSummary
from kustos.kube.objects import ObjectRef, Source, api_group
from kustos.scan.catalog import CHECKS
from kustos.scan.checking import Check, CheckFunction, ScanInput
from kustos.scan.findings import Finding, Location, Resource, Severity

Locate = Callable[[Source, str], int]
T = TypeVar("T")


class Share(Protocol):
    """Runs ``run(number)`` for every item of *order* and *reserved*, here and in other
    processes, each drawing the items of *order* from one counter; the first other
    process runs the *reserved* items before it draws. Every result, by number
    (:func:`kustos.scan.forking.in_processes`)."""

    @property
    def processes(self) -> int:
        """How many processes run items (this one included)."""

    def __call__(
        self,
        run: Callable[[int], T],
        order: Sequence[int],
        *,
        reserved: Sequence[int] = (),
        send: Callable[[T], Any] | None = None,
        receive: Callable[[Any], T] | None = None,
    ) -> dict[int, T]:
        """Every result, by number; *send* and *receive* convert what crosses a pipe."""


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
    checks = tuple(checks)
    enabled = {c.rule.id for c in checks}
    found: list[Finding] = []
    for function in _functions(checks):
        found.extend(f for f in function(scan) if f.rule_id in enabled)
    return found


def _functions(checks: Sequence[Check]) -> dict[CheckFunction, int]:
    """The distinct check functions in catalog order, each with its heaviest rule's weight."""
    functions: dict[CheckFunction, int] = {}
    for check in checks:
        functions[check.run] = max(functions.get(check.run, 0), check.weight)
    return functions


def _checked(
    scan: ScanInput,
    checks: Sequence[Check],
    family: dict[str, str],
    locate: Locate | None,
    share: Share | None,
) -> list[tuple[Finding, int]]:
    """The located findings of every enabled check, in the order of :func:`run_checks`,
    each with whether its object's annotation ignores it (1) or not (0).

    Each process locates the findings of the functions it drew (most lines are looked up
    in what the parse recorded) and reads their objects' ignore annotations, so that no
    finding waits for the others to be located or looked up.
    """
    enabled = {c.rule.id for c in checks}
    weights = _functions(checks)
    functions = list(weights)
    # With several processes, the first forked one runs the functions that read the tables
    # the index and the input build when first asked (every object's Secret references,
    # consumers by Secret, the RBAC policy: 1.4 s at 100k), then draws with the others;
    # so they are built once, while the other processes check, instead of here before.
    readers = {c.run for c in checks if c.reads_tables}
    reserved = [n for n, f in enumerate(functions) if share is not None and f in readers]
    # Heaviest first, so that no process draws a long function when the others are done.
    order = sorted(
        (n for n in range(len(functions)) if n not in reserved),
        key=lambda n: -weights[functions[n]],
    )

    ignoring: dict[Resource, frozenset[str]] = {}  # each process has its own copy
    annotated = _annotated(scan)

    def run(number: int) -> _Drawn:
        found = [f for f in functions[number](scan) if f.rule_id in enabled]
        where = _locations(scan, found, family, locate)
        if not annotated:  # no object says to ignore anything: nothing to look up
            return found, where, bytes(len(found))
        return found, where, bytes(_ignored(scan, f, ignoring, annotated) for f in found)

    if share is None:
        by_function = {number: run(number) for number in order}
    else:
        by_function = share(run, order, reserved=reserved, send=_send, receive=_Receive())
    pairs: list[tuple[Finding, int]] = []
    for number in range(len(functions)):
        found, where, flags = by_function[number]
        pairs.extend(
            (f if w is None else _located(f, Location(*w)), flag)
            for f, w, flag in zip(found, where, flags, strict=True)
        )
    return pairs


#: A located finding, as plain tuples: the 63,388 findings of the 100k bench set crossed
#: a pipe (pickled, read back) in 2.1 to 2.3 s as dataclasses, 1.0 s this way.
_Plain = tuple[
    str,
    int,
    str,
    tuple[str, str, str, str] | None,
    str,
    tuple[tuple[str, str], ...],
    tuple[str, int, int, str] | None,
    tuple[str, int] | None,
]


#: A finding's file and line, or ``None`` for the location it was found with.
_Where = tuple[str, int] | None

#: What one process answers for one function: its findings, their locations
#: (:func:`_locations`), and for each whether its object ignores it (the answers of
#: :func:`_ignored`, one byte each). The located finding is built once, where it is kept
#: (in the parent, from what crossed the pipe), rather than once more where it was found.
_Drawn = tuple[list[Finding], list[_Where], bytes]


def _send(drawn: _Drawn) -> tuple[list[_Plain], bytes]:
    found, where, flags = drawn
    return [_plain(f, w) for f, w in zip(found, where, strict=True)], flags


class _Receive:
    """Reads back what :func:`_send` sent, one Resource and one Source per object shared
    by its findings, as the checks share them (44,897 objects for 63,388 findings at
    100k), whichever function found them."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str, str, str], Resource] = {}
        self.origins: dict[tuple[str, int, int, str], Source] = {}

    def __call__(self, sent: tuple[list[_Plain], bytes]) -> _Drawn:
        found, flags = sent
        located = [_unplain(p, self.resources, self.origins) for p in found]
        return located, [None] * len(located), flags


def _plain(f: Finding, where: _Where) -> _Plain:
    res, origin, location = f.resource, f.origin, f.location
    return (
        f.rule_id,
        int(f.severity),
        f.message,
        (res.api_version, res.kind, res.namespace, res.name) if res is not None else None,
        f.field,
        f.details,
        (origin.file, origin.line, origin.document, origin.path_prefix) if origin else None,
        where
        if where is not None
        else (location.file, location.line)
        if location is not None
        else None,
    )


#: Severity by value, looked up rather than called (``Severity(3)`` goes through the enum's
#: lookup machinery: 0.8 µs a finding).
_SEVERITIES: dict[int, Severity] = {int(s): s for s in Severity}


def _unplain(
    p: _Plain,
    resources: dict[tuple[str, str, str, str], Resource],
    origins: dict[tuple[str, int, int, str], Source],
) -> Finding:
    rule_id, severity, message, res, field, details, origin, location = p
    resource = None
    if res is not None:
        resource = resources.get(res)
        if resource is None:
            resource = resources[res] = Resource(*res)
    source = None
    if origin is not None:
        source = origins.get(origin)
        if source is None:
            source = origins[origin] = Source(*origin)
    return Finding(
        rule_id,
        _SEVERITIES[severity],
        message,
        resource,
        field,
        Location(*location) if location is not None else None,
        details,
        source,
    )


def _annotated(scan: ScanInput) -> frozenset[tuple[str, str, str]]:
    """The kind, namespace and name of every object that carries the ignore annotation.

    A finding on an object named by none of them is not ignored, whatever its group: no
    need to look its object up (0.55 s of CPU for the 63,388 findings at 100k, where no
    object carries the annotation).
    """
    return frozenset(
        (obj.kind, obj.namespace, obj.name)
        for obj in scan.index
        if ANNOTATION_IGNORE in obj.annotations
    )


def _ignored(
    scan: ScanInput,
    finding: Finding,
    ignoring: dict[Resource, frozenset[str]],
    annotated: frozenset[tuple[str, str, str]],
) -> bool:
    """Whether the finding's object says to ignore its rule; *ignoring* keeps each
    object's answer (the rule ids it ignores) for its other findings, *annotated* names
    the objects that carry the annotation (:func:`_annotated`)."""
    res = finding.resource
    if res is None or (res.kind, res.namespace, res.name) not in annotated:
        return False
    ids = ignoring.get(res)
    if ids is None:
        ref = ObjectRef(api_group(res.api_version), res.kind, res.namespace, res.name)
        obj = scan.index.get(ref)
        raw = obj.annotations.get(ANNOTATION_IGNORE) if obj is not None else None
        ids = ignoring[res] = (
            frozenset(part.strip().upper() for part in raw.split(","))
            if isinstance(raw, str)
            else frozenset()
        )
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


def _locations(
    scan: ScanInput,
    found: list[Finding],
    family: dict[str, str],
    locate: Locate | None,
) -> list[_Where]:
    """The file and line of each finding (``None``: the one it was found with): the
    object's, or its config file's.

    A finding about a whole object (no field) points at the object's first line of
    content. Lines are asked in file and document order, so that the loader, for the
    documents whose lines were not recorded by the parse, splits each file and indexes
    each document once, whatever order the checks found them in.
    """
    where: list[_Where] = [None] * len(found)
    asked: list[tuple[str, int, int, Source]] = []
    config_lines: dict[tuple[str, str], int] = {}
    for i, finding in enumerate(found):
        origin = finding.origin
        if origin is not None:
            if locate is None:
                where[i] = (origin.file, origin.line)
            else:
                asked.append((origin.file, origin.line, i, origin))
            continue
        source = scan.sources.get(family[finding.rule_id]) if finding.resource is None else None
        if source is not None:
            key = (source.path, finding.field)
            if key not in config_lines:
                config_lines[key] = line_of(source.text, 1, finding.field)
            where[i] = (source.path, config_lines[key])
    if locate is None:
        return where
    asked.sort()  # file, line, then finding: the findings' order within a document
    for file, first, i, origin in asked:
        where[i] = (file, locate(origin, found[i].field) or first)
    return where


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
    share: Share | None = None,
) -> ScanResult:
    """Run the checks, drop suppressed findings, fill locations and sort (worst first).

    *share* runs the check functions in several processes (see the module's docstring);
    ``None`` runs them here.
    """
    checks = tuple(checks)
    family = {c.rule.id: c.rule.family for c in checks}
    kept: list[Finding] = []
    suppressed: list[Finding] = []
    # The location's file and line tell locations apart as the location itself (a frozen
    # value) does, without its hash and equality in Python.
    seen: set[tuple[str, str | None, int, str]] = set()
    for located, ignored in _checked(scan_input, checks, family, locate, share):
        fingerprint = located.fingerprint
        where = located.location
        key = (
            (fingerprint, where.file, where.line, located.message)
            if where is not None
            else (fingerprint, None, 0, located.message)
        )
        if key in seen:
            continue
        seen.add(key)
        if ignored or fingerprint in baseline:
            suppressed.append(located)
        else:
            kept.append(located)
    kept.sort(key=_order)
    index = scan_input.index
    return ScanResult(tuple(kept), tuple(suppressed), len(index), index.read_summary())
