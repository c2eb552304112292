"""``kustos demo``: the guided tour on the local control plane.

Each capability adds its chapter. The foundation chapter brings up the dev-cluster (or
reuses it), deploys the example application in ``examples/``, waits for its rollouts on
the KWOK nodes and shows, from the live cluster, which workload uses which Secret and how.

The backup and audit chapters run the real ``kustos`` commands as a user would type them
(each shown with a ``$`` and its output), in a scratch folder of the dev-cluster's state
(``demo/``, emptied at the start of each chapter so that the tour can run again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import typer
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kustos.cli.devcluster import local_keyring_flags
from kustos.cli.output import print_table
from kustos.errors import InputError, KustosError
from kustos.kms.reencrypting import reencrypt
from kustos.kms.stored import parse_stored
from kustos.kube.applying import apply_manifests, wait_established
from kustos.kube.client import ClientSettings, api_errors, make_async_client, make_client
from kustos.kube.listing import list_cluster
from kustos.kube.rollout import ROLLABLE, wait_for_rollout
from kustos.rbac.access import is_platform_subject, who_can
from kustos.rbac.matching import Request
from kustos.rbac.model import build_policy
from kustos.scan.checking import ScanInput
from kustos.scan.reporting import render_table
from kustos.scan.scanning import scan as run_scan
from kustos.sensitive import Sensitive
from kustos.testing.controlplane import (
    ControlPlane,
    ControlPlaneSettings,
    default_state_dir,
    free_ports,
    reuse_or_start,
)
from kustos.testing.processes import stop_session, wait_for_port

EXAMPLE_NAMESPACE = "shop"
#: The backup chapter's namespace (``examples/backup``): backed up, deleted, restored.
BACKUP_NAMESPACE: Final = "billing"
#: Bearer tokens of the audit chapter's users (the audited API server's token file).
AUDIT_TOKENS: Final = {
    "demo-token-alice": ("alice", ("shop-team",)),
    "demo-token-deploy-bot": ("deploy-bot", ("ci",)),
}
#: How long the audit chapter waits for the webhook to deliver its events.
AUDIT_WAIT: Final = 60.0


def demo(
    examples: Annotated[Path, typer.Option(help="The example application's manifests.")] = Path(
        "examples/shop"
    ),
    state_dir: Annotated[Path | None, typer.Option(help="dev-cluster state folder.")] = None,
) -> int:
    """Run the guided tour: local control plane, example app, Secrets and their consumers."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped or logged: do not squeeze the field paths away
    if not examples.is_dir():
        raise InputError(f"{examples}: example manifests not found (run from the repository root)")
    directory = state_dir or default_state_dir()

    console.rule("[bold]1. A real control plane on loopback")
    running = reuse_or_start(ControlPlaneSettings(directory))
    plane = running.plane
    if running.reused:
        console.print(f"Reusing the running dev-cluster in {directory}")
    else:
        console.print(
            f"Started etcd, kube-apiserver, controller-manager, scheduler and KWOK "
            f"in {running.seconds:.1f}s"
        )
    for name, alive in plane.status().items():
        console.print(f"  {name:<24} {'[green]running[/]' if alive else '[red]stopped[/]'}")
    settings = ClientSettings(kubeconfig=plane.kubeconfig)
    with make_client(settings) as client:
        _tour(console, client, settings, examples)
        _protect_keys(console, plane, client, directory)
        _rotate(console, client, settings, examples.parent / "rotation")
        scratch = directory / "demo"
        _backup(console, client, plane, examples.parent / "backup", scratch / "backup")
        _watch(console, client, plane, examples.parent / "audit", scratch / "audit")
    console.print(
        f"\nThe cluster stays up. [bold]export KUBECONFIG={plane.kubeconfig}[/]", soft_wrap=True
    )
    console.print("Stop it with: kustos dev-cluster down")
    return 0


def _describe_raw(raw: bytes | None, value: Sensitive) -> str:
    """How etcd holds a Secret: its prefix, and whether the value is readable (never shown)."""
    if raw is None:
        return "not found in etcd"
    visible = bool(value) and value.reveal() in raw
    stored = parse_stored(raw)
    if stored.encrypted:
        seen = "VISIBLE" if visible else "not in the bytes"
        return f"k8s:enc:kms:v2:{stored.provider}: (key {stored.key_id}); the value is {seen}"
    return (
        f"{raw[:12]!r}… plain protobuf; the value is {'VISIBLE' if visible else 'not in the bytes'}"
    )


def _protect_keys(console: Console, plane: ControlPlane, client: Client, state: Path) -> None:
    """Chapter 6: the same Secret in etcd before and after the Kustos KMS v2 plugin."""
    console.rule("[bold]6. Protect (keys): Secrets encrypted at rest by the Kustos KMS v2 plugin")
    key = f"/registry/secrets/{EXAMPLE_NAMESPACE}/db-credentials"
    live = list_cluster(client, namespaces=[EXAMPLE_NAMESPACE], kinds=["Secret"])
    secret = live.secret(EXAMPLE_NAMESPACE, "db-credentials")
    value = secret.body["data"]["password"] if secret is not None else Sensitive(b"")
    console.print(
        f"etcd {key}, before: {_describe_raw(plane.etcd_value(key), value)}", highlight=False
    )
    if "kms-plugin" not in plane.status():
        plane.enable_kms(local_keyring_flags(state / "kms"))
        console.print(
            "Started `kustos kms serve` (local keyring) and restarted kube-apiserver "
            "with a KMS v2 EncryptionConfiguration",
            highlight=False,
        )
    rewritten = reencrypt(client, ["secrets"])
    console.print(f"kustos kms reencrypt: {rewritten[0].done} Secrets rewritten", highlight=False)
    console.print(
        f"etcd {key}, after:  {_describe_raw(plane.etcd_value(key), value)}", highlight=False
    )
    console.print(
        "Rotate with `kustos kms keys rotate`, then `kustos kms reencrypt` (docs/kms.md)."
    )


def _rotate(console: Console, client: Client, settings: ClientSettings, folder: Path) -> None:
    """Chapter 7: a ManagedSecret rotates, its consumer rolls, history and rollback."""
    console.rule("[bold]7. Rotate: versions, watched rollouts, rollback")
    crd = folder.parent.parent / "deploy" / "rotation" / "crd-managedsecret.yaml"
    if not crd.is_file() or not folder.is_dir():
        console.print(f"[yellow]skipped: {crd} or {folder} not found[/]")
        return
    apply_manifests(client, [crd])
    wait_established(client, "managedsecrets.kustos.io")
    _apply(console, client, folder)

    async def run() -> list[str]:
        from kustos.rotation.rotating import Engine, list_versions  # noqa: PLC0415

        aclient = make_async_client(settings)
        lines = []
        try:
            engine = Engine(aclient)
            made = []
            for reason in ("Manual", "Manual: quarterly"):
                result = await engine.rotate(EXAMPLE_NAMESPACE, "shop-db", reason=reason)
                made.append(result.version or 0)
                rolled = ", ".join(result.restarted) or "nothing"
                lines.append(f"kustos rotate shop/shop-db: {result.message}; rolled {rolled}")
            back = made[0]  # rerunnable: always the version this run made first
            result = await engine.rollback(EXAMPLE_NAMESPACE, "shop-db", to=back)
            lines.append(f"kustos rollback shop/shop-db --to {back}: {result.message}")
            status, versions = await list_versions(aclient, EXAMPLE_NAMESPACE, "shop-db")
            current = status.get("currentVersion")
            for v in versions[:4]:
                mark = "*" if v["number"] == current else " "
                lines.append(
                    f"  v{v['number']}{mark} {v['created']}  {v['contentHash']}  {v['reason']}"
                )
        finally:
            await aclient.close()
        return lines

    for line in asyncio.run(run()):
        console.print(line, highlight=False)
    console.print(
        "The newest version has the fingerprint of the one rolled back to: the old value is "
        "back, as a new version. On a schedule: "
        "[bold]kustos operator run -n shop[/] (docs/rotate.md)",
        highlight=False,
    )


def _tour(console: Console, client: Client, settings: ClientSettings, examples: Path) -> None:
    """Chapters 2-5: deploy the example app, then look at it as each capability does."""

    console.rule("[bold]2. The example application")
    applied = apply_manifests(client, [examples])
    console.print(f"Applied {len(applied)} objects from {examples}:")
    for line in applied:
        console.print(f"  {line}")
    index = list_cluster(client, namespaces=[EXAMPLE_NAMESPACE])
    rollable = [w for w in index.workloads(EXAMPLE_NAMESPACE) if w.kind in ROLLABLE]

    async def wait_all() -> list[str]:
        aclient = make_async_client(settings)
        try:
            results = []
            for w in rollable:
                p = await wait_for_rollout(aclient, w.kind, w.namespace, w.name, timeout=90)
                results.append(f"{w.kind}/{w.name}: {p.message}")
            return results
        finally:
            await aclient.close()

    for line in asyncio.run(wait_all()):
        console.print(f"  [green]rolled out[/] {line}")

    console.rule("[bold]3. Who uses which Secret (read back from the live cluster)")
    index = list_cluster(client, namespaces=[EXAMPLE_NAMESPACE])
    table = Table()
    for col in ("Secret", "Consumer", "Via"):
        table.add_column(col, no_wrap=True)
    table.add_column("Field", overflow="fold")
    for secret in index.of_kind("Secret", namespace=EXAMPLE_NAMESPACE):
        for r in index.top_level_consumers(secret.namespace, secret.name):
            table.add_row(
                secret.name,
                f"{r.consumer.kind}/{r.consumer.name}",
                r.via.value + (f" ({r.key})" if r.key else ""),
                r.field,
            )
    print_table(table, console)

    console.rule("[bold]4. Inspect: every secrets risk, read from the live cluster")
    scan_result = run_scan(
        ScanInput(index=index, live=True, now=dt.datetime.now(dt.UTC)),
    )
    render_table(scan_result, console)
    console.print(
        "Same findings from the files, with file and line: [bold]kustos scan examples/[/]",
        highlight=False,
    )

    console.rule("[bold]5. Who can read shop/db-credentials, and how")
    policy = build_policy(index)
    request = Request("get", "", "secrets", namespace=EXAMPLE_NAMESPACE, name="db-credentials")
    shown = 3
    subjects = who_can(policy, request, index=index)
    for sp in [sp for sp in subjects if not is_platform_subject(sp.subject)]:
        console.print(f"[bold]{sp.subject}[/]", highlight=False)
        for p in sp.paths[:shown]:
            colour = "red" if p.type == "direct" else "yellow"
            console.print(f"  [{colour}]{p.type}[/] {p.via}", highlight=False)
        if len(sp.paths) > shown:
            console.print(f"  [dim]… {len(sp.paths) - shown} more paths[/]", highlight=False)
    hidden = sum(1 for sp in subjects if is_platform_subject(sp.subject))
    console.print(f"[dim]{hidden} control-plane identities hidden (--all-subjects)[/]")
    console.print(
        "All paths, as JSON: [bold]kustos who-can get secrets db-credentials -n shop "
        "--cluster --format json[/]",
        highlight=False,
    )


# --------------------------------------------------------------------------- commands
def _chapter(console: Console, title: str, manifests: Path, folder: Path) -> Path | None:
    """Open a chapter that runs commands: its scratch folder, emptied; ``None`` to skip it.

    The folder holds only what the last tour wrote there (keys, backups, an archive), so
    each run starts as the first did.
    """
    console.rule(f"[bold]{title}")
    if not manifests.is_dir():
        console.print(f"[yellow]skipped: {manifests} not found[/]")
        return None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder


def _apply(console: Console, client: Client, manifests: Path) -> list[str]:
    """Server-side apply a chapter's manifests, print each object; ``Kind [ns/]name`` of each."""
    applied = apply_manifests(client, [manifests])
    for line in applied:
        console.print(f"  applied {line}", highlight=False)
    return applied


def _show(console: Console, text: str) -> None:
    """Command output as it came: no markup, no highlighting, long lines left whole."""
    if text.strip():
        console.print(Text(text.rstrip("\n")), soft_wrap=True, highlight=False)


def _kustos(
    console: Console,
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    comment: str = "",
) -> str:
    """Run one real ``kustos`` command as a user would, print it and its output; its stdout.

    A failing command ends the tour with its own one-line error (never a value: Kustos
    messages carry names only).
    """
    line = "$ kustos " + " ".join(shlex.quote(a) for a in args)
    console.print(Text(line + (f"    # {comment}" if comment else ""), style="bold"))
    done = subprocess.run(
        [sys.executable, "-m", "kustos", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    _show(console, done.stdout)
    _show(console, done.stderr)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise KustosError(f"demo: kustos {args[0]} {args[1]} exited {done.returncode}: {last}")
    return done.stdout


# --------------------------------------------------------------------------- backup
def _secret_facts(client: Client, namespace: str) -> dict[str, tuple[Any, ...]]:
    """Each Secret of *namespace* as what a restore must give back: never printed."""
    index = list_cluster(client, namespaces=[namespace], kinds=["Secret"])
    facts: dict[str, tuple[Any, ...]] = {}
    for secret in index.of_kind("Secret", namespace=namespace):
        meta = secret.body.get("metadata", {})
        facts[secret.name] = (
            secret.body.get("type"),
            secret.body.get("data") or {},  # Sensitive values: compared, never shown
            meta.get("labels") or {},
            meta.get("annotations") or {},
            bool(secret.body.get("immutable")),
        )
    return facts


def _delete_namespace(client: Client, name: str, *, timeout: float = 120.0) -> float:
    """Delete namespace *name* and wait until it is gone (its finalizers done); seconds."""
    started = time.monotonic()
    with api_errors(f"delete namespace {name}", verb="delete", resource="namespaces"):
        client.delete(Namespace, name)
    while time.monotonic() - started < timeout:
        try:
            client.get(Namespace, name)
        except ApiError as exc:
            if exc.status.code == 404:
                return time.monotonic() - started
            raise
        time.sleep(0.5)
    raise KustosError(f"demo: namespace {name} still terminating after {timeout:.0f}s")


def _backup(
    console: Console, client: Client, plane: ControlPlane, manifests: Path, folder: Path
) -> None:
    """Chapter 8: a namespace backed up to an age key, deleted, restored, compared."""
    title = "8. Protect (backup): a namespace through backup, deletion and restore"
    work = _chapter(console, title, manifests, folder)
    if work is None:
        return
    _apply(console, client, manifests)
    env = {"KUBECONFIG": str(plane.kubeconfig)}
    ns = BACKUP_NAMESPACE
    recipient = _kustos(console, ["backup", "keygen", "--output", "key.txt"], cwd=work, env=env)
    before = _secret_facts(client, ns)
    _kustos(
        console,
        ["backup", "create", "-n", ns, "-r", recipient.strip(), "-o", f"{ns}.age", "-q"],
        cwd=work,
        env=env,
    )
    _kustos(console, ["backup", "verify", f"{ns}.age", "-i", "key.txt"], cwd=work, env=env)
    seconds = _delete_namespace(client, ns)
    console.print(
        f"Deleted namespace {ns} (as kubectl delete namespace {ns} --wait): gone in {seconds:.1f}s",
        highlight=False,
    )
    _kustos(console, ["backup", "restore", f"{ns}.age", "-i", "key.txt", "-q"], cwd=work, env=env)
    after = _secret_facts(client, ns)
    same = sorted(n for n, f in before.items() if after.get(n) == f)
    differ = sorted(set(before) ^ set(after) | {n for n in before if after.get(n) != before[n]})
    if differ or not same:
        raise KustosError(f"demo: restored Secrets differ from the originals: {', '.join(differ)}")
    console.print(
        f"[green]{len(same)} of {len(before)} Secrets[/] in {ns} equal to the originals "
        "(data, type, labels, annotations, immutable; compared, never shown):",
        highlight=False,
    )
    console.print("  " + ", ".join(same), highlight=False)
    console.print(Text(f"The same file opens without Kustos, in {work}:"), soft_wrap=True)
    console.print(
        Text.assemble((f"  age -d -i key.txt {ns}.age | tar -t", "bold"), "  (docs/backup.md)")
    )


# --------------------------------------------------------------------------- watch
@contextmanager
def _receiver(plane: ControlPlane, archive: Path, log: Path) -> Iterator[str]:
    """``kustos audit serve`` over mutual TLS (the cluster's certificates); its URL."""
    port = free_ports(1)[0]
    pki = plane.pki
    argv = [
        sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(archive),
        "--listen", f"127.0.0.1:{port}", "--tls-cert", str(pki.serving.cert),
        "--tls-key", str(pki.serving.key), "--client-ca", str(pki.ca.cert),
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(proc, port, name="kustos audit serve", log=log)
        yield f"https://127.0.0.1:{port}/audit"
    finally:
        stop_session(proc)


def _as_user(server: str, plane: ControlPlane, token: str, path: str) -> int:
    """One GET to the audited API server with a bearer token; the HTTP status."""
    import httpx  # noqa: PLC0415 - only this chapter talks HTTP itself

    with httpx.Client(
        base_url=server,
        verify=ssl.create_default_context(cafile=str(plane.pki.ca.cert)),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as http:
        return http.get(path).status_code


def _archived(archive: Path, env: Mapping[str, str], user: str) -> bool:
    """Whether the archive holds a request of *user* yet (the webhook sends every second)."""
    done = subprocess.run(
        [sys.executable, "-m", "kustos", "audit", "query", "--archive", str(archive),
         "--user", user, "--format", "json"],
        env={**os.environ, **env}, capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0 and bool(orjson.loads(done.stdout or b"{}").get("events"))


def _remove(client: Client, applied: Sequence[str]) -> None:
    """Delete the chapter's planted RBAC objects (``Kind [namespace/]name`` as applied)."""
    deleters: dict[str, Callable[[str, str | None], None]] = {
        "Role": lambda n, ns: client.delete(Role, n, namespace=ns),
        "RoleBinding": lambda n, ns: client.delete(RoleBinding, n, namespace=ns),
        "ClusterRole": lambda n, _: client.delete(ClusterRole, n),
        "ClusterRoleBinding": lambda n, _: client.delete(ClusterRoleBinding, n),
    }
    for line in applied:
        kind, qualified = line.split(" ", 1)
        ns, _, name = qualified.rpartition("/")
        with api_errors(f"delete {line}", verb="delete", resource=kind.lower() + "s"):
            deleters[kind](name, ns or None)


def _watch(
    console: Console, client: Client, plane: ControlPlane, manifests: Path, folder: Path
) -> None:
    """Chapter 9: real audit events archived by the receiver; a planted bulk read alerts."""
    title = "9. Watch: who read a Secret, and an alert on a bulk read"
    work = _chapter(console, title, manifests, folder)
    if work is None:
        return
    env = {"KUBECONFIG": str(plane.kubeconfig)}
    archive = work / "archive"
    _kustos(console, ["audit", "policy", "-o", "policy.yaml"], cwd=work, env=env)
    planted = _apply(console, client, manifests)
    try:
        with (
            _receiver(plane, archive, work / "receiver.log") as url,
            plane.audited_apiserver(work / "policy.yaml", url, tokens=AUDIT_TOKENS) as server,
        ):
            console.print(
                f"Started `kustos audit serve --archive {archive.name}` (mutual TLS) and a "
                "kube-apiserver auditing to it (same etcd)",
                highlight=False,
            )
            shop = f"/api/v1/namespaces/{EXAMPLE_NAMESPACE}/secrets"
            requests = [
                ("alice", "demo-token-alice", f"{shop}/db-credentials"),  # allowed: her Role
                ("alice", "demo-token-alice", shop),  # refused: she may get one Secret only
                ("deploy-bot", "demo-token-deploy-bot", "/api/v1/secrets"),  # the planted one
            ]
            for user, token, path in requests:
                code = _as_user(server, plane, token, path)
                console.print(f"  {user:<10} GET {path} -> {code}", highlight=False)
            deadline = time.monotonic() + AUDIT_WAIT
            while not _archived(archive, env, "deploy-bot"):
                if time.monotonic() > deadline:
                    raise KustosError(
                        f"demo: the audit webhook delivered nothing in {AUDIT_WAIT:.0f}s; "
                        f"see {work / 'receiver.log'}"
                    )
                time.sleep(0.5)
    finally:
        _remove(client, planted)
    console.print(f"  deleted the {len(planted)} planted RBAC objects again", highlight=False)
    _kustos(console, ["audit", "alerts", "--archive", "archive"], cwd=work, env=env)
    secret = f"{EXAMPLE_NAMESPACE}/db-credentials"
    _kustos(
        console,
        ["audit", "query", "--archive", "archive", "--secret", secret],
        cwd=work,
        env=env,
        comment=f"who read {secret}?",
    )
    _kustos(console, ["audit", "verify", "--archive", "archive"], cwd=work, env=env)
    console.print("A list counts as a read of every Secret it returned.", highlight=False)
    console.print(
        "A real API server, and tuning the detectors: docs/audit.md, docs/audit-alerts.md",
        highlight=False,
    )
