"""Audit benchmarks: ``python -m bench.audit [--events N] [--query-events N]``.

Writes ``bench/results/audit.json``. Nothing asserts; targets are recorded as pass/fail.

- **file ingest**: an audit log of realistic events (sizes as in the reference notes:
  Metadata events of about 1 KB, ServiceAccount identities with their ``extra``, a share of
  RequestResponse bodies on other resources up to a few KB; p95 under 2.5 KB) ingested by
  ``kustos.audit.ingesting.ingest`` into a fresh archive (hash chain, segment writes with
  fsync per batch, index, checkpoints; detection too when the alert hooks are installed),
  against the bare parse of the same file with orjson in the same run (the limit). Ratio =
  ingest events/s / bare-parse events/s. Best of ``--repeats``. On the native writer core
  when it is built (``native_core``), and once on the Python path (``KUSTOS_AUDIT_NATIVE=0``)
  for comparison.
- **webhook ingest**: the same events posted as ``EventList`` batches of 400 (the API
  server's default) by two concurrent clients to ``kustos audit serve`` (a separate
  process, detectors on in their own child process, fsync per write: batches waiting
  together share one); events/s against the bare parse of the same batch bodies, the
  receiver's and the detector process's peak RSS (VmHWM) for the bound on memory; run
  again with ``--fsync none`` so that the fsync policy's cost shows, and with every
  detector off so that the receiver's own cost shows.
- **query**: an archive of ``--query-events`` events (built through the archive's own
  append path) and the time of one Secret's history, in process (``run_query``) and as the
  ``kustos audit query --secret`` command (Python start-up included).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from bench.running import RESULTS, WORK, provenance
from kustos.audit import native
from kustos.audit.archive import Archive, Fsync
from kustos.audit.ingesting import ingest
from kustos.audit.querying import EventQuery, run_query
from kustos.audit.records import Prepared, prepare

OUTPUT: Final = RESULTS / "audit.json"
BATCH: Final = 400
TARGET_RATIO: Final = 0.5
TARGET_FILE_EPS: Final = 50_000
TARGET_QUERY_S: Final = 1.0
_VERBS: Final = ("get", "get", "get", "list", "watch", "update", "patch", "create", "delete")


def make_event(n: int, rng: random.Random) -> dict[str, Any]:
    """Event *n*: a Secret, ConfigMap or Pod request by a ServiceAccount, node or person."""
    ns = f"team-{rng.randrange(200)}"
    resource = rng.choices(("secrets", "configmaps", "pods", "deployments"), (5, 2, 2, 1))[0]
    verb = rng.choice(_VERBS)
    ref: dict[str, Any] = {"resource": resource, "namespace": ns, "apiVersion": "v1"}
    if verb not in ("list", "watch", "create"):
        ref["name"] = f"{resource[:-1]}-{rng.randrange(5000)}"
    kind = rng.random()
    if kind < 0.6:
        sa = f"sa-{rng.randrange(20)}"
        user: dict[str, Any] = {
            "username": f"system:serviceaccount:{ns}:{sa}",
            "uid": f"{rng.getrandbits(128):032x}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                       "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [f"JTI={rng.getrandbits(128):032x}"],
                "authentication.kubernetes.io/node-name": [f"node-{rng.randrange(50)}"],
                "authentication.kubernetes.io/pod-name": [f"{sa}-{rng.getrandbits(32):08x}"],
                "authentication.kubernetes.io/pod-uid": [f"{rng.getrandbits(128):032x}"],
            },
        }  # fmt: skip
    elif kind < 0.85:
        node = f"node-{rng.randrange(50)}"
        user = {
            "username": f"system:node:{node}",
            "groups": ["system:nodes", "system:authenticated"],
        }
    else:
        user = {"username": f"user-{rng.randrange(40)}@example.com",
                "groups": ["developers", "system:authenticated"]}  # fmt: skip
    second = n // 1000
    day = f"2026-11-{1 + second // 86400 % 28:02d}"
    clock = f"{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    stamp = f"{day}T{clock}.{n % 1000:03d}{rng.randrange(1000):03d}Z"
    code = 200 if rng.random() < 0.95 else 403
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"{rng.getrandbits(32):08x}-{n >> 16 & 0xFFFF:04x}-4000-8000-{n:012x}",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{ns}/{resource}/{ref.get('name', '')}?timeout=30s",
        "verb": verb,
        "user": user,
        "sourceIPs": [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"],
        "userAgent": rng.choice(("kubectl/v1.34.1 (linux/amd64) kubernetes/abc1234",
                                 "kubelet/v1.34.1 (linux/amd64) kubernetes/abc1234",
                                 "app/2.3.1 (linux/amd64) client-go/v0.34.0")),
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": stamp,
        "stageTimestamp": stamp,
        "annotations": {
            "authorization.k8s.io/decision": "allow" if code == 200 else "forbid",
            "authorization.k8s.io/reason": (
                f'RBAC: allowed by RoleBinding "reader-{rng.randrange(99)}/{ns}" of Role '
                f'"reader" to ServiceAccount "sa/{ns}"'
            ),
        },
    }  # fmt: skip
    if resource == "pods" and verb in ("create", "update", "patch") and rng.random() < 0.5:
        event["level"] = "RequestResponse"
        event["requestObject"] = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": f"pod-{n}", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.2.3",
                                      "env": [{"name": f"VAR_{i}", "value": "x" * 8}
                                              for i in range(12)]}]},
        }  # fmt: skip
    return event


def write_log(path: Path, count: int, *, seed: int = 7) -> dict[str, float]:
    """Write *count* events as an audit log; return the size distribution."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    sizes = []
    with path.open("wb") as fh:
        for n in range(count):
            line = orjson.dumps(make_event(n, rng)) + b"\n"
            sizes.append(len(line))
            fh.write(line)
    sizes.sort()
    return {
        "events": count,
        "mean_bytes": round(statistics.fmean(sizes)),
        "p50_bytes": sizes[len(sizes) // 2],
        "p95_bytes": sizes[int(len(sizes) * 0.95)],
        "max_bytes": sizes[-1],
    }


def bare_parse(path: Path) -> float:
    """Seconds to read and orjson-parse every line of *path* (the limit)."""
    started = time.perf_counter()
    with path.open("rb") as fh:
        for line in fh:
            orjson.loads(line)
    return time.perf_counter() - started


def _hooks(directory: Path) -> list[Any]:
    try:
        from kustos.audit.watching import hooks_for  # noqa: PLC0415
    except ImportError:
        return []
    return list(hooks_for(directory, None))


def _detection_installed(probe: Path) -> bool:
    """Whether this tree has the detectors; the probe's detector process is stopped first."""
    hooks = _hooks(probe)
    for hook in hooks:
        hook.close()  # else it saves its baseline into the folder removed below
    shutil.rmtree(probe, ignore_errors=True)
    return bool(hooks)


def file_ingest(path: Path, work: Path, *, detection: bool) -> float:
    """Seconds for ``ingest`` of *path* into a fresh archive (fsync per batch)."""
    shutil.rmtree(work, ignore_errors=True)
    archive = Archive(work, hooks=_hooks(work) if detection else ())
    started = time.perf_counter()
    with archive:
        ingest(archive, [path])
    return time.perf_counter() - started


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[str]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += (task / "children").read_text().split()
    return found


def batch_bodies(lines: Sequence[bytes]) -> list[bytes]:
    """The event *lines* as the API server posts them: ``EventList`` bodies of ``BATCH``."""
    return [
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + b",".join(lines[i : i + BATCH]) + b"]}"
        for i in range(0, len(lines), BATCH)
    ]  # fmt: skip


def wait_healthy(url: str) -> None:
    """Poll a receiver's *url* (``/healthz``) until it answers; give up after a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        else:
            return


def in_two_clients(send: Callable[[Sequence[bytes]], None], bodies: Sequence[bytes]) -> float:
    """Seconds for two concurrent clients (threads) to *send* every other one of *bodies*."""
    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(bodies[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def write_results(doc: dict[str, Any], output: Path, work: Path) -> int:
    """Record the load average at the end, write *doc* to *output* and stdout, drop *work*."""
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    output.write_bytes(text)
    sys.stdout.write(text.decode())
    shutil.rmtree(work, ignore_errors=True)
    return 0


_DETECTORS: Final = (
    "first_secret_read",
    "new_source_ip",
    "off_hours",
    "bulk_read",
    "anonymous",
    "denied_burst",
    "exec_then_secret",
    "secret_changed",
    "policy_leak",
)


def detectors_off(path: Path) -> Path:
    """A Watch config with every detector turned off (what the receiver costs alone)."""
    path.write_text("detectors:\n" + "".join(f"  {d}: {{enabled: false}}\n" for d in _DETECTORS))
    return path


def webhook_ingest(
    path: Path, work: Path, port: int, *, fsync: str = "always", config: Path | None = None
) -> dict[str, float]:
    """Post the log as EventList batches to ``kustos audit serve``; events/s and memory."""
    shutil.rmtree(work, ignore_errors=True)
    lines = path.read_bytes().splitlines()
    bodies = batch_bodies(lines)
    started = time.perf_counter()
    for body in bodies:
        orjson.loads(body)
    bare = time.perf_counter() - started
    log = work.parent / "receiver.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(work),
         "--listen", f"127.0.0.1:{port}", "--fsync", fsync,
         *(["--config", str(config)] if config else [])],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/audit"
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        failures: list[int] = []

        def send(part: Sequence[bytes]) -> None:
            with httpx.Client(timeout=60) as client:
                for body in part:
                    while (code := client.post(url, content=body).status_code) != 200:
                        if code not in (429, 503):
                            failures.append(code)
                            return
                        time.sleep(0.05)

        seconds = in_two_clients(send, bodies)
        peak = _vm_hwm_mb(proc.pid)
        children = [int(c) for c in _children(proc.pid)]
        child_peak = sum(_vm_hwm_mb(c) for c in children)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "events": len(lines),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(lines) / seconds),
        "bare_parse_events_per_s": round(len(lines) / bare),
        "ratio": round(bare / seconds, 3),
        "receiver_peak_rss_mb": round(peak, 1),
        "detector_process_peak_rss_mb": round(child_peak, 1),
        "refused_batches": len(failures),
    }


def build_query_archive(work: Path, count: int, *, seed: int = 11) -> tuple[str, str]:
    """An archive of *count* events; returns the Secret whose history is asked for."""
    shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    with Archive(work, fsync=Fsync.NONE) as archive:
        batch: list[Prepared] = []
        for n in range(count):
            item = prepare(orjson.dumps(make_event(n, rng)))
            assert item is not None  # make_event makes Events
            batch.append(item)
            if len(batch) == 20_000:
                archive.append_prepared(batch)
                batch = []
        archive.append_prepared(batch)
    return "team-7", "secret-42"


def query_benchmark(work: Path, count: int) -> dict[str, Any]:
    """Build an archive of *count* events and time one Secret's history in it."""
    secret = build_query_archive(work, count)
    query = EventQuery(secret=secret)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        found = run_query(work, query)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kustos", "audit", "query", "--archive", str(work),
         "--secret", "/".join(secret), "--format", "json"],
        check=True, capture_output=True,
    )  # fmt: skip
    cli = time.perf_counter() - started
    return {
        "archive_events": count,
        "archive_bytes": sum(f.stat().st_size for f in work.rglob("*") if f.is_file()),
        "secret": "/".join(secret),
        "events_found": len(found),
        "in_process_seconds": round(min(timings), 4),
        "cli_seconds": round(cli, 3),
    }


def _only_query(count: int) -> int:
    doc = orjson.loads(OUTPUT.read_bytes()) if OUTPUT.exists() else {}
    work = WORK / "audit"
    started = time.perf_counter()
    doc["query"] = query_benchmark(work / "query", count)
    doc["query"]["build_seconds"] = round(time.perf_counter() - started)
    doc["query"]["provenance"] = provenance(
        f".venv/bin/python -m bench.audit --only-query --query-events {count}"
    )
    doc.setdefault("targets", {})["secret_history_under_1s"] = (
        doc["query"]["in_process_seconds"] < TARGET_QUERY_S
    )
    doc["targets"]["query_archive_is_10_million"] = count >= 10_000_000
    OUTPUT.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(doc["query"], option=orjson.OPT_INDENT_2).decode() + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit benchmarks and write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit")
    parser.add_argument("--events", type=int, default=200_000, help="events for ingest")
    parser.add_argument("--query-events", type=int, default=2_000_000, help="archive size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--port", type=int, default=18443)
    parser.add_argument(
        "--only-query",
        action="store_true",
        help="run the query benchmark only; keep the ingest results of audit.json",
    )
    parser.add_argument(
        "--skip-query",
        action="store_true",
        help="run the ingest benchmarks only; keep the query results of audit.json",
    )
    args = parser.parse_args(argv)
    if args.only_query:
        return _only_query(args.query_events)
    reproduce = (
        f".venv/bin/python -m bench.audit --events {args.events} "
        f"--query-events {args.query_events} --repeats {args.repeats}"
        + (" --skip-query" if args.skip_query else "")
    )
    doc: dict[str, Any] = provenance(reproduce)
    work = WORK / "audit"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "audit.log"
    doc["events"] = write_log(log, args.events)

    bare = min(bare_parse(log) for _ in range(args.repeats))
    plain = min(file_ingest(log, work / "file", detection=False) for _ in range(args.repeats))
    detecting = min(file_ingest(log, work / "file", detection=True) for _ in range(args.repeats))
    built = native.enabled()
    os.environ[native.ENV] = "0"
    try:
        python_path = file_ingest(log, work / "file", detection=False)
    finally:
        del os.environ[native.ENV]
    n = args.events
    doc["file_ingest"] = {
        "bare_parse_events_per_s": round(n / bare),
        "archive_index_events_per_s": round(n / plain),
        "ratio_archive_index": round(bare / plain, 3),
        "with_detection_events_per_s": round(n / detecting),
        "ratio_with_detection": round(bare / detecting, 3),
        "detection_installed": _detection_installed(work / "probe"),
        "native_core": built,
        "python_path_events_per_s": round(n / python_path),
        "ratio_python_path": round(bare / python_path, 3),
    }
    doc["webhook_ingest"] = webhook_ingest(log, work / "webhook", args.port)
    # The same with --fsync none: what acknowledging only after fsync costs.
    doc["webhook_ingest_fsync_none"] = webhook_ingest(
        log, work / "webhook", args.port, fsync="none"
    )
    # The same with every detector off: what the receiver and the archive cost alone.
    doc["webhook_ingest_detectors_off"] = webhook_ingest(
        log, work / "webhook", args.port, config=detectors_off(work / "no-detectors.yaml")
    )

    if args.skip_query and OUTPUT.exists():
        doc["query"] = orjson.loads(OUTPUT.read_bytes())["query"]
    else:
        doc["query"] = query_benchmark(work / "query", args.query_events)
    file_eps = n / plain
    doc["targets"] = {
        "file_ratio_at_least_0.5": bare / plain >= TARGET_RATIO,
        "file_events_per_s_at_least_50000": file_eps >= TARGET_FILE_EPS,
        "file_with_detection_ratio_at_least_0.5": bare / detecting >= TARGET_RATIO,
        "webhook_ratio_at_least_0.5": doc["webhook_ingest"]["ratio"] >= TARGET_RATIO,
        "secret_history_under_1s": doc["query"]["in_process_seconds"] < TARGET_QUERY_S,
        "query_archive_is_10_million": doc["query"]["archive_events"] >= 10_000_000,
    }
    return write_results(doc, OUTPUT, work)


if __name__ == "__main__":
    raise SystemExit(main())
