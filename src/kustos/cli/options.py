"""``--kubeconfig`` and ``--context``: declared here once, for every command that takes them.

Kept apart from ``kustos.cli.inputs`` (the manifest loader, which costs most of a second to
import), so that ``kustos seal`` and ``kustos operator run`` start fast; commands that
read manifests import these from here and the loader from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Kubeconfig = Annotated[
    Path | None, typer.Option("--kubeconfig", help="Kubeconfig file [KUBECONFIG].")
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
