"""Findings put back together from several checking processes, as one process has them.

Aspects: a finding found by two functions drawn by different processes is kept once, in
the place of the first function's; findings whose order ties (same severity, object,
field and rule) keep the catalog's order of their functions and each function's order,
whichever process found them; findings about no object (no location) are deduplicated
too; an ignore annotation and a baseline suppress the same findings; the findings, the
suppressed ones, their order, locations and origins are the same with one,
two and three processes. An ignore annotation suppresses the findings of its own object
only, not those of an object of another group named alike, nor those of an object declared
again without it.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.kube.loading import ManifestLoader
from kustos.scan.checking import Check, ScanInput, finding, scan_input
from kustos.scan.findings import Finding, Rule, Severity
from kustos.scan.forking import Forking
from kustos.scan.scanning import ScanResult, scan


def _rule(number: int, severity: Severity = Severity.HIGH) -> Rule:
    return Rule(f"KST9{number:02d}", "test", severity, f"rule {number}", "why", "fix")


SAME, TIE, NOWHERE, LOW = _rule(1), _rule(2), _rule(3), _rule(4, Severity.LOW)


def _checks(marks: Path) -> tuple[Check, ...]:
    """Functions that find the same things, or things that sort alike; each notes its pid."""

    def mark(name: str) -> None:
        (marks / f"{name}-{os.getpid()}").touch()

    def slow_first(scan: ScanInput) -> Iterator[Finding]:
        mark("slow_first")
        time.sleep(0.3)  # drawn first: the other processes draw the rest meanwhile
        for obj in scan.index.of_kind("Secret"):
            yield finding(SAME, obj, "the same finding", field="data")
            yield finding(TIE, obj, "first function's", field="data")
            yield finding(LOW, obj, "low, from the first")
        yield finding(NOWHERE, None, "about no object")

    def second(scan: ScanInput) -> Iterator[Finding]:
        mark("second")
        for obj in reversed(scan.index.of_kind("Secret")):
            yield finding(TIE, obj, "second function's, a", field="data")
            yield finding(SAME, obj, "the same finding", field="data")
            yield finding(TIE, obj, "second function's, b", field="data")
        yield finding(NOWHERE, None, "about no object")

    def third(scan: ScanInput) -> Iterator[Finding]:
        mark("third")
        for obj in scan.index.of_kind("Secret"):
            yield finding(SAME, obj, "the same finding", field="data")
            yield finding(TIE, obj, "third function's", field="data")

    def widgets(scan: ScanInput) -> Iterator[Finding]:
        mark("widgets")
        for obj in scan.index.of_kind("Widget"):
            yield finding(LOW, obj, f"a widget of {obj.api_version}")

    return (
        Check(SAME, slow_first, weight=9),
        Check(TIE, second),
        Check(NOWHERE, third),
        Check(LOW, slow_first, weight=9),
        Check(LOW, widgets),
    )


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    docs = [
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\n  namespace: ns-{i % 2}\n"
        + (f"  annotations: {{kustos.io/ignore: '{ignore}'}}\n" if ignore else "")
        + "data:\n  k: djE=\n"
        for i, ignore in enumerate(["", "KST902", "all", "", "kst901, KST999", ""] * 3)
    ]
    # Objects named alike in two groups, one annotated; an annotated object declared again
    # without the annotation (the later declaration is the one looked up).
    for group, name, ignore in [
        ("a.example", "w", True), ("b.example", "w", False), ("a.example", "v", True),
        ("a.example", "v", False),
    ]:  # fmt: skip
        annotation = "  annotations: {kustos.io/ignore: all}\n" if ignore else ""
        docs.append(
            f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: {name}\n"
            f"  namespace: ns-0\n{annotation}"
        )
    path = tmp_path / "secrets.yaml"
    path.write_text("---\n".join(docs))
    return path


def _scan(path: Path, marks: Path, processes: int, baseline: frozenset[str]) -> ScanResult:
    loader = ManifestLoader(workers=1, stdin=io.StringIO(""))
    index = loader.load([str(path)])
    share = Forking(processes) if processes > 1 else None
    return scan(
        scan_input(index), checks=_checks(marks), locate=loader.line, baseline=baseline, share=share
    )


def _everything(result: ScanResult) -> list[tuple[object, ...]]:
    """Each finding with what equality leaves out (its origin), in order."""
    return [
        (kept, f, f.location, f.origin)
        for kept, found in ((True, result.findings), (False, result.suppressed))
        for f in found
    ]


@pytest.mark.parametrize("processes", [2, 3])
def test_findings_from_several_processes_are_merged_as_one_process_has_them(
    manifests: Path, tmp_path: Path, processes: int
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    alone = _scan(manifests, marks, 1, frozenset())
    baseline = frozenset(
        f.fingerprint
        for f in alone.findings
        if f.resource and (f.resource.name, f.rule_id) in {("s-0", TIE.id), ("s-3", LOW.id)}
    )
    alone = _scan(manifests, marks, 1, baseline)
    for mark in marks.iterdir():
        mark.unlink()
    shared = _scan(manifests, marks, processes, baseline)
    # The first function ran in one process, the others elsewhere.
    pids = {name: {m.name.split("-")[1] for m in marks.glob(f"{name}-*")} for name in
            ("slow_first", "second", "third")}  # fmt: skip
    assert pids["slow_first"].isdisjoint(pids["second"] | pids["third"])
    assert _everything(shared) == _everything(alone)
    # Not trivially so: duplicates dropped, ties in order, suppressed by both means.
    same = [f for f in alone.findings + alone.suppressed if f.rule_id == SAME.id]
    assert len(same) == 18  # one per Secret, found three times each
    assert len([f for f in alone.findings if f.rule_id == NOWHERE.id]) == 1
    first = [f.message for f in alone.findings if f.rule_id == TIE.id][:4]
    assert first == [
        "first function's", "second function's, a", "second function's, b", "third function's"
    ]  # fmt: skip
    suppressed = {(f.resource.name if f.resource else "", f.rule_id) for f in alone.suppressed}
    assert ("s-1", TIE.id) in suppressed  # the annotation names the rule
    assert ("s-2", LOW.id) in suppressed  # all
    assert ("s-4", SAME.id) in suppressed  # lower case, among others
    assert len(alone.suppressed) > 6  # and the two fingerprints of the baseline
    widgets = sorted(
        (f.resource.name, f.message, kept)
        for kept, found in ((True, alone.findings), (False, alone.suppressed))
        for f in found
        if f.resource and f.resource.kind == "Widget"
    )
    assert widgets == [
        ("v", "a widget of a.example/v1", True),
        ("v", "a widget of a.example/v1", True),
        ("w", "a widget of a.example/v1", False),
        ("w", "a widget of b.example/v1", True),
    ]
    assert len(baseline) == 2
    assert {f.fingerprint for f in alone.suppressed} >= baseline
