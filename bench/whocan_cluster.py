"""``kustos who-can --matrix --cluster`` on a control plane of 100k objects plus the who-can set.

How the load is made: as ``bench.scan_cluster`` (a fresh control plane from the test
harness, controllers stopped, objects created by ``POST`` from 16 threads):
``--objects`` objects of ``bench.synth.cluster_objects``, then the who-can dataset of
``bench.whocan`` (``vault-prod`` with 5,000 Secrets, 20,000 bindings in all).

Measured, in this order, with the page size of ``kustos.kube.listing.PAGE_SIZE``:

- ``listing``: :func:`kustos.cli.whocan.list_for_answer` alone, in this process (what the
  command lists: RBAC objects of ``-n``, of the readers' ServiceAccount namespaces and
  cluster-wide ones, and ``-n``'s Secrets and workloads);
- ``floor``: the same list calls fetched and decoded with orjson, nothing else;
- ``listing_per_namespace`` and ``listing_cluster_wide``: the same listing with the readers'
  namespaces read one way or the other whatever their count (``wide_after``), and
  ``second_round``: that round alone for the first 16, 64 and all of the readers'
  namespaces, each way, which is what chose :data:`kustos.cli.whocan.WIDE_AFTER`;
- ``listing_every_namespace``: the listing before issue #13's third round (Roles and
  RoleBindings of every namespace), for the object count and time it cost;
- ``phases``: the command's steps in this process, one after the other (listing with the
  policy, the matrix, the report's dicts, its JSON text), for where the rest of the time
  goes;
- ``kustos``: the whole command, ``kustos who-can --matrix --cluster -n vault-prod
  --format json`` (stdout to a file), with its peak RSS.

Results: ``bench/results/whocan_cluster.json``.

    python -m bench.whocan_cluster --objects 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

from lightkube.core.resource import NamespacedResource

from bench import running
from bench.scan_cluster import (
    fetch_and_decode,
    load,
    objects_to_load,
    quiet_plane,
    whocan_objects_to_load,
)
from bench.synth import WHOCAN_NAMESPACE
from kustos.cli.output import json_text
from kustos.cli.whocan import list_for_answer
from kustos.kube.client import ClientSettings, make_client
from kustos.kube.listing import DEFAULT_KINDS, PAGE_SIZE, RESOURCES, list_cluster
from kustos.kube.references import WORKLOAD_KINDS
from kustos.rbac.access import reader_namespaces, secret_matrix
from kustos.rbac.model import RBAC_KINDS
from kustos.rbac.reporting import matrix_doc

REPRODUCE: Final = "python -m bench.whocan_cluster"
_NAMESPACED_RBAC: Final = ("Role", "RoleBinding")


def _best(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: float(r["seconds"]))
    return {**best, "runs": [r["seconds"] for r in runs]}


def _timed(repeats: int, once: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return _best([once() for _ in range(repeats)])


def _listing(kubeconfig: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        index, policy = list_for_answer(client, WHOCAN_NAMESPACE)
    seconds = time.perf_counter() - started
    others = sorted(reader_namespaces(policy, WHOCAN_NAMESPACE) - {WHOCAN_NAMESPACE})
    return {"seconds": round(seconds, 3), "objects": len(index), "reader_namespaces": others}


def _listing_with(kubeconfig: Path, wide_after: int) -> dict[str, Any]:
    started = time.perf_counter()
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        index, _ = list_for_answer(client, WHOCAN_NAMESPACE, wide_after=wide_after)
    return {"seconds": round(time.perf_counter() - started, 3), "objects": len(index)}


def _second_round(kubeconfig: Path, others: Sequence[str], *, wide: bool) -> dict[str, Any]:
    """The Roles and RoleBindings of *others* alone: per namespace or cluster-wide, kept."""
    kinds = [k for k in DEFAULT_KINDS if k in _NAMESPACED_RBAC]
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        started = time.perf_counter()
        if wide:
            index = list_cluster(client, kinds=kinds, within=others)
        else:
            index = list_cluster(client, kinds=kinds, namespaces=others)
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "objects": len(index)}


def _phases(kubeconfig: Path) -> dict[str, Any]:
    """The command's steps in this process, one after the other: seconds of each."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[name] = round(now - started, 3)
        started = now

    gc.disable()  # as the command does (cli.inputs.without_cycle_collection)
    try:
        with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
            index, policy = list_for_answer(client, WHOCAN_NAMESPACE)
        lap("listing_and_policy")
        result = secret_matrix(policy, index, WHOCAN_NAMESPACE)
        lap("matrix")
        del index, policy
        doc = matrix_doc(result, all_subjects=False)
        lap("report_dicts")
        text = json_text(doc)
        lap("json_text")
    finally:
        gc.enable()
    return {"seconds": round(sum(seconds.values()), 3), "phases": seconds, "bytes": len(text)}


def _every_namespace(kubeconfig: Path) -> dict[str, Any]:
    """The listing before: RBAC of every namespace, Secrets and workloads of ``-n``."""
    started = time.perf_counter()
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        index = list_cluster(client, kinds=[k for k in DEFAULT_KINDS if k in RBAC_KINDS])
        wanted = {"Secret", *WORKLOAD_KINDS}
        list_cluster(
            client,
            kinds=[k for k in DEFAULT_KINDS if k in wanted],
            namespaces=[WHOCAN_NAMESPACE],
            index=index,
        )
    return {"seconds": round(time.perf_counter() - started, 3), "objects": len(index)}


def _floor(kubeconfig: Path, others: Sequence[str]) -> dict[str, Any]:
    """The list calls of ``list_for_answer`` fetched and decoded with orjson, one at a time."""
    here = [k for k in DEFAULT_KINDS if k in RBAC_KINDS | {"Secret", *WORKLOAD_KINDS}]
    calls = [(kind, WHOCAN_NAMESPACE) for kind in here]
    calls += [(kind, ns) for kind in _NAMESPACED_RBAC for ns in others]
    started = time.perf_counter()
    items = 0
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        generic = client._client
        for kind, namespace in calls:
            resource = RESOURCES[kind][1]
            scope = namespace if issubclass(resource, NamespacedResource) else None
            items += fetch_and_decode(generic, resource, scope, PAGE_SIZE)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "items": items,
        "list_calls": len(calls),
    }


def run(*, objects: int = 100_000, repeats: int = 3, out: Path | None = None) -> dict[str, Any]:
    """Load a control plane, measure the listing and the whole command, write the results."""
    out = out or running.RESULTS / "whocan_cluster.json"
    doc: dict[str, Any] = running.provenance(REPRODUCE)
    doc["benchmark"] = "whocan_cluster"
    doc["versions"] = {"kustos": running.kustos_version()}
    doc["page_size"] = PAGE_SIZE
    with quiet_plane(running.WORK / "whocan-cluster") as kubeconfig:
        print(f"whocan_cluster: loading {objects} objects", flush=True)
        doc["load"] = load(kubeconfig, objects_to_load(objects))
        print(f"whocan_cluster: load: {doc['load']}", flush=True)
        doc["load_whocan"] = load(kubeconfig, whocan_objects_to_load())
        print(f"whocan_cluster: who-can load: {doc['load_whocan']}", flush=True)
        doc["listing"] = _timed(repeats, lambda: _listing(kubeconfig))
        others = doc["listing"]["reader_namespaces"]
        doc["floor"] = _timed(repeats, lambda: _floor(kubeconfig, others))
        doc["listing"]["listing/floor"] = round(
            doc["listing"]["seconds"] / doc["floor"]["seconds"], 2
        )
        doc["listing_per_namespace"] = _timed(
            repeats, lambda: _listing_with(kubeconfig, wide_after=len(others) + 1)
        )
        doc["listing_cluster_wide"] = _timed(repeats, lambda: _listing_with(kubeconfig, 0))
        counts = sorted({min(16, len(others)), min(64, len(others)), len(others)})
        doc["second_round"] = {
            f"{'cluster_wide' if wide else 'per_namespace'} {count}": _timed(
                repeats, partial(_second_round, kubeconfig, others[:count], wide=wide)
            )
            for count in counts
            for wide in (False, True)
        }
        doc["listing_every_namespace"] = _timed(repeats, lambda: _every_namespace(kubeconfig))
        doc["phases"] = _timed(repeats, lambda: _phases(kubeconfig))
        doc["load_average_after_listing"] = round(os.getloadavg()[0], 2)
        print(f"whocan_cluster: listing {doc['listing']['seconds']} s, "
              f"floor {doc['floor']['seconds']} s, per namespace "
              f"{doc['listing_per_namespace']['seconds']} s, cluster-wide "
              f"{doc['listing_cluster_wide']['seconds']} s, every namespace "
              f"{doc['listing_every_namespace']['seconds']} s", flush=True)  # fmt: skip
        print(f"whocan_cluster: second round {doc['second_round']}", flush=True)
        print(f"whocan_cluster: phases {doc['phases']['phases']}", flush=True)
        # The load takes a quarter of an hour: say which code the command ran with.
        at = running.provenance(REPRODUCE)
        doc["measured_with"] = {k: at[k] for k in ("date", "commit", "worktree_dirty")}
        report = running.WORK / "reports" / "whocan-cluster-kustos.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        exe = running.kustos_command() or "kustos"
        argv = [exe, "who-can", "--matrix", "--cluster", "--kubeconfig", str(kubeconfig),
                "-n", WHOCAN_NAMESPACE, "--format", "json"]  # fmt: skip
        doc["kustos"] = running.measure(
            lambda _output: argv,
            ok_codes={0},
            repeats=repeats,
            timeout=900.0,
            max_rss_mb=4096.0,
            report=report,
            stdout_is_report=True,
        )
        print(f"whocan_cluster: kustos {doc['kustos']['seconds']} s", flush=True)
    doc["targets"] = [
        running.target(
            "who-can --matrix over 5,000 Secrets and 20,000 bindings in the cluster under 5 s",
            doc["kustos"]["seconds"],
            5.0,
        )
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(prog=REPRODUCE)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    run(objects=args.objects, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
