"""KMS v2 benchmarks: ``python -m bench.kms [latency|throughput|restart|all] [options]``.

Each benchmark runs Kustos beside its peer (or the physical limit) in the same run and
records the ratio in ``bench/results/kms.json``; absolute times on a shared 2-core machine
are noise. Nothing here asserts: targets are recorded as pass/fail.

- ``latency``: a grpc.aio client calls Encrypt and Decrypt one at a time (32-byte seeds, as
  kube-apiserver sends them) against ``kustos kms serve`` with the local keyring and with
  SoftHSM2. Peers: the same AES-256-GCM wrap done in this process with ``cryptography``
  (the physical limit), and the plugin's own provider called directly in this process (the
  difference to the plugin is gRPC, asyncio and the servicer).
- ``throughput``: Secret creates, then GETs, per second through a real kube-apiserver
  whose EncryptionConfiguration is ``identity``, the built-in ``aesgcm`` or Kustos KMS v2.
- ``restart``: many Secrets under Kustos KMS v2, restart kube-apiserver, time until every
  one is readable again and count the plugin's Decrypt calls meanwhile; peer: ``aesgcm``.

Servers bind to loopback. Control planes, plugin processes and the state directory under
``bench/.work/`` are removed on the way out, on failure and SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import math
import os
import random
import secrets
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import grpc
import httpx
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client.parser import text_string_to_metric_families

from bench.running import REPO, RESULTS, WORK, provenance, target, tool_version
from kustos.kms import envelope
from kustos.kms.proto import kms_v2_pb2 as pb
from kustos.kms.proto import kms_v2_pb2_grpc as pb_grpc
from kustos.kms.providers import KeyProvider
from kustos.kms.stored import parse_stored
from kustos.testing.binaries import require_binaries
from kustos.testing.controlplane import LOOPBACK, ControlPlane, ControlPlaneSettings, free_ports
from kustos.testing.softhsm import make_token

BENCHMARKS: Final = ("latency", "throughput", "restart")
PROVIDERS: Final = ("keyring", "pkcs11")
CONFIGS: Final = ("identity", "aesgcm", "kustos")
KMS_NAME: Final = "kustos"
NAMESPACE: Final = "default"
NAME_PREFIX: Final = "kms-bench-"
#: What each EncryptionConfiguration leaves at the start of the value in etcd.
STORED_PREFIX: Final = {
    "identity": b"k8s\x00",
    "aesgcm": b"k8s:enc:aesgcm:v1:key1:",
    "kustos": f"k8s:enc:kms:v2:{KMS_NAME}:".encode(),
}
#: From "Using a KMS provider" (kubernetes.io): Decrypt under 10 ms, Encrypt under 100 ms.
LATENCY_TARGETS_MS: Final = {"Decrypt": 10.0, "Encrypt": 100.0}
#: Kustos KMS v2 must keep at least this share of the built-in aesgcm provider's rate.
THROUGHPUT_TARGET: Final = 0.9
WARMUP_CALLS: Final = 50
DEFAULT_OUTPUT: Final = RESULTS / "kms.json"


class BenchError(Exception):
    """A benchmark could not produce its numbers (recorded, never raised past ``main``)."""


# --------------------------------------------------------------------------- statistics
@dataclass(slots=True)
class Series:
    """Latencies of one kind of call, bounded by a count and a time limit."""

    ops: int
    seconds: float
    latencies_ns: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def more(self) -> bool:
        """Tell whether another call fits in both bounds."""
        return len(self.latencies_ns) < self.ops and time.monotonic() - self.started < self.seconds

    def record(self, began_ns: int) -> None:
        """Add the latency of a call that began at *began_ns* (``perf_counter_ns``)."""
        self.latencies_ns.append(time.perf_counter_ns() - began_ns)

    def summary(self) -> dict[str, Any]:
        """Count, percentiles and calls per second with one call in flight."""
        return summarize(self.latencies_ns, bounded_by_time=len(self.latencies_ns) < self.ops)


def summarize(latencies_ns: Sequence[int], *, bounded_by_time: bool = False) -> dict[str, Any]:
    """Nearest-rank p50/p99 in ms, and calls per second as ``calls / sum(latencies)``."""
    ordered = sorted(latencies_ns)
    if not ordered:
        return {"calls": 0, "p50_ms": None, "p99_ms": None, "ops_per_s": None}

    def pct(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1e6, 4)

    total_s = sum(ordered) / 1e9
    return {
        "calls": len(ordered),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(ordered[-1] / 1e6, 4),
        "mean_ms": round(total_s * 1e3 / len(ordered), 4),
        "ops_per_s": round(len(ordered) / total_s, 1),
        "stopped_by_time_limit": bounded_by_time,
    }


def _ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


# --------------------------------------------------------------------------- key stores
@dataclass(frozen=True, slots=True)
class KeyStore:
    """One provider's keys as ``kustos kms`` names them: flags plus the environment."""

    kind: str
    keyring: Path | None = None
    passphrase_file: Path | None = None
    module: Path | None = None
    token: str | None = None
    pin_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """The key-store flags of ``kustos kms serve`` and ``kustos kms keys``."""
        if self.kind == "keyring":
            return [
                "--keyring",
                str(self.keyring),
                "--passphrase-file",
                str(self.passphrase_file),
            ]
        return [
            "--pkcs11-module",
            str(self.module),
            "--pkcs11-token",
            str(self.token),
            "--pkcs11-pin-file",
            str(self.pin_file),
        ]

    def open(self) -> KeyProvider:
        """The provider the plugin would build from these flags, in this process."""
        from kustos.cli.kms import open_provider  # noqa: PLC0415 - typer only when needed

        return open_provider(
            keyring=self.keyring,
            passphrase_file=self.passphrase_file,
            module=self.module,
            token=self.token,
            pin_file=self.pin_file,
        )


def make_keystore(kind: str, directory: Path) -> KeyStore:
    """Create a fresh keyring or SoftHSM2 token under *directory* with one key in it."""
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "keyring":
        passphrase = directory / "passphrase"
        passphrase.write_text(secrets.token_urlsafe(24) + "\n")
        passphrase.chmod(0o600)
        store = KeyStore(kind, keyring=directory / "keyring.json", passphrase_file=passphrase)
    else:
        token = make_token(directory / "hsm")
        store = KeyStore(
            kind,
            module=token.module,
            token=token.label,
            pin_file=token.pin_file,
            env={"SOFTHSM2_CONF": str(token.conf)},
        )
    done = subprocess.run(
        [sys.executable, "-m", "kustos", "kms", "keys", "init", *store.flags],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **store.env},
        timeout=120,
    )
    if done.returncode != 0:
        raise BenchError(f"kustos kms keys init ({kind}) failed: {done.stderr.strip()[-256:]}")
    return store


@contextlib.contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Set *extra* in ``os.environ`` (SoftHSM2 reads its config when a session opens)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------- the plugin
@dataclass(frozen=True, slots=True)
class Plugin:
    """A running ``kustos kms serve``."""

    socket: Path
    metrics_url: str | None
    argv: tuple[str, ...]


def _tail(path: Path, limit: int = 256) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return (lines[-1] if lines else "empty log")[:limit]


@contextlib.contextmanager
def running_plugin(store: KeyStore, directory: Path, *, metrics: bool = False) -> Iterator[Plugin]:
    """Run ``kustos kms serve`` in its own session; SIGTERM (then SIGKILL) it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    socket = directory / "kms.sock"
    argv = [sys.executable, "-m", "kustos", "kms", "serve", "--socket", str(socket), *store.flags]
    metrics_url = None
    if metrics:
        port = free_ports(1)[0]
        argv += ["--metrics-address", f"{LOOPBACK}:{port}"]
        metrics_url = f"http://{LOOPBACK}:{port}/metrics"
    log = directory / "plugin.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **store.env},
            start_new_session=True,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None:
                raise BenchError(f"plugin exited with code {proc.returncode}: {_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"plugin did not listen on {socket} within 30 s")
            time.sleep(0.05)
        yield Plugin(socket, metrics_url, tuple(argv))
    finally:
        _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process group we started: SIGTERM, 15 s of grace, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def plugin_calls(metrics_url: str) -> dict[str, float]:
    """``kustos_kms_operation_seconds_count{code="OK"}`` per method, from the plugin."""
    text = httpx.get(metrics_url, timeout=5.0).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "kustos_kms_operation_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("code") == "OK":
                counts[sample.labels["method"]] = sample.value
    return counts


# --------------------------------------------------------------------------- 1. latency
def _in_process_aesgcm(ops: int, seconds: float) -> dict[str, Any]:
    """The physical limit: the keyring's AES-256-GCM wrap, framed as the plugin frames it."""
    material = AESGCM.generate_key(bit_length=256)
    aad = envelope.aad_for("bench-key")
    encrypt, issued = Series(ops, seconds), []
    while encrypt.more():
        seed = secrets.token_bytes(32)
        began = time.perf_counter_ns()
        nonce = secrets.token_bytes(12)
        blob = envelope.seal(nonce + AESGCM(material).encrypt(nonce, seed, aad))
        encrypt.record(began)
        issued.append((blob, seed))
    decrypt = Series(ops, seconds)
    while decrypt.more():
        blob, seed = issued[len(decrypt.latencies_ns) % len(issued)]
        began = time.perf_counter_ns()
        inner = envelope.unseal(blob)
        plain = AESGCM(material).decrypt(inner[:12], inner[12:], aad)
        decrypt.record(began)
        if plain != seed:
            raise BenchError("in-process unwrap returned another seed")
    return {"Encrypt": encrypt.summary(), "Decrypt": decrypt.summary()}


def _in_process_provider(store: KeyStore, ops: int, seconds: float) -> dict[str, Any]:
    """The plugin's provider called directly, with the provider calls the servicer makes."""
    with _environment(store.env):
        provider = store.open()
        try:
            encrypt, issued = Series(ops, seconds), []
            while encrypt.more():
                seed = secrets.token_bytes(32)
                began = time.perf_counter_ns()
                key_id = provider.current_key_id()
                blob = envelope.seal(provider.wrap(key_id, seed, envelope.aad_for(key_id)))
                encrypt.record(began)
                issued.append((key_id, blob, seed))
            decrypt = Series(ops, seconds)
            while decrypt.more():
                key_id, blob, seed = issued[len(decrypt.latencies_ns) % len(issued)]
                began = time.perf_counter_ns()
                # The servicer looks the key up in records() before every unwrap.
                known = {r.key_id for r in provider.records()}
                plain = provider.unwrap(key_id, envelope.unseal(blob), envelope.aad_for(key_id))
                decrypt.record(began)
                if key_id not in known or plain != seed:
                    raise BenchError(f"{store.kind} provider unwrap returned another seed")
        finally:
            provider.close()
    return {"Encrypt": encrypt.summary(), "Decrypt": decrypt.summary()}


async def _over_socket(socket: Path, ops: int, seconds: float) -> dict[str, Any]:
    """Encrypt then Decrypt through the plugin, one call in flight, as kube-apiserver calls."""
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        stub: Any = pb_grpc.KeyManagementServiceStub(channel)
        status = await stub.Status(pb.StatusRequest(), timeout=10)
        if status.healthz != "ok":
            raise BenchError(f"plugin Status says {status.healthz!r}")
        for _ in range(WARMUP_CALLS):
            await stub.Encrypt(pb.EncryptRequest(plaintext=secrets.token_bytes(32)), timeout=5)
        encrypt, issued = Series(ops, seconds), []
        while encrypt.more():
            seed = secrets.token_bytes(32)
            request = pb.EncryptRequest(plaintext=seed, uid=str(uuid.uuid4()))
            began = time.perf_counter_ns()
            reply = await stub.Encrypt(request, timeout=5)
            encrypt.record(began)
            issued.append((reply, seed))
        decrypt = Series(ops, seconds)
        while decrypt.more():
            reply, seed = issued[len(decrypt.latencies_ns) % len(issued)]
            asked = pb.DecryptRequest(
                ciphertext=reply.ciphertext,
                uid=str(uuid.uuid4()),
                key_id=reply.key_id,
                annotations=dict(reply.annotations),
            )
            began = time.perf_counter_ns()
            answer = await stub.Decrypt(asked, timeout=5)
            decrypt.record(began)
            if answer.plaintext != seed:
                raise BenchError("plugin Decrypt returned another seed")
    return {"Encrypt": encrypt.summary(), "Decrypt": decrypt.summary()}


def _latency_one(kind: str, root: Path, ops: int, seconds: float) -> dict[str, Any]:
    store = make_keystore(kind, root / "keys")
    provider = _in_process_provider(store, ops, seconds)
    with running_plugin(store, root / "plugin") as plugin:
        over_socket = asyncio.run(_over_socket(plugin.socket, ops, seconds))
    return {
        "plugin": over_socket,
        "provider_in_process": provider,
        "plugin_command": shlex.join(plugin.argv),
    }


def bench_latency(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Plugin latency over its socket per provider, beside the in-process AES-GCM limit."""
    ops, seconds = args.latency_ops, args.latency_seconds
    limit = _in_process_aesgcm(ops, seconds)
    providers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for kind in args.providers:
        try:
            providers[kind] = _latency_one(kind, root / f"latency-{kind}", ops, seconds)
        except Exception as exc:  # noqa: BLE001 - one provider failing must not hide the other
            providers[kind] = {"error": _describe(exc)}
            continue
        plugin, direct = providers[kind]["plugin"], providers[kind]["provider_in_process"]
        ratios[kind] = {
            method: {
                "plugin/in_process_aesgcm_p50": _ratio(
                    plugin[method]["p50_ms"], limit[method]["p50_ms"], 1
                ),
                "plugin/in_process_aesgcm_p99": _ratio(
                    plugin[method]["p99_ms"], limit[method]["p99_ms"], 1
                ),
                "plugin/provider_in_process_p50": _ratio(
                    plugin[method]["p50_ms"], direct[method]["p50_ms"], 1
                ),
                "in_process_aesgcm/plugin_ops_per_s": _ratio(
                    limit[method]["ops_per_s"], plugin[method]["ops_per_s"], 1
                ),
            }
            for method in ("Encrypt", "Decrypt")
        }
        for method, limit_ms in LATENCY_TARGETS_MS.items():
            targets.append(
                target(
                    f"{kind}: {method} p99 under {limit_ms:g} ms",
                    plugin[method]["p99_ms"],
                    limit_ms,
                )
            )
    return {
        "parameters": {"ops": ops, "seconds_per_series": seconds, "seed_bytes": 32},
        "method": "one call in flight; ops_per_s = calls / sum of latencies; "
        f"{WARMUP_CALLS} warm-up Encrypts before timing; Decrypt replays the timed Encrypts",
        "in_process_aesgcm": limit,
        "providers": providers,
        "ratios": ratios,
        "targets": targets,
    }


# --------------------------------------------------------------------------- API server
def encryption_config(kind: str, path: Path, socket: Path | None = None) -> Path:
    """Write an EncryptionConfiguration for Secrets: identity, aesgcm or Kustos KMS v2."""
    if kind == "identity":
        providers = "      - identity: {}\n"
    elif kind == "aesgcm":
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        providers = (
            "      - aesgcm:\n          keys:\n"
            f"            - name: key1\n              secret: {key}\n"
            "      - identity: {}\n"
        )
    else:
        providers = (
            f"      - kms: {{apiVersion: v2, name: {KMS_NAME}, endpoint: 'unix://{socket}', "
            "timeout: 3s}\n      - identity: {}\n"
        )
    path.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "  - resources: [secrets]\n    providers:\n" + providers
    )
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def cluster(
    kind: str, root: Path, *, metrics: bool = False
) -> Iterator[tuple[ControlPlane, Plugin | None]]:
    """A fresh one-node control plane with *kind* encryption (and the plugin it needs)."""
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        plugin = None
        if kind == "kustos":
            store = make_keystore("keyring", root / "keys")
            plugin = stack.enter_context(running_plugin(store, root / "plugin", metrics=metrics))
        config = encryption_config(
            kind, root / "encryption.yaml", plugin.socket if plugin else None
        )
        settings = ControlPlaneSettings(root / "cp", nodes=1, encryption_config=config)
        # Entered after the plugin, so it is stopped before the plugin on the way out.
        plane = stack.enter_context(ControlPlane(settings))
        yield plane, plugin


def admin_tls(plane: ControlPlane) -> ssl.SSLContext:
    """TLS as the cluster admin (client certificate), trusting the plane's CA."""
    ctx = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
    ctx.load_cert_chain(str(plane.pki.admin.cert), str(plane.pki.admin.key))
    return ctx


@contextlib.asynccontextmanager
async def api_client(plane: ControlPlane, connections: int) -> AsyncIterator[httpx.AsyncClient]:
    """A bare httpx client as the cluster admin, so the client's own CPU stays small.

    lightkube would build and parse models per request; on two cores that CPU is taken
    from the API server being measured and would pull every ratio towards 1.
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=plane.server, verify=admin_tls(plane), limits=limits, timeout=30.0
    ) as client:
        yield client


@dataclass(frozen=True, slots=True)
class Secrets:
    """The Secrets one benchmark writes: names, base64 values and ready request bodies."""

    names: list[str]
    values: list[str]
    bodies: list[bytes]

    @classmethod
    def make(cls, count: int, tag: str) -> Secrets:
        """*count* Secrets named ``kms-bench-<tag>-NNNNN`` holding 48 random bytes each."""
        names = [f"{NAME_PREFIX}{tag}-{i:05d}" for i in range(count)]
        values = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(count)]
        bodies = [
            orjson.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": n, "namespace": NAMESPACE},
                    "type": "Opaque",
                    "data": {"v": v},
                }
            )
            for n, v in zip(names, values, strict=True)
        ]
        return cls(names, values, bodies)


SECRETS_PATH: Final = f"/api/v1/namespaces/{NAMESPACE}/secrets"
JSON: Final = {"Content-Type": "application/json"}


async def create_secret(client: httpx.AsyncClient, batch: Secrets, i: int) -> None:
    """POST one Secret; ``BenchError`` unless it was created."""
    reply = await client.post(SECRETS_PATH, content=batch.bodies[i], headers=JSON)
    if reply.status_code != 201:
        raise BenchError(f"create {batch.names[i]}: HTTP {reply.status_code}")


async def read_secret(client: httpx.AsyncClient, batch: Secrets, i: int) -> None:
    """GET one Secret; ``BenchError`` unless it holds the value written."""
    reply = await client.get(f"{SECRETS_PATH}/{batch.names[i]}")
    if reply.status_code != 200:
        raise BenchError(f"get {batch.names[i]}: HTTP {reply.status_code}")
    if orjson.loads(reply.content)["data"]["v"] != batch.values[i]:
        raise BenchError(f"get {batch.names[i]}: another value came back")


async def pool(
    indexes: Sequence[int],
    op: Callable[[int], Awaitable[None]],
    *,
    workers: int,
    seconds: float,
) -> dict[str, Any]:
    """Run ``op(i)`` for every index on *workers* concurrent tasks, within *seconds*."""
    todo = iter(indexes)  # shared: each index goes to exactly one worker
    latencies: list[int] = []
    done: list[int] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        for i in todo:
            if time.monotonic() > deadline:
                return
            began = time.perf_counter_ns()
            try:
                await op(i)
            except (BenchError, httpx.HTTPError) as exc:
                errors.append(_describe(exc))
                continue
            latencies.append(time.perf_counter_ns() - began)
            done.append(i)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    elapsed = time.perf_counter() - started
    stats = summarize(latencies)
    return {
        "requested": len(indexes),
        "ok": len(done),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(elapsed, 3),
        "per_s": round(len(done) / elapsed, 1) if elapsed else None,
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "stopped_by_time_limit": len(done) + len(errors) < len(indexes),
        "done": sorted(done),
    }


def stored_values(plane: ControlPlane, batch: Secrets) -> dict[str, Any]:
    """How etcd holds the batch: prefixes, plaintext found or not, distinct KMS DEK seeds."""
    start = f"/registry/secrets/{NAMESPACE}/{NAME_PREFIX}".encode()
    end = start[:-1] + bytes([start[-1] + 1])
    reply = httpx.post(
        f"{plane.etcd_endpoint}/v3/kv/range",
        json={
            "key": base64.b64encode(start).decode(),
            "range_end": base64.b64encode(end).decode(),
        },
        timeout=60.0,
    )
    reply.raise_for_status()
    expected = dict(zip(batch.names, batch.values, strict=True))
    stored: dict[str, bytes] = {}
    for kv in reply.json().get("kvs", []):
        name = base64.b64decode(kv["key"]).decode().rsplit("/", 1)[-1]
        if name in expected:
            stored[name] = base64.b64decode(kv["value"])
    kms_prefix = STORED_PREFIX["kustos"]
    # EncryptedObject field 3 is encryptedDEKSource: one per seed the API server drew.
    dek_sources = {parse_stored(v).dek_source for v in stored.values() if v.startswith(kms_prefix)}
    return {
        "objects": len(stored),
        "by_prefix": {
            k: sum(v.startswith(p) for v in stored.values()) for k, p in STORED_PREFIX.items()
        },
        "plaintext_found": sum(
            base64.b64decode(expected[name]) in value for name, value in stored.items()
        ),
        "distinct_kms_dek_sources": len(dek_sources),
    }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:256]}"


# --------------------------------------------------------------------------- 2. throughput
async def _writes_then_reads(
    plane: ControlPlane, batch: Secrets, warmup: Secrets, *, workers: int, seconds: float
) -> dict[str, Any]:
    async with api_client(plane, workers) as client:
        # Warm-up: TLS connections, the API server's caches and the first seed.
        for op in (create_secret, read_secret):
            await pool(
                range(len(warmup.names)),
                functools.partial(op, client, warmup),
                workers=workers,
                seconds=seconds,
            )
        writes = await pool(
            range(len(batch.names)),
            lambda i: create_secret(client, batch, i),
            workers=workers,
            seconds=seconds,
        )
        written = writes.pop("done")
        order = list(written)
        random.Random(0).shuffle(order)  # noqa: S311 - a reading order, not a secret
        reads = await pool(
            order, lambda i: read_secret(client, batch, i), workers=workers, seconds=seconds
        )
        reads.pop("done")
    return {"writes": writes, "reads": reads}


def _throughput_one(kind: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    batch = Secrets.make(args.secrets, kind)
    warmup = Secrets.make(args.warmup, f"warmup-{kind}")
    try:
        with cluster(kind, root) as (plane, _):
            # Right after start the controller manager's first sync competes for the CPU.
            time.sleep(args.settle_seconds)
            load = [round(x, 2) for x in os.getloadavg()]
            result = asyncio.run(
                _writes_then_reads(
                    plane, batch, warmup, workers=args.workers, seconds=args.phase_seconds
                )
            )
            result["stored"] = stored_values(plane, batch)
            result["load_average_before"] = load
    except Exception as exc:  # noqa: BLE001 - the other configurations still count
        result = {"error": _describe(exc)}
    return result


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def _paired(
    a: str, b: str, rates_a: Sequence[float | None], rates_b: Sequence[float | None]
) -> dict[str, Any]:
    """The a/b ratio within each round (same minutes of machine load) and its median."""
    by_round = [_ratio(x, y) for x, y in zip(rates_a, rates_b, strict=True)]
    return {f"{a}/{b}_by_round": by_round, f"{a}/{b}_median_of_rounds": _median(by_round)}


def bench_throughput(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Secret writes and reads per second under identity, aesgcm and Kustos KMS v2."""
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        # Rotate the order each round so no configuration always runs first or last.
        shift = number % len(CONFIGS)
        order = (*CONFIGS[shift:], *CONFIGS[:shift])
        configs = {
            kind: _throughput_one(kind, root / f"throughput-{number}-{kind}", args)
            for kind in order
        }
        rounds.append({"order": list(order), "configs": configs})

    def rates(kind: str, phase: str) -> list[float | None]:
        return [r["configs"][kind].get(phase, {}).get("per_s") for r in rounds]

    medians: dict[str, dict[str, float | None]] = {
        kind: {phase: _median(rates(kind, phase)) for phase in ("writes", "reads")}
        for kind in CONFIGS
    }
    summary = {
        kind: {f"{phase}_per_s": medians[kind][phase] for phase in ("writes", "reads")}
        | {f"{phase}_per_s_by_round": rates(kind, phase) for phase in ("writes", "reads")}
        for kind in CONFIGS
    }
    pairs = (("kustos", "aesgcm"), ("kustos", "identity"), ("aesgcm", "identity"))
    ratios: dict[str, dict[str, Any]] = {
        phase: {f"{a}/{b}": _ratio(medians[a][phase], medians[b][phase]) for a, b in pairs}
        | _paired("kustos", "aesgcm", rates("kustos", phase), rates("aesgcm", phase))
        for phase in ("writes", "reads")
    }
    return {
        "parameters": {
            "secrets": args.secrets,
            "workers": args.workers,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "settle_seconds": args.settle_seconds,
            "phase_seconds": args.phase_seconds,
            "value_bytes": 48,
            "nodes": 1,
        },
        "method": "per round and configuration a fresh one-node control plane; settle, then "
        "warm-up Secrets (created and read, not timed); then creates (POST) of all Secrets, "
        "then GETs of every created one in shuffled order with values checked; per_s = "
        "successful requests / wall time of the phase; summary = median over rounds; "
        "ratios = ratio of the medians (target judged on it); by_round: the same ratio "
        "within each round, and its median",
        "summary": summary,
        "ratios": ratios,
        "rounds": rounds,
        "targets": [
            target(
                f"Kustos KMS v2 {phase} at least {THROUGHPUT_TARGET} x aesgcm",
                _ratio(medians["kustos"][phase], medians["aesgcm"][phase]),
                THROUGHPUT_TARGET,
                at_least=True,
            )
            for phase in ("writes", "reads")
        ],
    }


# --------------------------------------------------------------------------- 3. restart
async def _create_all(
    plane: ControlPlane, batch: Secrets, *, workers: int, seconds: float
) -> dict[str, Any]:
    async with api_client(plane, workers) as client:
        return await pool(
            range(len(batch.names)),
            lambda i: create_secret(client, batch, i),
            workers=workers,
            seconds=seconds,
        )


async def _list_values(client: httpx.AsyncClient, page: int) -> dict[str, str]:
    """Every bench Secret's value, by LIST with ``limit`` pages."""
    found: dict[str, str] = {}
    token = ""
    while True:
        params = {"limit": str(page), **({"continue": token} if token else {})}
        reply = await client.get(SECRETS_PATH, params=params)
        if reply.status_code != 200:
            raise BenchError(f"list secrets: HTTP {reply.status_code}")
        doc = orjson.loads(reply.content)
        for item in doc.get("items", []):
            name = item["metadata"]["name"]
            if name.startswith(NAME_PREFIX):
                found[name] = (item.get("data") or {}).get("v", "")
        token = (doc.get("metadata") or {}).get("continue") or ""
        if not token:
            return found


async def _until_readable(
    plane: ControlPlane, batch: Secrets, written: Sequence[int], *, seconds: float, gets: int
) -> dict[str, Any]:
    """Poll until a paged LIST returns every written Secret intact and sample GETs work."""
    expected = {batch.names[i]: batch.values[i] for i in written}
    sample = random.Random(1).sample(list(written), min(gets, len(written)))  # noqa: S311
    deadline = time.monotonic() + seconds
    attempts, last = 0, ""
    async with api_client(plane, 4) as client:
        while True:
            attempts += 1
            try:
                found = await _list_values(client, page=500)
                intact = sum(found.get(n) == v for n, v in expected.items())
                if intact == len(expected):
                    for i in sample:
                        await read_secret(client, batch, i)
                    return {"attempts": attempts, "listed_intact": intact, "gets": len(sample)}
                last = f"{intact} of {len(expected)} listed intact"
            except (BenchError, httpx.HTTPError) as exc:
                last = _describe(exc)
            if time.monotonic() > deadline:
                raise BenchError(f"not all readable after {seconds:g} s ({last})")
            await asyncio.sleep(0.05)


def apiserver_kms_calls(plane: ControlPlane) -> dict[str, float] | None:
    """kube-apiserver's own count of KMS calls per method (its process's lifetime)."""
    try:
        text = httpx.get(f"{plane.server}/metrics", verify=admin_tls(plane), timeout=10.0).text
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "apiserver_envelope_encryption_kms_operations_latency_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    method = sample.labels.get("method_name", "?").rsplit("/", 1)[-1]
                    counts[method] = counts.get(method, 0.0) + sample.value
    except (httpx.HTTPError, ValueError):
        return None
    return counts


def _restart_one(kind: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    batch = Secrets.make(args.restart_secrets, kind)
    with cluster(kind, root, metrics=True) as (plane, plugin):
        created = asyncio.run(
            _create_all(plane, batch, workers=args.restart_workers, seconds=args.create_seconds)
        )
        written = created.pop("done")
        before = plugin_calls(plugin.metrics_url) if plugin and plugin.metrics_url else None
        t0 = time.monotonic()
        plane.kill("kube-apiserver")
        t1 = time.monotonic()
        plane.restart("kube-apiserver")  # returns once /readyz answers 200
        t2 = time.monotonic()
        readable = asyncio.run(
            _until_readable(
                plane, batch, written, seconds=args.readable_seconds, gets=args.restart_gets
            )
        )
        t3 = time.monotonic()
        after = plugin_calls(plugin.metrics_url) if plugin and plugin.metrics_url else None
        result: dict[str, Any] = {
            "created": created,
            "stop_seconds": round(t1 - t0, 3),
            "seconds_to_ready": round(t2 - t1, 3),
            "seconds_to_readable": round(t3 - t1, 3),
            "readable": readable,
            "apiserver_kms_calls_since_restart": apiserver_kms_calls(plane)
            if kind == "kustos"
            else None,
            "stored": stored_values(plane, batch),
        }
        if before is not None and after is not None:
            result["plugin_calls_during_restart"] = {
                m: after.get(m, 0.0) - before.get(m, 0.0) for m in sorted({*before, *after})
            }
            result["plugin_calls_total"] = after
        return result


def bench_restart(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Time from kube-apiserver relaunch until N encrypted Secrets read back; Kustos and aesgcm."""
    configs: dict[str, Any] = {}
    for kind in ("kustos", "aesgcm"):
        try:
            configs[kind] = _restart_one(kind, root / f"restart-{kind}", args)
        except Exception as exc:  # noqa: BLE001 - the peer's numbers still count
            configs[kind] = {"error": _describe(exc)}

    def seconds(kind: str, key: str) -> float | None:
        value = configs[kind].get(key)
        return float(value) if value is not None else None

    return {
        "parameters": {
            "secrets": args.restart_secrets,
            "workers": args.restart_workers,
            "create_seconds": args.create_seconds,
            "readable_seconds": args.readable_seconds,
            "sample_gets": args.restart_gets,
        },
        "method": "kill kube-apiserver (SIGTERM), relaunch with the same flags; "
        "seconds_to_ready = relaunch until /readyz is 200; seconds_to_readable = relaunch "
        "until a LIST in pages of 500 returns every created Secret with its value and "
        "sample GETs succeed; plugin calls are deltas of "
        'kustos_kms_operation_seconds_count{code="OK"} across stop, relaunch and reads',
        "configs": configs,
        "ratios": {
            "kustos/aesgcm_seconds_to_readable": _ratio(
                seconds("kustos", "seconds_to_readable"), seconds("aesgcm", "seconds_to_readable")
            ),
            "kustos/aesgcm_seconds_to_ready": _ratio(
                seconds("kustos", "seconds_to_ready"), seconds("aesgcm", "seconds_to_ready")
            ),
        },
        "targets": [],
    }


# --------------------------------------------------------------------------- main
def _python() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(REPO))
    return "python"


def _reproduce(name: str, args: argparse.Namespace) -> str:
    flags: dict[str, list[str]] = {
        "latency": [
            "--latency-ops",
            str(args.latency_ops),
            "--latency-seconds",
            f"{args.latency_seconds:g}",
            "--providers",
            ",".join(args.providers),
        ],
        "throughput": [
            "--secrets",
            str(args.secrets),
            "--workers",
            str(args.workers),
            "--phase-seconds",
            f"{args.phase_seconds:g}",
            "--rounds",
            str(args.rounds),
            "--warmup",
            str(args.warmup),
            "--settle-seconds",
            f"{args.settle_seconds:g}",
        ],
        "restart": [
            "--restart-secrets",
            str(args.restart_secrets),
            "--restart-workers",
            str(args.restart_workers),
            "--create-seconds",
            f"{args.create_seconds:g}",
            "--readable-seconds",
            f"{args.readable_seconds:g}",
            "--restart-gets",
            str(args.restart_gets),
        ],
    }
    output = [] if args.output == DEFAULT_OUTPUT else ["--output", str(args.output)]
    return shlex.join([_python(), "-m", "bench.kms", name, *flags[name], *output])


def _kubernetes_version() -> str | None:
    try:
        bins = require_binaries()
    except Exception:  # noqa: BLE001 - recorded as unknown; the plane reports the real error
        return None
    return tool_version([str(bins / "kube-apiserver"), "--version"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kms", description="Kustos KMS v2 benchmarks"
    )
    parser.add_argument(
        "which", nargs="*", default=["all"], help=f"any of {', '.join(BENCHMARKS)}, or all"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file")
    parser.add_argument("--keep-work", action="store_true", help="keep bench/.work/kms-*")
    group = parser.add_argument_group("latency")
    group.add_argument("--latency-ops", type=int, default=2000, help="calls per method")
    group.add_argument("--latency-seconds", type=float, default=30.0, help="limit per series")
    group.add_argument(
        "--providers",
        type=lambda s: [p for p in s.split(",") if p],
        default=list(PROVIDERS),
        help="keyring,pkcs11",
    )
    group = parser.add_argument_group("throughput")
    group.add_argument("--secrets", type=int, default=1000, help="Secrets per configuration")
    group.add_argument("--workers", type=int, default=4, help="concurrent requests")
    group.add_argument("--phase-seconds", type=float, default=120.0, help="limit per phase")
    group.add_argument("--rounds", type=int, default=5, help="planes per configuration")
    group.add_argument("--warmup", type=int, default=100, help="untimed Secrets first")
    group.add_argument(
        "--settle-seconds", type=float, default=3.0, help="pause after the plane starts"
    )
    group = parser.add_argument_group("restart")
    group.add_argument("--restart-secrets", type=int, default=10_000, help="Secrets stored")
    group.add_argument("--restart-workers", type=int, default=8, help="concurrent creates")
    group.add_argument("--create-seconds", type=float, default=180.0, help="limit on creating")
    group.add_argument(
        "--readable-seconds", type=float, default=180.0, help="limit on waiting for reads"
    )
    group.add_argument("--restart-gets", type=int, default=20, help="sample GETs after LIST")
    return parser


def _terminate_gracefully(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so planes, plugins and the work directory are cleaned.
    raise SystemExit(128 + signum)


RUNNERS: Final[dict[str, Callable[[Path, argparse.Namespace], dict[str, Any]]]] = {
    "latency": bench_latency,
    "throughput": bench_throughput,
    "restart": bench_restart,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen KMS benchmarks and merge their entries into the results file."""
    parser = _parser()
    args = parser.parse_args(argv)
    chosen = list(BENCHMARKS) if "all" in args.which else list(dict.fromkeys(args.which))
    unknown = sorted(set(args.which) - {*BENCHMARKS, "all"})
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    unknown = sorted(set(args.providers) - set(PROVIDERS))
    if unknown:
        parser.error(f"unknown providers: {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, _terminate_gracefully)
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="kms-", dir=WORK))
    kubernetes = _kubernetes_version()
    command = shlex.join([_python(), "-m", "bench.kms", *(sys.argv[1:] if argv is None else argv)])
    failed = False
    try:
        for name in chosen:
            print(f"bench.kms: {name} …", flush=True)
            entry: dict[str, Any] = provenance(_reproduce(name, args))
            entry["machine"]["kubernetes"] = kubernetes
            began = time.monotonic()
            try:
                entry.update(RUNNERS[name](root, args))
            except Exception as exc:  # noqa: BLE001 - recorded in the results, then exit 1
                entry["error"] = _describe(exc)
                traceback.print_exc()
            entry["wall_seconds"] = round(time.monotonic() - began, 1)
            entry["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            failed = failed or _has_error(entry)
            _write(args.output, name, entry, command=command)
            print(f"bench.kms: {name} done in {entry['wall_seconds']} s → {args.output}")
    finally:
        if args.keep_work:
            print(f"bench.kms: state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


def _has_error(value: Any) -> bool:
    if isinstance(value, Mapping):
        return value.get("error") is not None or any(_has_error(v) for v in value.values())
    return False


def _write(output: Path, name: str, entry: Mapping[str, Any], *, command: str) -> None:
    """Replace one benchmark's entry in *output*, keeping the others from earlier runs."""
    doc: dict[str, Any] = {"benchmarks": {}}
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        previous = orjson.loads(output.read_bytes())
        if isinstance(previous, dict) and isinstance(previous.get("benchmarks"), dict):
            doc = previous
    doc["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["last_command"] = command
    doc["benchmarks"][name] = entry
    doc["benchmarks"] = {k: doc["benchmarks"][k] for k in BENCHMARKS if k in doc["benchmarks"]}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f"{output.stem}.tmp.json")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(output)


if __name__ == "__main__":
    raise SystemExit(main())
