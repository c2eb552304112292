"""Entry point: ``main(argv) -> int``.

Kept light on purpose: ``kustos version`` and ``kustos --version`` are answered here, before
the CLI framework and logging are imported (Typer and what it loads for a command's
parameters are most of a short command's start-up); every other command line goes to the
Typer application in :mod:`kustos.cli.app`, which sets up logging and imports only the
module of the command being run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final

from kustos import __version__

#: The command lines answered without Typer (``kustos version --help`` still goes to Typer).
VERSION_ARGV: Final = (["version"], ["--version"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 findings/failure, 2 usage or input)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if args in VERSION_ARGV:
        print(__version__)  # noqa: T201 - the command's output
        return 0
    from kustos.cli.app import run  # noqa: PLC0415 - Typer only for the commands that need it

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
