"""``kustos seal`` and ``kustos unseal``: Secret manifests ⇄ SealedSecrets (SOPS files).

``seal`` reads one Secret manifest and prints a SealedSecret that ``sops`` opens with any
of the recipients' age identities. ``unseal`` prints the Secret manifest held by a
SealedSecret or by a Secret encrypted with ``sops -e``; printing the values is what the
user asked for, so they go to stdout (or a private file) and nowhere else. Every failure
is one line naming the file and, at most, a key, with exit code 2. See ``docs/seal.md``.
"""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import typer

from kustos.cli.output import emit
from kustos.crypto import sops
from kustos.errors import FileAccessError, InputError, UsageError
from kustos.files import read_text, write_atomic
from kustos.kube.documents import load_yaml_all
from kustos.sources import sealing

#: A Secret is at most 1 MiB in etcd; a manifest or SealedSecret larger than this is not one.
MANIFEST_LIMIT: Final = 4 * 1024 * 1024
#: Identity and recipient files hold a few keys.
KEY_FILE_LIMIT: Final = 256 * 1024


def seal(
    filename: Annotated[
        str,
        typer.Option("-f", "--filename", help="Secret manifest (YAML or JSON); '-' reads stdin."),
    ],
    recipient: Annotated[
        list[str] | None,
        typer.Option("--recipient", "-r", help="age public key (age1...); repeatable."),
    ] = None,
    recipient_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--recipient-file", "-R", help="File of age public keys, one per line; repeatable."
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("-n", "--namespace", help="Namespace, when the manifest names none."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the SealedSecret here.")
    ] = None,
) -> int:
    """Seal a Secret manifest into a SealedSecret (SOPS format, age recipients)."""
    recipients = _recipients(recipient or [], recipient_file or [])
    source, document = _read_document(filename, what="Secret manifest")
    sealed = sealing.seal(
        document, recipients, now=datetime.now(UTC), namespace=namespace, source=source
    )
    emit(sops.to_yaml(sealed), output, what="SealedSecret")
    if output is not None:
        meta = sealed["metadata"]
        typer.echo(
            f"kustos: sealed {meta['namespace']}/{meta['name']} for {len(recipients)} "
            f"recipient(s) into {output}",
            err=True,
        )
    return 0


def unseal(
    filename: Annotated[
        str, typer.Argument(help="A SealedSecret, or a Secret encrypted by sops; '-' reads stdin.")
    ],
    identity: Annotated[
        list[Path] | None,
        typer.Option(
            "--identity",
            "-i",
            help="age identity file (AGE-SECRET-KEY-1...); repeatable [SOPS_AGE_KEY_FILE].",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the Secret manifest here (mode 0600)."),
    ] = None,
) -> int:
    """Print the Secret manifest inside a SealedSecret (values in clear; exit 2 if refused)."""
    identities = _identities(identity or [])
    source, document = _read_document(filename, what="sealed file")
    manifest = sealing.unseal(document, identities, source=source)
    if document.get("kind") == sealing.KIND and not sealing.keys_sorted(document):
        typer.echo(
            f"kustos: warning: {source}: encrypted keys are not in sorted order; the API "
            "server sorts them, and the cluster's copy will fail the MAC (seal it again: "
            "kustos unseal ... | kustos seal -f - ...)",
            err=True,
        )
    text = sops.to_yaml(manifest, indent=2)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text.encode(), what="Secret manifest", mode=0o600)
    return 0


def _recipients(given: list[str], files: list[Path]) -> list[sops.Recipient]:
    found = [sops.Recipient.parse(r, where=f"--recipient #{i}") for i, r in enumerate(given, 1)]
    for path in files:
        text = read_text(path, what="recipient file", limit=KEY_FILE_LIMIT)
        found.extend(sops.parse_recipients(text, source=str(path)))
    if not found:
        raise UsageError(
            "no recipient: give --recipient age1... or --recipient-file FILE "
            "(the cluster's own recipient cannot be fetched yet)"
        )
    return found


def _identities(paths: list[Path]) -> sops.Identities:
    if not paths:
        env = os.environ.get("SOPS_AGE_KEY_FILE")
        if not env:
            raise UsageError("no identity: give --identity FILE (or set SOPS_AGE_KEY_FILE)")
        paths = [Path(env)]
    identities = sops.Identities([])
    for path in paths:
        text = read_text(path, what="identity file", limit=KEY_FILE_LIMIT)
        _warn_if_shared(path)
        identities = identities + sops.Identities.parse(text, source=str(path))
    return identities


def _warn_if_shared(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise FileAccessError(path, "read identity file", exc.strerror or "error") from exc
    if mode & 0o077:
        typer.echo(f"kustos: warning: {path} is readable by group or others ({mode:04o})", err=True)


def _read_document(filename: str, *, what: str) -> tuple[str, Any]:
    """The one document of *filename* ('-': stdin) and the name to use in messages."""
    if filename == "-":
        source = "<stdin>"
        try:
            text = sys.stdin.buffer.read(MANIFEST_LIMIT + 1).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{source}: not UTF-8 text") from None
        if len(text) > MANIFEST_LIMIT:
            raise InputError(f"{source}: larger than {MANIFEST_LIMIT} bytes")
    else:
        source = filename
        text = read_text(Path(filename), what=what, limit=MANIFEST_LIMIT)
    documents = _parse(text, source)
    if len(documents) != 1:
        raise InputError(
            f"{source}: holds {len(documents)} documents; give exactly one {what}"
            if documents
            else f"{source}: empty, no {what}"
        )
    return source, documents[0]


def _parse(text: str, source: str) -> list[Any]:
    if text.lstrip().startswith("{"):
        # JSON written by sops is indented with tabs, which YAML does not allow.
        try:
            return [orjson.loads(text)]
        except orjson.JSONDecodeError:
            pass
    return load_yaml_all(text, source)
