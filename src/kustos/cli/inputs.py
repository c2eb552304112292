"""Options and loading shared by every command that reads manifests or a live cluster.

What the user names is checked, what Kustos finds is forgiven: a path given on the command
line that cannot be read (missing, permission denied, not UTF-8 text, binary stdin) is an
input error, one line and exit code 2, because the user asked for that file and would
otherwise get a clean report of nothing. Files found while walking a named folder, and
malformed documents inside readable files, are skipped with a note on stderr
(:func:`kustos.cli.output.report_skipped`) and do not change the exit code: real corpora
hold a few of them, and one bad chart must not hide the findings in the rest.

The loader tells the two apart (``ManifestLoader.input_errors`` holds the named paths it
could not read); this module refuses the first of them, a named folder it may not list, and
stdin that is not UTF-8 text.

``--kubeconfig`` and ``--context`` are declared once, in :mod:`kustos.cli.options`, which
commands that must start fast import without this module's manifest loader.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, TextIO

import typer

from kustos.errors import FileAccessError, InputError, UsageError
from kustos.kube.index import ObjectIndex
from kustos.kube.loading import STDIN, ManifestLoader

Paths = Annotated[
    list[str] | None, typer.Argument(help="Files or folders of YAML/JSON; '-' reads stdin.")
]
Cluster = Annotated[
    bool, typer.Option("--cluster", help="Read the live cluster (list calls only).")
]
Namespaces = Annotated[
    list[str] | None, typer.Option("-n", "--namespace", help="Only these namespaces (repeatable).")
]


def load_index(
    paths: Sequence[str] | None,
    *,
    cluster: bool,
    kubeconfig: Path | None,
    context: str | None,
    namespaces: Sequence[str] | None,
    include: Sequence[str] = (),
    workers: int | None = None,
) -> tuple[ObjectIndex, ManifestLoader | None]:
    """Build the object index from files/stdin or from the cluster (exactly one of them).

    *include* adds file-name globs to the manifest suffixes of walked folders; *workers*
    sets the parsing processes (``None``: one per core for a large input).
    """
    if cluster and paths:
        raise UsageError("give either PATH arguments or --cluster, not both")
    if not cluster and not paths:
        raise UsageError("nothing to read: give PATH arguments, '-' for stdin, or --cluster")
    if cluster:
        # Imported here: file scans should not pay for loading the Kubernetes client.
        from kustos.kube.client import ClientSettings, make_client  # noqa: PLC0415
        from kustos.kube.listing import list_cluster  # noqa: PLC0415

        with make_client(ClientSettings(kubeconfig=kubeconfig, context=context)) as client:
            return list_cluster(client, namespaces=list(namespaces or ())), None
    named = list(paths or ())
    _check_named_folders(named)
    loader = ManifestLoader(
        stdin=_stdin_text() if "-" in named else sys.stdin, include=include, workers=workers
    )
    index = loader.load(named)
    refused = loader.input_errors
    if refused:
        raise refused[0]
    if len(named) == 1 and loader.empty_named:
        # One file asked for and nothing in it to check: a clean report would mislead.
        raise InputError(f"{loader.empty_named[0]}: {_nothing_read(index)}")
    if namespaces:
        wanted = set(namespaces)
        index = index.only(lambda o: not o.namespace or o.namespace in wanted)
    return index, loader


def _nothing_read(index: ObjectIndex) -> str:
    """Why a file yielded no object: its documents by reason, or its malformed ones."""
    parts = [f"{n} {reason}" for reason, n in sorted(index.skipped_by.items())]
    if index.errors:
        parts.append(f"{len(index.errors)} malformed")
    held = f" (documents: {', '.join(parts)})" if parts else " (no document)"
    return f"no Kubernetes object to check in this input{held}"


def _check_named_folders(paths: Sequence[str]) -> None:
    """Refuse a folder named on the command line that cannot be listed (exit code 2).

    The loader refuses named files it cannot read, but a walk of a folder it may not list
    finds nothing, which would pass for a clean scan.
    """
    for raw in paths:
        path = Path(raw)
        if raw == "-" or not path.is_dir():
            continue
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise FileAccessError(path, "list manifests", reason) from exc


def _stdin_text() -> TextIO:
    """Stdin read whole and checked: binary input is refused here, not by a traceback."""
    raw = getattr(sys.stdin, "buffer", None)
    try:
        if raw is not None:
            text = raw.read().decode("utf-8")
        else:  # a text stream (tests); a lenient decoder leaves surrogates for bad bytes
            text = sys.stdin.read()
            text.encode("utf-8")
    except UnicodeError as exc:
        at = getattr(exc, "start", 0)
        raise InputError(
            f"{STDIN}: cannot read manifest: not UTF-8 text (binary data at byte {at})"
        ) from None
    return io.StringIO(text)


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a command builds and reads its index.

    A scan or a who-can matrix makes millions of dicts and lists that live until it ends
    and form no cycles; the collector would walk all of them again each time the heap
    grows by a quarter (a fifth of the time of a 50k-object scan, measured). Reference
    counting still frees everything else as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
