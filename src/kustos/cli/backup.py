"""``kustos backup keygen | create | verify | restore``: encrypted backups of Secrets.

Backups are age files (``docs/backup-format.md``): ``age -d -i key.txt FILE`` opens one
without Kustos. Nothing here prints a value: progress (stderr) and reports name objects
and count them. Exit codes: 0 done, 1 a backup that cannot be opened or does not verify,
or a ``--conflict fail`` restore that met a conflict (nothing written), 2 usage and input
errors, 3 the API server. See ``docs/backup.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from kustos.backup.planning import Conflict, Plan, Verb
from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import TableOrJson, print_json, print_table, report_console
from kustos.cli.seal import _warn_if_shared  # one warning for every key file
from kustos.crypto import age
from kustos.errors import RestoreConflictError, UsageError
from kustos.files import read_bytes, write_atomic
from kustos.kube.client import ClientSettings
from kustos.sensitive import Sensitive

app = typer.Typer(
    help="Encrypted, verifiable backups of Secrets (age format).", no_args_is_help=True
)

#: Identity, recipient and passphrase files hold a few keys.
KEY_FILE_LIMIT: Final = 256 * 1024

IdentityOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--identity",
        "-i",
        help="age identity file (AGE-SECRET-KEY-1...) or SSH private key; repeatable.",
        envvar="KUSTOS_BACKUP_IDENTITY",
    ),
]
PassphraseOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help="File whose first line is the passphrase (scrypt, as age -p).",
        envvar="KUSTOS_BACKUP_PASSPHRASE_FILE",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]


def _progress(quiet: bool) -> Any:
    def show(message: str) -> None:
        if not quiet:
            typer.echo(f"kustos: {message}", err=True)

    return show


def _passphrase(path: Path) -> Sensitive:
    data = read_bytes(path, what="passphrase file", limit=KEY_FILE_LIMIT)
    phrase = age.read_passphrase(data, source=str(path))
    _warn_if_shared(path)  # only once it is a passphrase: a refusal stays one line
    return phrase


def _opener(
    identity: list[Path] | None, passphrase_file: Path | None
) -> tuple[age.Identities | None, Sensitive | None]:
    if identity and passphrase_file is not None:
        raise UsageError("give --identity or --passphrase-file, not both")
    if passphrase_file is not None:
        return None, _passphrase(passphrase_file)
    if not identity:
        raise UsageError("no key: give --identity FILE or --passphrase-file FILE")
    found = age.Identities()
    for path in identity:
        data = read_bytes(path, what="identity file", limit=KEY_FILE_LIMIT)
        found = found + age.Identities.parse(data, source=str(path), ssh=True)
        _warn_if_shared(path)
    return found, None


# --------------------------------------------------------------------------- keygen
@app.command("keygen")
def keygen(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Write the identity here (mode 0600).")
    ],
) -> int:
    """Write a new age identity and print its public key (the recipient for create)."""
    if output.exists():
        raise UsageError(f"{output}: exists; Kustos never overwrites an identity")
    recipient, identity = age.new_identity()
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"# created: {created}\n# public key: {recipient}\n{identity.reveal_text()}\n"
    write_atomic(output, text.encode(), what="identity file", mode=0o600)
    typer.echo(recipient)
    typer.echo(
        f"kustos: wrote the identity to {output}. Keep it OFFLINE, away from the cluster and "
        "from the backups (a password manager, a hardware token, paper in a safe), and give "
        "only the public key above to 'kustos backup create --recipient'. Without this "
        "file, or another recipient's, the backups cannot be opened. See docs/backup.md.",
        err=True,
    )
    return 0


# --------------------------------------------------------------------------- create
def _recipients(given: list[str], files: list[Path]) -> list[age.Recipient]:
    found = [
        age.Recipient.parse(r, where=f"--recipient #{i}", ssh=True) for i, r in enumerate(given, 1)
    ]
    for path in files:
        data = read_bytes(path, what="recipients file", limit=KEY_FILE_LIMIT)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"{path}: a recipients file is text, one public key per line"
            ) from None
        found.extend(age.parse_recipients(text, source=str(path), ssh=True))
    return found


@app.command("create")
def create(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The backup file to write ('-': stdout); a folder gets a new time-stamped file.",
        ),
    ],
    recipient: Annotated[
        list[str] | None,
        typer.Option("--recipient", "-r", help="age (age1...) or SSH public key; repeatable."),
    ] = None,
    recipients_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--recipients-file",
            "-R",
            help="File of public keys, one per line (as age -R); repeatable.",
            envvar="KUSTOS_BACKUP_RECIPIENTS_FILE",
        ),
    ] = None,
    passphrase_file: PassphraseOption = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Only this namespace; repeatable."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace (the default).")
    ] = False,
    selector: Annotated[
        str | None,
        typer.Option("--selector", "-l", help="Label selector for Secrets and ManagedSecrets."),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=1, help="With a folder: keep only the N newest backups."),
    ] = None,
    quiet: Quiet = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Use the pod's service account.")
    ] = False,
) -> int:
    """Back up Secrets (with ManagedSecrets and their versions) into an encrypted age file."""
    from kustos.backup.archive import STDIO, destination, prune  # noqa: PLC0415
    from kustos.backup.collecting import create as take  # noqa: PLC0415
    from kustos.backup.selecting import Selector, namespace_name  # noqa: PLC0415
    from kustos.kube.client import load_config, make_client  # noqa: PLC0415

    if namespace and all_namespaces:
        raise UsageError("give --namespace or --all-namespaces, not both")
    for name in namespace or []:
        namespace_name(name, flag="--namespace")
    if output != STDIO and not output.is_dir() and not output.parent.is_dir():
        raise UsageError(f"--output {output}: the folder {output.parent} does not exist")
    recipients = _recipients(recipient or [], recipients_file or [])
    if recipients and passphrase_file is not None:
        raise UsageError("give recipients or --passphrase-file, not both")
    passphrase = _passphrase(passphrase_file) if passphrase_file is not None else None
    if not recipients and passphrase is None:
        raise UsageError(
            "no recipient: give --recipient age1... (kustos backup keygen makes one), "
            "--recipients-file FILE or --passphrase-file FILE"
        )
    if keep is not None and not output.is_dir():
        raise UsageError("--keep needs --output to be a folder")
    parsed = Selector.parse(selector)
    settings = ClientSettings(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster)
    config = load_config(settings)
    single = config.get(context_name=None if in_cluster else context)
    server = single.cluster.server if single is not None else ""
    now = datetime.now(UTC)
    with make_client(settings) as client:
        written = take(
            client,
            destination(output, now),
            server=server,
            namespaces=sorted(set(namespace or [])),
            selector=parsed,
            recipients=recipients,
            passphrase=passphrase,
            now=now,
            progress=_progress(quiet),
        )
    if keep is not None:
        for old in prune(output, keep):
            _progress(quiet)(f"deleted {old} (--keep {keep})")
    counts = written.manifest.counts
    to = f"{len(recipients)} recipient(s)" if recipients else "a passphrase"
    excluded = sum(written.manifest.excluded.values())
    where = "<stdout>" if output == STDIO else written.path
    typer.echo(
        f"{where}: {counts['Secret']} Secret(s) ({counts['versionSecrets']} version "
        f"Secret(s)), {counts['ManagedSecret']} ManagedSecret(s), {counts['Namespace']} "
        f"namespace(s); {written.size} bytes, encrypted to {to}"
        + (f"; {excluded} service-account token(s) left out" if excluded else ""),
        err=output == STDIO,  # stdout is the backup itself
    )
    return 0


# --------------------------------------------------------------------------- verify
@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The backup file ('-': stdin).")],
    identity: IdentityOption = None,
    passphrase_file: PassphraseOption = None,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.TABLE,
) -> int:
    """Decrypt a backup and check every hash and count (exit 1 with the first problem)."""
    from kustos.backup.archive import open_backup  # noqa: PLC0415

    identities, passphrase = _opener(identity, passphrase_file)
    backup = open_backup(file, identities=identities, passphrase=passphrase)
    manifest = backup.manifest
    if output_format is TableOrJson.JSON:
        doc = manifest.model_dump(by_alias=True, exclude={"objects"})
        print_json({"file": str(file), "verified": True, **doc})
        return 0
    counts = manifest.counts
    typer.echo(f"{'<stdin>' if str(file) == '-' else file}: OK, every hash and count verified")
    typer.echo(f"  created     {manifest.created} by Kustos {manifest.kustos_version}")
    typer.echo(f"  cluster     {manifest.cluster.server or '-'} (id {manifest.cluster.id or '-'})")
    scope = ", ".join(manifest.selection.namespaces) or "all namespaces"
    typer.echo(
        f"  selection   {scope}"
        + (f", -l {manifest.selection.selector}" if manifest.selection.selector else "")
    )
    typer.echo(
        f"  objects     {counts.get('Secret', 0)} Secret(s) ({counts.get('versionSecrets', 0)} "
        f"version Secret(s)), {counts.get('ManagedSecret', 0)} ManagedSecret(s), "
        f"{counts.get('Namespace', 0)} namespace(s)"
    )
    return 0


# --------------------------------------------------------------------------- restore
_VERB_STYLE: Final = {
    Verb.CREATE: "green",
    Verb.OVERWRITE: "yellow",
    Verb.REPLACE: "yellow",
    Verb.SKIP: "dim",
    Verb.UNCHANGED: "dim",
    Verb.CONFLICT: "red",
}


def _summary(plan: Plan) -> str:
    return ", ".join(f"{verb.value} {plan.count(verb)}" for verb in Verb if plan.count(verb))


def _report(plan: Plan, *, title: str, output_format: TableOrJson, done: dict[Any, str]) -> None:
    if output_format is TableOrJson.JSON:
        print_json(
            {
                "title": title,
                "actions": [
                    {
                        "action": a.verb.value,
                        "kind": a.kind,
                        "namespace": a.namespace,
                        "name": a.name,
                        "from": a.source_namespace or None,
                        "reason": a.reason,
                        "result": done.get(id(a), ""),
                    }
                    for a in plan.actions
                ],
                "summary": {verb.value: plan.count(verb) for verb in Verb},
            }
        )
        return
    table = Table(title=title, title_justify="left")
    for column in ("Action", "Kind", "Namespace", "Name", "Reason"):
        table.add_column(column, no_wrap=column != "Reason")
    for action in plan.actions:
        result = done.get(id(action), "")
        verb = f"[{_VERB_STYLE[action.verb]}]{action.verb.value}[/]"
        table.add_row(
            verb if not result else f"[red]{result}[/]",
            action.kind,
            action.namespace or "-",
            action.name,
            action.reason,
        )
    console = report_console()
    print_table(table, console)
    console.print(_summary(plan) or "nothing to restore")


@app.command("restore")
def restore(
    file: Annotated[Path, typer.Argument(help="The backup file ('-': stdin).")],
    identity: IdentityOption = None,
    passphrase_file: PassphraseOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done; write nothing.")
    ] = False,
    conflict: Annotated[
        Conflict,
        typer.Option(
            "--conflict",
            help="An object that exists and differs: skip it, "
            "overwrite it, or fail before writing anything.",
        ),
    ] = Conflict.SKIP,
    namespace_map: Annotated[
        list[str] | None,
        typer.Option("--namespace-map", help="FROM=TO: restore FROM's objects into TO."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="NAMESPACE/NAME (or NAMESPACE/*) in the backup; repeatable."),
    ] = None,
    output_format: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.TABLE,
    quiet: Quiet = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> int:
    """Restore a backup: a table of what was (or would be) created, skipped, overwritten."""
    from kustos.backup import planning  # noqa: PLC0415
    from kustos.backup.archive import open_backup  # noqa: PLC0415
    from kustos.backup.restoring import first_error, read_live  # noqa: PLC0415
    from kustos.backup.restoring import restore as carry_out  # noqa: PLC0415
    from kustos.kube.client import make_async_client, make_client  # noqa: PLC0415

    mapping = planning.parse_namespace_map(namespace_map or [])
    patterns = planning.parse_only(only or [])
    identities, passphrase = _opener(identity, passphrase_file)
    progress = _progress(quiet)
    backup = open_backup(file, identities=identities, passphrase=passphrase)
    planning.check_namespace_map(mapping, backup.entries, source=str(file))
    progress(f"{file}: verified {len(backup.entries)} object(s)")
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)
    targets = planning.target_namespaces(backup.entries, namespace_map=mapping, only=patterns)
    with make_client(settings) as client:
        live = read_live(client, targets)
    plan = planning.plan(
        backup.entries, live.objects, conflict=conflict, namespace_map=mapping, only=patterns
    )
    if patterns and not any(a.kind != "Namespace" for a in plan.actions):
        raise UsageError(f"--only: nothing in {file} matches {', '.join(only or [])}")
    if dry_run:
        _report(
            plan, title=f"{file}: dry run, nothing written", output_format=output_format, done={}
        )
        return 0
    if plan.conflicts:
        _report(
            plan, title=f"{file}: conflicts, nothing written", output_format=output_format, done={}
        )
        first = plan.conflicts[0]
        raise RestoreConflictError(
            f"{len(plan.conflicts)} object(s) exist and differ (first: {first}); nothing was "
            "restored (--conflict skip or overwrite to go on)"
        )
    outcomes = carry_out(lambda: make_async_client(settings), plan, live, progress)
    done = {id(o.action): "failed" for o in outcomes if o.error is not None}
    _report(plan, title=f"{file}: restored", output_format=output_format, done=done)
    error = first_error(outcomes)
    if error is not None:
        raise error
    return 0
