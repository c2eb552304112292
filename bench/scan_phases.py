"""Where one ``kustos scan DIR --format json`` spends its time, phase by phase.

The steps of the command (:func:`kustos.cli.scan.scan`) in the same order, with the same
choices (parse processes, checks shared out from 10,000 objects), each timed by the wall
clock and by the CPU of every process (this one's ``process_time`` plus what the processes
it waited for used: the parse workers and the forked checkers). Prints one JSON object.

    python -m bench.scan_phases DIR
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from collections.abc import Sequence


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    """Scan the folder given as the command does, print each phase's wall and CPU seconds."""
    started_wall, started_cpu = time.perf_counter(), _cpu()
    from kustos.cli.inputs import load_index, without_cycle_collection  # noqa: PLC0415
    from kustos.cli.scan import check_sharing  # noqa: PLC0415
    from kustos.scan.checking import scan_input  # noqa: PLC0415
    from kustos.scan.reporting import to_json  # noqa: PLC0415
    from kustos.scan.scanning import scan  # noqa: PLC0415

    folder = (argv if argv is not None else sys.argv[1:])[0]
    phases: dict[str, dict[str, float]] = {}
    mark = [started_wall, started_cpu]

    def done(name: str) -> None:
        wall, cpu = time.perf_counter(), _cpu()
        phases[name] = {"wall": round(wall - mark[0], 2), "cpu": round(cpu - mark[1], 2)}
        mark[:] = [wall, cpu]

    done("imports")
    with without_cycle_collection():
        index, loader = load_index(
            [folder], cluster=False, kubeconfig=None, context=None, namespaces=None
        )
        done("load")
        objects = len(index)
        parsed = scan_input(index, now=dt.datetime.now(dt.UTC))
        share = check_sharing(None, objects)
        result = scan(parsed, locate=loader.line if loader else None, share=share)
        done("checks")
        del parsed, index, loader
        text = to_json(result)
        done("report")
    total = {
        "wall": round(time.perf_counter() - started_wall, 2),
        "cpu": round(_cpu() - started_cpu, 2),
    }
    print(
        json.dumps(
            {
                "objects": objects,
                "findings": len(result.findings),
                "report_bytes": len(text.encode()),
                "check_processes": share.processes if share is not None else 1,
                "phases": phases,
                "total": total,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
