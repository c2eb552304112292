"""Forwarding inside ``kustos audit serve``: ``python -m bench.audit_forwarding [--events N]``.

Writes ``bench/results/audit_forwarding.json``. Nothing asserts.

The question (issue #10): does forwarding from the receiver's own process slow the
acknowledgement of the API server's batches? The same realistic events (``bench.audit``'s
generator, about 1 KB each) are posted as ``EventList`` batches of 400 by two concurrent
clients, in one run, to two receivers one after the other:

- **alone**: ``kustos audit serve`` with no sink (the limit: nothing but receiving);
- **forwarding**: ``kustos audit serve --config`` with a syslog sink, a real rsyslog on
  TCP, so every event is also read back from the archive, encoded as RFC 5424 and sent.

For each: events/s acknowledged, the latency of each batch's 200 (p50, p95, max), and for
the forwarding run the time until rsyslog holds every event (delivery throughput). Ratios:
acknowledged events/s forwarding / alone (1.0 = no slowdown), p95 latency forwarding /
alone. Best of ``--repeats`` for each configuration.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from bench.audit import batch_bodies, in_two_clients, wait_healthy, write_log, write_results
from bench.running import RESULTS, WORK, provenance
from kustos.testing.processes import free_ports
from kustos.testing.rsyslog import Rsyslog

OUTPUT: Final = RESULTS / "audit_forwarding.json"


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def run_once(
    bodies: Sequence[bytes], events: int, work: Path, *, sink: Rsyslog | None
) -> dict[str, Any]:
    """Post every batch to a fresh receiver; events/s, batch latencies, delivery time."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_ports(1)[0]
    argv = [sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(work / "archive"),
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    if sink is not None:
        config = work / "watch.yaml"
        config.write_bytes(
            orjson.dumps(
                {"sinks": [{"name": "siem", "type": "syslog", "address": sink.address,
                            "send": ["events"], "batch_size": 1000}],
                 "poll_seconds": 1}
            )
        )  # fmt: skip
        argv += ["--config", str(config)]
    with (work / "receiver.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    latencies: list[float] = []
    lock = threading.Lock()
    try:
        url = f"http://127.0.0.1:{port}/audit"
        wait_healthy(f"http://127.0.0.1:{port}/healthz")

        def send(part: Sequence[bytes]) -> None:
            with httpx.Client(timeout=60) as client:
                for body in part:
                    posted = time.perf_counter()
                    while client.post(url, content=body).status_code != 200:
                        time.sleep(0.05)
                    with lock:
                        latencies.append(time.perf_counter() - posted)

        acknowledged = in_two_clients(send, bodies)
        delivered = None
        if sink is not None:
            waiting = time.perf_counter()
            deadline = time.monotonic() + 600
            while _count_lines(sink.output) < events and time.monotonic() < deadline:
                time.sleep(0.1)
            delivered = acknowledged + time.perf_counter() - waiting
            if _count_lines(sink.output) < events:
                delivered = None
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    latencies.sort()
    result: dict[str, Any] = {
        "acknowledged_events_per_s": round(events / acknowledged),
        "seconds_to_acknowledge_all": round(acknowledged, 2),
        "batch_latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "batch_latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "batch_latency_ms_max": round(latencies[-1] * 1000, 1),
    }
    if sink is not None:
        result["seconds_until_sink_has_all"] = round(delivered, 2) if delivered else None
        result["delivered_events_per_s"] = round(events / delivered) if delivered else None
        result["delivered_to_sink"] = _count_lines(sink.output)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run both configurations side by side and write the ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit_forwarding")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    doc: dict[str, Any] = provenance(
        f".venv/bin/python -m bench.audit_forwarding --events {args.events} "
        f"--repeats {args.repeats}"
    )
    work = WORK / "audit_forwarding"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "audit.log"
    doc["events"] = write_log(log, args.events)
    bodies = batch_bodies(log.read_bytes().splitlines())

    def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return max(runs, key=lambda r: r["acknowledged_events_per_s"])

    alone_runs, forwarding_runs = [], []
    for _ in range(args.repeats):  # interleaved, so a load change hits both alike
        alone_runs.append(run_once(bodies, args.events, work / "run", sink=None))
        with Rsyslog(work / "rsyslog") as sink:
            sink.output.unlink(missing_ok=True)
            forwarding_runs.append(run_once(bodies, args.events, work / "run", sink=sink))
        shutil.rmtree(work / "rsyslog", ignore_errors=True)
    alone, forwarding = best(alone_runs), best(forwarding_runs)
    doc["alone"] = alone
    doc["forwarding_to_rsyslog"] = forwarding
    doc["ratios"] = {
        "acknowledged_events_per_s_forwarding_over_alone": round(
            forwarding["acknowledged_events_per_s"] / alone["acknowledged_events_per_s"], 3
        ),
        "batch_p95_latency_forwarding_over_alone": round(
            forwarding["batch_latency_ms_p95"] / alone["batch_latency_ms_p95"], 3
        ),
    }
    doc["all_runs"] = {"alone": alone_runs, "forwarding_to_rsyslog": forwarding_runs}
    return write_results(doc, OUTPUT, work)


if __name__ == "__main__":
    raise SystemExit(main())
