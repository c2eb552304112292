"""How often is a ``kustos scan`` finding right? The reviewed corpus and its precision figure.

Not a test: it measures. ``shared/corpus/manifests`` (real manifests of 25 projects) is
scanned in-process; every finding is matched against the reviewed expectation files in
``tests/unit/scan/corpus/<RULE>.json``, where each finding has a verdict:

- ``true``: a platform engineer acts on it (or knowingly accepts it);
- ``noise``: correct but not worth acting on;
- ``wrong``: the statement is false.

Commands (``python -m bench.precision COMMAND``):

- ``sample [--per-check N] [--seed S]``: N findings per check, with the manifest lines
  around each, to review by hand (markdown on stdout);
- ``update``: write the expectation files for the current findings, keeping the verdicts
  and notes already reviewed; new findings get ``unreviewed`` (review them, then rerun);
- ``measure [--per-check N] [--seed S]``: the precision over all findings (from the
  verdicts), at medium and above, per check, and the share of the largest check; plus the
  seeded sample the figure was judged on. Writes ``bench/results/precision.json``.

A finding is identified by rule, file (relative to the corpus), object and field: no line
number, so an edit elsewhere in a file or a better locator does not invalidate a review.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from kustos.kube.loading import ManifestLoader
from kustos.scan.checking import ScanInput
from kustos.scan.findings import Finding, Severity
from kustos.scan.scanning import scan

ROOT: Final = Path(__file__).resolve().parents[1]
CORPUS: Final = ROOT.parent / "shared" / "corpus" / "manifests"
EXPECTATIONS: Final = ROOT / "tests" / "unit" / "scan" / "corpus"
RESULT: Final = ROOT / "bench" / "results" / "precision.json"
VERDICTS: Final = ("true", "noise", "wrong", "unreviewed")
#: Goals of issue #12.
GOAL_MEDIUM_UP: Final = 0.97
GOAL_ALL: Final = 0.90
GOAL_LARGEST_SHARE: Final = 0.25

Key = tuple[str, str, str, str]


def corpus_findings(corpus: Path = CORPUS) -> list[Finding]:
    """Every finding of a default scan of the corpus, located."""
    loader = ManifestLoader()
    index = loader.load([corpus])
    return list(scan(ScanInput(index), locate=loader.line).findings)


def relative(file: str, corpus: Path = CORPUS) -> str:
    """A finding's file relative to the corpus folder."""
    try:
        return Path(file).resolve().relative_to(corpus.resolve()).as_posix()
    except ValueError:
        return file


def key_of(finding: Finding, corpus: Path = CORPUS) -> Key:
    """(rule, file, object, field): the identity of a finding in the expectation files."""
    file = relative(finding.location.file, corpus) if finding.location else ""
    obj = str(finding.resource) if finding.resource else ""
    return (finding.rule_id, file, obj, finding.field)


def load_expectations(folder: Path = EXPECTATIONS) -> dict[str, dict[str, Any]]:
    """The expectation files by rule id."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("KST*.json"))
    }


def expected_entries(docs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every reviewed finding of every rule, with its rule id."""
    return [{"rule": rule, **entry} for rule, doc in docs.items() for entry in doc["findings"]]


def entry_key(entry: dict[str, Any]) -> Key:
    """The identity of one expectation entry."""
    return (entry["rule"], entry["file"], entry["object"], entry["field"])


def update(findings: Sequence[Finding], folder: Path = EXPECTATIONS) -> Counter[str]:
    """Rewrite the expectation files for *findings*, keeping earlier verdicts and notes."""
    old = load_expectations(folder)
    reviewed: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for entry in expected_entries(old):
        reviewed[entry_key(entry)].append(entry)
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    status: Counter[str] = Counter()
    for finding in findings:
        key = key_of(finding)
        previous = reviewed[key].pop(0) if reviewed.get(key) else None
        verdict = previous["verdict"] if previous else "unreviewed"
        status[verdict] += 1
        by_rule[finding.rule_id].append(
            {
                "file": key[1],
                "object": key[2],
                "field": key[3],
                "severity": finding.severity.label,
                "verdict": verdict,
                "note": previous.get("note", "") if previous else "",
                "message": finding.message,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    for rule in sorted(set(by_rule) | set(old)):
        path = folder / f"{rule}.json"
        entries = sorted(by_rule.get(rule, []), key=lambda e: (e["file"], e["object"], e["field"]))
        if not entries:
            path.unlink(missing_ok=True)
            continue
        doc = {
            "rule": rule,
            "review": old.get(rule, {}).get("review", ""),
            "findings": entries,
        }
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return status


def _excerpt(finding: Finding, context: int = 6) -> str:
    if finding.location is None:
        return ""
    try:
        lines = Path(finding.location.file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    start = max(finding.location.line - 1 - context, 0)
    stop = min(finding.location.line + context, len(lines))
    return "\n".join(f"{n + 1:5} {lines[n]}" for n in range(start, stop))


def sample(findings: Sequence[Finding], per_check: int, seed: int) -> list[Finding]:
    """Up to *per_check* findings of every check, drawn with a fixed seed."""
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_rule[finding.rule_id].append(finding)
    rng = random.Random(seed)  # noqa: S311 - a review sample, not a secret
    picked: list[Finding] = []
    for rule in sorted(by_rule):
        group = by_rule[rule]
        picked.extend(rng.sample(group, min(per_check, len(group))))
    return picked


def _ratio(true: int, total: int) -> float | None:
    return round(true / total, 4) if total else None


def measure(
    findings: Sequence[Finding], docs: dict[str, dict[str, Any]], *, per_check: int, seed: int
) -> dict[str, Any]:
    """Precision from the verdicts (all findings, medium and above, per check) and the sample."""
    verdict: dict[Key, list[str]] = defaultdict(list)
    notes: dict[Key, list[str]] = defaultdict(list)
    for entry in expected_entries(docs):
        verdict[entry_key(entry)].append(entry["verdict"])
        notes[entry_key(entry)].append(entry.get("note", ""))
    judged: list[tuple[Finding, str, str]] = []
    for finding in findings:
        key = key_of(finding)
        got = verdict[key].pop(0) if verdict.get(key) else "unreviewed"
        note = notes[key].pop(0) if notes.get(key) else ""
        judged.append((finding, got, note))
    per_rule: dict[str, Counter[str]] = defaultdict(Counter)
    for finding, got, _ in judged:
        per_rule[finding.rule_id][got] += 1
    total = len(judged)
    true_all = sum(1 for _, got, _ in judged if got == "true")
    medium = [(f, got) for f, got, _ in judged if f.severity >= Severity.MEDIUM]
    true_medium = sum(1 for _, got in medium if got == "true")
    counts = Counter(f.rule_id for f in findings)
    largest, largest_count = counts.most_common(1)[0] if counts else ("", 0)
    picked = sample(findings, per_check, seed)
    by_key = {id(f): (got, note) for f, got, note in judged}
    sample_doc = [
        {
            "rule": f.rule_id,
            "severity": f.severity.label,
            "file": key_of(f)[1],
            "line": f.location.line if f.location else None,
            "object": key_of(f)[2],
            "field": f.field,
            "message": f.message,
            "verdict": by_key[id(f)][0],
            "note": by_key[id(f)][1],
        }
        for f in picked
    ]
    sample_rules: dict[str, Counter[str]] = defaultdict(Counter)
    for f in picked:
        sample_rules[f.rule_id][by_key[id(f)][0]] += 1
    # Each check's sample precision, weighted by how often the check fires.
    weighted = sum(counts[rule] * (c["true"] / sum(c.values())) for rule, c in sample_rules.items())
    return {
        "corpus": "shared/corpus/manifests",
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "findings": total,
        "by_severity": {
            s.label: sum(1 for f in findings if f.severity is s)
            for s in sorted(Severity, reverse=True)
        },
        "precision_all": _ratio(true_all, total),
        "precision_medium_and_above": _ratio(true_medium, len(medium)),
        "precision_sample_weighted": round(weighted / total, 4) if total else None,
        "goals": {
            "medium_and_above": GOAL_MEDIUM_UP,
            "all": GOAL_ALL,
            "largest_check_share": GOAL_LARGEST_SHARE,
        },
        "largest_check": {
            "rule": largest,
            "findings": largest_count,
            "share": _ratio(largest_count, total),
        },
        "verdicts": dict(Counter(got for _, got, _ in judged)),
        "per_check": {
            rule: {
                "findings": sum(c.values()),
                **{v: c[v] for v in VERDICTS if c[v]},
                "precision": _ratio(c["true"], sum(c.values())),
            }
            for rule, c in sorted(per_rule.items())
        },
        "sample": {"per_check": per_check, "seed": seed, "findings": sample_doc},
        "reproduce": f"python -m bench.precision measure --per-check {per_check} --seed {seed}",
    }


def _print_sample(findings: Iterable[Finding]) -> None:
    for finding in findings:
        rule, file, obj, field = key_of(finding)
        line = finding.location.line if finding.location else 0
        print(f"### {rule} {finding.severity.label} {obj} `{field}`\n")
        print(f"{file}:{line}\n\n{finding.message}\n\n```\n{_excerpt(finding)}\n```\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command and run it."""
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__)
    parser.add_argument("command", choices=("sample", "update", "measure"))
    parser.add_argument("--per-check", type=int, default=3, help="findings sampled per check")
    parser.add_argument("--seed", type=int, default=12, help="sampling seed")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}", file=sys.stderr)
        return 2
    findings = corpus_findings()
    if args.command == "sample":
        _print_sample(sample(findings, args.per_check, args.seed))
    elif args.command == "update":
        status = update(findings)
        print(json.dumps(dict(status), indent=1))
    else:
        result = measure(findings, load_expectations(), per_check=args.per_check, seed=args.seed)
        RESULT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        shown = ("findings", "precision_all", "precision_medium_and_above",
                 "precision_sample_weighted", "largest_check")  # fmt: skip
        summary = {k: result[k] for k in shown}
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
