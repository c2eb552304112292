"""Rotation operator benchmark: ``python -m bench.rotation [--managed 10000] [options]``.

One fresh local control plane, one run, in this order (``bench/README.md`` has the why):

1. **initial**: the CRD, one *probe* ManagedSecret with a consumer Deployment, and the
   first K of N ManagedSecrets (``token`` + ``uuid`` generators, ``every: 720h``,
   ``rollout: none``); ``kustos operator run`` (operator A) makes version 1 of each: the
   time for K+1 first rotations, requests per rotation, A's peak RSS.
2. **clone**: ManagedSecrets K..N-1 are created with a copy of the state A left on
   ``ms-00000`` (status, version Secret, live Secret; new names, owner uids, values and
   content hashes), because the operator makes about 5 first versions a second on this
   machine: N = 10,000 would take half an hour.
3. **first start**: operator B starts on all N+1; after it watches them all, 30 s more:
   new version Secrets and workload restarts (both must be 0, which also proves the
   copies are "nothing due"). Peak RSS with N watched.
4. **idle**: ``apiserver_request_total`` before and after an idle window with B running.
5. **control**: the same window with no operator: the control plane's own background.
6. **restart**: operator C starts on the state B saw; as in 3.
7. **due → rollout started**: the probe's ``status.lastRotation`` patched into the past;
   time until its Deployment's pod template carries ``kustos.io/restart-reason`` for the
   new version. Several samples, with C.
8. **reload**: Kustos (``--reload-window 0``) against ``reload-loop`` (a client-go informer
   loop that restarts like Reloader, ``tools/peers/reloadloop``), each running alone, in
   alternating order over rounds: time from a Secret change to the restart written, and
   the requests each spent; then a burst of 5 quick changes (Kustos with its default
   5 s window, and with 0): restarts written.

Attribution. ``apiserver_request_total`` has no user label, so its deltas mix every client.
The harness counts its own requests and subtracts them; the control interval gives the
control plane's background. For exact numbers the run also mints one client certificate
per measured tool (``bench-kustos``, ``bench-reload-loop``, both in ``system:masters``) and
an audit policy that logs only those two users at ``Metadata`` level: the audit log tells
which requests each tool sent; the harness's own requests (as the admin) are not logged.

Everything binds to loopback; the control plane, the tools and ``bench/.work/rotation-*``
are removed on the way out, on failure and on SIGTERM too (``--keep-work`` keeps the
state).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx
import orjson
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families

from bench.kms import BenchError, admin_tls, pool
from bench.running import (
    PEERS,
    REPO,
    RESULTS,
    WORK,
    kustos_command,
    kustos_version,
    provenance,
    target,
    tool_version,
)
from kustos import conventions as c
from kustos.rotation.versions import content_hash
from kustos.testing.binaries import require_binaries
from kustos.testing.controlplane import LOOPBACK, ControlPlane, ControlPlaneSettings, free_ports

NS: Final = "bench-ms"
RELOAD_NS: Final = "bench-reload"
KUSTOS_USER: Final = "bench-kustos"
PEER_USER: Final = "bench-reload-loop"
PROBE: Final = "probe"  # the ManagedSecret made due in step 6
PROBE_LIVE: Final = "probe-db"
PROBE_APP: Final = "probe-app"
PLAIN_CONFIG: Final = "plain-config"  # an unmanaged Secret ...
PLAIN_APP: Final = "plain-app"  # ... that this Deployment reloads on (Reloader's annotation)
EVERY: Final = "720h"
#: Resources the operator or the peer reads or writes; the rest is other components' work.
TRACKED: Final = frozenset(
    {"managedsecrets", "secrets", "deployments", "statefulsets", "daemonsets", "events", "leases"}
)
#: Audit verbs as ``apiserver_request_total`` spells them.
VERBS: Final = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETECOLLECTION",
}
ADMIN_USER: Final = "kustos-admin"  # the harness (kustos.testing.controlplane's admin)
AUDITED_RESOURCES: Final = [
    {"group": "", "resources": ["secrets", "events"]},
    {"group": "events.k8s.io", "resources": ["events"]},
    {"group": "coordination.k8s.io", "resources": ["leases"]},
    {"group": "kustos.io", "resources": ["managedsecrets", "managedsecrets/status"]},
    {
        "group": "apps",
        "resources": [
            f"{kind}{sub}"
            for kind in ("deployments", "statefulsets", "daemonsets")
            for sub in ("", "/status")
        ],
    },
]
CRD: Final = REPO / "deploy" / "rotation" / "crd-managedsecret.yaml"
PEER_BINARY: Final = PEERS / "bin" / "reload-loop"
DEFAULT_OUTPUT: Final = RESULTS / "rotation.json"
RSS_TARGET_MB: Final = 500.0
MERGE: Final = {"Content-Type": "application/merge-patch+json"}
JSON: Final = {"Content-Type": "application/json"}
USER_AGENT: Final = "kustos-bench/rotation"

RequestKey = tuple[str, str, str]  # resource, subresource, verb


def ms_path(namespace: str, name: str = "") -> str:
    """The API path of ManagedSecrets in *namespace* (or of one)."""
    return f"/apis/kustos.io/v1alpha1/namespaces/{namespace}/managedsecrets" + (
        f"/{name}" if name else ""
    )


def secrets_path(namespace: str, name: str = "") -> str:
    """The API path of Secrets in *namespace* (or of one)."""
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


def deployments_path(namespace: str, name: str = "") -> str:
    """The API path of Deployments in *namespace* (or of one)."""
    return f"/apis/apps/v1/namespaces/{namespace}/deployments" + (f"/{name}" if name else "")


# --------------------------------------------------------------------------- objects
def managed_secret(name: str, secret: str, *, rollout: Mapping[str, Any]) -> dict[str, Any]:
    """A ManagedSecret with cheap generators that rotates every 720 h."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": "ManagedSecret",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "secretName": secret,
            "data": {"token": {"token": {"bytes": 16}}, "id": {"uuid": {}}},
            "rotation": {"every": EVERY},
            "rollout": dict(rollout),
        },
    }


def opaque_secret(namespace: str, name: str) -> dict[str, Any]:
    """An unmanaged Secret with one random value."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"v": _random_b64()},
    }


def deployment(
    namespace: str,
    name: str,
    *,
    reload_on: str | None = None,
    uses: str | None = None,
) -> dict[str, Any]:
    """One replica on a kwok node; optionally annotated for reloads or using a Secret."""
    container: dict[str, Any] = {"name": "app", "image": "registry.example.invalid/app:1"}
    if uses:
        ref = {"name": uses, "key": "token", "optional": True}
        container["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": ref}}]
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if reload_on:
        metadata["annotations"] = {c.ANNOTATION_RELOADER_SECRETS: reload_on}
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def _random_b64() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()


def _generation_above(generation: int) -> Callable[[dict[str, Any]], bool]:
    """A watch predicate: the object's spec changed after *generation*."""
    return lambda obj: int((obj.get("metadata") or {}).get("generation", 0)) > generation


def _restart_reason_is(tag: str) -> Callable[[dict[str, Any]], bool]:
    """A watch predicate: the pod template carries ``kustos.io/restart-reason: tag``."""
    return lambda obj: _template_annotations(obj).get(c.ANNOTATION_RESTART_REASON) == tag


def _template_annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return dict(meta.get("annotations") or {})


def _rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- identities
def audit_policy(path: Path) -> Path:
    """Log the measured tools' requests, and other components' on the same resources."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived"],
                "rules": [
                    {"level": "Metadata", "users": [KUSTOS_USER, PEER_USER]},
                    # The harness counts its own requests.
                    {"level": "None", "users": [ADMIN_USER]},
                    # Everyone else's requests on the same resources: whose background?
                    {
                        "level": "Metadata",
                        "verbs": sorted(set(VERBS) - {"watch"}),
                        "resources": AUDITED_RESOURCES,
                    },
                    {"level": "None"},
                ],
            }
        )
    )
    return path


def mint_kubeconfig(plane: ControlPlane, user: str, directory: Path) -> Path:
    """A kubeconfig for *user* in ``system:masters``, signed by the plane's CA."""
    ca_cert = x509.load_pem_x509_certificate(plane.pki.ca.cert.read_bytes())
    ca_key = load_pem_private_key(plane.pki.ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BenchError("the control plane's CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, user),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{user}.crt", directory / f"{user}.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_path.chmod(0o600)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "bench",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki.ca.cert),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(cert_path), "client-key": str(key_path)},
            }
        ],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": user}}],
        "current-context": "bench",
    }
    path = directory / f"{user}.kubeconfig"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- processes
def _proc_status(pid: int, field_name: str) -> float | None:
    """A ``/proc/PID/status`` size field (``VmRSS``, ``VmHWM``) in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of *pid* so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Sampler:
    """Resident memory of one process, sampled in a thread; ``VmHWM`` is the true peak.

    ``VmHWM`` belongs to the address space, which ``execve`` replaces, so unlike
    ``ru_maxrss`` it does not inherit the harness's own size (``bench/running.py``).
    """

    pid: int
    every: float = 0.5
    samples: list[tuple[float, float]] = field(default_factory=list)
    hwm_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Sample until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        rss = _proc_status(self.pid, "VmRSS")
        hwm = _proc_status(self.pid, "VmHWM")
        if rss is not None:
            self.samples.append((time.monotonic(), rss))
        if hwm is not None:
            self.hwm_mb = max(self.hwm_mb, hwm)

    def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        """RSS samples (MB) taken between two ``time.monotonic()`` readings."""
        return [rss for at, rss in self.samples if start <= at <= end]


@dataclass(slots=True)
class Service:
    """A tool under test running as a subprocess in its own session."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None
    sampler: Sampler
    started: float

    def tail(self) -> str:
        """The last non-empty line of its log."""
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return (lines[-1] if lines else "empty log")[:256]

    def alive(self) -> bool:
        """Tell whether it still runs."""
        return self.proc.poll() is None


def start_service(name: str, argv: list[str], log: Path, port: int | None = None) -> Service:
    """Start *argv* in its own session, output to *log*, memory sampled."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
    sampler = Sampler(proc.pid)
    sampler.start()
    return Service(name, argv, proc, log, port, sampler, time.monotonic())


def stop_service(service: Service) -> dict[str, Any]:
    """SIGTERM its session, 20 s of grace, then SIGKILL; how long it took."""
    began = time.monotonic()
    service.sampler.sample()
    killed = False
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        if service.proc.poll() is not None:
            break
        killed = sig == signal.SIGKILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(timeout=grace)
    service.sampler.stop()
    return {
        "stop_seconds": round(time.monotonic() - began, 2),
        "exit_code": service.proc.returncode,
        "killed": killed,
        "peak_rss_mb": round(service.sampler.hwm_mb, 1),
    }


# --------------------------------------------------------------------------- requests
def classify(method: str, url: httpx.URL) -> RequestKey | None:
    """The ``apiserver_request_total`` labels a request of ours lands on."""
    parts = url.path.strip("/").split("/")
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return None
    verb = method.upper()
    if verb == "GET":
        watch = url.params.get("watch") in ("1", "true")
        verb = "WATCH" if watch else ("GET" if len(rest) > 1 else "LIST")
    return rest[0], rest[2] if len(rest) > 2 else "", verb


def parse_request_totals(text: str) -> dict[RequestKey, float]:
    """Sum ``apiserver_request_total`` over codes, groups and versions."""
    lines = [ln for ln in text.splitlines() if ln.startswith("apiserver_request_total{")]
    totals: dict[RequestKey, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            labels = sample.labels
            key = (labels.get("resource", ""), labels.get("subresource", ""), labels["verb"])
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def audit_by_user(path: Path, start: int, end: int) -> dict[str, dict[RequestKey, float]]:
    """Requests per user between two offsets of the audit log.

    A watch is counted once, when its response starts; anything else when it completes.
    A request answered with an error is counted under its verb and code (``WATCH 404``).
    """
    if end <= start:
        return {}
    with path.open("rb") as log:
        log.seek(start)
        chunk = log.read(end - start)
    users: dict[str, dict[RequestKey, float]] = {}
    for line in chunk.splitlines():
        if not line.strip():
            continue
        event = orjson.loads(line)
        verb = VERBS.get(str(event.get("verb")), str(event.get("verb")).upper())
        stage = event.get("stage")
        if (verb == "WATCH") != (stage == "ResponseStarted") or stage == "RequestReceived":
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource") or str(event.get("requestURI", "")).split("?")[0]
        code = int((event.get("responseStatus") or {}).get("code") or 0)
        if code >= 400:
            verb = f"{verb} {code}"
        key = (str(resource), str(ref.get("subresource") or ""), verb)
        counts = users.setdefault(str((event.get("user") or {}).get("username")), {})
        counts[key] = counts.get(key, 0.0) + 1
    return users


def nested(counts: Mapping[RequestKey, float], *, tracked_only: bool = True) -> dict[str, Any]:
    """``{"secrets": {"LIST": 1}, "managedsecrets/status": {"PATCH": 3}}``, zeros left out."""
    out: dict[str, dict[str, float]] = {}
    for (resource, sub, verb), n in sorted(counts.items()):
        if (tracked_only and resource not in TRACKED) or abs(n) < 1e-9:
            continue
        name = f"{resource}/{sub}" if sub else resource
        out.setdefault(name, {})[verb] = round(n, 2)
    return out


def non_watch(counts: Mapping[RequestKey, float], *, without: Iterable[str] = ()) -> float:
    """Tracked requests other than WATCH, leaving out the *without* resources."""
    skip = set(without)
    return round(
        sum(
            n
            for (resource, _, verb), n in counts.items()
            if resource in TRACKED and resource not in skip and not verb.startswith("WATCH")
        ),
        2,
    )


def failed(counts: Mapping[RequestKey, float]) -> float:
    """Requests answered with an error (audit keys such as ``WATCH 404``), any resource."""
    return sum(n for (_, _, verb), n in counts.items() if " " in verb)


def own_kinds(counts: Mapping[RequestKey, float]) -> dict[RequestKey, float]:
    """Counts without Events and ``*/status``, where the controller manager's rollout work
    (Deployment and ReplicaSet status, its own Events) lands in the same metric."""
    return {k: v for k, v in counts.items() if k[0] != "events" and k[1] != "status"}


def subtract(
    a: Mapping[RequestKey, float], b: Mapping[RequestKey, float], scale: float = 1.0
) -> dict[RequestKey, float]:
    """``a - scale * b`` key by key."""
    return {k: a.get(k, 0.0) - scale * b.get(k, 0.0) for k in {*a, *b}}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The API server's request counters, ours, and the audit log's length at one moment."""

    at: float
    totals: dict[RequestKey, float]
    own: dict[RequestKey, float]
    audit_offset: int


# --------------------------------------------------------------------------- the bench
@dataclass(slots=True)
class Bench:
    """Everything one run shares."""

    args: argparse.Namespace
    root: Path
    plane: ControlPlane
    api: httpx.AsyncClient
    local: httpx.AsyncClient
    own: Counter[RequestKey]
    kubeconfigs: dict[str, Path]
    audit_log: Path
    services: list[Service] = field(default_factory=list)

    # ------------------------------------------------------------------ API helpers
    async def call(
        self, method: str, path: str, body: Any = None, *, headers: Mapping[str, str] = JSON
    ) -> dict[str, Any]:
        """One request as the admin; the decoded answer, or ``BenchError``."""
        content = None if body is None else orjson.dumps(body)
        reply = await self.api.request(
            method, path, content=content, headers=dict(headers) if content else None
        )
        if reply.status_code >= 300:
            raise BenchError(f"{method} {path}: HTTP {reply.status_code}: {reply.text[:200]}")
        answer: dict[str, Any] = orjson.loads(reply.content) if reply.content else {}
        return answer

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST *body* to *path*."""
        return await self.call("POST", path, body)

    async def snapshot(self) -> Snapshot:
        """Read ``apiserver_request_total`` (GET /metrics as the admin)."""
        await asyncio.sleep(0.5)  # let in-flight requests finish and reach the audit log
        reply = await self.api.get("/metrics")
        if reply.status_code != 200:
            raise BenchError(f"GET /metrics: HTTP {reply.status_code}")
        return Snapshot(
            at=time.monotonic(),
            totals=parse_request_totals(reply.text),
            own=dict(self.own),
            audit_offset=self.audit_log.stat().st_size if self.audit_log.exists() else 0,
        )

    def window(self, before: Snapshot, after: Snapshot, *, user: str | None) -> dict[str, Any]:
        """What happened between two snapshots: metric deltas (ours removed), audit counts."""
        totals = subtract(subtract(after.totals, before.totals), subtract(after.own, before.own))
        out: dict[str, Any] = {
            "seconds": round(after.at - before.at, 1),
            "apiserver_request_total": nested(totals),
            "non_watch": non_watch(totals),
            "non_watch_without_leases": non_watch(totals, without=("leases",)),
            "_totals": totals,
        }
        by_user = audit_by_user(self.audit_log, before.audit_offset, after.audit_offset)
        out["others_audit"] = {
            who: nested(counts)
            for who, counts in sorted(by_user.items())
            if who not in (KUSTOS_USER, PEER_USER) and non_watch(counts)
        }
        if user is not None:
            audited = by_user.get(user, {})
            out["audit"] = {
                "user": user,
                "requests": nested(audited, tracked_only=False),
                "non_watch": non_watch(audited),
                "non_watch_without_leases": non_watch(audited, without=("leases",)),
                "failed": failed(audited),
                "_counts": audited,
            }
        return out

    async def quiet(self) -> dict[str, Any]:
        """Wait until no one sends non-watch requests on the tracked resources (leases aside).

        Creating thousands of objects leaves the controller manager work to drain; an idle
        window measured before it is done would count that work.
        """
        began = time.monotonic()
        steps: list[float] = []
        while True:
            before = await self.snapshot()
            await asyncio.sleep(self.args.quiet_step)
            after = await self.snapshot()
            seen = self.window(before, after, user=None)
            steps.append(seen["non_watch_without_leases"])
            waited = time.monotonic() - began
            if not steps[-1] or waited > self.args.quiet_timeout:
                return {
                    "waited_s": round(waited, 1),
                    "quiet": not steps[-1],
                    "non_watch_per_step": steps,
                    "step_s": self.args.quiet_step,
                    "others_in_last_step": seen["others_audit"],
                }

    async def wait_for(
        self,
        check: Callable[[], Awaitable[bool]],
        *,
        what: str,
        timeout: float,  # noqa: ASYNC109 - the message says what was awaited
        every: float = 0.25,
        service: Service | None = None,
    ) -> float:
        """Poll *check* until it holds; seconds taken. ``BenchError`` on timeout or exit."""
        began = time.monotonic()
        while not await check():
            if service is not None and not service.alive():
                raise BenchError(
                    f"{service.name} exited with {service.proc.returncode} while waiting for "
                    f"{what}: {service.tail()}"
                )
            if time.monotonic() - began > timeout:
                raise BenchError(f"{what}: not after {timeout:g} s")
            await asyncio.sleep(every)
        return time.monotonic() - began

    async def rolled_out(self, namespace: str, name: str) -> None:
        """Wait until a Deployment's pods run its current template."""

        async def done() -> bool:
            obj = await self.call("GET", deployments_path(namespace, name))
            status = obj.get("status") or {}
            want = (obj.get("spec") or {}).get("replicas", 1)
            return bool(
                status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == want
                and status.get("availableReplicas", 0) == want
                and status.get("replicas", 0) == want
            )

        await self.wait_for(done, what=f"rollout of {namespace}/{name}", timeout=120)

    @contextlib.asynccontextmanager
    async def watching(
        self, path: str, name: str, resource_version: str
    ) -> AsyncIterator[Callable[[Callable[[dict[str, Any]], bool], float], Awaitable[float]]]:
        """Open a watch on one object from *resource_version*; yield ``until(pred, timeout)``.

        The watch is open (response headers received) before the caller triggers the
        change, so an event's arrival time is when the API server sent it.
        ``until`` returns the ``perf_counter`` time of the first event whose object
        satisfies the predicate.
        """
        params = {
            "watch": "1",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": resource_version,
            "timeoutSeconds": "600",
        }
        async with self.api.stream(
            "GET", path, params=params, timeout=httpx.Timeout(30.0, read=None)
        ) as reply:
            if reply.status_code != 200:
                raise BenchError(f"watch {path}/{name}: HTTP {reply.status_code}")
            lines = reply.aiter_lines()

            async def until(predicate: Callable[[dict[str, Any]], bool], timeout: float) -> float:  # noqa: ASYNC109
                try:
                    async with asyncio.timeout(timeout):
                        async for line in lines:
                            if not line.strip():
                                continue
                            event = orjson.loads(line)
                            if event.get("type") == "ERROR":
                                raise BenchError(f"watch {path}/{name}: {line[:200]}")
                            if predicate(event.get("object") or {}):
                                return time.perf_counter()
                except TimeoutError:
                    raise BenchError(f"watch {path}/{name}: nothing after {timeout:g} s") from None
                raise BenchError(f"watch {path}/{name} ended")

            yield until

    # ------------------------------------------------------------------ tools
    def start_operator(
        self,
        name: str,
        kubeconfig: Path,
        namespace: str,
        *,
        leader_elect: bool,
        reload_window: float | None = None,
    ) -> Service:
        """``kustos operator run`` as a subprocess, listening on a free loopback port."""
        exe = kustos_command()
        if exe is None:
            raise BenchError("kustos is not installed in this environment")
        port = free_ports(1)[0]
        argv = [
            exe, "operator", "run", "-n", namespace, "--kubeconfig", str(kubeconfig),
            "--listen", f"{LOOPBACK}:{port}",
        ]  # fmt: skip
        if not leader_elect:
            argv.append("--no-leader-elect")
        if reload_window is not None:
            argv += ["--reload-window", f"{reload_window:g}"]
        service = start_service(name, argv, self.root / f"{name}.log", port)
        self.services.append(service)
        return service

    def start_peer(self, name: str) -> Service:
        """``reload-loop`` as a subprocess, as ``bench-reload-loop``."""
        if not PEER_BINARY.exists():
            raise BenchError(f"{PEER_BINARY} missing: run tools/peers/install.sh")
        argv = [
            str(PEER_BINARY),
            "-kubeconfig",
            str(self.kubeconfigs[PEER_USER]),
            "-namespace",
            RELOAD_NS,
        ]
        service = start_service(name, argv, self.root / f"{name}.log")
        self.services.append(service)
        return service

    def stop(self, service: Service) -> dict[str, Any]:
        """Stop one tool started by this run."""
        if service in self.services:
            self.services.remove(service)
        return stop_service(service)

    async def operator_metrics(self, service: Service) -> dict[str, float]:
        """The operator's own counters (rotations, failures, watched ManagedSecrets)."""
        reply = await self.local.get(f"http://{LOOPBACK}:{service.port}/metrics")
        wanted = (
            "kustos_rotations_total",
            "kustos_rotation_failures_total",
            "kustos_rollbacks_total",
            "kustos_managed_secrets ",
        )
        out: dict[str, float] = {}
        for line in reply.text.splitlines():
            if line.startswith(wanted):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def metrics_when_up(self, service: Service) -> dict[str, float] | None:
        """The operator's counters, or ``None`` while it is not listening yet."""
        try:
            return await self.operator_metrics(service)
        except httpx.HTTPError:
            return None

    def version_keys(self, namespace: str) -> set[str]:
        """Names of version Secrets (``…-vN``) in *namespace*, read from etcd, not the API."""
        start = f"/registry/secrets/{namespace}/".encode()
        end = start[:-1] + bytes([start[-1] + 1])
        reply = httpx.post(
            f"{self.plane.etcd_endpoint}/v3/kv/range",
            json={
                "key": base64.b64encode(start).decode(),
                "range_end": base64.b64encode(end).decode(),
                "keys_only": True,
            },
            timeout=60.0,
        )
        reply.raise_for_status()
        names = (
            base64.b64decode(kv["key"]).decode().rsplit("/", 1)[-1]
            for kv in reply.json().get("kvs", [])
        )
        return {n for n in names if n.rpartition("-v")[2].isdigit() and "-v" in n}

    async def workload_state(self, namespace: str) -> dict[str, tuple[int, str]]:
        """Generation and restart annotation of every Deployment in *namespace*."""
        listed = await self.call("GET", deployments_path(namespace))
        return {
            item["metadata"]["name"]: (
                int(item["metadata"].get("generation", 0)),
                _template_annotations(item).get(c.ANNOTATION_RESTARTED_AT, ""),
            )
            for item in listed.get("items", [])
        }


# --------------------------------------------------------------------------- 0. setup
async def install_crd(b: Bench) -> None:
    """Create the ManagedSecret CRD and wait until the API server serves it."""
    crd = yaml.safe_load(CRD.read_text())
    await b.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

    async def served() -> bool:
        got = await b.call(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"],
        )
        conditions = (got.get("status") or {}).get("conditions") or []
        if not any(x["type"] == "Established" and x["status"] == "True" for x in conditions):
            return False
        return (await b.api.get(ms_path("default"))).status_code == 200

    await b.wait_for(served, what="ManagedSecret CRD established", timeout=60)


async def setup(b: Bench) -> dict[str, Any]:
    """CRD, namespaces, the probe and plain workloads, and the first K ManagedSecrets."""
    n = operator_made(b.args)
    await install_crd(b)
    for namespace in (NS, RELOAD_NS):
        await b.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
    await b.wait_for(
        lambda: _sa_exists(b), what="default ServiceAccounts (namespaces usable)", timeout=60
    )
    await b.create(secrets_path(NS), opaque_secret(NS, PLAIN_CONFIG))
    await b.create(deployments_path(NS), deployment(NS, PLAIN_APP, reload_on=PLAIN_CONFIG))
    await b.create(deployments_path(NS), deployment(NS, PROBE_APP, uses=PROBE_LIVE))
    await b.create(
        ms_path(NS),
        managed_secret(PROBE, PROBE_LIVE, rollout={"strategy": "auto", "timeout": "2m"}),
    )
    bodies = [
        orjson.dumps(managed_secret(f"ms-{i:05d}", f"ms-{i:05d}", rollout={"strategy": "none"}))
        for i in range(n)
    ]

    async def post(i: int) -> None:
        reply = await b.api.post(ms_path(NS), content=bodies[i], headers=JSON)
        if reply.status_code != 201:
            raise BenchError(f"create ms-{i:05d}: HTTP {reply.status_code}")

    created = await pool(range(n), post, workers=8, seconds=b.args.create_seconds)
    created.pop("done")
    if created["ok"] != n:
        raise BenchError(f"only {created['ok']} of {n} ManagedSecrets created")
    await b.rolled_out(NS, PLAIN_APP)
    await b.rolled_out(NS, PROBE_APP)
    return {"managed_secrets": n + 1, "create": created}


def operator_made(args: argparse.Namespace) -> int:
    """How many bulk ManagedSecrets operator A makes the first version of."""
    return int(min(args.operator_made, args.managed))


async def _sa_exists(b: Bench) -> bool:
    replies = [
        await b.api.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
        for ns in (NS, RELOAD_NS)
    ]
    return all(r.status_code == 200 for r in replies)


# --------------------------------------------------------------------------- 1-3. initial, idle
async def initial(b: Bench) -> tuple[Service, dict[str, Any]]:
    """Operator A makes version 1 of the first K ManagedSecrets and the probe; time it."""
    expected = operator_made(b.args) + 1
    before = await b.snapshot()
    a = b.start_operator("operator-a", b.kubeconfigs[KUSTOS_USER], NS, leader_elect=True)
    progress: list[list[float]] = []
    rotated = 0.0
    while rotated < expected:
        await asyncio.sleep(b.args.poll_seconds)
        if not a.alive():
            raise BenchError(f"operator A exited with {a.proc.returncode}: {a.tail()}")
        elapsed = time.monotonic() - a.started
        metrics = await b.metrics_when_up(a)
        rotated = (metrics or {}).get('kustos_rotations_total{outcome="rotated"}', 0.0)
        progress.append([round(elapsed, 1), rotated])
        print(f"bench.rotation: initial rotations {rotated:.0f}/{expected} after {elapsed:.0f} s")
        if elapsed > b.args.initial_timeout:
            raise BenchError(
                f"only {rotated:.0f} of {expected} initial rotations after {elapsed:.0f} s"
            )
    seconds = time.monotonic() - a.started
    cpu = cpu_seconds(a.proc.pid)
    after = await b.snapshot()
    versions = b.version_keys(NS)
    metrics = await b.operator_metrics(a)
    spent = b.window(before, after, user=KUSTOS_USER)
    audited = spent["audit"]["_counts"]
    return a, {
        "rotations": expected,
        "seconds": round(seconds, 1),
        "per_s": round(expected / seconds, 1),
        "operator_cpu_seconds": round(cpu, 1) if cpu is not None else None,
        "version_secrets_v1": sum(1 for v in versions if v.endswith("-v1")),
        "operator_metrics": metrics,
        "peak_rss_mb": round(a.sampler.hwm_mb, 1),
        "requests_per_rotation_audit": {
            "non_watch": round(non_watch(audited) / expected, 2),
            "by_resource": nested(
                {k: v / expected for k, v in audited.items()}, tracked_only=False
            ),
        },
        "progress": progress,
        "command": shlex.join(a.argv),
    }


def _retarget(value: Any, swaps: Mapping[str, str]) -> Any:
    """A deep copy of *value* with every string equal to a key of *swaps* replaced."""
    if isinstance(value, dict):
        return {k: _retarget(v, swaps) for k, v in value.items()}
    if isinstance(value, list):
        return [_retarget(v, swaps) for v in value]
    if isinstance(value, str):
        return swaps.get(value, value)
    return value


def _as_new(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object read from the API, without the fields the API server sets."""
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")
    }
    return {**obj, "metadata": meta}


async def clone_state(b: Bench) -> dict[str, Any]:
    """ManagedSecrets K..N-1 with the state operator A left on ``ms-00000``, fresh values.

    For each: the ManagedSecret (POST), its status (the status subresource), the
    immutable version Secret ``-v1`` owned by it and the live Secret, all copied from
    what the operator wrote for ``ms-00000`` with names, owner uid, values and content
    hashes replaced (``content_hash`` is the engine's own function). Operator B then
    proves the copies are "nothing due": it must make no version.
    """
    first, n = operator_made(b.args), b.args.managed
    model = "ms-00000"
    status = (await b.call("GET", ms_path(NS, model)))["status"]
    version = _as_new(await b.call("GET", secrets_path(NS, f"{model}-v1")))
    live = _as_new(await b.call("GET", secrets_path(NS, model)))
    old_hash = version["metadata"]["annotations"][c.ANNOTATION_CONTENT_HASH]
    old_uid = version["metadata"]["ownerReferences"][0]["uid"]
    for obj in (version, live):
        obj["data"] = {}

    made: dict[int, tuple[dict[str, str], dict[str, str]]] = {}

    async def owner(i: int) -> None:
        name = f"ms-{i:05d}"
        body = orjson.dumps(managed_secret(name, name, rollout={"strategy": "none"}))
        reply = await b.api.post(ms_path(NS), content=body, headers=JSON)
        if reply.status_code != 201:
            raise BenchError(f"create {name}: HTTP {reply.status_code}")
        uid = orjson.loads(reply.content)["metadata"]["uid"]
        values = {"token": secrets.token_hex(16).encode(), "id": str(uuid.uuid4()).encode()}
        swaps = {
            model: name,
            f"{model}-v1": f"{name}-v1",
            old_hash: content_hash(values),
            old_uid: uid,
        }
        data = {k: base64.b64encode(v).decode() for k, v in values.items()}
        await b.call("PATCH", ms_path(NS, name) + "/status", {"status": _retarget(status, swaps)},
                     headers=MERGE)  # fmt: skip
        made[i] = (swaps, data)

    async def owned(i: int) -> None:
        swaps, data = made[i]
        for template in (version, live):
            await b.create(secrets_path(NS), {**_retarget(template, swaps), "data": data})

    began = time.monotonic()
    owners = await pool(range(first, n), owner, workers=8, seconds=b.args.create_seconds)
    owners.pop("done")
    # The garbage collector must see every owner before its dependents appear: a dependent
    # seen first makes it GET the owner, and a trial that wrote both at once still saw
    # about 10 such GETs a second in the idle window measured next.
    await asyncio.sleep(b.args.settle_seconds)
    dependents = await pool(sorted(made), owned, workers=8, seconds=b.args.create_seconds)
    dependents.pop("done")
    if dependents["ok"] != n - first:
        why = owners["first_error"] or dependents["first_error"]
        raise BenchError(f"only {dependents['ok']} of {n - first} copies made: {why}")
    return {
        "copies": n - first,
        "seconds": round(time.monotonic() - began, 1),
        "requests_per_copy": 4,
        "owners": owners,
        "dependents": dependents,
        "model": model,
    }


async def idle_window(b: Bench, service: Service | None, *, user: str | None) -> dict[str, Any]:
    """Count requests over ``--idle-seconds`` with nothing due; RSS and CPU of *service*."""
    before = await b.snapshot()
    cpu0 = cpu_seconds(service.proc.pid) if service else None
    await asyncio.sleep(b.args.idle_seconds)
    cpu1 = cpu_seconds(service.proc.pid) if service else None
    after = await b.snapshot()
    out = b.window(before, after, user=user)
    if service is not None:
        rss = service.sampler.between(before.at, after.at)
        out["rss_mb"] = {
            "median": round(statistics.median(rss), 1) if rss else None,
            "max": round(max(rss), 1) if rss else None,
            "peak_since_start": round(service.sampler.hwm_mb, 1),
        }
        if cpu0 is not None and cpu1 is not None:
            out["cpu_seconds"] = round(cpu1 - cpu0, 2)
        if not service.alive():
            out["error"] = f"{service.name} exited during the window: {service.tail()}"
    return out


def net_of(window: Mapping[str, Any], control: Mapping[str, Any]) -> dict[str, Any]:
    """A window's metric deltas minus the control window's, scaled to the same length."""
    scale = window["seconds"] / control["seconds"] if control["seconds"] else 1.0
    net = subtract(window["_totals"], control["_totals"], scale)
    return {
        "requests": nested({k: round(v, 1) for k, v in net.items()}),
        "non_watch": non_watch(net),
        "non_watch_without_leases": non_watch(net, without=("leases",)),
    }


# --------------------------------------------------------------------------- 4. restart
async def start_checked(b: Bench, name: str) -> tuple[Service, dict[str, Any]]:
    """Start an operator on N ManagedSecrets with nothing due; nothing may rotate or restart."""
    expected = b.args.managed + 1
    versions_before = b.version_keys(NS)
    workloads_before = await b.workload_state(NS)
    before = await b.snapshot()
    op = b.start_operator(name, b.kubeconfigs[KUSTOS_USER], NS, leader_elect=True)

    async def watching_all() -> bool:
        metrics = await b.metrics_when_up(op) or {}
        return bool(metrics.get("kustos_managed_secrets", 0.0) >= expected)

    ready = await b.wait_for(
        watching_all, what=f"{name} watching every ManagedSecret", timeout=600, every=1.0,
        service=op,
    )  # fmt: skip
    await asyncio.sleep(b.args.restart_wait)
    after = await b.snapshot()
    metrics = await b.operator_metrics(op)
    versions_after = b.version_keys(NS)
    workloads_after = await b.workload_state(NS)
    restarted = sorted(
        name
        for name, state in workloads_after.items()
        if workloads_before.get(name) not in (None, state)
    )
    rotations = sum(v for k, v in metrics.items() if k.startswith("kustos_rotations_total"))
    startup = b.window(before, after, user=KUSTOS_USER)
    return op, {
        "seconds_until_all_watched": round(ready, 1),
        "waited_after_ready_seconds": b.args.restart_wait,
        "new_version_secrets": len(versions_after - versions_before),
        "version_secrets": len(versions_after),
        "workload_restarts": len(restarted),
        "restarted": restarted,
        "rotations_by_new_operator": rotations,
        "operator_metrics": metrics,
        "peak_rss_mb_at_start": round(op.sampler.hwm_mb, 1),
        "startup_requests": startup["audit"]["requests"],
        "startup_failed_requests": startup["audit"]["failed"],
        "command": shlex.join(op.argv),
    }


# --------------------------------------------------------------------------- 6. due → rollout
async def due_samples(b: Bench, op: Service) -> dict[str, Any]:
    """Backdate the probe's last rotation; time until its consumer's restart is written."""
    before = await b.snapshot()
    samples: list[dict[str, Any]] = []
    for _ in range(b.args.due_samples):
        status = (await b.call("GET", ms_path(NS, PROBE))).get("status") or {}
        version = int(status.get("currentVersion") or 0)
        tag = f"{PROBE_LIVE}-v{version + 1}"
        app = await b.call("GET", deployments_path(NS, PROBE_APP))
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=721)
        async with b.watching(
            deployments_path(NS), PROBE_APP, app["metadata"]["resourceVersion"]
        ) as until:
            began = time.perf_counter()
            await b.call(
                "PATCH",
                ms_path(NS, PROBE) + "/status",
                {"status": {"lastRotation": _rfc3339(past)}},
                headers=MERGE,
            )
            patched = time.perf_counter()
            restarted = await until(_restart_reason_is(tag), 120.0)

        async def finished(want: int = version + 1) -> bool:
            got = (await b.call("GET", ms_path(NS, PROBE))).get("status") or {}
            return got.get("currentVersion") == want and not got.get("rotation")

        await b.wait_for(finished, what=f"{PROBE} v{version + 1} finished", timeout=180, service=op)
        samples.append(
            {
                "version": version + 1,
                "due_to_restart_written_s": round(restarted - began, 3),
                "due_to_rotation_finished_s": round(time.perf_counter() - began, 3),
                "status_patch_s": round(patched - began, 3),
            }
        )
        await asyncio.sleep(1.0)
    after = await b.snapshot()
    spent = b.window(before, after, user=KUSTOS_USER)
    count = len(samples)
    return {
        "samples": samples,
        "median_due_to_restart_written_s": _median(
            [s["due_to_restart_written_s"] for s in samples]
        ),
        "median_due_to_rotation_finished_s": _median(
            [s["due_to_rotation_finished_s"] for s in samples]
        ),
        "requests_per_rotation_audit": nested(
            {k: v / count for k, v in spent["audit"]["_counts"].items()}, tracked_only=False
        ),
    }


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


# --------------------------------------------------------------------------- 7. reload
async def start_reloader(b: Bench, tool: str, app: str, *, window: float | None) -> Service:
    """Start Kustos or the peer on ``bench-reload``; return once it is ready to react."""
    if tool == "peer":
        peer = b.start_peer(f"reload-loop-{app}")

        async def said_ready() -> bool:
            return "ready" in peer.log.read_text(errors="replace").split()

        await b.wait_for(said_ready, what="reload-loop ready", timeout=60, service=peer)
        return peer
    op = b.start_operator(
        f"kustos-reload-{app}",
        b.kubeconfigs[KUSTOS_USER],
        RELOAD_NS,
        leader_elect=False,
        reload_window=window,
    )

    async def baseline() -> bool:
        obj = await b.call("GET", deployments_path(RELOAD_NS, app))
        annotations = obj["metadata"].get("annotations") or {}
        return c.ANNOTATION_SECRET_HASHES in annotations

    await b.wait_for(baseline, what="Kustos reload baseline recorded", timeout=60, service=op)
    return op


async def fresh_pair(b: Bench, name: str) -> str:
    """A new Secret and a Deployment reloading on it (Reloader's annotation); the app name."""
    app = f"{name}-app"
    await b.create(secrets_path(RELOAD_NS), opaque_secret(RELOAD_NS, name))
    await b.create(deployments_path(RELOAD_NS), deployment(RELOAD_NS, app, reload_on=name))
    await b.rolled_out(RELOAD_NS, app)
    return app


async def change_secret(b: Bench, name: str) -> None:
    """Give the Secret a new value (merge patch of its data)."""
    await b.call(
        "PATCH", secrets_path(RELOAD_NS, name), {"data": {"v": _random_b64()}}, headers=MERGE
    )


async def reload_latency(b: Bench, tool: str, name: str) -> dict[str, Any]:
    """One tool alone: time from each Secret change to the restart written; requests."""
    app = await fresh_pair(b, name)
    before_start = await b.snapshot()
    service = await start_reloader(b, tool, app, window=0.0)
    user = PEER_USER if tool == "peer" else KUSTOS_USER
    try:
        await asyncio.sleep(b.args.settle_seconds)
        ready = await b.snapshot()
        latencies: list[float] = []
        for _ in range(b.args.reload_samples):
            obj = await b.call("GET", deployments_path(RELOAD_NS, app))
            generation = int(obj["metadata"]["generation"])
            async with b.watching(
                deployments_path(RELOAD_NS), app, obj["metadata"]["resourceVersion"]
            ) as until:
                began = time.perf_counter()
                await change_secret(b, name)
                written = await until(_generation_above(generation), 60.0)
            latencies.append(round(written - began, 4))
            await asyncio.sleep(b.args.reload_gap)
        done = await b.snapshot()
    finally:
        stopped = b.stop(service)
    count = len(latencies)
    spent = b.window(ready, done, user=user)
    startup = b.window(before_start, ready, user=user)
    audited = spent["audit"]["_counts"]
    return {
        "latencies_s": latencies,
        "median_s": _median(latencies),
        "requests_per_change_audit": nested(
            {k: v / count for k, v in audited.items()}, tracked_only=False
        ),
        "non_watch_per_change_audit": round(non_watch(audited) / count, 2),
        "non_watch_per_change_audit_without_events": round(
            non_watch(audited, without=("events",)) / count, 2
        ),
        "non_watch_per_change_metrics": round(non_watch(own_kinds(spent["_totals"])) / count, 2),
        "metrics_per_change": nested({k: v / count for k, v in spent["_totals"].items()}),
        "startup_requests_audit": startup["audit"]["requests"],
        "peak_rss_mb": stopped["peak_rss_mb"],
        "command": shlex.join(service.argv),
    }


async def reload_burst(
    b: Bench, tool: str, name: str, *, window: float | None, changes: int = 5
) -> dict[str, Any]:
    """*changes* quick changes of one Secret: how many restarts the tool writes."""
    app = await fresh_pair(b, name)
    service = await start_reloader(b, tool, app, window=window)
    user = PEER_USER if tool == "peer" else KUSTOS_USER
    try:
        await asyncio.sleep(b.args.settle_seconds)
        before = await b.snapshot()
        generation = int((await b.call("GET", deployments_path(RELOAD_NS, app)))["metadata"][
            "generation"
        ])  # fmt: skip
        for _ in range(changes):
            await change_secret(b, name)
            await asyncio.sleep(b.args.burst_gap)
        await asyncio.sleep((window if window is not None else 5.0) + b.args.burst_wait)
        after_obj = await b.call("GET", deployments_path(RELOAD_NS, app))
        after = await b.snapshot()
    finally:
        b.stop(service)
    spent = b.window(before, after, user=user)
    return {
        "changes": changes,
        "gap_s": b.args.burst_gap,
        "reload_window_s": window if tool != "peer" else None,
        "restarts_written": int(after_obj["metadata"]["generation"]) - generation,
        "requests_audit": spent["audit"]["requests"],
        "non_watch_audit": spent["audit"]["non_watch"],
    }


async def reload_compare(b: Bench) -> dict[str, Any]:
    """Kustos and the peer alone in turn, alternating which goes first each round."""
    tools = ("kustos", "peer")
    rounds: list[dict[str, Any]] = []
    for number in range(b.args.reload_rounds):
        order = tools if number % 2 == 0 else tools[::-1]
        entry: dict[str, Any] = {"order": list(order)}
        for tool in order:
            try:
                entry[tool] = await reload_latency(b, tool, f"r{number}-{tool}")
            except Exception as exc:  # noqa: BLE001 - the other tool's numbers still count
                entry[tool] = {"error": _describe(exc)}
                traceback.print_exc()
        rounds.append(entry)
    burst: dict[str, Any] = {}
    for label, tool, window in (
        ("kustos_default_window", "kustos", None),
        ("kustos_window_0", "kustos", 0.0),
        ("peer", "peer", None),
    ):
        try:
            burst[label] = await reload_burst(b, tool, f"burst-{label.replace('_', '-')}",
                                              window=window)  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            burst[label] = {"error": _describe(exc)}
            traceback.print_exc()

    def pooled(tool: str, key: str) -> list[float]:
        return [x for r in rounds for x in (r.get(tool) or {}).get(key, [])]

    def per_change(tool: str, key: str) -> float | None:
        return _median([r[tool][key] for r in rounds if key in (r.get(tool) or {})])

    summary = {
        tool: {
            "median_latency_s": _median(pooled(tool, "latencies_s")),
            "samples": len(pooled(tool, "latencies_s")),
            "non_watch_per_change_audit": per_change(tool, "non_watch_per_change_audit"),
            "non_watch_per_change_audit_without_events": per_change(
                tool, "non_watch_per_change_audit_without_events"
            ),
            "non_watch_per_change_metrics": per_change(tool, "non_watch_per_change_metrics"),
        }
        for tool in tools
    }
    return {"rounds": rounds, "summary": summary, "burst": burst}


# --------------------------------------------------------------------------- run
def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:256]}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def at_most(name: str, value: float | None, limit: float) -> dict[str, Any]:
    """Like :func:`bench.running.target`, but the limit itself passes (``value <= limit``)."""
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "pass": None if value is None else value <= limit,
    }


def _strip_private(value: Any) -> Any:
    """Drop the ``_``-prefixed working fields (tuple-keyed counts) before writing JSON."""
    if isinstance(value, dict):
        return {k: _strip_private(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_strip_private(v) for v in value]
    return value


async def run_phases(b: Bench, doc: dict[str, Any]) -> None:
    """Every step in order; a failed step is recorded and the independent ones still run."""
    phases: dict[str, Any] = doc["phases"]
    step = ""

    def begin(name: str, what: str) -> None:
        nonlocal step
        step = name
        print(f"bench.rotation: {what} …", flush=True)

    begin("setup", "setup")
    began = time.monotonic()
    phases["setup"] = await setup(b)
    phases["setup"]["wall_seconds"] = round(time.monotonic() - began, 1)

    operator: Service | None = None
    try:
        begin("initial", f"operator A: first versions of {operator_made(b.args) + 1}")
        operator, phases["initial"] = await initial(b)
        phases["initial"]["stop"] = b.stop(operator)
        if b.args.managed > operator_made(b.args):
            begin("clone", f"copies up to {b.args.managed} ManagedSecrets")
            phases["clone"] = await clone_state(b)
        begin("first_start", f"operator B on {b.args.managed + 1} ManagedSecrets")
        operator, phases["first_start"] = await start_checked(b, "operator-b")
        begin("idle", "idle window, operator B")
        settled = await b.quiet()
        idle = await idle_window(b, operator, user=KUSTOS_USER)
        phases["idle"] = {"before": settled, **idle}
        phases["first_start"]["stop"] = b.stop(operator)
        begin("control", "control window, no operator")
        settled = await b.quiet()
        control = await idle_window(b, None, user=None)
        phases["control"] = {"before": settled, **control}
        phases["idle"]["net_of_control"] = net_of(idle, control)
        begin("restart", "restart: operator C")
        operator, phases["restart"] = await start_checked(b, "operator-c")
        begin("due_to_rollout", "due → rollout started")
        phases["due_to_rollout"] = await due_samples(b, operator)
        phases["restart"]["stop"] = b.stop(operator)
    except Exception as exc:  # noqa: BLE001 - recorded; the reload comparison still runs
        phases[step] = {**(phases.get(step) or {}), "error": _describe(exc)}
        traceback.print_exc()
        if operator is not None and operator.alive():
            b.stop(operator)

    begin("reload", "reload: Kustos vs reload-loop")
    try:
        phases["reload"] = await reload_compare(b)
    except Exception as exc:  # noqa: BLE001
        phases["reload"] = {"error": _describe(exc)}
        traceback.print_exc()


def summarize(doc: dict[str, Any]) -> None:
    """Ratios and targets from the phases."""
    p = doc["phases"]
    n = doc["parameters"]["managed"]
    reload = (p.get("reload") or {}).get("summary") or {}
    kustos, peer = reload.get("kustos") or {}, reload.get("peer") or {}
    burst = (p.get("reload") or {}).get("burst") or {}
    doc["ratios"] = {
        "reload_latency_kustos/peer": _ratio(
            kustos.get("median_latency_s"), peer.get("median_latency_s")
        ),
        "reload_requests_per_change_kustos/peer_audit": _ratio(
            kustos.get("non_watch_per_change_audit"), peer.get("non_watch_per_change_audit")
        ),
        "reload_requests_per_change_kustos/peer_audit_without_events": _ratio(
            kustos.get("non_watch_per_change_audit_without_events"),
            peer.get("non_watch_per_change_audit_without_events"),
        ),
        "reload_requests_per_change_kustos/peer_metrics": _ratio(
            kustos.get("non_watch_per_change_metrics"), peer.get("non_watch_per_change_metrics")
        ),
        "burst_restarts_kustos_default_window/peer": _ratio(
            (burst.get("kustos_default_window") or {}).get("restarts_written"),
            (burst.get("peer") or {}).get("restarts_written"),
        ),
    }
    idle = p.get("idle") or {}
    first, again = p.get("first_start") or {}, p.get("restart") or {}
    peaks = [
        first.get("peak_rss_mb_at_start"),
        (first.get("stop") or {}).get("peak_rss_mb"),
        again.get("peak_rss_mb_at_start"),
        (again.get("stop") or {}).get("peak_rss_mb"),
    ]
    watching_peak = max((x for x in peaks if x is not None), default=None)
    doc["targets"] = [
        target(
            f"operator peak RSS watching {n + 1} ManagedSecrets (operators B and C) under "
            f"{RSS_TARGET_MB:g} MB",
            watching_peak,
            RSS_TARGET_MB,
        ),
        target(
            f"operator A peak RSS while making first versions under {RSS_TARGET_MB:g} MB",
            (p.get("initial") or {}).get("peak_rss_mb"),
            RSS_TARGET_MB,
        ),
        at_most(
            "idle: requests by the operator besides watches and Lease renewals (audit)",
            (idle.get("audit") or {}).get("non_watch_without_leases"),
            0,
        ),
        at_most(
            "idle: apiserver_request_total non-watch besides leases, net of control",
            (idle.get("net_of_control") or {}).get("non_watch_without_leases"),
            0,
        ),
        at_most(
            "idle: requests by the operator answered with an error (audit)",
            (idle.get("audit") or {}).get("failed"),
            0,
        ),
        at_most("first start (B): new version Secrets", first.get("new_version_secrets"), 0),
        at_most("first start (B): workload restarts", first.get("workload_restarts"), 0),
        at_most("restart (C): new version Secrets", again.get("new_version_secrets"), 0),
        at_most("restart (C): workload restarts", again.get("workload_restarts"), 0),
        at_most(
            "reload: Kustos no slower than the peer (median latency ratio)",
            doc["ratios"]["reload_latency_kustos/peer"],
            1.0,
        ),
        at_most(
            "reload: Kustos no more requests per change than the peer (audit ratio)",
            doc["ratios"]["reload_requests_per_change_kustos/peer_audit"],
            1.0,
        ),
    ]


def _python() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(REPO))
    return "python"


def _peer_versions() -> dict[str, Any]:
    """What the peer binary was built from (``go version -m``)."""
    info: dict[str, Any] = {"name": "reload-loop", "source": "tools/peers/reloadloop"}
    if not PEER_BINARY.exists():
        return {**info, "error": f"{PEER_BINARY} missing"}
    try:
        done = subprocess.run(
            ["go", "version", "-m", str(PEER_BINARY)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return info
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":"):
            info["go"] = parts[1]
        elif len(parts) >= 3 and parts[0] == "dep" and parts[1] == "k8s.io/client-go":
            info["client_go"] = parts[2]
    return info


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rotation", description="Kustos rotation operator benchmark"
    )
    parser.add_argument("--managed", type=int, default=10_000, help="bulk ManagedSecrets")
    parser.add_argument(
        "--operator-made",
        type=int,
        default=500,
        help="of those, how many operator A gives their first version (timed); "
        "the rest are copies of its work",
    )
    parser.add_argument(
        "--note", default="", help="why this N (recorded in the results when not the default)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file")
    parser.add_argument("--keep-work", action="store_true", help="keep bench/.work/rotation-*")
    parser.add_argument("--create-seconds", type=float, default=600.0, help="limit on creating")
    parser.add_argument(
        "--initial-timeout", type=float, default=1500.0, help="limit on N first versions"
    )
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="progress polling")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle window length")
    parser.add_argument("--settle-seconds", type=float, default=10.0, help="pause before windows")
    parser.add_argument(
        "--quiet-step", type=float, default=10.0, help="seconds per check that the plane is quiet"
    )
    parser.add_argument(
        "--quiet-timeout", type=float, default=300.0, help="limit on waiting for a quiet plane"
    )
    parser.add_argument(
        "--restart-wait", type=float, default=30.0, help="seconds watched after B is ready"
    )
    parser.add_argument("--due-samples", type=int, default=5, help="due → rollout samples")
    parser.add_argument("--reload-rounds", type=int, default=4, help="rounds of the comparison")
    parser.add_argument("--reload-samples", type=int, default=5, help="changes per tool per round")
    parser.add_argument(
        "--reload-gap", type=float, default=2.0, help="seconds between measured changes"
    )
    parser.add_argument(
        "--burst-gap", type=float, default=0.2, help="seconds between burst changes"
    )
    parser.add_argument(
        "--burst-wait", type=float, default=10.0, help="seconds after the window to count restarts"
    )
    return parser


def _reproduce(args: argparse.Namespace) -> str:
    defaults = _parser().parse_args([])
    flags: list[str] = []
    keys = ("managed", "operator_made", "idle_seconds", "due_samples", "reload_rounds",
            "reload_samples")  # fmt: skip
    for key in keys:
        value = getattr(args, key)
        if key in ("managed", "operator_made") or value != getattr(defaults, key):
            flags += [f"--{key.replace('_', '-')}", f"{value:g}"]
    if args.output != DEFAULT_OUTPUT:
        flags += ["--output", str(args.output)]
    return shlex.join([_python(), "-m", "bench.rotation", *flags])


def _terminate_gracefully(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the tools, the plane and the work directory are cleaned.
    raise SystemExit(128 + signum)


async def _main(args: argparse.Namespace, root: Path, doc: dict[str, Any]) -> None:
    settings = ControlPlaneSettings(
        root / "cp", nodes=1, audit_policy=audit_policy(root / "audit-policy.yaml")
    )
    with ControlPlane(settings) as plane:
        own: Counter[RequestKey] = Counter()

        async def count(request: httpx.Request) -> None:
            key = classify(request.method, request.url)
            if key is not None:
                own[key] += 1

        identities = root / "identities"
        kubeconfigs = {u: mint_kubeconfig(plane, u, identities) for u in (KUSTOS_USER, PEER_USER)}
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with (
            httpx.AsyncClient(
                base_url=plane.server,
                verify=admin_tls(plane),
                limits=limits,
                timeout=60.0,
                headers={"User-Agent": USER_AGENT},
                event_hooks={"request": [count]},
            ) as api,
            httpx.AsyncClient(timeout=30.0) as local,
        ):
            bench = Bench(
                args, root, plane, api, local, own, kubeconfigs, plane.logs_dir / "audit.log"
            )
            try:
                await run_phases(bench, doc)
            finally:
                for service in list(bench.services):
                    bench.stop(service)


def main(argv: list[str] | None = None) -> int:
    """Run every step on one fresh control plane and write ``bench/results/rotation.json``."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate_gracefully)
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rotation-", dir=WORK))
    doc: dict[str, Any] = provenance(_reproduce(args))
    try:
        bins = require_binaries()
        doc["machine"]["kubernetes"] = tool_version([str(bins / "kube-apiserver"), "--version"])
    except Exception as exc:  # noqa: BLE001 - recorded; the plane reports the real error
        doc["machine"]["kubernetes"] = None
        doc["error"] = _describe(exc)
    doc["versions"] = {"kustos": kustos_version(), "peer": _peer_versions()}
    doc["parameters"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())
    }
    doc["phases"] = {}
    began = time.monotonic()
    try:
        asyncio.run(_main(args, root, doc))
    except Exception as exc:  # noqa: BLE001 - recorded in the results, then exit 1
        doc["error"] = _describe(exc)
        traceback.print_exc()
    finally:
        doc["wall_seconds"] = round(time.monotonic() - began, 1)
        doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep_work:
            print(f"bench.rotation: state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summarize(doc)
    clean = _strip_private(doc)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f"{args.output.stem}.tmp.json")
    tmp.write_bytes(orjson.dumps(clean, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(args.output)
    print(f"bench.rotation: done in {doc['wall_seconds']} s → {args.output}")
    print(orjson.dumps({"ratios": clean["ratios"], "targets": clean["targets"]},
                       option=orjson.OPT_INDENT_2).decode())  # fmt: skip
    return 1 if "error" in doc or any("error" in v for v in doc["phases"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
