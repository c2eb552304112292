"""``kustos scan --cluster`` against a local control plane holding N objects, in one run.

How the load is made: a fresh control plane from the test harness (etcd, kube-apiserver;
the controller manager, scheduler and kwok are stopped once it is up, so that no
ReplicaSet or Pod is made from the workloads and the object count stays N). The objects
are those of ``bench.synth.cluster_objects`` (the same generator as the file benchmark)
without its Services, which the scan does not list: Namespaces first, then Secrets,
ConfigMaps, ServiceAccounts, Roles, ClusterRoles, bindings, Deployments, StatefulSets,
CronJobs and NetworkPolicies, created with ``POST`` by 16 threads sharing one HTTP client.
What the API server refused is counted, never hidden.

Measured, in this order: the listing alone in this process for several page sizes
(``list_cluster(chunk_size=...)``, which chose :data:`kustos.kube.listing.PAGE_SIZE`);
then the whole command, ``kustos scan --cluster --format json --output /dev/null``, with
its peak RSS. The floor is the same pages fetched and decoded with orjson, nothing else.
Results: ``bench/results/scan_cluster.json``.

    python -m bench.scan_cluster --objects 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import orjson
from lightkube.core.resource import NamespacedResource

from bench import running
from bench.synth import DEFAULT_SEED, WHOCAN_NAMESPACE, cluster_objects, whocan_objects
from kustos.kube.client import ClientSettings, http_client, make_client
from kustos.kube.listing import PAGE_SIZE, RESOURCES, list_cluster
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings

REPRODUCE: Final = "python -m bench.scan_cluster"
#: kind → (API path prefix, plural) for what the generator makes (Services are left out).
_PATHS: Final = {
    "Namespace": ("/api/v1", "namespaces"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
}
_CLUSTER_SCOPED: Final = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding"})
_THREADS: Final = 16


def objects_to_load(count: int, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """*count* objects of the synthetic cluster that the scan lists, Namespaces first."""
    made = [o for o in cluster_objects(count * 2, seed) if o["kind"] in _PATHS][:count]
    return sorted(made, key=lambda o: o["kind"] != "Namespace")  # stable: order kept


def _url(obj: dict[str, Any]) -> str:
    prefix, plural = _PATHS[obj["kind"]]
    if obj["kind"] in _CLUSTER_SCOPED:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}"


@contextlib.contextmanager
def quiet_plane(root: Path) -> Iterator[Path]:
    """A fresh control plane under *root* with its controllers stopped: its kubeconfig.

    Without the controller manager, scheduler and kwok no ReplicaSet or Pod is made from
    the workloads loaded, so the cluster holds exactly the objects created.
    """
    with ControlPlane(ControlPlaneSettings(root / "cp", nodes=1)) as plane:
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            plane.kill(name)
        yield plane.kubeconfig


def load(kubeconfig: Path, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Create *objects* (Namespaces first, then the rest by 16 threads); count the answers."""
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    started = time.perf_counter()
    with http_client(ClientSettings(kubeconfig=kubeconfig, timeout=120)) as http:

        def create(obj: dict[str, Any]) -> None:
            response = http.post(
                _url(obj),
                content=orjson.dumps(obj),
                headers={"Content-Type": "application/json"},
            )
            with lock:
                codes[response.status_code] += 1

        namespaces = [o for o in objects if o["kind"] == "Namespace"]
        rest = [o for o in objects if o["kind"] != "Namespace"]
        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(create, namespaces))
            list(pool.map(create, rest))
    seconds = time.perf_counter() - started
    return {
        "objects": len(objects),
        "kinds": dict(sorted(Counter(o["kind"] for o in objects).items())),
        "http_status": {str(k): v for k, v in sorted(codes.items())},
        "seconds": round(seconds, 1),
        "per_second": round(len(objects) / seconds, 1),
        "how": f"POST by {_THREADS} threads, one HTTP client; Namespaces first",
    }


def _floor(kubeconfig: Path, page_size: int) -> dict[str, Any]:
    """Fetch every page of the listed kinds and decode it with orjson; nothing else."""
    started = time.perf_counter()
    items = 0
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        generic = client._client
        for _, resource in RESOURCES.values():
            scope = "*" if issubclass(resource, NamespacedResource) else None
            items += fetch_and_decode(generic, resource, scope, page_size)
    return {"seconds": round(time.perf_counter() - started, 3), "items": items}


def fetch_and_decode(generic: Any, resource: Any, scope: str | None, page_size: int) -> int:
    """Fetch every page of one list and decode it with orjson, nothing else: its items."""
    items = 0
    params = {"limit": page_size}
    request = generic.prepare_request("list", resource, namespace=scope, params=params)
    while True:
        response = generic.send(generic.build_adapter_request(request))
        if response.status_code == 404:  # a CRD that is not installed
            return items
        page = orjson.loads(response.content)
        items += len(page.get("items") or ())
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        request.params["continue"] = token


def _listing(kubeconfig: Path, page_size: int) -> dict[str, Any]:
    started = time.perf_counter()
    with make_client(ClientSettings(kubeconfig=kubeconfig)) as client:
        index = list_cluster(client, chunk_size=page_size)
    return {"seconds": round(time.perf_counter() - started, 3), "objects": len(index)}


def _scan_argv(kubeconfig: Path, output: str) -> list[str]:
    exe = running.kustos_command() or "kustos"
    return [exe, "scan", "--cluster", "--kubeconfig", str(kubeconfig), "--format", "json",
            "--output", output]  # fmt: skip


def whocan_objects_to_load() -> list[dict[str, Any]]:
    """The who-can dataset (5,000 Secrets, 20,000 bindings), Namespaces first."""
    extra = whocan_objects(secrets=5000, bindings=20_000)
    return sorted((o for o in extra if o["kind"] in _PATHS), key=lambda o: o["kind"] != "Namespace")


def _whocan(kubeconfig: Path, repeats: int) -> dict[str, Any]:
    """Add the who-can dataset (5,000 Secrets, 20,000 bindings) and time the live matrix."""
    extra = whocan_objects_to_load()
    print(f"scan_cluster: loading {len(extra)} who-can objects", flush=True)
    loaded = load(kubeconfig, extra)
    exe = running.kustos_command() or "kustos"
    argv = [exe, "who-can", "--matrix", "--cluster", "--kubeconfig", str(kubeconfig),
            "-n", WHOCAN_NAMESPACE, "--format", "json"]  # fmt: skip
    measured = running.measure(
        lambda _output: argv,
        ok_codes={0},
        repeats=repeats,
        timeout=900.0,
        max_rss_mb=4096.0,
        report=running.WORK / "reports" / "scan-cluster-whocan.json",
        stdout_is_report=True,
    )
    print(f"scan_cluster: who-can: {measured['seconds']} s", flush=True)
    return {
        "load": loaded,
        "kustos": measured,
        "target": running.target(
            "who-can --matrix over 5,000 Secrets and 20,000 bindings in the cluster under 5 s",
            measured["seconds"],
            5.0,
        ),
    }


def run(
    *,
    objects: int = 100_000,
    page_sizes: Sequence[int] = (250, 500, 1000, 2000, 5000),
    repeats: int = 2,
    whocan: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Load a control plane, measure listing and the whole scan, write the results file."""
    out = out or running.RESULTS / "scan_cluster.json"
    doc: dict[str, Any] = running.provenance(REPRODUCE)
    doc["benchmark"] = "scan_cluster"
    doc["versions"] = {"kustos": running.kustos_version()}
    with quiet_plane(running.WORK / "scan-cluster") as kubeconfig:
        print(f"scan_cluster: loading {objects} objects", flush=True)
        doc["load"] = load(kubeconfig, objects_to_load(objects))
        print(f"scan_cluster: load: {doc['load']}", flush=True)
        doc["page_sizes"] = {}
        for size in page_sizes:
            rounds = [_listing(kubeconfig, size) for _ in range(repeats)]
            floors = [_floor(kubeconfig, size) for _ in range(repeats)]
            best = min(r["seconds"] for r in rounds)
            floor = min(f["seconds"] for f in floors)
            doc["page_sizes"][str(size)] = {
                "list_cluster_seconds": best,
                "runs": [r["seconds"] for r in rounds],
                "objects": rounds[0]["objects"],
                "floor_fetch_and_decode_seconds": floor,
                "listing/floor": round(best / floor, 2) if floor else None,
                "load_average_after": round(os.getloadavg()[0], 2),
            }
            print(f"scan_cluster: page {size}: {doc['page_sizes'][str(size)]}", flush=True)
        report = running.WORK / "reports" / "scan-cluster-kustos.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        doc["kustos"] = running.measure(
            lambda output: _scan_argv(kubeconfig, output),
            ok_codes={0, 1},
            repeats=repeats,
            timeout=900.0,
            max_rss_mb=4096.0,
            report=report,
        )
        try:
            summary = json.loads(report.read_bytes())["summary"]
            doc["kustos"]["reported"] = {
                "objects": summary["objects"],
                "findings": summary["findings"],
            }
        except (OSError, ValueError, KeyError):
            doc["kustos"]["reported"] = None
        print(f"scan_cluster: kustos: {doc['kustos']['seconds']} s, "
              f"{doc['kustos']['peak_rss_mb']} MB", flush=True)  # fmt: skip
        if whocan:
            doc["whocan"] = _whocan(kubeconfig, repeats)
    doc["page_size_default"] = PAGE_SIZE
    seconds = doc["kustos"]["seconds"]
    doc["targets"] = [
        running.target("kustos scan --cluster of 100k objects under 15 s", seconds, 15.0),
        running.target(
            "kustos scan --cluster peak RSS under 1 GB", doc["kustos"]["peak_rss_mb"], 1024.0
        ),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.scan_cluster")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--page-sizes", default="250,500,1000,2000,5000")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--whocan", action="store_true", help="then add 5,000 Secrets and 20,000 bindings"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.page_sizes.split(",") if s]
    run(objects=args.objects, page_sizes=sizes, repeats=args.repeats, whocan=args.whocan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
