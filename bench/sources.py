"""Sources benchmark: ``python -m bench.sources [vault|seal|all] [options]``.

Two measurements, each in one run (``bench/README.md`` has the why and how to read them):

**vault**: one fresh local control plane and one Vault dev server (``kustos.testing``),
``--managed`` ManagedSecrets (default 1,000) each taking one value from its own KV v2 path
through one AppRole ``SecretSource``, ``refresh: --refresh`` (default ``1m``),
``rollout: none``. ``kustos operator run`` (its own client certificate, so the API
server's audit log tells its requests apart) makes version 1 of each; then, during a
steady window of ``--window`` seconds in which ``--changes`` values are changed in Vault,
the run counts:

- the requests Vault received from Kustos (Vault's file audit device; the harness uses
  the root token and is left out), by kind: KV metadata reads (the version check), KV
  data reads (a value, only for a new version), logins and token calls;
- the requests the API server received from the operator (audit log, by resource/verb);
- the operator's memory (``VmRSS`` during the window, ``VmHWM`` for the peak);
- that every changed value became a new version;
- the operator's start-up: process start to ``/readyz``, and after a restart with every
  ManagedSecret at its version, the requests of its first ``--restart-window`` seconds.

The peer figure is External Secrets Operator's documented behaviour: every refresh of an
ExternalSecret re-reads the provider in full, one request per ExternalSecret per
``refreshInterval`` (``reference/sources-anchors.md`` §3). The target is to send Vault no
more requests than that; the ratio is Kustos's Vault requests per minute over
``managed / refresh minutes``.

**seal**: ``--files`` Secret manifests (default 1,000; one to four keys each) sealed and
opened by ``kustos seal`` / ``kustos unseal`` and by ``sops -e`` / ``sops -d`` (the
binary ``tools/sops/build.sh`` builds) for the same age recipient, on the same files:

- ``sops`` per file: one ``sops -e --age R --encrypted-regex '^(data|stringData)$'`` per
  manifest, one ``sops -d`` per SealedSecret that ``kustos seal`` wrote (sops opens them);
- ``kustos`` per file: one ``kustos seal -f`` / ``kustos unseal`` process per file, on
  the first ``--per-process`` files (default 100: Python's start-up makes 1,000 such
  processes take most of an hour here; the per-file time is what is compared);
- ``kustos`` batch: one ``kustos seal --output-dir`` and one ``kustos unseal
  --output-dir`` process over all the files.

**startup**: ``kustos operator run`` from process start to ``/healthz`` answering (its
imports and set-up; the kubeconfig points at a closed port, so no cluster is involved),
``--startup-rounds`` times, alternating with the same command on the tree named by
``--baseline-src`` (a ``src`` folder, e.g. the main branch before a change) when given.

Everything binds to loopback; the work folder ``bench/.work/sources-*`` is removed at the
end (``--keep-work`` keeps it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import yaml
from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

from bench.rotation import (
    KUSTOS_USER,
    audit_by_user,
    audit_policy,
    mint_kubeconfig,
    start_service,
    stop_service,
)
from bench.running import RESULTS, WORK, kustos_command, kustos_version, provenance, tool_version
from kustos import conventions as c
from kustos.crypto import sops
from kustos.kube.applying import apply_manifests, wait_established
from kustos.kube.client import ClientSettings, make_client
from kustos.sources.reading import SecretSource
from kustos.testing.controlplane import ControlPlane, ControlPlaneSettings, free_ports
from kustos.testing.vault import VaultServer, build_vault, require_vault

NS: Final = "bench-sources"
DEPLOY: Final = Path(__file__).resolve().parent.parent / "deploy"
CRDS: Final = (
    DEPLOY / "rotation" / "crd-managedsecret.yaml",
    DEPLOY / "sources" / "crd-secretsource.yaml",
    DEPLOY / "sources" / "crd-sealedsecret.yaml",
)
SOPS: Final = Path.home() / ".cache" / "kustos" / "sops" / "bin" / "sops"
DEFAULT_OUTPUT: Final = RESULTS / "sources.json"
POLICY: Final = "bench-app"
MS: Any = create_namespaced_resource(c.GROUP, "v1alpha1", "ManagedSecret", "managedsecrets")


def _minutes(text: str) -> float:
    """``30s``, ``1m``, ``2m``: the refresh in minutes."""
    if text.endswith("s"):
        return float(text[:-1]) / 60
    if text.endswith("m"):
        return float(text[:-1])
    raise ValueError(f"refresh {text!r}: use Ns or Nm")


# --------------------------------------------------------------------------- vault
def _unix(stamp: str) -> float:
    """Vault's audit ``time`` (RFC 3339, nanoseconds, ``Z``) as Unix seconds."""
    head, _, rest = stamp.partition(".")
    micros = rest.rstrip("Z")[:6].ljust(6, "0") if rest else "000000"
    moment = dt.datetime.fromisoformat(head.rstrip("Z")).replace(tzinfo=dt.UTC)
    return moment.timestamp() + int(micros) / 1e6


def vault_audit(
    path: Path, start: int, *, between: tuple[float, float] | None = None
) -> Counter[str]:
    """Requests Vault logged after byte *start*, by kind, without the root token's.

    With *between* (Unix seconds), only requests received in that interval count, so a
    rate is the number of requests over exactly the seconds measured.
    """
    counts: Counter[str] = Counter()
    if not path.exists():
        return counts
    with path.open("rb") as log:
        log.seek(start)
        chunk = log.read()
    for line in chunk.splitlines():
        if not line.strip():
            continue
        event = orjson.loads(line)
        if event.get("type") != "request":
            continue
        if "root" in ((event.get("auth") or {}).get("policies") or []):
            continue  # the harness (the root token)
        if between is not None and not between[0] <= _unix(str(event.get("time", ""))) < between[1]:
            continue
        request = event.get("request") or {}
        where, op = str(request.get("path", "")), str(request.get("operation", ""))
        if "/metadata/" in where:
            kind = "kv_metadata_read"
        elif "/data/" in where:
            kind = "kv_data_read" if op == "read" else f"kv_data_{op}"
        elif where.startswith("auth/token/"):
            kind = "token " + where.removeprefix("auth/token/")
        elif where.endswith("/login"):
            kind = "login"
        else:
            kind = f"other {op} {where}"[:80]
        counts[kind] += 1
    return counts


def _changed_window(
    vault: VaultServer, log: Path, touched: Sequence[int], seconds: float
) -> tuple[Counter[str], float, float]:
    """Change the *touched* paths, then count Vault's requests over exactly *seconds*.

    The window is *seconds* of Vault's audit clock from just before the first change (a
    whole number of refresh periods: every path's phase falls in it the same number of
    times, so the count has no edge effect). Returns the counts and the window's monotonic
    start and end (memory samples are taken between them).
    """
    start = log.stat().st_size
    began, wall = time.monotonic(), time.time()
    for j in touched:
        vault.kv_write(f"app/ms-{j:05d}", {"password": secrets.token_urlsafe(12)})
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    end = time.monotonic()
    time.sleep(1.0)  # the audit device has written what arrived before the end
    return vault_audit(log, start, between=(wall, wall + seconds)), began, end


def _admin(plane: ControlPlane) -> Client:
    return make_client(ClientSettings(kubeconfig=plane.kubeconfig))


def _statuses(kube: Client) -> dict[str, int]:
    """currentVersion of every ManagedSecret of the run (0 if none yet)."""
    out = {}
    for obj in kube.list(MS, namespace=NS):
        raw = obj.to_dict()
        out[raw["metadata"]["name"]] = int((raw.get("status") or {}).get("currentVersion") or 0)
    return out


def _ready(port: int, path: str = "/readyz", timeout: float = 120.0) -> float:
    """Seconds until ``http://127.0.0.1:port<path>`` answers 200."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=0.5).status_code == 200:
                return round(time.monotonic() - began, 2)
        time.sleep(0.02)
    raise RuntimeError(f"127.0.0.1:{port}{path}: no 200 after {timeout:g} s")


def _wait(check: Callable[[], bool], *, what: str, timeout: float, every: float = 2.0) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"{what}: not after {timeout:g} s")
        time.sleep(every)
    return round(time.monotonic() - began, 1)


def _prepare(vault: VaultServer, log: Path) -> Any:
    """Vault's file audit device, the policy and the AppRole Kustos logs in with."""
    vault.api("PUT", "sys/audit/file", {"type": "file", "options": {"file_path": str(log)}})
    vault.put_policy(POLICY, "app")
    vault.enable_auth("approle")
    return vault.approle("kustos", policies=[POLICY], ttl="24h", max_ttl="48h")


def _periods(args: argparse.Namespace) -> int:
    """Refresh periods in the window: a whole number, or no honest per-period rate."""
    periods = float(args.window) / (_minutes(args.refresh) * 60)
    if periods < 1 or abs(periods - round(periods)) > 1e-9:
        raise ValueError(f"--window {args.window:g} s: use a whole number of --refresh periods")
    return round(periods)


def _paths(args: argparse.Namespace) -> int:
    """Distinct KV paths: ManagedSecret i reads path ``i % paths`` (default: one each)."""
    return int(args.paths or args.managed)


def _changes(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The paths changed in the window, and the ManagedSecrets that read them."""
    paths = _paths(args)
    touched = list(range(0, paths, max(1, paths // args.changes)))[: args.changes]
    return touched, [f"ms-{i:05d}" for i in range(args.managed) if i % paths in touched]


def _objects(
    kube: Client, vault: VaultServer, args: argparse.Namespace, role_id: str, secret_id: str
) -> None:
    """CRDs, namespace, the AppRole SecretSource, the KV values and the ManagedSecrets."""
    n = args.managed
    apply_manifests(kube, list(CRDS))
    for name in ("managedsecrets", "secretsources", "sealedsecrets"):
        wait_established(kube, f"{name}.kustos.io")
    kube.create(Namespace(metadata=ObjectMeta(name=NS)))
    kube.create(
        Secret(
            metadata=ObjectMeta(name="approle", namespace=NS),
            stringData={"secret-id": secret_id},
        )
    )
    kube.create(
        SecretSource(
            apiVersion=c.API_VERSION,
            kind="SecretSource",
            metadata=ObjectMeta(name="vault", namespace=NS),
            spec={
                "vault": {
                    "address": vault.address,
                    "auth": {
                        "appRole": {"roleId": role_id,
                                    "secretRef": {"name": "approle"}}
                    },
                }
            },
        )
    )  # fmt: skip
    for j in range(_paths(args)):
        vault.kv_write(f"app/ms-{j:05d}", {"password": secrets.token_urlsafe(12)})
    for i in range(n):
        name = f"ms-{i:05d}"
        kube.create(
            MS(
                apiVersion=c.API_VERSION,
                kind="ManagedSecret",
                metadata={"name": name, "namespace": NS},
                spec={
                    "secretName": name,
                    "data": {
                        "password": {
                            "vault": {
                                "source": {"name": "vault"},
                                "path": f"app/ms-{i % _paths(args):05d}",
                            }
                        }
                    },
                    "refresh": args.refresh,
                    "rollout": {"strategy": "none"},
                },
            )
        )


def _restart(
    argv: list[str], root: Path, port: int, *, kube: Client, logs: tuple[Path, Path], window: float
) -> dict[str, Any]:
    """Start the operator again with every ManagedSecret at its version: what it costs."""
    kube_audit, vault_log = logs
    kube_start = kube_audit.stat().st_size
    vault_start = vault_log.stat().st_size
    op = start_service("kustos-operator", argv, root / "operator-2.log", port)
    try:
        ready = _ready(port)
        time.sleep(window)
    finally:
        stop_service(op)
    counts = audit_by_user(kube_audit, kube_start, kube_audit.stat().st_size).get(KUSTOS_USER, {})
    return {
        "ready_s": ready,
        "window_s": window,
        "vault_requests": dict(sorted(vault_audit(vault_log, vault_start).items())),
        "api_requests_non_watch": sum(v for (_, _, verb), v in counts.items() if verb != "WATCH"),
        "api_requests": {
            f"{res}{'/' + sub if sub else ''} {verb}": v
            for (res, sub, verb), v in sorted(counts.items())
        },
        # Less the values changed on purpose in the window (the caller knows how many).
        "managed_with_a_new_version_after_restart": sum(v >= 2 for v in _statuses(kube).values()),
    }


def _gets(counts: Mapping[tuple[str, str, str], float], resource: str) -> float:
    """GETs of one object of *resource* (not its subresources, not lists)."""
    return sum(
        v for (res, sub, verb), v in counts.items() if (res, sub, verb) == (resource, "", "GET")
    )


def _vault_binary() -> Path:
    try:
        return require_vault()
    except Exception:  # noqa: BLE001 - build it as the tests do
        return build_vault()


def run_vault(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The Vault-sources measurement (see the module docstring)."""
    n, refresh_min = args.managed, _minutes(args.refresh)
    intervals, seconds = _periods(args), float(args.window)
    out: dict[str, Any] = {"managed": n, "refresh": args.refresh, "window_s": args.window}
    binary = _vault_binary()
    out["vault"] = tool_version([str(binary), "version"])
    settings = ControlPlaneSettings(
        root / "cp", nodes=1, audit_policy=audit_policy(root / "audit-policy.yaml")
    )
    with ControlPlane(settings) as plane, VaultServer(root / "vault", binary=binary) as vault:
        kube_audit = plane.logs_dir / "audit.log"
        vault_log = root / "vault-audit.log"
        creds = _prepare(vault, vault_log)
        kubeconfig = mint_kubeconfig(plane, KUSTOS_USER, root / "identities")
        with _admin(plane) as kube:
            began = time.monotonic()
            _objects(kube, vault, args, creds.role_id, creds.secret_id.reveal_text())
            out["setup_s"] = round(time.monotonic() - began, 1)
            port = free_ports(1)[0]
            exe = kustos_command() or "kustos"
            argv = [exe, "operator", "run", "-n", NS, "--kubeconfig", str(kubeconfig),
                    "--listen", f"127.0.0.1:{port}", "--no-leader-elect", "--no-reload",
                    "--max-parallel", str(args.max_parallel), "--log-level", "warning"]  # fmt: skip
            op = start_service("kustos-operator", argv, root / "operator.log", port)
            try:
                out["operator_ready_s"] = _ready(port)
                out["first_versions_s"] = _wait(
                    lambda: sum(v >= 1 for v in _statuses(kube).values()) == n,
                    what=f"version 1 of {n} ManagedSecrets",
                    timeout=args.first_timeout,
                )
                # One refresh period so that every object's next check is scheduled.
                time.sleep(refresh_min * 60)
                touched, changed = _changes(args)
                kube_start = kube_audit.stat().st_size
                vault_counts, window_began, window_end = _changed_window(
                    vault, vault_log, touched, seconds
                )
                by_user = audit_by_user(kube_audit, kube_start, kube_audit.stat().st_size)
                rss = op.sampler.between(window_began, window_end)
                statuses = _statuses(kube)
            finally:
                stopped = stop_service(op)
            restart = _restart(
                argv, root, port, kube=kube, logs=(kube_audit, vault_log),
                window=args.restart_window,
            )  # fmt: skip
        minutes = seconds / 60
        kube_counts = by_user.get(KUSTOS_USER, {})
        api_non_watch = sum(v for (_, _, verb), v in kube_counts.items() if verb != "WATCH")
        vault_total = sum(vault_counts.values())
        checks = vault_counts.get("kv_metadata_read", 0)
        eso_per_min = n / refresh_min
        paths = _paths(args)
        budget_per_min = paths / refresh_min  # one request per distinct path per refresh
        out.update(
            {
                "window_measured_s": round(seconds, 1),
                "window_refresh_periods": intervals,
                "window_overrun_s": round(window_end - window_began - seconds, 2),
                "vault_requests": dict(sorted(vault_counts.items())),
                "vault_requests_per_min": round(vault_total / minutes, 1),
                "vault_version_checks_per_min": round(checks / minutes, 1),
                "vault_other_requests_per_min": round((vault_total - checks) / minutes, 1),
                "ratio_version_checks_kustos_over_eso": round(checks / minutes / eso_per_min, 3),
                "managedsecrets_get_per_min": round(
                    _gets(kube_counts, "managedsecrets") / minutes, 1
                ),
                "api_requests": {
                    f"{res}{'/' + sub if sub else ''} {verb}": v
                    for (res, sub, verb), v in sorted(kube_counts.items())
                },
                "api_requests_per_min_non_watch": round(api_non_watch / minutes, 1),
                "operator_rss_mb_window": {
                    "max": round(max(rss), 1) if rss else None,
                    "mean": round(statistics.fmean(rss), 1) if rss else None,
                },
                "operator": stopped,
                "distinct_paths": _paths(args),
                "changed_in_vault": len(touched),
                "managed_reading_a_changed_path": len(changed),
                "changed_reached_version_2": sum(statuses.get(m, 0) >= 2 for m in changed),
                "unchanged_with_new_version": sum(
                    v >= 2 for m, v in statuses.items() if m not in changed
                ),
                "eso_documented_vault_requests_per_min": eso_per_min,
                "ratio_vault_requests_kustos_over_eso": round(
                    vault_total / minutes / eso_per_min, 3
                ),
                # Kustos's own budget: one request per distinct path per refresh period.
                "budget_one_per_path_per_refresh_per_min": budget_per_min,
                "vault_requests_per_path_per_refresh": round(vault_total / (paths * intervals), 4),
            }
        )
        restart["managed_with_a_new_version_after_restart"] -= out["changed_reached_version_2"]
        out["restart"] = restart
        out["target"] = {
            "target": "Vault requests per minute <= ESO's one per ExternalSecret per refresh",
            "value": out["vault_requests_per_min"],
            "limit": eso_per_min,
            "pass": out["vault_requests_per_min"] <= eso_per_min,
            "budget": "at most one Vault request per distinct path per refresh, on average",
            "budget_pass": out["vault_requests_per_min"] <= budget_per_min,
        }
    return out


# --------------------------------------------------------------------------- seal
def _manifests(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        keys = {f"key{k}": secrets.token_urlsafe(16 + 8 * k) for k in range(1 + i % 4)}
        doc = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"s-{i:05d}", "namespace": f"team-{i % 20:02d}",
                         "labels": {"app": f"app-{i % 50}"}},
            "type": "Opaque",
            "stringData": keys,
        }  # fmt: skip
        path = folder / f"s-{i:05d}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths.append(path)
    return paths


def _each(argvs: Sequence[tuple[list[str], Path | None]], env: dict[str, str]) -> float:
    """Run every command one after the other (stdout to its file); wall seconds."""
    began = time.monotonic()
    for argv, stdout in argvs:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
            done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[:300]}")
    return time.monotonic() - began


def _per_file(seconds: float, count: int) -> float:
    return round(seconds / count * 1000, 2)


def run_seal(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The seal/unseal measurement (see the module docstring)."""
    if not SOPS.exists():
        raise RuntimeError(f"{SOPS} missing: run tools/sops/build.sh (make sops)")
    exe = kustos_command() or "kustos"
    recipient, identity = sops.new_identity()
    key = root / "key.txt"
    key.write_text(identity.reveal_text() + "\n")
    key.chmod(0o600)
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key)}
    plain = _manifests(root / "plain", args.files)
    n, k = len(plain), min(args.per_process, len(plain))
    dirs = {d: root / d for d in ("sops-enc", "sops-dec", "k-one", "k-batch", "k-open-one",
                                  "k-open-batch")}  # fmt: skip
    for folder in dirs.values():
        folder.mkdir()
    regex = "^(data|stringData)$"
    times: dict[str, float] = {}
    times["sops_encrypt"] = _each(
        [([str(SOPS), "-e", "--age", recipient, "--encrypted-regex", regex, str(p)],
          dirs["sops-enc"] / p.name) for p in plain], env,
    )  # fmt: skip
    times["kustos_seal_batch"] = _each(
        [([exe, "seal", "-r", recipient, "--output-dir", str(dirs["k-batch"]),
           *[a for p in plain for a in ("-f", str(p))]], None)], env,
    )  # fmt: skip
    times["kustos_seal_per_process"] = _each(
        [([exe, "seal", "-f", str(p), "-r", recipient], dirs["k-one"] / p.name)
         for p in plain[:k]], env,
    )  # fmt: skip
    sealed = sorted(dirs["k-batch"].iterdir())
    times["sops_decrypt"] = _each(
        [([str(SOPS), "-d", str(p)], dirs["sops-dec"] / p.name) for p in sealed], env
    )
    times["kustos_unseal_batch"] = _each(
        [([exe, "unseal", "-i", str(key), "--output-dir", str(dirs["k-open-batch"]),
           *map(str, sealed)], None)], env,
    )  # fmt: skip
    times["kustos_unseal_per_process"] = _each(
        [([exe, "unseal", "-i", str(key), str(p)], dirs["k-open-one"] / p.name)
         for p in sealed[:k]], env,
    )  # fmt: skip
    # The outputs agree: sops opens what kustos sealed to the same values kustos unseals.
    agree = 0
    for p in sealed:
        by_sops = yaml.safe_load((dirs["sops-dec"] / p.name).read_text())["spec"]["stringData"]
        by_kustos = yaml.safe_load((dirs["k-open-batch"] / p.name).read_text())["stringData"]
        agree += by_sops == by_kustos
    ms = {
        "sops_encrypt": _per_file(times["sops_encrypt"], n),
        "sops_decrypt": _per_file(times["sops_decrypt"], n),
        "kustos_seal_per_process": _per_file(times["kustos_seal_per_process"], k),
        "kustos_unseal_per_process": _per_file(times["kustos_unseal_per_process"], k),
        "kustos_seal_batch": _per_file(times["kustos_seal_batch"], n),
        "kustos_unseal_batch": _per_file(times["kustos_unseal_batch"], n),
    }
    return {
        "files": n,
        "per_process_files": k,
        "sops": tool_version([str(SOPS), "--version"]),
        "wall_seconds": {name: round(v, 2) for name, v in times.items()},
        "ms_per_file": ms,
        "outputs_agree": f"{agree}/{n}",
        "ratios_kustos_over_sops": {
            "seal_per_process": round(ms["kustos_seal_per_process"] / ms["sops_encrypt"], 2),
            "unseal_per_process": round(ms["kustos_unseal_per_process"] / ms["sops_decrypt"], 2),
            "seal_batch": round(ms["kustos_seal_batch"] / ms["sops_encrypt"], 3),
            "unseal_batch": round(ms["kustos_unseal_batch"] / ms["sops_decrypt"], 3),
        },
    }


# --------------------------------------------------------------------------- startup
def _startup_once(exe: str, src: Path, kubeconfig: Path) -> float:
    """One ``kustos operator run`` of the tree *src*: seconds to ``/healthz``."""
    port = free_ports(1)[0]
    argv = [exe, "operator", "run", "-n", "startup", "--kubeconfig", str(kubeconfig),
            "--listen", f"127.0.0.1:{port}", "--no-leader-elect",
            "--log-level", "error"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    began = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        _ready(port, "/healthz", timeout=60)
        return round(time.monotonic() - began, 2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def run_startup(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The operator's start-up time, this tree against ``--baseline-src`` (alternated)."""
    kubeconfig = root / "closed.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_ports(1)[0]}"}}],
            "users": [{"name": "u", "user": {"token": "unused"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        })
    )  # fmt: skip
    exe = kustos_command() or "kustos"
    here = Path(__file__).resolve().parent.parent / "src"
    trees = {"this_tree": here}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.startup_rounds):
        for name, src in trees.items():
            times[name].append(_startup_once(exe, src, kubeconfig))
    out: dict[str, Any] = {
        "rounds": args.startup_rounds,
        "measure": "process start to /healthz 200 (kubeconfig at a closed port)",
        "seconds": times,
        "median_s": {name: round(statistics.median(v), 2) for name, v in times.items()},
    }
    if "baseline" in trees:
        out["baseline_src"] = str(trees["baseline"])
        out["ratio_this_over_baseline"] = round(
            out["median_s"]["this_tree"] / out["median_s"]["baseline"], 3
        )
    return out


# --------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.sources", description=__doc__)
    parser.add_argument(
        "which", nargs="?", choices=("all", "vault", "seal", "startup"), default="all"
    )
    parser.add_argument("--managed", type=int, default=1000, help="vault: ManagedSecrets")
    parser.add_argument("--refresh", default="1m", help="vault: spec.refresh (Ns or Nm)")
    parser.add_argument(
        "--window", type=float, default=180.0, help="vault: steady seconds (refresh multiple)"
    )
    parser.add_argument("--changes", type=int, default=10, help="vault: values changed")
    parser.add_argument(
        "--paths", type=int, default=None, help="vault: distinct KV paths (default: --managed)"
    )
    parser.add_argument(
        "--section", default="vault", help="vault: the results key (keep several variants)"
    )
    parser.add_argument("--max-parallel", type=int, default=8, help="vault: operator option")
    parser.add_argument("--first-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--restart-window", type=float, default=60.0, help="vault: seconds counted after a restart"
    )
    parser.add_argument("--startup-rounds", type=int, default=7, help="startup: starts per tree")
    parser.add_argument(
        "--baseline-src", type=Path, default=None, help="startup: a src folder to compare with"
    )
    parser.add_argument("--files", type=int, default=1000, help="seal: manifests")
    parser.add_argument(
        "--per-process", type=int, default=100, help="seal: files run one kustos process each"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--keep-work", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen measurements and write ``bench/results/sources.json``."""
    args = _parser().parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sources-", dir=WORK))
    reproduce = " ".join(["python -m bench.sources", *(argv if argv is not None else sys.argv[1:])])
    doc: dict[str, Any] = provenance(reproduce)
    doc["versions"] = {"kustos": kustos_version()}
    previous: dict[str, Any] = {}
    if args.output.exists() and args.which != "all":
        with contextlib.suppress(ValueError):
            previous = orjson.loads(args.output.read_bytes())
    failed = False
    for name, run in (("seal", run_seal), ("startup", run_startup), ("vault", run_vault)):
        if args.which not in ("all", name):
            continue
        key = args.section if name == "vault" else name
        began = time.monotonic()
        load = [round(x, 2) for x in os.getloadavg()]
        folder = root / name
        folder.mkdir()
        try:
            doc[key] = run(args, folder)
        except Exception as exc:  # noqa: BLE001 - recorded, then exit 1
            failed = True
            doc[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            traceback.print_exc()
        doc[key]["bench_seconds"] = round(time.monotonic() - began, 1)
        doc[key]["load_average"] = {"start": load, "end": [round(x, 2) for x in os.getloadavg()]}
        print(f"bench.sources {key}: {orjson.dumps(doc[key]).decode()[:2000]}")
    for key, value in previous.items():  # what this run did not measure is kept, dated
        if key not in doc and isinstance(value, dict) and key not in ("machine", "versions"):
            doc[key] = {"from_run": previous.get("date"), **value}
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.keep_work:
        print(f"bench.sources: state kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"bench.sources: → {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
