"""``kustos audit serve`` killed with SIGKILL mid-stream loses no acknowledged event.

Aspects: a client posts EventList batches back to back, as the API server's webhook
backend does, and records every event whose batch was answered 200; the receiver process
is killed with SIGKILL while batches are in flight; every acknowledged event is in the
archive afterwards (counted); of the batch that was cut off (never acknowledged) the
archive holds all, none or a leading part (the kernel may end a write early when SIGKILL
arrives; the torn last line is cut on restart); the restarted receiver recovers the tail,
takes the retried batch and stores each of its events once, and the archive verifies; with ``--fsync none`` the same holds (the page cache survives the
process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from kustos.audit.archive import Archive
from kustos.audit.verifying import verify
from kustos.testing.controlplane import free_ports
from kustos.testing.processes import stop_session, wait_for_port

pytestmark = pytest.mark.integration

BATCH = 50


def _event(n: int) -> dict[str, object]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"5b0c0f4e-0000-4000-8000-{n:012d}",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/payments/secrets/db-creds",
        "verb": "get",
        "user": {
            "username": "system:serviceaccount:payments:app",
            "groups": ["system:serviceaccounts"],
        },
        "sourceIPs": ["10.244.0.12"],
        "userAgent": "app/1.0",
        "objectRef": {
            "resource": "secrets",
            "namespace": "payments",
            "name": "db-creds",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z",
        "stageTimestamp": "2026-12-01T10:00:00.001000Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding",
        },
    }


def _body(first: int) -> bytes:
    items = [_event(n) for n in range(first, first + BATCH)]
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})


def _start(archive: Path, port: int, log: Path, fsync: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(archive),
        "--listen", f"127.0.0.1:{port}", "--fsync", fsync,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port(proc, port, name="kustos audit serve", log=log)
    return proc


@pytest.mark.parametrize("fsync", ["always", "none"])
def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, fsync: str) -> None:
    archive, log = tmp_path / "archive", tmp_path / "receiver.log"
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}/audit"
    proc = _start(archive, port, log, fsync)
    acknowledged: list[int] = []
    unanswered: list[int] = []
    refused: list[int] = []
    stop = threading.Event()

    def sender() -> None:
        first = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(url, content=_body(first))
                except httpx.HTTPError:
                    unanswered.append(first)
                    return
                if response.status_code != 200:
                    refused.append(response.status_code)
                    return
                acknowledged.append(first)
                first += BATCH

    thread = threading.Thread(target=sender)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 20 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: a batch is usually in flight
        proc.wait(timeout=10)
        thread.join(timeout=30)
    finally:
        stop.set()
        stop_session(proc)
    assert refused == []
    assert len(acknowledged) >= 20

    stored = {str(e.event["auditID"]) for e in Archive(archive).read()}
    expected = {str(_event(n)["auditID"]) for f in acknowledged for n in range(f, f + BATCH)}
    assert expected <= stored  # every acknowledged event survived the kill
    # The batch in flight, never acknowledged: all of it, none, or its first events.
    in_flight = acknowledged[-1] + BATCH
    extra = stored - expected
    leading = [str(_event(n)["auditID"]) for n in range(in_flight, in_flight + len(extra))]
    assert extra == set(leading)

    # The restarted receiver takes the retried batch once and the archive verifies.
    proc = _start(archive, port, log, fsync)
    try:
        for first in unanswered:
            assert httpx.post(url, content=_body(first), timeout=10).status_code == 200
    finally:
        stop_session(proc)
    ids = [str(e.event["auditID"]) for e in Archive(archive).read()]
    assert len(ids) == len(set(ids))
    assert len(ids) == len(expected) + BATCH * len(unanswered)
    result = verify(archive)
    assert result.ok, result.problems
