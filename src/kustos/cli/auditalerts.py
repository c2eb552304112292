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
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="Watch config (YAML): detectors and sinks."),
]


def alerts(
    archive: ArchiveDir,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json.")
    ] = TableOrJson.TABLE,
) -> int:
    """List the alerts the detectors raised, oldest first."""
    from kustos.audit.alerts import AlertStore  # noqa: PLC0415

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
            a.user,
            f"{a.namespace or '-'}/{a.name or '-'}",
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


def register(app: typer.Typer) -> None:
    """Add the alert commands to the ``audit`` group *app*."""
    app.command("alerts")(alerts)
