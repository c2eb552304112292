"""Backup benchmark: ``python -m bench.backup [--secrets 10000] [options]``.

One fresh local control plane, one run. N Secrets (Opaque, TLS-sized, dockerconfigjson,
immutable, binary) in ``--namespaces`` namespaces, then, side by side and in alternating
order so that neither gets a warmer cache:

- **backup**: ``kustos backup create -A -r AGE1… -o FILE -q`` against the baseline the
  issue names, ``kubectl get secrets -A -o json | age -r AGE1… -o FILE`` (what people do
  by hand: no cleaning, no manifest, no hashes, no ManagedSecrets). Best of ``--repeats``.
- **restore**: the namespaces are deleted (and waited for) before each run;
  ``kustos backup restore FILE -i KEY -q --format json`` against
  ``age -d -i KEY FILE | jq '<drop uid, resourceVersion, creationTimestamp,
  managedFields>' | kubectl create -f -`` (``kubectl get`` output cannot be created as it
  is). The baseline cannot create namespaces from its file, so they are created for it
  before its clock starts; Kustos creates its own inside its time. Each restore is
  checked: every Secret is back. One run each (a run is a minute of API writes).

The ratio is ``baseline seconds / Kustos seconds``: above 1, Kustos is faster. The issue's
target is a backup no slower than the baseline (ratio >= 1). Absolute seconds on a shared
2-core machine are noise; the load average after each run is recorded.

Binds to loopback; the control plane and ``bench/.work/backup-*`` are removed on the way
out, on failure and on SIGTERM too (``--keep-work`` keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Final

import orjson
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

from bench.running import (
    RESULTS,
    WORK,
    kustos_command,
    kustos_version,
    measure,
    provenance,
    ratio,
    target,
    tool_version,
)
from kustos.crypto.age import new_identity
from kustos.kube.client import ClientSettings, make_async_client
from kustos.testing.binaries import require_binaries
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings

DEFAULT_OUTPUT: Final = RESULTS / "backup.json"
#: The fields ``kubectl create`` refuses or the server sets; what the baseline must drop.
JQ_CLEAN: Final = (
    '{apiVersion: "v1", kind: "List", items: [.items[] | del(.metadata.uid, '
    ".metadata.resourceVersion, .metadata.creationTimestamp, .metadata.managedFields)]}"
)
CONCURRENCY: Final = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_body(namespace: str, index: int) -> Secret:
    """One Secret of the mix; sizes close to real ones (a TLS pair is about 3 kB)."""
    meta = ObjectMeta(
        name=f"secret-{index:05d}",
        namespace=namespace,
        labels={"app": f"app-{index % 40}", "tier": "db" if index % 2 else "web"},
        annotations={"team.example.com/owner": f"team-{index % 9}"},
    )
    shape = index % 5
    if shape == 0:
        return Secret(
            metadata=meta,
            type="kubernetes.io/tls",
            data={"tls.crt": _b64(os.urandom(1400)), "tls.key": _b64(os.urandom(1200))},
        )
    if shape == 1:
        auth = _b64(b"robot:" + os.urandom(24).hex().encode())
        config = b'{"auths":{"registry.example.com":{"auth":"' + auth.encode() + b'"}}}'
        return Secret(
            metadata=meta,
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": _b64(config)},
        )
    if shape == 2:
        return Secret(metadata=meta, immutable=True, data={"token": _b64(os.urandom(32))})
    if shape == 3:
        return Secret(metadata=meta, data={"blob": _b64(os.urandom(256))})
    return Secret(
        metadata=meta,
        data={"username": _b64(b"app"), "password": _b64(os.urandom(18).hex().encode())},
    )


async def _gather(calls: list[Any]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Any) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def populate(client: AsyncClient, namespaces: list[str], count: int) -> None:
    """Create the namespaces and *count* Secrets spread over them."""
    await create_namespaces(client, namespaces)
    await _gather(
        [
            (lambda i=i: client.create(secret_body(namespaces[i % len(namespaces)], i)))
            for i in range(count)
        ]
    )


async def create_namespaces(client: AsyncClient, namespaces: list[str]) -> None:
    """Create *namespaces* (the baseline's restore needs them in place)."""
    for name in namespaces:
        await client.create(Namespace(metadata=ObjectMeta(name=name, labels={"bench": "backup"})))


async def delete_namespaces(client: AsyncClient, namespaces: list[str]) -> float:
    """Delete *namespaces* and wait until they are gone; the seconds it took."""
    started = time.monotonic()
    for name in namespaces:
        await client.delete(Namespace, name)
    for name in namespaces:
        while True:
            try:
                await client.get(Namespace, name)
            except ApiError as exc:
                if exc.status.code == 404:
                    break
                raise
            if time.monotonic() - started > 900:
                raise RuntimeError(f"namespace {name} still there after 900 s")
            await asyncio.sleep(0.5)
    return round(time.monotonic() - started, 1)


async def count_secrets(client: AsyncClient, namespaces: list[str]) -> int:
    """Secrets now in *namespaces*."""
    total = 0
    for name in namespaces:
        async for _ in client.list(Secret, namespace=name, chunk_size=500):
            total += 1
    return total


def _reproduce(args: argparse.Namespace) -> str:
    return shlex.join(
        [
            ".venv/bin/python",
            "-m",
            "bench.backup",
            "--secrets",
            str(args.secrets),
            "--namespaces",
            str(args.namespaces),
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__)
    parser.add_argument("--secrets", type=int, default=10_000, help="Secrets in the cluster")
    parser.add_argument("--namespaces", type=int, default=50, help="namespaces they are in")
    parser.add_argument("--repeats", type=int, default=3, help="backup runs per tool (best)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file")
    parser.add_argument("--keep-work", action="store_true", help="keep bench/.work/backup-*")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, root: Path, doc: dict[str, Any]) -> None:
    """Every step, on one control plane."""
    bins = require_binaries()
    kubectl = str(bins / "kubectl")
    age = shutil.which("age") or "age"
    kustos = kustos_command() or "kustos"
    doc["versions"].update(
        kubectl=tool_version([kubectl, "version", "--client"]),
        age=tool_version([age, "--version"]),
        kubernetes=tool_version([str(bins / "kube-apiserver"), "--version"]),
    )
    recipient, identity = new_identity()
    key = root / "key.txt"
    key.write_text(identity.reveal_text() + "\n")
    key.chmod(0o600)
    namespaces = [f"bench-{i:03d}" for i in range(args.namespaces)]
    with ControlPlane(ControlPlaneSettings(root / "cp", nodes=1)) as plane:
        config = str(plane.kubeconfig)

        async def on_cluster(step: Any) -> Any:
            client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig, timeout=120))
            try:
                return await step(client)
            finally:
                await client.close()

        began = time.monotonic()
        asyncio.run(on_cluster(lambda c: populate(c, namespaces, args.secrets)))
        doc["populate_seconds"] = round(time.monotonic() - began, 1)
        kustos_file, baseline_file = root / "kustos.age", root / "baseline.json.age"
        env = {"KUBECONFIG": config}

        def kustos_backup(_: str) -> list[str]:
            return [
                kustos,
                "backup",
                "create",
                "-A",
                "-q",
                "-r",
                recipient,
                "-o",
                str(kustos_file),
                "--kubeconfig",
                config,
            ]

        def baseline_backup(_: str) -> list[str]:
            pipe = (
                f"{shlex.quote(kubectl)} get secrets -A -o json | "
                f"{shlex.quote(age)} -r {recipient} -o {shlex.quote(str(baseline_file))}"
            )
            return ["bash", "-o", "pipefail", "-c", pipe]

        backup: dict[str, Any] = {"kustos": [], "baseline": []}
        for _ in range(args.repeats):  # alternating: neither always runs second
            for name, make in (("kustos", kustos_backup), ("baseline", baseline_backup)):
                backup[name].append(
                    measure(
                        make,
                        ok_codes={0},
                        repeats=1,
                        timeout=args.timeout,
                        max_rss_mb=8192,
                        env=env,
                    )
                )
        doc["backup"] = {name: _best(runs) for name, runs in backup.items()}
        doc["backup"]["kustos"]["file_bytes"] = kustos_file.stat().st_size
        doc["backup"]["baseline"]["file_bytes"] = baseline_file.stat().st_size

        restore: dict[str, Any] = {}
        doc["restore"] = restore
        kustos_restore = [
            kustos,
            "backup",
            "restore",
            str(kustos_file),
            "-i",
            str(key),
            "-q",
            "--format",
            "json",
            "--kubeconfig",
            config,
        ]
        pipe = (
            f"{shlex.quote(age)} -d -i {shlex.quote(str(key))} {shlex.quote(str(baseline_file))}"
            f" | jq -c {shlex.quote(JQ_CLEAN)} | {shlex.quote(kubectl)} create -f - -o name"
        )
        baseline_restore = ["bash", "-o", "pipefail", "-c", f"{pipe} > /dev/null"]
        for name, argv in (("kustos", kustos_restore), ("baseline", baseline_restore)):
            deleted = asyncio.run(on_cluster(lambda c: delete_namespaces(c, namespaces)))
            if name == "baseline":
                asyncio.run(on_cluster(lambda c: create_namespaces(c, namespaces)))
            result = measure(
                _fixed(argv),
                ok_codes={0},
                repeats=1,
                timeout=args.timeout,
                max_rss_mb=8192,
                env=env,
            )
            result["namespace_deletion_seconds"] = deleted
            result["secrets_after"] = asyncio.run(
                on_cluster(lambda c: count_secrets(c, namespaces))
            )
            restore[name] = result
    doc["ratios"] = {
        "backup_baseline_over_kustos": ratio(doc["backup"]["baseline"], doc["backup"]["kustos"]),
        "restore_baseline_over_kustos": ratio(restore.get("baseline"), restore.get("kustos")),
    }
    value = doc["ratios"]["backup_baseline_over_kustos"]["value"]
    doc["targets"] = [
        target("backup no slower than kubectl get | age (ratio)", value, 1.0, at_least=True),
        target(
            "every Secret restored (kustos)",
            restore.get("kustos", {}).get("secrets_after"),
            args.secrets,
            at_least=True,
        ),
    ]


def _fixed(argv: list[str]) -> Callable[[str], list[str]]:
    """A command that writes nowhere ``measure`` chooses."""
    return lambda _output: argv


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if r["seconds"] is not None and r["error"] is None]
    best = min(good, key=lambda r: r["seconds"]) if good else runs[-1]
    return {**best, "runs": [r["seconds"] for r in runs]}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``bench/results/backup.json``."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="backup-", dir=WORK))
    doc: dict[str, Any] = provenance(_reproduce(args))
    doc["versions"] = {"kustos": kustos_version()}
    doc["parameters"] = {
        "secrets": args.secrets,
        "namespaces": args.namespaces,
        "repeats": args.repeats,
    }
    began = time.monotonic()
    try:
        run(args, root, doc)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - recorded, then exit 1
        doc["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        traceback.print_exc()
    finally:
        doc["wall_seconds"] = round(time.monotonic() - began, 1)
        if args.keep_work:
            print(f"bench.backup: state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f"{args.output.stem}.tmp.json")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(args.output)
    print(f"bench.backup: done in {doc['wall_seconds']} s → {args.output}")
    print(
        orjson.dumps(
            {"ratios": doc.get("ratios"), "targets": doc.get("targets")}, option=orjson.OPT_INDENT_2
        ).decode()
    )
    return 1 if "error" in doc else 0


if __name__ == "__main__":
    sys.exit(main())
