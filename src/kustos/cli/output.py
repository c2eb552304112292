"""What every command shares about output: formats, JSON emission, files, skipped inputs.

``scan``, ``refs``, ``who-can`` and ``kms`` declare their ``--format`` with one of the
enums below, so Typer refuses an unknown format with exit code 2 before the command runs
(nothing is silently replaced by a table). Reports go to stdout or to ``--output``
through :func:`emit`, which turns a file that cannot be written into one line naming it.
Consoles and tables for people come from :func:`report_console` and :func:`print_table`,
so that a report redirected to a file or a pipe is never folded at 80 columns.

Every command imports this module, so it stays light: rich is imported by the functions
that draw (a JSON report or an error line does not load it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson
import typer

from kustos.files import write_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class TableOrJson(StrEnum):
    """``--format`` of commands that print a table for people or JSON for programs."""

    TABLE = "table"
    JSON = "json"


class ReportFormat(StrEnum):
    """``--format`` of ``kustos scan``."""

    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    HTML = "html"


def json_text(doc: Any) -> str:
    """*doc* as indented JSON with a final newline (the one JSON style of the CLI)."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def print_json(doc: Any) -> None:
    """Write *doc* to stdout as JSON."""
    sys.stdout.write(json_text(doc))


def emit(text: str, output: Path | None, *, what: str = "report") -> None:
    """Write *text* to *output*, or to stdout when there is none."""
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(output, text, what=what)


def emit_with(render: Callable[[TextIO], None], output: Path | None, *, what: str) -> None:
    """Call *render* on stdout or on an opened *output* (for renderers that stream)."""
    if output is None:
        render(sys.stdout)
        return
    from io import StringIO  # noqa: PLC0415 - only for file output

    buffer = StringIO()
    render(buffer)
    write_text(output, buffer.getvalue(), what=what)


def report_skipped(errors: Iterable[object]) -> None:
    """Tell the user, on stderr, about every input that was skipped and why."""
    for err in errors:
        typer.echo(f"kustos: skipped {err}", err=True)


#: Wider than any table a command prints; only bounds the measurement of one.
_UNBOUNDED = 100_000


def report_console() -> Console:
    """A console for reports on stdout: wrapped to a terminal, never wrapped otherwise.

    Redirected to a file or a pipe, rich would fold every line at 80 columns and split
    file paths mid-word; a line that runs long is easier to grep, copy and read.
    """
    from rich.console import Console  # noqa: PLC0415 - rich only for commands that print tables

    console = Console()
    return console if console.is_terminal else Console(soft_wrap=True)


def print_table(table: Table, console: Console | None = None) -> None:
    """Print *table* wrapped to a terminal; redirected, as wide as its longest row.

    Off a terminal rich draws tables 80 columns wide (``soft_wrap`` does not apply to
    tables) and folds long cells into several lines each, which breaks ``grep`` and
    ``cut``: the console is widened to the table's natural width for this table only, so
    every row stays on one line. *console* defaults to :func:`report_console`.
    """
    from rich.measure import Measurement  # noqa: PLC0415 - see report_console

    console = console or report_console()
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), table)
    width = console.width
    console.width = max(width, natural.maximum)
    try:
        console.print(table)
    finally:
        console.width = width
