"""Entry point: ``main(argv) -> int`` and the Typer application.

Only the module of the command being run is imported (``kustos scan`` does not load the
Kubernetes client or the control-plane harness): start-up time is part of every scan.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Final

import typer

from kustos import __version__
from kustos.errors import KustosError

#: command → (module, function); groups (``kms``, ``dev-cluster``) are Typer apps.
COMMANDS: Final = {
    "scan": ("kustos.cli.scan", "scan"),
    "rules": ("kustos.cli.scan", "rules"),
    "explain": ("kustos.cli.scan", "explain"),
    "who-can": ("kustos.cli.whocan", "who_can_command"),
    "refs": ("kustos.cli.refs", "refs"),
    "rotate": ("kustos.cli.rotate", "rotate"),
    "versions": ("kustos.cli.rotate", "versions"),
    "rollback": ("kustos.cli.rotate", "rollback"),
    "operator": ("kustos.cli.operator", "app"),
    "pull-secret": ("kustos.cli.pullsecret", "app"),
    "seal": ("kustos.cli.seal", "seal"),
    "unseal": ("kustos.cli.seal", "unseal"),
    "demo": ("kustos.cli.demo", "demo"),
    "kms": ("kustos.cli.kms", "app"),
    "backup": ("kustos.cli.backup", "app"),
    "audit": ("kustos.cli.audit", "app"),
    "rbac": ("kustos.cli.rbac", "app"),
    "dev-cluster": ("kustos.cli.devcluster", "app"),
}


def version() -> None:
    """Print the Kustos version."""
    typer.echo(__version__)


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer app with every command, or with just *only* (faster start-up)."""
    app = typer.Typer(
        name="kustos",
        help="Kustos: a Kubernetes secrets custodian.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, (module_name, attr) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module_name), attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    app.command("version")(version)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 findings/failure, 2 usage or input)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = list(argv) if argv is not None else sys.argv[1:]
    first = args[0] if args else None
    app = build_app(first if first in COMMANDS else None)
    try:
        result = app(args=args, prog_name="kustos", standalone_mode=False)
    except KustosError as exc:
        print(f"kustos: error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's one error line
        return exc.exit_code
    except typer.Abort:
        print("kustos: aborted", file=sys.stderr)  # noqa: T201
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors of the command line itself
        message = exc.format_message().strip()
        if message:  # empty for `kustos` alone, which has printed its help already
            print(f"kustos: error: {message}", file=sys.stderr)  # noqa: T201
        return 2
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
