"""Run the benchmarks: ``python -m bench [scan|whocan|all] [options]``.

Peers come from ``tools/peers/install.sh`` (cached under ``~/.cache/kustos/peers``, or
``$KUSTOS_PEERS_DIR``). Nothing here asserts; see ``bench/README.md`` to read the results.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench import scan, whocan


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the chosen benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Kustos benchmarks")
    parser.add_argument("which", nargs="?", choices=("all", "scan", "whocan"), default="all")
    parser.add_argument(
        "--sizes", default="10000,50000", help="scan: object counts, comma-separated"
    )
    parser.add_argument(
        "--tools", default=",".join(scan.TOOLS), help=f"scan: subset of {','.join(scan.TOOLS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool; the best counts")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before giving up on a run"
    )
    parser.add_argument(
        "--max-rss-mb", type=float, default=12_288.0, help="RSS before giving up on a run"
    )
    parser.add_argument(
        "--reuse-peers",
        action="store_true",
        help="scan: keep the peers' numbers from the last scan.json for tools not run now "
        "(same dataset only; marked reused_from)",
    )
    parser.add_argument(
        "--repeat-budget",
        type=float,
        default=60.0,
        help="scan: a run slower than this many seconds is not repeated",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="scan: results file (default bench/results/scan.json), e.g. for a rerun of some sizes",
    )
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(scan.TOOLS))
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}")
    if args.which in ("all", "scan"):
        scan.run(
            sizes=[int(s) for s in args.sizes.split(",") if s],
            tools=tools,
            repeats=args.repeats,
            timeout=args.timeout,
            max_rss_mb=args.max_rss_mb,
            reuse_peers=args.reuse_peers,
            repeat_budget=args.repeat_budget,
            out=args.out,
        )
    if args.which in ("all", "whocan"):
        whocan.run(repeats=args.repeats, timeout=args.timeout, max_rss_mb=args.max_rss_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
