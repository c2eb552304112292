"""``kustos demo``: the guided tour on the local control plane.

Each capability adds its chapter. The foundation chapter brings up the dev-cluster (or
reuses it), deploys the example application in ``examples/``, waits for its rollouts on
the KWOK nodes and shows, from the live cluster, which workload uses which Secret and how.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from lightkube import Client
from rich.console import Console
from rich.table import Table

from kustos.cli.devcluster import local_keyring_flags
from kustos.errors import InputError
from kustos.kms.reencrypting import reencrypt
from kustos.kms.stored import parse_stored
from kustos.kube.applying import apply_manifests, wait_established
from kustos.kube.client import ClientSettings, make_async_client, make_client
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
    reuse_or_start,
)

EXAMPLE_NAMESPACE = "shop"


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
    for line in apply_manifests(client, [folder]):
        console.print(f"  applied {line}")

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
    console.print(table)

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
