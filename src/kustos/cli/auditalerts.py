"""``kustos audit alerts`` and ``kustos audit forward``: the alert side of Watch.

``kustos.cli.audit`` owns the ``audit`` group and calls :func:`register` to add these
commands to it, so the two halves of Watch stay in separate modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.output import TableOrJson, print_json

ArchiveDir = Annotated[
    Path,
    typer.Option("--archive", help="The archive folder (as given to `kustos audit serve`)."),
]


def alerts(
    archive: ArchiveDir,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.TABLE,
) -> int:
    """List the alerts the detectors raised, oldest first."""
    from kustos.audit.alerts import AlertStore  # noqa: PLC0415

    require_folder(archive)
    stored = [s.alert for s in AlertStore(archive).read()]
    if output_format is TableOrJson.JSON:
        print_json({"alerts": [a.to_json() for a in stored]})
        return 0
    if not stored:
        typer.echo("no alerts")
        return 0
    rows = [
        (
            a.time,
            str(a.severity),
            a.detector,
            a.user or "-",
            _secret_cell(a.namespace, a.name),
            a.source_ip or "-",
            a.message,
        )
        for a in stored
    ]
    header = ("TIME", "SEVERITY", "DETECTOR", "USER", "SECRET", "SOURCE", "MESSAGE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        typer.echo("  ".join([*cells, row[-1]]))
    return 0


def forward(
    archive: ArchiveDir,
    config: Annotated[
        Path, typer.Option("--config", help="Watch config (YAML) with a `sinks:` list.")
    ],
    sink: Annotated[
        list[str] | None, typer.Option("--sink", help="Only this sink (repeatable).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep running and forward what arrives.")
    ] = False,
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, help="Tries per batch before giving up.")
    ] = 5,
) -> int:
    """Send archived events and alerts to the configured sinks, from each sink's cursor.

    Delivery is at least once: a sink's cursor moves only after it acknowledged a batch,
    so an interrupted run resends from there. Without --follow, exit 0 when every sink is
    up to date, 1 when one could not be reached after --attempts tries (its cursor is
    kept). With --follow, unreachable sinks are retried with backoff until stopped.
    """
    import asyncio  # noqa: PLC0415

    from kustos.audit.forwarding import follow as follow_forever  # noqa: PLC0415
    from kustos.audit.watching import forwarders_for, load_config  # noqa: PLC0415
    from kustos.errors import SinkError, UsageError  # noqa: PLC0415

    require_folder(archive)
    settings = load_config(config)
    if not settings.sinks:
        raise UsageError(f"{config}: no sinks configured (add a `sinks:` list)")
    forwarders = forwarders_for(
        archive, settings, only=sink or (), max_attempts=None if follow else attempts
    )

    async def run() -> int:
        failed = 0
        try:
            if follow:
                await follow_forever(forwarders, poll_seconds=settings.poll_seconds)
                return 0
            for forwarder in forwarders:
                try:
                    done = await forwarder.run_once()
                except SinkError as exc:
                    failed += 1
                    typer.echo(f"kustos: {exc}", err=True)
                    continue
                typer.echo(
                    f"sink {done.sink}: {done.events} events, {done.alerts} alerts forwarded"
                    f" ({done.retries} retries, {done.refused} refused)"
                )
        finally:
            for forwarder in forwarders:
                await forwarder.sender.close()
        return 1 if failed else 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:  # --follow stopped by the user: cursors are saved per batch
        return 0


def require_folder(archive: Path) -> None:
    """*archive* is an existing folder; else one line saying what it is instead."""
    from kustos.errors import FileMissingError, InputError  # noqa: PLC0415

    if not archive.exists():
        raise FileMissingError(archive, "read audit archive", "no such folder")
    if not archive.is_dir():
        raise InputError(f"{archive}: not a folder (--archive names the archive's folder)")


def _secret_cell(namespace: str | None, name: str | None) -> str:
    if namespace is None:
        return "*" if name is None else name
    return f"{namespace}/{name or '*'}"


def register(app: typer.Typer) -> None:
    """Add the alert commands to the ``audit`` group *app*."""
    app.command("alerts")(alerts)
    app.command("forward")(forward)
