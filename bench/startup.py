"""Start-up benchmark: ``python -m bench.startup [options]``.

One ``kustos`` process per command, as a user or a script runs it, timed from ``fork`` to
exit: wall seconds and CPU seconds (user + system, from ``wait4``), the median of
``--rounds`` runs each. In the same run and on the same files:

- the floor: ``python -c pass`` with the interpreter that runs ``kustos``;
- ``kustos --help``, ``kustos version``, ``kustos --version``;
- ``kustos seal -f one.yaml -R recipients.txt`` against ``sops -e`` of the same manifest
  for the same age recipient, and ``kustos unseal -i key.txt sealed.yaml`` against
  ``sops -d`` of the same SealedSecret (the sops binary and the manifest generator of
  ``bench/sources.py``);
- ``kustos scan`` and ``kustos refs`` of one small file (``examples/shop/40-workloads.yaml``).

Every command runs once per round, rounds alternate between this tree and, when
``--baseline-src`` names another ``src`` folder (e.g. the main branch before a change,
exported with ``git archive``), that tree; both run with ``PYTHONPATH`` set to their
``src``, compiled to bytecode beforehand as an installed package is (without it, each run
would compile every module it imports: this machine sets ``PYTHONDONTWRITEBYTECODE``,
so an editable install never caches its bytecode). The medians are compared to the floor,
to sops and to the baseline. The load average is recorded at the start and the end: on
this shared 2-core machine the CPU seconds are the steadier figure, the wall seconds the
one a user feels.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from bench.running import (
    REPO,
    RESULTS,
    WORK,
    kustos_command,
    kustos_version,
    provenance,
    tool_version,
)
from bench.sources import SOPS, _manifests
from kustos.crypto import sops

DEFAULT_OUTPUT: Final = RESULTS / "startup.json"
SMALL_FILE: Final = REPO / "examples" / "shop" / "40-workloads.yaml"
#: sops's own flags for a Secret manifest, as in ``bench/sources.py``.
_ENCRYPTED_REGEX: Final = "^(data|stringData)$"


def _time_once(
    argv: Sequence[str], env: Mapping[str, str], ok: Sequence[int]
) -> tuple[float, float]:
    """Run *argv* once (output discarded); wall and CPU seconds of the process."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


def _commands(exe: str, files: Mapping[str, Path]) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    """label → (argv, accepted exit codes) of the Kustos commands measured."""
    small = str(SMALL_FILE)
    return {
        "kustos --help": ([exe, "--help"], (0,)),
        "kustos version": ([exe, "version"], (0,)),
        "kustos --version": ([exe, "--version"], (0,)),
        "kustos seal": (
            [exe, "seal", "-f", str(files["plain"]), "-R", str(files["recipients"])],
            (0,),
        ),
        "kustos unseal": ([exe, "unseal", "-i", str(files["key"]), str(files["sealed"])], (0,)),
        "kustos scan": ([exe, "scan", small, "--format", "json"], (0, 1)),  # 1: findings
        "kustos refs": ([exe, "refs", small], (0,)),
    }


def _peers(
    files: Mapping[str, Path], recipient: str
) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    """label → (argv, accepted exit codes) of sops on the same files."""
    return {
        "sops -e": (
            [
                str(SOPS),
                "-e",
                "--age",
                recipient,
                "--encrypted-regex",
                _ENCRYPTED_REGEX,
                str(files["plain"]),
            ],
            (0,),
        ),
        "sops -d": ([str(SOPS), "-d", str(files["sealed"])], (0,)),
    }


def _prepare(root: Path, exe: str, env: Mapping[str, str]) -> tuple[dict[str, Path], str]:
    """One Secret manifest, an age identity, and the SealedSecret kustos seals from them."""
    recipient, identity = sops.new_identity()
    key = root / "key.txt"
    key.write_text(identity.reveal_text() + "\n")
    key.chmod(0o600)
    recipients = root / "recipients.txt"
    recipients.write_text(recipient + "\n")
    (plain,) = _manifests(root / "plain", 1)
    sealed = root / "sealed.yaml"
    with sealed.open("wb") as out:
        argv = [exe, "seal", "-f", str(plain), "-R", str(recipients)]
        subprocess.run(argv, stdout=out, env=env, check=True)
    # sops opens what kustos sealed: both sides of the comparison handle the same file.
    opened = {**env, "SOPS_AGE_KEY_FILE": str(key)}
    subprocess.run(
        [str(SOPS), "-d", str(sealed)], stdout=subprocess.DEVNULL, env=opened, check=True
    )
    return {"plain": plain, "key": key, "recipients": recipients, "sealed": sealed}, recipient


class _Samples:
    """Wall and CPU seconds per label; a label that fails in a baseline tree is recorded."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.runs: dict[str, tuple[list[float], list[float]]] = {}
        self.errors: dict[str, str] = {}

    def take(
        self, label: str, argv: Sequence[str], env: Mapping[str, str], ok: Sequence[int]
    ) -> None:
        if label in self.errors:
            return
        try:
            wall, cpu = _time_once(argv, env, ok)
        except RuntimeError as exc:
            if self.strict:
                raise
            self.errors[label] = str(exc)[:300]  # e.g. an option the baseline does not have
            return
        walls, cpus = self.runs.setdefault(label, ([], []))
        walls.append(wall)
        cpus.append(cpu)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {label: _summary(*runs) for label, runs in self.runs.items()}
        out.update({label: {"error": error} for label, error in self.errors.items()})
        return out


def _summary(walls: list[float], cpus: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(statistics.median(walls) * 1000, 1),
        "min_ms": round(min(walls) * 1000, 1),
        "cpu_median_ms": round(statistics.median(cpus) * 1000, 1),
    }


def _ratio(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, float] | None:
    if "median_ms" not in a or "median_ms" not in b:
        return None
    return {
        "wall": round(a["median_ms"] / b["median_ms"], 2),
        "cpu": round(a["cpu_median_ms"] / b["cpu_median_ms"], 2),
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Measure every command of every tree against the floor and sops; JSON-ready."""
    if not SOPS.exists():
        raise RuntimeError(f"{SOPS} missing: run tools/sops/build.sh (make sops)")
    exe = kustos_command() or "kustos"
    trees = {"this_tree": REPO / "src"}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    for src in trees.values():
        # As an installed package has them: without bytecode, every run would compile each
        # module it imports (this machine sets PYTHONDONTWRITEBYTECODE, so none is cached).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    files, recipient = _prepare(root, exe, {**os.environ, "PYTHONPATH": str(trees["this_tree"])})
    plain_env = {**os.environ, "SOPS_AGE_KEY_FILE": str(files["key"])}
    envs = {name: {**plain_env, "PYTHONPATH": str(src)} for name, src in trees.items()}
    commands, peers = _commands(exe, files), _peers(files, recipient)
    floor = _Samples(strict=True)
    others = _Samples(strict=True)
    kustos = {tree: _Samples(strict=tree == "this_tree") for tree in trees}
    for _ in range(args.rounds):
        floor.take("python -c pass", [sys.executable, "-c", "pass"], plain_env, (0,))
        for label, (argv, ok) in commands.items():
            for tree, env in envs.items():
                kustos[tree].take(label, argv, env, ok)
        for label, (argv, ok) in peers.items():
            others.take(label, argv, plain_env, ok)
    figures = {"floor": floor.figures(), "sops": others.figures()}
    figures.update({tree: samples.figures() for tree, samples in kustos.items()})
    out: dict[str, Any] = {
        "rounds": args.rounds,
        "measure": "one process per command, fork to exit (wall) and user+system CPU; medians",
        "interpreter": sys.executable,
        "bytecode": "both trees compiled (compileall) before timing, as an installed package",
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "sops": tool_version([str(SOPS), "--version"]),
        "small_file": str(SMALL_FILE.relative_to(REPO)),
        "commands": {label: shlex.join(argv) for label, (argv, _) in {**commands, **peers}.items()},
        "figures": figures,
        "ratios_over_floor": {
            tree: {
                label: _ratio(fig, figures["floor"]["python -c pass"])
                for label, fig in figures[tree].items()
            }
            for tree in trees
        },
        "ratios_kustos_over_sops": {
            tree: {
                "seal": _ratio(figures[tree]["kustos seal"], figures["sops"]["sops -e"]),
                "unseal": _ratio(figures[tree]["kustos unseal"], figures["sops"]["sops -d"]),
            }
            for tree in trees
        },
    }
    if "baseline" in trees:
        out["baseline_src"] = str(trees["baseline"])
        out["ratios_this_over_baseline"] = {
            label: _ratio(fig, figures["baseline"].get(label, {}))
            for label, fig in figures["this_tree"].items()
        }
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command per tree")
    parser.add_argument(
        "--baseline-src", type=Path, default=None, help="a src folder to compare with"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and write ``bench/results/startup.json``."""
    args = _parser().parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    reproduce = " ".join(["python -m bench.startup", *(argv if argv is not None else sys.argv[1:])])
    doc: dict[str, Any] = provenance(reproduce)
    doc["versions"] = {"kustos": kustos_version()}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="startup-", dir=WORK) as tmp:
        doc["startup"] = run(args, Path(tmp))
    doc["startup"]["bench_seconds"] = round(time.monotonic() - began, 1)
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"bench.startup: {orjson.dumps(doc['startup']['figures']).decode()}")
    print(f"bench.startup: written {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
