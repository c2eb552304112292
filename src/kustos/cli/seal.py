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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import orjson
import typer

from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import emit
from kustos.crypto import sops
from kustos.errors import FileAccessError, InputError, KubeNotFoundError, UsageError
from kustos.files import read_text, write_atomic
from kustos.kube.documents import load_yaml_all
from kustos.sources import sealing

#: A Secret is at most 1 MiB in etcd; a manifest or SealedSecret larger than this is not one.
MANIFEST_LIMIT: Final = 4 * 1024 * 1024
#: Identity and recipient files hold a few keys.
KEY_FILE_LIMIT: Final = 256 * 1024


def seal(
    filename: Annotated[
        list[str] | None,
        typer.Option(
            "-f",
            "--filename",
            help="Secret manifest (YAML or JSON); '-' reads stdin. Repeat with --output-dir.",
        ),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="With --reseal: the sealed files to rewrite in place.", show_default=False
        ),
    ] = None,
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
    fetch_recipient: Annotated[
        bool,
        typer.Option(
            "--fetch-recipient",
            help="Add the cluster's current recipient, read from the ConfigMap the operator "
            "publishes (kubeconfig).",
        ),
    ] = False,
    recipient_configmap: Annotated[
        str,
        typer.Option("--recipient-configmap", help="NAMESPACE/NAME of that ConfigMap."),
    ] = sealing.RECIPIENT_CONFIGMAP,
    reseal: Annotated[
        bool,
        typer.Option(
            "--reseal",
            help="Rewrite FILES in place for their recipients minus the dropped ones plus the "
            "given ones (values, MAC and binding unchanged).",
        ),
    ] = False,
    drop_recipient: Annotated[
        list[str] | None,
        typer.Option("--drop-recipient", help="With --reseal: a recipient to remove; repeatable."),
    ] = None,
    identity: Annotated[
        list[Path] | None,
        typer.Option(
            "--identity",
            "-i",
            help="With --reseal: an identity that opens the files [SOPS_AGE_KEY_FILE].",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("-n", "--namespace", help="Namespace, when the manifest names none."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the SealedSecret here.")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Seal every -f file into this folder (same names)."),
    ] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """Seal a Secret manifest into a SealedSecret (SOPS format, age recipients)."""
    if reseal:
        if filename or output or output_dir or namespace:
            raise UsageError(
                "-f, -o, --output-dir and --namespace do not go with --reseal "
                "(it rewrites the FILE arguments in place)"
            )
        return _reseal(
            files or [], recipient or [], recipient_file or [], identity or [],
            drop=drop_recipient or [],
            cluster=_Cluster(recipient_configmap, kubeconfig, context) if fetch_recipient else None,
        )  # fmt: skip
    if files or drop_recipient or identity:
        raise UsageError("FILE arguments, --drop-recipient and --identity go with --reseal")
    names = filename or []
    if not names:
        raise UsageError("give the Secret manifest: -f FILE (or --reseal FILE...)")
    if len(names) > 1 and output_dir is None:
        raise UsageError("several -f files need --output-dir DIR")
    if output_dir is not None and output is not None:
        raise UsageError("give -o FILE or --output-dir DIR, not both")
    targets = _targets(names, output_dir, "-f")
    cluster = _Cluster(recipient_configmap, kubeconfig, context) if fetch_recipient else None
    recipients = _recipients(recipient or [], recipient_file or [], cluster)
    now = datetime.now(UTC)
    sealed = []
    for name in names:  # every file sealed before any is written: all or nothing
        source, document = _read_document(name, what="Secret manifest")
        sealed.append(
            sealing.seal(document, recipients, now=now, namespace=namespace, source=source)
        )
    for target, done in zip(targets or [output] * len(sealed), sealed, strict=True):
        emit(sops.to_yaml(done), target, what="SealedSecret")
    if output_dir is None and output is not None:
        meta = sealed[0]["metadata"]
        typer.echo(
            f"kustos: sealed {meta['namespace']}/{meta['name']} for {len(recipients)} "
            f"recipient(s) into {output}",
            err=True,
        )
    if output_dir is not None:
        typer.echo(
            f"kustos: sealed {len(names)} file(s) for {len(recipients)} recipient(s) "
            f"into {output_dir}",
            err=True,
        )
    return 0


@dataclass(frozen=True, slots=True)
class _Cluster:
    """Where the cluster publishes its sealing recipients."""

    configmap: str
    kubeconfig: Path | None
    context: str | None

    def recipients(self) -> tuple[sops.Recipient, tuple[sops.Recipient, ...]]:
        """The current recipient and the older ones the cluster still unseals with."""
        from lightkube.resources.core_v1 import ConfigMap  # noqa: PLC0415

        from kustos.kube.client import ClientSettings, api_errors, make_client  # noqa: PLC0415

        namespace, name = sealing.configmap_ref(self.configmap)
        where = f"ConfigMap {namespace}/{name}"
        settings = ClientSettings(kubeconfig=self.kubeconfig, context=self.context)
        try:
            with (
                make_client(settings) as client,
                api_errors(f"read {where}", verb="get", resource="configmaps"),
            ):
                found = client.get(ConfigMap, name, namespace=namespace)
        except KubeNotFoundError:
            raise InputError(
                f"{where} does not exist: is the operator running with a sealing key "
                "(kustos operator run --sealing-keyring/--sealing-pkcs11-*)?"
            ) from None
        return sealing.published_recipients(found.data, source=where)


def _reseal(
    files: list[Path],
    given: list[str],
    given_files: list[Path],
    identity: list[Path],
    *,
    drop: list[str],
    cluster: _Cluster | None,
) -> int:
    if not files:
        raise UsageError("--reseal needs the sealed files to rewrite: kustos seal --reseal FILE...")
    add = [sops.Recipient.parse(r, where=f"--recipient #{i}") for i, r in enumerate(given, 1)]
    for path in given_files:
        add.extend(
            sops.parse_recipients(
                read_text(path, what="recipient file", limit=KEY_FILE_LIMIT), source=str(path)
            )
        )
    dropped = [sops.Recipient.parse(r, where=f"--drop-recipient #{i}").text
               for i, r in enumerate(drop, 1)]  # fmt: skip
    if cluster is not None:
        current, previous = cluster.recipients()
        add.append(current)
        dropped.extend(r.text for r in previous)
    if not add and not dropped:
        raise UsageError(
            "--reseal needs a change: --fetch-recipient, --recipient/-R to add, "
            "--drop-recipient to remove"
        )
    identities = _identities(identity)
    changed = reseal_files(files, identities, add=add, drop=dropped)
    typer.echo(
        f"kustos: resealed {changed} of {len(files)} file(s) "
        f"({len(files) - changed} already had these recipients)",
        err=True,
    )
    return 0


def reseal_files(
    files: Sequence[Path],
    identities: sops.Identities,
    *,
    add: Sequence[sops.Recipient],
    drop: Sequence[str],
) -> int:
    """Rewrite each sealed file in place for new recipients; how many changed.

    Every file is checked before any is written: one that does not open (or would lose
    its last recipient) stops the run with its name, and nothing is changed.
    """
    results = []
    for path in files:
        source, document = _read_document(str(path), what="sealed file")
        results.append((path, sealing.reseal(document, identities, add=add, drop=drop,
                                             source=source)))  # fmt: skip
    changed = 0
    for path, result in results:
        if result.changed:
            mode = stat.S_IMODE(path.stat().st_mode)
            write_atomic(path, sops.to_yaml(result.document).encode(), what="sealed file",
                         mode=mode)  # fmt: skip
            changed += 1
    return changed


def unseal(
    filenames: Annotated[
        list[str],
        typer.Argument(
            help="A SealedSecret, or a Secret encrypted by sops; '-' reads stdin. Several "
            "with --output-dir."
        ),
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
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", help="Unseal every file into this folder (same names, mode 0600)."
        ),
    ] = None,
) -> int:
    """Print the Secret manifest inside a SealedSecret (values in clear; exit 2 if refused)."""
    if len(filenames) > 1 and output_dir is None:
        raise UsageError("several files need --output-dir DIR")
    if output_dir is not None and output is not None:
        raise UsageError("give -o FILE or --output-dir DIR, not both")
    targets = _targets(filenames, output_dir, "FILE")
    identities = _identities(identity or [])
    texts = []
    for filename in filenames:  # every file opened before any is written: all or nothing
        source, document = _read_document(filename, what="sealed file")
        manifest = sealing.unseal(document, identities, source=source)
        if document.get("kind") == sealing.KIND and not sealing.keys_sorted(document):
            typer.echo(
                f"kustos: warning: {source}: encrypted keys are not in sorted order; the API "
                "server sorts them, and the cluster's copy will fail the MAC (seal it again: "
                "kustos unseal ... | kustos seal -f - ...)",
                err=True,
            )
        texts.append(sops.to_yaml(manifest, indent=2))
    for target, text in zip(targets or [output] * len(texts), texts, strict=True):
        if target is None:
            sys.stdout.write(text)
        else:
            write_atomic(target, text.encode(), what="Secret manifest", mode=0o600)
    return 0


def _targets(names: Sequence[str], folder: Path | None, flag: str) -> list[Path | None]:
    """Where each input goes in *folder* (same name), checked before any work; [] if none."""
    if folder is None:
        return []
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"--output-dir {folder} {why}")
    targets: dict[str, str] = {}
    for name in names:
        if name == "-":
            raise UsageError("stdin ('-') has no file name to keep in --output-dir")
        base = Path(name).name
        if base in targets:
            raise UsageError(
                f"{flag} {targets[base]} and {name} have the same name: one would "
                f"overwrite the other in {folder}"
            )
        targets[base] = name
    return [folder / base for base in targets]


def _recipients(
    given: list[str], files: list[Path], cluster: _Cluster | None
) -> list[sops.Recipient]:
    found = [sops.Recipient.parse(r, where=f"--recipient #{i}") for i, r in enumerate(given, 1)]
    for path in files:
        text = read_text(path, what="recipient file", limit=KEY_FILE_LIMIT)
        found.extend(sops.parse_recipients(text, source=str(path)))
    if cluster is not None:
        found.append(cluster.recipients()[0])
    if not found:
        raise UsageError(
            "no recipient: give --fetch-recipient (the cluster's), --recipient age1... "
            "or --recipient-file FILE"
        )
    return list({r.text: r for r in found}.values())


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
