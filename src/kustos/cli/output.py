"""What every command shares about output: formats, JSON emission, files, skipped inputs.

``scan``, ``refs``, ``who-can`` and ``kms`` declare their ``--format`` with one of the
enums below, so Typer refuses an unknown format with exit code 2 before the command runs
(nothing is silently replaced by a table). Reports go to stdout or to ``--output``
through :func:`emit`, which turns a file that cannot be written into one line naming it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import orjson
import typer

from kustos.files import write_text


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
