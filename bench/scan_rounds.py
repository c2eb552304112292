"""The scan's phases, this tree against an earlier one, side by side in one run.

Runs :mod:`bench.scan_phases` on one generated folder with this tree's sources and with
another tree's (``--before``, e.g. the sources of the previous round's commit taken out
with ``git archive``), alternating, *rounds* times each, and writes the runs, the best
of each and the ratios (this tree over the earlier one) to a results file. Both run
with this process's interpreter, in this repository, under the same load: the load
average is recorded before and after every run.

    python -m bench.scan_rounds --before /tmp/before/src [--objects 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import running, scan


def _phases(folder: Path, src: Path) -> dict[str, Any]:
    """One ``bench.scan_phases`` run with the sources in *src*, the load before and after."""
    before = round(os.getloadavg()[0], 2)
    return {**scan.phases(folder, src), "load_average_before": before}


def _best(runs: Sequence[dict[str, Any]], phase: str, clock: str) -> float | None:
    values = [r["phases"][phase][clock] for r in runs if "phases" in r]
    return min(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run both trees' phases alternately and write ``bench/results/scan-phases.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.scan_rounds")
    parser.add_argument("--before", type=Path, required=True, help="the earlier tree's src")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=running.RESULTS / "scan-phases.json")
    args = parser.parse_args(argv)
    folder = running.WORK / f"scan-{args.objects}"
    if not folder.is_dir():
        print(f"scan_rounds: {folder} not found; run python -m bench scan first", file=sys.stderr)
        return 2
    doc: dict[str, Any] = running.provenance(
        f"python -m bench.scan_rounds --before DIR/src --objects {args.objects} "
        f"--rounds {args.rounds}"
    )
    doc["benchmark"] = "scan-phases"
    doc["objects"] = args.objects
    doc["before_source"] = str(args.before)
    trees = {"kustos": running.REPO / "src", "before": args.before}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for number in range(args.rounds):
        for name, src in trees.items():
            runs[name].append(result := _phases(folder, src))
            checks = result.get("phases", {}).get("checks")
            print(f"scan_rounds: round {number + 1}: {name}: checks {checks}", flush=True)
    doc["runs"] = runs
    best: dict[str, dict[str, float | None]] = {
        name: {
            f"{phase}_{clock}": _best(tree_runs, phase, clock)
            for phase in ("load", "checks", "report")
            for clock in ("wall", "cpu")
        }
        for name, tree_runs in runs.items()
    }
    doc["best"] = best
    doc["ratios"] = {
        f"kustos/before {key}": (
            round(value / earlier, 2)
            if value is not None and (earlier := best["before"][key])
            else None
        )
        for key, value in best["kustos"].items()
    }
    checks = best["kustos"]["checks_wall"]
    doc["targets"] = [
        {
            "target": "the checks (policy, checks, lines, order) under 5 s at 100k objects",
            "value": checks,
            "limit": 5.0,
            "pass": None if checks is None or args.objects != 100_000 else checks < 5.0,
        }
    ]
    doc["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"best": best, "ratios": doc["ratios"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
