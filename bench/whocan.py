"""``kustos who-can --matrix`` on one namespace of 1,000 Secrets and 5,000 bindings.

No peer answers "who can read which Secret" from files, so the reference is the floor:
parsing the same YAML with libyaml and nothing else (``bench.floor``). The ratio
``kustos/floor`` says what the RBAC resolution costs on top of reading. Results go to
``bench/results/whocan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench import running
from bench.synth import DEFAULT_SEED, WHOCAN_NAMESPACE, generate_whocan

REPRODUCE: Final = "python -m bench whocan"


def _kustos(dataset: Path, output: str) -> list[str]:
    # who-can has no --output: its report is its standard output.
    del output
    exe = running.kustos_command() or "kustos"
    return [exe, "who-can", "--matrix", "-n", WHOCAN_NAMESPACE, str(dataset), "--format", "json"]


def _summarize(report: Path) -> dict[str, Any] | None:
    try:
        value: Any = json.loads(report.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict):
        return {"type": type(value).__name__}
    sizes = {k: len(v) for k, v in value.items() if isinstance(v, list | dict)}
    return {"keys": sorted(value), "sizes": sizes}


def run(
    *,
    secrets: int = 1000,
    bindings: int = 5000,
    repeats: int = 3,
    timeout: float = 900.0,
    max_rss_mb: float = 12_288.0,
    out: Path | None = None,
) -> dict[str, Any]:
    """Run the who-can benchmark and write its results file; return what was written."""
    out = out or running.RESULTS / "whocan.json"
    default = (secrets, bindings) == (1000, 5000)
    dataset = running.WORK / ("whocan" if default else f"whocan-{secrets}-{bindings}")
    print(f"whocan: generating {secrets} Secrets, {bindings} bindings into {dataset}", flush=True)
    generated = generate_whocan(dataset, secrets=secrets, bindings=bindings, seed=DEFAULT_SEED)
    facts = {
        **generated.as_json(),
        "path": os.path.relpath(dataset, running.REPO),
        "seed": DEFAULT_SEED,
        "namespace": WHOCAN_NAMESPACE,
        "secrets_in_namespace": secrets,
        "bindings": bindings,
    }
    doc: dict[str, Any] = running.provenance(REPRODUCE)
    doc["benchmark"] = "whocan"
    doc["versions"] = {"kustos": running.kustos_version()}
    doc["dataset"] = facts
    reports = running.WORK / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    kustos_report = reports / "whocan-kustos.json"
    kustos_report.unlink(missing_ok=True)
    unavailable = running.kustos_unavailable("who-can")
    if unavailable:
        doc["kustos"] = None
        doc["error"] = unavailable
        print(f"whocan: {unavailable}", flush=True)
    else:
        print("whocan: kustos ...", flush=True)
        doc["kustos"] = running.measure(
            lambda output: _kustos(dataset, output),
            ok_codes={0},
            repeats=repeats,
            timeout=timeout,
            max_rss_mb=max_rss_mb,
            report=kustos_report,
            stdout_is_report=True,
        )
        doc["kustos"]["reported"] = _summarize(kustos_report)
    print("whocan: floor ...", flush=True)
    floor_report = reports / "whocan-floor.txt"
    doc["floor"] = running.measure(
        lambda _output: running.floor_argv(dataset),
        ok_codes={0},
        repeats=repeats,
        timeout=timeout,
        max_rss_mb=max_rss_mb,
        report=floor_report,
        stdout_is_report=True,
    )
    doc["floor"]["name"] = "pyyaml-csafeloader"
    kustos = doc.get("kustos")
    doc["ratios"] = {"kustos/floor": running.ratio(kustos, doc["floor"])}
    doc["targets"] = _targets(kustos, secrets, bindings)
    for key in ("kustos", "floor"):
        if doc.get(key):
            print(
                f"whocan: {key}: {doc[key]['seconds']} s, {doc[key]['peak_rss_mb']} MB, "
                f"{doc[key]['error'] or 'ok'}",
                flush=True,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def _targets(
    kustos: dict[str, Any] | None, secrets: int, bindings: int
) -> Sequence[dict[str, Any]]:
    seconds = kustos.get("seconds") if kustos else None
    if secrets >= 5000 and bindings >= 20_000:
        return [
            running.target(
                "kustos who-can --matrix, 5,000 Secrets, 20,000 bindings, under 5 s", seconds, 5.0
            )
        ]
    return [running.target("kustos who-can --matrix under 2 s", seconds, 2.0)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.whocan --secrets 5000 --bindings 20000``: one size, its own file."""
    parser = argparse.ArgumentParser(prog="python -m bench.whocan")
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--bindings", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    name = (
        "whocan.json"
        if (args.secrets, args.bindings) == (1000, 5000)
        else (f"whocan-{args.secrets}-{args.bindings}.json")
    )
    run(
        secrets=args.secrets,
        bindings=args.bindings,
        repeats=args.repeats,
        out=running.RESULTS / name,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
