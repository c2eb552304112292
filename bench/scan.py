"""``kustos scan`` against Checkov and Trivy on the same synthetic clusters, in one run.

For each size (10k and 50k objects by default) the cluster is generated into
``bench/.work/scan-<N>/``, then each tool scans the whole folder: Kustos, Checkov
(``--framework kubernetes``), Trivy (``config --misconfig-scanners kubernetes``), and the
floor (``bench.floor``: only parsing the YAML). The best of ``--repeats`` runs counts; a
run over a minute is not repeated, and a peer past ``--timeout`` seconds or
``--max-rss-mb`` is killed and its time kept as a lower bound. Results go to
``bench/results/scan.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench import running
from bench.synth import DEFAULT_SEED, generate_cluster

REPRODUCE: Final = "python -m bench scan"
TOOLS: Final = ("kustos", "checkov", "go_scanner", "floor")
CHECKOV_VERSION: Final = "3.3.30"
TRIVY_VERSION: Final = "0.74.0"


@dataclass(frozen=True, slots=True)
class Tool:
    """How to run one scanner over a folder, and how to read what it reported."""

    key: str
    name: str
    argv: Callable[[Path, str], list[str]]
    ok_codes: frozenset[int]
    stdout_is_report: bool = False
    env: Mapping[str, str] | None = None


def _kustos(dataset: Path, output: str) -> list[str]:
    exe = running.kustos_command() or "kustos"
    return [exe, "scan", str(dataset), "--format", "json", "--output", output]


def _checkov(dataset: Path, _output: str) -> list[str]:
    exe = running.PEERS / "checkov-venv" / "bin" / "checkov"
    return [
        str(exe),
        "-d",
        str(dataset),
        "--framework",
        "kubernetes",
        "--quiet",
        "--compact",
        "-o",
        "json",
        "--skip-download",
    ]


def _trivy(dataset: Path, output: str) -> list[str]:
    exe = running.PEERS / "bin" / "trivy"
    return [
        str(exe),
        "config",
        "--quiet",
        "--skip-check-update",
        "--cache-dir",
        str(running.PEERS / "trivy-cache"),
        "--misconfig-scanners",
        "kubernetes",
        # Trivy stops itself after 5 minutes by default; the harness's --timeout bounds it.
        "--timeout",
        "24h",
        "--format",
        "json",
        "--output",
        output,
        str(dataset),
    ]


def _floor(dataset: Path, _output: str) -> list[str]:
    return running.floor_argv(dataset)


ALL_TOOLS: Final = {
    "kustos": Tool("kustos", "kustos", _kustos, frozenset({0, 1})),
    # Checkov skips any folder under a dot-directory (bench/.work) unless told not to.
    "checkov": Tool(
        "checkov",
        "checkov",
        _checkov,
        frozenset({0, 1}),
        stdout_is_report=True,
        env={"CKV_IGNORE_HIDDEN_DIRECTORIES": "false"},
    ),
    "go_scanner": Tool("go_scanner", "trivy", _trivy, frozenset({0})),
    "floor": Tool("floor", "pyyaml-csafeloader", _floor, frozenset({0}), stdout_is_report=True),
}


def versions() -> dict[str, Any]:
    """Return the version each tool reports about itself."""
    return {
        "kustos": running.kustos_version(),
        "checkov": running.tool_version(
            [str(running.PEERS / "checkov-venv/bin/checkov"), "--version"]
        ),
        "go_scanner": {
            "name": "trivy",
            "version": running.tool_version([str(running.PEERS / "bin/trivy"), "--version"]),
        },
    }


def summarize(key: str, report: Path) -> dict[str, Any] | None:
    """Read how much a tool says it scanned from its first run's report (best effort)."""
    try:
        text = report.read_bytes()
        if key == "floor":
            return {"documents": int(text.strip() or 0)}
        value: Any = json.loads(text)
    except (OSError, ValueError):
        return None
    if key == "checkov":
        parts = value if isinstance(value, list) else [value]
        summaries = [p.get("summary", p) for p in parts if isinstance(p, dict)]
        return {
            field: sum(int(s.get(field, 0)) for s in summaries)
            for field in ("resource_count", "passed", "failed", "parsing_errors")
        }
    if key == "go_scanner":
        results = value.get("Results") or []
        return {
            "files": len(results),
            "failures": sum(r.get("MisconfSummary", {}).get("Failures", 0) for r in results),
            "successes": sum(r.get("MisconfSummary", {}).get("Successes", 0) for r in results),
        }
    if key == "kustos" and isinstance(value, dict):
        found = value.get("findings")
        summary = value.get("summary")
        return {
            "findings": len(found) if isinstance(found, list) else None,
            "summary": summary if isinstance(summary, dict) else None,
        }
    return None


def _measure_tool(
    tool: Tool,
    dataset: Path,
    *,
    objects: int,
    repeats: int,
    timeout: float,
    max_rss_mb: float,
    repeat_budget: float = 60.0,
) -> dict[str, Any]:
    report = running.WORK / "reports" / f"scan-{objects}-{tool.key}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    measured = running.measure(
        lambda output: tool.argv(dataset, output),
        ok_codes=tool.ok_codes,
        repeats=repeats,
        timeout=timeout,
        max_rss_mb=max_rss_mb,
        report=report,
        stdout_is_report=tool.stdout_is_report,
        env=tool.env,
        repeat_budget=repeat_budget,
    )
    measured["name"] = tool.name
    measured["objects"] = objects
    measured["reported"] = summarize(tool.key, report)
    return measured


def _reusable(previous: Mapping[str, Any] | None, size: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the earlier run's entry for the same dataset, or an empty mapping."""
    for entry in (previous or {}).get("sizes", []):
        same = all(entry.get("dataset", {}).get(f) == size[f] for f in ("objects", "bytes", "seed"))
        if same:
            return dict(entry)
    return {}


def run(
    *,
    sizes: Sequence[int] = (10_000, 50_000),
    tools: Sequence[str] = TOOLS,
    repeats: int = 3,
    timeout: float = 900.0,
    max_rss_mb: float = 12_288.0,
    reuse_peers: bool = False,
    out: Path | None = None,
    repeat_budget: float = 60.0,
) -> dict[str, Any]:
    """Run the scan benchmark and write its results file; return what was written.

    A run slower than *repeat_budget* seconds is not repeated. The growth from 100k to
    200k compares the best of as many runs at each size only if the budget covers the
    200k run (otherwise a best of several is set against a single run).
    """
    out = out or running.RESULTS / "scan.json"
    previous = json.loads(out.read_text()) if reuse_peers and out.exists() else None
    unavailable = running.kustos_unavailable("scan") if "kustos" in tools else None
    doc: dict[str, Any] = running.provenance(REPRODUCE)
    doc["benchmark"] = "scan"
    doc["versions"] = versions()
    # Which sources the kustos command ran (PYTHONPATH may point at a work tree).
    doc["kustos_source"] = running.tool_version(
        [sys.executable, "-c", "import kustos, os; print(os.path.dirname(kustos.__file__))"]
    )
    doc["sizes"] = []
    for objects in sizes:
        dataset = running.WORK / f"scan-{objects}"
        print(f"scan: generating {objects} objects into {dataset}", flush=True)
        generated = generate_cluster(dataset, objects, seed=DEFAULT_SEED)
        facts = {**generated.as_json(), "seed": DEFAULT_SEED}
        facts["path"] = os.path.relpath(dataset, running.REPO)
        entry: dict[str, Any] = {"objects": objects, "dataset": facts}
        earlier = _reusable(previous, facts)
        for key in TOOLS:
            if key not in tools:
                if reuse_peers and key != "kustos" and earlier.get(key):
                    entry[key] = {**earlier[key], "reused_from": previous and previous.get("date")}
                else:
                    entry[key] = None
                continue
            if key == "kustos" and unavailable:
                entry["kustos"] = None
                entry["error"] = unavailable
                print(f"scan: {unavailable}", flush=True)
                continue
            print(f"scan: {objects} objects: {key} ...", flush=True)
            entry[key] = _measure_tool(
                ALL_TOOLS[key],
                dataset,
                objects=objects,
                repeats=repeats,
                timeout=timeout,
                max_rss_mb=max_rss_mb,
                repeat_budget=repeat_budget,
            )
            shown = entry[key]
            bound = ">=" if shown["lower_bound"] else ""
            print(
                f"scan: {objects} objects: {key}: {bound}{shown['seconds']} s, "
                f"{shown['peak_rss_mb']} MB, {shown['error'] or 'ok'}",
                flush=True,
            )
        kustos = entry.get("kustos")
        entry["kustos_peak_rss_mb"] = kustos["peak_rss_mb"] if kustos else None
        if kustos:
            print(f"scan: {objects} objects: kustos phases ...", flush=True)
            entry["kustos_phases"] = phases(dataset)
        entry["ratios"] = {
            "checkov/kustos": running.ratio(entry.get("checkov"), kustos),
            "go_scanner/kustos": running.ratio(entry.get("go_scanner"), kustos),
            "kustos/floor": running.ratio(kustos, entry.get("floor")),
        }
        doc["sizes"].append(entry)
        doc["growth_200k_over_100k"] = _growth(doc["sizes"], 200_000, 100_000)
        doc["targets"] = _targets(doc["sizes"])
        _write(out, doc)  # after every size, so a long run that is stopped still leaves data
    return doc


def phases(dataset: Path, src: Path | None = None) -> dict[str, Any]:
    """One more scan, in ``bench.scan_phases``: wall and CPU seconds of each phase.

    *src*: the sources to scan with (first on ``PYTHONPATH``); by default the ones this
    process imports.
    """
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    done = subprocess.run(
        [sys.executable, "-m", "bench.scan_phases", str(dataset)],
        cwd=running.REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        phases: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:256]}
    phases["load_average_after"] = round(os.getloadavg()[0], 2)
    return phases


def _at(sizes: Sequence[Mapping[str, Any]], objects: int) -> Mapping[str, Any]:
    return next((s for s in sizes if s["objects"] == objects), {})


def _growth(sizes: Sequence[Mapping[str, Any]], big: int, small: int) -> dict[str, Any] | None:
    """Kustos's time and peak RSS at *big* objects over those at *small* (same run)."""
    a, b = _at(sizes, big).get("kustos") or {}, _at(sizes, small).get("kustos") or {}
    if not a.get("seconds") or not b.get("seconds"):
        return None
    growth = {
        "seconds": round(a["seconds"] / b["seconds"], 2),
        "peak_rss_mb": round(a["peak_rss_mb"] / b["peak_rss_mb"], 2),
        "runs": [len(a.get("runs") or ()), len(b.get("runs") or ())],
    }
    if a.get("cpu_seconds") and b.get("cpu_seconds"):
        # CPU of every process, least of the runs: what the work grew by, whatever the load.
        growth["cpu_seconds"] = round(min(a["cpu_seconds"]) / min(b["cpu_seconds"]), 2)
    return growth


def _targets(sizes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    small, large = _at(sizes, 10_000), _at(sizes, 50_000)
    small_kustos = small.get("kustos") or {}
    speedup = (small.get("ratios") or {}).get("checkov/kustos") or {}
    huge = _at(sizes, 100_000)
    over_floor = (huge.get("ratios") or {}).get("kustos/floor") or {}
    growth = _growth(sizes, 200_000, 100_000) or {}
    checks = ((huge.get("kustos_phases") or {}).get("phases") or {}).get("checks") or {}
    return [
        running.target(
            "kustos scan of 100k objects no slower than the floor (one libyaml parse)",
            over_floor.get("value"),
            1.0,
        ),
        running.target(
            "the checks (policy, checks, lines, order) under 5 s at 100k objects",
            checks.get("wall"),
            5.0,
        ),
        running.target(
            "kustos scan peak RSS under 1 GB at 100k objects",
            huge.get("kustos_peak_rss_mb"),
            1024.0,
        ),
        running.target(
            "200k objects cost at most 2.1x the time of 100k", growth.get("seconds"), 2.1
        ),
        running.target(
            "200k objects cost at most 2.1x the memory of 100k", growth.get("peak_rss_mb"), 2.1
        ),
        running.target("kustos scan of 10k objects under 3 s", small_kustos.get("seconds"), 3.0),
        running.target(
            "kustos scan at least 20x faster than Checkov at 10k objects",
            speedup.get("value"),
            20.0,
            at_least=True,
            value_is_lower_bound=bool(speedup.get("lower_bound")),
        ),
        running.target(
            "kustos scan peak RSS under 500 MB at 50k objects",
            large.get("kustos_peak_rss_mb"),
            500.0,
        ),
    ]


def _write(out: Path, doc: Mapping[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
