"""Entry point: ``main(argv) -> int`` and the Typer application."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from kustos import __version__
from kustos.cli import demo, devcluster, refs, scan, whocan
from kustos.errors import KustosError

app = typer.Typer(
    name="kustos",
    help="Kustos: a Kubernetes secrets custodian.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(devcluster.app, name="dev-cluster")
app.command("demo")(demo.demo)
app.command("refs")(refs.refs)
app.command("scan")(scan.scan)
app.command("rules")(scan.rules)
app.command("explain")(scan.explain)
app.command("who-can")(whocan.who_can_command)


@app.command("version")
def version() -> None:
    """Print the Kustos version."""
    typer.echo(__version__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 findings/failure, 2 usage or input)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
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
