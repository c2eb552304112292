"""Command-line options shared by commands that must start fast (no manifest loader).

``kustos.cli.inputs`` holds the same two options beside the manifest loader, which costs
most of a second to import; ``kustos seal`` and ``kustos operator run`` take them from
here instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Kubeconfig = Annotated[
    Path | None, typer.Option("--kubeconfig", help="Kubeconfig file [KUBECONFIG].")
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
