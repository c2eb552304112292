"""``kustos dev-cluster up|down|status|env``: the test harness's control plane, for users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kustos.errors import ControlPlaneError
from kustos.testing.controlplane import (
    ControlPlane,
    ControlPlaneSettings,
    default_state_dir,
    read_state,
    reuse_or_start,
)

app = typer.Typer(
    help="A local control plane (etcd, kube-apiserver, KWOK nodes) on loopback.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where the cluster keeps its files [KUSTOS_DEV_CLUSTER_DIR]."),
]


def local_keyring_flags(directory: Path) -> list[str]:
    """A keyring (and a random passphrase) in *directory*, created once; its serve flags."""
    import datetime as dt  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    from kustos.kms.providers.keyring import LocalKeyring  # noqa: PLC0415
    from kustos.sensitive import Sensitive  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyring, passphrase = directory / "keyring.json", directory / "passphrase"
    if not keyring.exists():
        passphrase.write_text(secrets.token_urlsafe(24) + "\n")
        passphrase.chmod(0o600)
        ring = LocalKeyring(keyring, Sensitive(passphrase.read_text().strip()), must_exist=False)
        ring.init_keys(created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    return ["--keyring", str(keyring), "--passphrase-file", str(passphrase)]


def _dir(state_dir: Path | None) -> Path:
    return state_dir or default_state_dir()


@app.command("up")
def up(
    state_dir: StateDir = None,
    nodes: Annotated[int, typer.Option(help="Number of fake (KWOK) nodes.")] = 3,
    encryption_config: Annotated[
        Path | None, typer.Option(help="EncryptionConfiguration for kube-apiserver.")
    ] = None,
    audit_policy: Annotated[Path | None, typer.Option(help="Audit policy file.")] = None,
    audit_webhook_config: Annotated[
        Path | None, typer.Option(help="Audit webhook kubeconfig.")
    ] = None,
    kms: Annotated[
        bool, typer.Option("--kms", help="Encrypt Secrets with the Kustos KMS v2 plugin.")
    ] = False,
) -> None:
    """Start the local control plane in the background (reused if already running)."""
    running = reuse_or_start(
        ControlPlaneSettings(
            _dir(state_dir),
            nodes=nodes,
            encryption_config=encryption_config,
            audit_policy=audit_policy,
            audit_webhook_config=audit_webhook_config,
        )
    )
    plane = running.plane
    if kms and "kms-plugin" not in plane.status():
        plane.enable_kms(local_keyring_flags(plane.state_dir / "kms"))
    if running.reused:
        typer.echo(f"dev-cluster already running; kubeconfig: {plane.kubeconfig}")
        return
    extra = ", Secrets encrypted by the Kustos KMS v2 plugin" if kms else ""
    typer.echo(
        f"dev-cluster up in {running.seconds:.1f}s: {plane.server}, {nodes} KWOK nodes{extra}"
    )
    typer.echo(f"export KUBECONFIG={plane.kubeconfig}")


@app.command("down")
def down(state_dir: StateDir = None) -> None:
    """Stop the local control plane and leave no process behind."""
    plane = ControlPlane(ControlPlaneSettings(_dir(state_dir)))
    if not plane.load_state():
        typer.echo("dev-cluster is not running")
        return
    plane.stop()
    typer.echo("dev-cluster stopped")


@app.command("status")
def status(state_dir: StateDir = None) -> int:
    """Show each component and whether it runs; exit 1 unless all do."""
    directory = _dir(state_dir)
    plane = ControlPlane(ControlPlaneSettings(directory))
    if not plane.load_state():
        typer.echo("dev-cluster is not running")
        return 1
    states = plane.status()
    for name, alive in states.items():
        typer.echo(f"{name:<24} {'running' if alive else 'STOPPED'}")
    state = read_state(directory)
    typer.echo(f"{'server':<24} {state.server if state else '?'}")
    typer.echo(f"{'kubeconfig':<24} {state.kubeconfig if state else '?'}")
    return 0 if all(states.values()) else 1


@app.command("env")
def env(state_dir: StateDir = None) -> None:
    """Print the ``export KUBECONFIG=...`` line for a running dev-cluster."""
    state = read_state(_dir(state_dir))
    if state is None:
        raise ControlPlaneError("dev-cluster is not running; start it with `kustos dev-cluster up`")
    typer.echo(f"export KUBECONFIG={state.kubeconfig}")
