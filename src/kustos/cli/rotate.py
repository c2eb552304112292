"""``kustos rotate``, ``kustos versions`` and ``kustos rollback`` for ManagedSecrets.

The three call the rotation engine the operator uses (:mod:`kustos.rotation.rotating`), so
a rotation started here and one started by a running operator are the same state machine:
whichever process arrives second finds the rotation recorded in status and finishes it.
Nothing here prints a value: versions are listed by number, time, reason and fingerprint.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import TableOrJson, print_json, print_table
from kustos.errors import UsageError
from kustos.kube.client import ClientSettings, make_async_client

Target = Annotated[str, typer.Argument(help="NAMESPACE/NAME of a ManagedSecret.")]


def _split(target: str) -> tuple[str, str]:
    namespace, sep, name = target.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise UsageError(f"{target[:80]!r}: give the ManagedSecret as NAMESPACE/NAME")
    return namespace, name


def _engine_run(settings: ClientSettings, call: Any) -> Any:
    async def main() -> Any:
        from kustos.rotation.postgres import PostgresApplier  # noqa: PLC0415
        from kustos.rotation.recording import KubeRecorder  # noqa: PLC0415
        from kustos.rotation.rotating import Engine  # noqa: PLC0415
        from kustos.sources.reading import StoreReader  # noqa: PLC0415

        client = make_async_client(settings)
        stores = StoreReader(client)
        try:
            engine = Engine(
                client,
                database=PostgresApplier(),
                observer=KubeRecorder(client, "kustos-cli"),
                stores=stores,
            )
            return await call(engine)
        finally:
            await stores.close()
            await client.close()

    return asyncio.run(main())


def rotate(
    target: Target,
    reason: Annotated[str, typer.Option("--reason", help="Recorded with the new version.")] = "",
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """Rotate a ManagedSecret now, roll its consumers and wait for them (or roll back)."""
    namespace, name = _split(target)
    text = f"Manual: {reason}" if reason else "Manual"
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)
    result = _engine_run(settings, lambda e: e.rotate(namespace, name, reason=text))
    typer.echo(f"{namespace}/{name}: {result.message}")
    for workload in result.restarted:
        typer.echo(f"  rolled {workload}")
    return 0 if result.outcome == "rotated" else 1


def rollback(
    target: Target,
    to: Annotated[int, typer.Option("--to", min=1, help="The version whose value comes back.")],
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """Bring an earlier version's value back as a new version, and roll the consumers."""
    namespace, name = _split(target)
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)
    result = _engine_run(settings, lambda e: e.rollback(namespace, name, to=to))
    typer.echo(f"{namespace}/{name}: {result.message} (value of version {to})")
    for workload in result.restarted:
        typer.echo(f"  rolled {workload}")
    return 0 if result.outcome == "rotated" else 1


def versions(
    target: Target,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.TABLE,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """List a ManagedSecret's versions: number, time, reason, fingerprint, state."""
    namespace, name = _split(target)
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from kustos.rotation.rotating import list_versions  # noqa: PLC0415

        client = make_async_client(settings)
        try:
            return await list_versions(client, namespace, name)
        finally:
            await client.close()

    status, stored = asyncio.run(main())
    states = {
        int(v.get("number", 0)): str(v.get("state", "")) for v in status.get("versions") or []
    }
    current = status.get("currentVersion")
    rows = [
        {**v, "state": states.get(int(v["number"]), "Previous"), "current": v["number"] == current}
        for v in stored
    ]
    if output_format is TableOrJson.JSON:
        print_json(
            {"namespace": namespace, "name": name, "currentVersion": current, "versions": rows}
        )
        return 0
    table = Table(title=f"{namespace}/{name}: current version {current or '-'}")
    for col in ("Version", "Created", "Reason", "Fingerprint", "State"):
        table.add_column(col, no_wrap=col != "Reason")
    for row in rows:
        mark = " *" if row["current"] else ""
        table.add_row(
            f"v{row['number']}{mark}",
            row["created"],
            row["reason"],
            row["contentHash"],
            row["state"],
        )
    print_table(table)
    return 0
