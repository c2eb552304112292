"""``kustos pull-secret create``: a registry credential attached to named ServiceAccounts."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from kustos.cli.options import Context, Kubeconfig
from kustos.errors import UsageError
from kustos.kube.client import ClientSettings, make_async_client
from kustos.sensitive import Sensitive

app = typer.Typer(help="Image pull secrets.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the Secret to create.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="Namespace.")],
    registry: Annotated[str, typer.Option("--registry", help="Registry host, e.g. ghcr.io.")],
    username: Annotated[str, typer.Option("--username", help="Registry user.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (required).")
    ] = False,
    service_account: Annotated[
        list[str] | None,
        typer.Option("--service-account", help="Attach to this ServiceAccount (repeatable)."),
    ] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """Create a kubernetes.io/dockerconfigjson Secret and attach it to exactly these accounts."""
    from kustos.rotation.pullsecrets import create_pull_secret, docker_config_json  # noqa: PLC0415

    if not password_stdin:
        raise UsageError("give the password on stdin with --password-stdin (never as a flag)")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: stdin held no password")
    config = docker_config_json(registry, username, Sensitive(password), email)
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)

    async def main() -> list[str]:
        client = make_async_client(settings)
        try:
            return await create_pull_secret(
                client,
                namespace=namespace,
                name=name,
                config=config,
                service_accounts=service_account or (),
            )
        finally:
            await client.close()

    changed = asyncio.run(main())
    typer.echo(f"secret/{name} created in {namespace} for {registry}")
    for account in service_account or ():
        state = "attached" if account in changed else "already attached"
        typer.echo(f"  serviceaccount/{account}: {state}")
    return 0
