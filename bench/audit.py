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
  server's default) to ``kustos audit serve`` (a separate process, detectors on in their
  own child process, fsync per write: batches waiting together share one) with
  :data:`SENDERS` batches in flight, as the API server's buffered backend sends them
  (:func:`post_batches`); events/s against the bare parse of the same batch bodies, the
  receiver's and the detector process's peak RSS (VmHWM) for the bound on memory, their
  CPU and the sender's, and the records found in the archive's segments afterwards (every
  event stored once). Best of ``--repeats``. Run again with ``--fsync none`` so that the
  fsync policy's cost shows, with every detector off, and with no detector process at all
  (:func:`serve_without_hooks`) so that the receiver's own cost shows.
- **query**: an archive of ``--query-events`` events (built through the archive's own
  append path) and the time of one Secret's history, in process (``run_query``) and as the
  ``kustos audit query --secret`` command (Python start-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Final

import httpx
import orjson

from bench.running import RESULTS, WORK, provenance
from kustos.audit import native
from kustos.audit.archive import Archive, Fsync
from kustos.audit.detecting import DETECTORS
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


def detectors_off(path: Path) -> Path:
    """A Watch config with every detector turned off (what the receiver costs alone)."""
    path.write_text("detectors:\n" + "".join(f"  {d}: {{enabled: false}}\n" for d in DETECTORS))
    return path


#: Batches in flight at once, as the API server's buffered webhook backend has them: it
#: starts one goroutine per batch (``processEvents``, no cap on how many run) and only its
#: throttle (10 batches/s, burst 15 by default; raised or turned off for a busier API
#: server) limits how fast it starts them. The receiver accepts ``--max-waiting`` (16) before
#: it answers 429, which the API server retries after 10 s: a sender that keeps it busy
#: without being refused has fewer in flight than that.
SENDERS: Final = 8


def post_batches(port: int, bodies: Sequence[bytes], senders: int = SENDERS) -> tuple[float, int]:
    """Post *bodies* to ``/audit`` with *senders* batches in flight; (seconds, refusals).

    Each sender is a thread with one keep-alive HTTP/1.1 connection, as a goroutine of the
    API server's webhook client: a POST with Content-Length, then the whole answer read
    before the next batch; 429 and 503 are retried (after 50 ms, not the API server's 10 s,
    so that a refusal costs the run time without stopping it). Plain sockets, not an HTTP
    library: the API server's client is Go and usually on another machine, and on these two
    cores a Python client library's CPU would be charged to the receiver.
    """
    work = iter(bodies)
    lock = threading.Lock()
    refused = [0]

    def sender() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as answers:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                with lock:
                    body = next(work, None)
                if body is None:
                    return
                head = b"POST /audit HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
                head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                while (code := _exchange(sock, answers, head, body)) != 200:
                    if code not in (429, 503):
                        raise RuntimeError(f"the receiver answered {code}")
                    with lock:
                        refused[0] += 1
                    time.sleep(0.05)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        for done in [pool.submit(sender) for _ in range(senders)]:
            done.result()
    return time.perf_counter() - started, refused[0]


def _exchange(sock: socket.socket, answers: BinaryIO, head: bytes, body: bytes) -> int:
    """Send one request; read its whole answer; its status code."""
    sock.sendall(head)
    sock.sendall(body)
    status = int(answers.readline().split()[1])
    length = 0
    while (line := answers.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    answers.read(length)
    return status


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of process *pid* so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _records(archive: Path) -> int:
    """Records in an archive's segments (its lines), counted from the files themselves."""
    return sum(path.read_bytes().count(b"\n") for path in (archive / "segments").glob("*.log"))


def webhook_ingest(
    path: Path,
    work: Path,
    port: int,
    *,
    fsync: str = "always",
    config: Path | None = None,
    repeats: int = 1,
    hooks: bool = True,
) -> dict[str, Any]:
    """Post the log as EventList batches to ``kustos audit serve``; events/s and memory.

    Best of *repeats* runs, each against a fresh archive and with the bare parse of the same
    bodies measured just before it. Without *hooks*, the same receiver with no detector
    process at all (:func:`serve_without_hooks`).
    """
    lines = path.read_bytes().splitlines()
    bodies = batch_bodies(lines)
    if hooks:
        serve = [sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(work),
                 "--listen", f"127.0.0.1:{port}", "--fsync", fsync,
                 *(["--config", str(config)] if config else [])]  # fmt: skip
    else:
        serve = [sys.executable, "-m", "bench.audit", "--serve-without-hooks", str(work),
                 "--port", str(port), "--fsync", fsync]  # fmt: skip
    runs = [_webhook_run(bodies, work, port, serve) for _ in range(repeats)]
    best = min(runs, key=lambda run: run["seconds"])
    bare = min(run.pop("bare_seconds") for run in runs)
    return {
        "events": len(lines),
        "senders": SENDERS,
        "seconds": round(best["seconds"], 3),
        "events_per_s": round(len(lines) / best["seconds"]),
        "bare_parse_events_per_s": round(len(lines) / bare),
        "ratio": round(bare / best["seconds"], 3),
        "runs_events_per_s": [round(len(lines) / run["seconds"]) for run in runs],
        **{k: v for k, v in best.items() if k != "seconds"},
        "all_stored": all(run["stored_events"] == len(lines) for run in runs),
    }


def _webhook_run(
    bodies: Sequence[bytes], work: Path, port: int, serve: Sequence[str]
) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    for body in bodies:
        orjson.loads(body)
    bare = time.perf_counter() - started
    log = work.parent / "receiver.log"
    proc = subprocess.Popen(
        serve, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        receiver_cpu = _cpu_seconds(proc.pid)
        client = resource.getrusage(resource.RUSAGE_SELF)
        seconds, refused = post_batches(port, bodies)
        after = resource.getrusage(resource.RUSAGE_SELF)
        receiver_cpu = _cpu_seconds(proc.pid) - receiver_cpu
        peak = _vm_hwm_mb(proc.pid)
        children = [int(c) for c in _children(proc.pid)]
        child_peak = sum(_vm_hwm_mb(c) for c in children)
        child_cpu = sum(_cpu_seconds(c) for c in children)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        "seconds": seconds,
        "bare_seconds": bare,
        "receiver_cpu_seconds": round(receiver_cpu, 2),
        "detector_process_cpu_seconds": round(child_cpu, 2),
        "client_cpu_seconds": round(
            after.ru_utime - client.ru_utime + after.ru_stime - client.ru_stime, 2
        ),
        "receiver_peak_rss_mb": round(peak, 1),
        "detector_process_peak_rss_mb": round(child_peak, 1),
        "refused_batches": refused,
        "stored_events": _records(work),
    }


def serve_without_hooks(directory: Path, port: int, fsync: str) -> int:
    """``kustos audit serve`` over an archive without hooks (no detector process), until
    SIGTERM: what the receiver and the archive cost alone."""
    from kustos.audit.receiving import ReceiverSettings, serve  # noqa: PLC0415

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve(Archive(directory, fsync=Fsync(fsync)), ReceiverSettings("127.0.0.1", port),
                    stop=stop)  # fmt: skip

    asyncio.run(run())
    return 0


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


_WEBHOOK_RUNS: Final = (
    "webhook_ingest",
    "webhook_ingest_fsync_none",
    "webhook_ingest_detectors_off",
    "webhook_ingest_no_hooks",
)


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
    parser.add_argument("--serve-without-hooks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fsync", default="always", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_without_hooks:
        return serve_without_hooks(args.serve_without_hooks, args.port, args.fsync)
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
    hook = work / "webhook"
    doc["webhook_ingest"] = webhook_ingest(log, hook, args.port, repeats=args.repeats)
    # The same with --fsync none: what acknowledging only after fsync costs.
    doc["webhook_ingest_fsync_none"] = webhook_ingest(
        log, hook, args.port, fsync="none", repeats=args.repeats
    )
    # The same with every detector off: what the receiver and the archive cost alone.
    doc["webhook_ingest_detectors_off"] = webhook_ingest(
        log, hook, args.port, config=detectors_off(work / "no-detectors.yaml"),
        repeats=args.repeats,
    )  # fmt: skip
    # The receiver with no detector process at all (detectors off still start one).
    doc["webhook_ingest_no_hooks"] = webhook_ingest(
        log, hook, args.port, hooks=False, repeats=args.repeats
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
        "webhook_detectors_off_ratio_at_least_0.5": (
            doc["webhook_ingest_detectors_off"]["ratio"] >= TARGET_RATIO
        ),
        "webhook_every_event_stored": all(doc[run]["all_stored"] for run in _WEBHOOK_RUNS),
        "secret_history_under_1s": doc["query"]["in_process_seconds"] < TARGET_QUERY_S,
        "query_archive_is_10_million": doc["query"]["archive_events"] >= 10_000_000,
    }
    return write_results(doc, OUTPUT, work)


if __name__ == "__main__":
    raise SystemExit(main())
