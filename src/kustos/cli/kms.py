"""``kustos kms``: the KMS v2 plugin, its keys and re-encryption.

The key-store flags (``--keyring``/``--passphrase-file`` or the ``--pkcs11-*`` flags) are
declared once, on the ``kms`` group, and become one :class:`KeyStoreFlags` for every
command; they may be written before or after the command's name (``kustos kms keys init
--keyring F`` and ``kustos kms --keyring F keys init`` are the same). Every provider is
opened with ``with``, so a PKCS#11 session is closed when the command is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from typer.core import TyperGroup, TyperOption

from kustos.cli.output import TableOrJson, print_json
from kustos.errors import FileAccessError, InputError, KmsError, UsageError
from kustos.files import read_bytes, write_atomic
from kustos.kms.keys import SealingKeyStore, key_id_hash
from kustos.kms.providers import KeyProvider
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive

if TYPE_CHECKING:
    from kustos.crypto.age import Identities

#: Passphrase, PIN and identity files are a line or two; anything larger is a wrong path.
SECRET_FILE_LIMIT: Final = 64 * 1024


class OptionsAnywhere(TyperGroup):
    """A group whose own valued options may also follow a subcommand's name.

    Click parses a group's options only before the subcommand; ``kustos kms keys init
    --keyring F`` has always been the documented form, so the group's options found later
    on the command line are moved in front of the subcommand before parsing.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]  # typer.Context is what Typer passes
        """Parse *args* with this group's options hoisted in front."""
        names = {
            name
            for param in self.params
            if isinstance(param, TyperOption) and not param.is_flag
            for name in param.opts
        }
        return super().parse_args(ctx, hoist_options(args, names))


def hoist_options(args: Sequence[str], names: set[str]) -> list[str]:
    """*args* with every ``--name value`` / ``--name=value`` of *names* moved to the front.

    Nothing after ``--`` moves: those are arguments, whatever they look like.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, _ = arg.partition("=")
        if name in names:
            taken = 1 if eq else 2
            front.extend(args[i : i + taken])
            i += taken
        else:
            rest.append(arg)
            i += 1
    return front + rest


app = typer.Typer(
    cls=OptionsAnywhere,
    help="KMS v2 plugin for kube-apiserver: serve, manage keys, re-encrypt.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="Key-encryption keys: init, rotate, list, retire, export, import. The key-store "
    "options (--keyring, --passphrase-file, --pkcs11-*) are those of `kustos kms --help`, "
    "given before or after the command.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
sealing_app = typer.Typer(
    help="The cluster's sealing key (the age identity that opens SealedSecrets), kept in the "
    "keyring or the PKCS#11 token: create, rotate, list, retire, reseal. Same key-store "
    "options as `kustos kms keys`.",
    no_args_is_help=True,
)
app.add_typer(sealing_app, name="sealing-key")


def _secret_file(path: Path, what: str) -> Sensitive:
    """The secret held by *path* (one line); the error names the path, never the content."""
    data = read_bytes(path, what=f"{what} file", limit=SECRET_FILE_LIMIT)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise FileAccessError(path, f"read {what} file", exc.strerror or "error") from exc
    if mode & 0o077:
        typer.echo(f"kustos: warning: {path} is readable by group or others ({mode:04o})", err=True)
    value = data.rstrip(b"\r\n")
    if not value:
        raise InputError(f"{path}: the {what} file is empty")
    return Sensitive(value)


@dataclass(frozen=True, slots=True)
class KeyStoreFlags:
    """Which key store a command opens: a local keyring, or a PKCS#11 token."""

    keyring: Path | None = None
    passphrase_file: Path | None = None
    module: Path | None = None
    token: str | None = None
    pin_file: Path | None = None

    @property
    def given(self) -> bool:
        """True if any key-store flag was given."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def _pkcs11_given(self) -> bool:
        return self.module is not None or self.token is not None or self.pin_file is not None

    def open(self, *, must_exist: bool = True) -> KeyProvider:
        """The provider named by the flags; exactly one of keyring or PKCS#11."""
        if self.keyring is not None and self._pkcs11_given():
            raise UsageError("give either --keyring or the --pkcs11-* flags, not both")
        if self.keyring is not None:
            return self.open_keyring(must_exist=must_exist)
        if self._pkcs11_given():
            if self.module is None or self.token is None or self.pin_file is None:
                raise UsageError(
                    "PKCS#11 needs --pkcs11-module, --pkcs11-token and --pkcs11-pin-file"
                )
            from kustos.kms.providers.pkcs11 import Pkcs11Provider  # noqa: PLC0415 - optional

            pin = _secret_file(self.pin_file, "PIN")
            return Pkcs11Provider(module=self.module, token_label=self.token, pin=pin)
        raise UsageError("name a key store: --keyring FILE --passphrase-file F, or --pkcs11-*")

    def open_keyring(self, *, must_exist: bool = True) -> LocalKeyring:
        """The local keyring named by ``--keyring`` and ``--passphrase-file``."""
        if self._pkcs11_given():
            raise UsageError(
                "this works on a local keyring (--keyring); HSM keys stay in the token"
            )
        if self.keyring is None:
            raise UsageError("name the keyring: --keyring FILE --passphrase-file F")
        if self.passphrase_file is None:
            raise UsageError("--keyring needs --passphrase-file")
        passphrase = _secret_file(self.passphrase_file, "passphrase")
        return LocalKeyring(self.keyring, passphrase, must_exist=must_exist)


def open_provider(
    *,
    keyring: Path | None,
    passphrase_file: Path | None,
    module: Path | None,
    token: str | None,
    pin_file: Path | None,
    must_exist: bool = True,
) -> KeyProvider:
    """The provider named by the flags (for callers outside the CLI, such as the benches)."""
    flags = KeyStoreFlags(keyring, passphrase_file, module, token, pin_file)
    return flags.open(must_exist=must_exist)


@app.callback()
def kms(
    ctx: typer.Context,
    keyring: Annotated[Path | None, typer.Option("--keyring", help="Local keyring file.")] = None,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help="File holding the keyring passphrase.")
    ] = None,
    pkcs11_module: Annotated[
        Path | None, typer.Option("--pkcs11-module", help="PKCS#11 module (.so).")
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="PKCS#11 token label.")
    ] = None,
    pkcs11_pin_file: Annotated[
        Path | None, typer.Option("--pkcs11-pin-file", help="File holding the PIN.")
    ] = None,
) -> None:
    """KMS v2 plugin for kube-apiserver: serve, manage keys, re-encrypt.

    The key-store options may come before or after the command's name.
    """
    ctx.obj = KeyStoreFlags(keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file)


def _flags(ctx: typer.Context) -> KeyStoreFlags:
    found = ctx.find_object(KeyStoreFlags)
    return found if found is not None else KeyStoreFlags()


@contextlib.contextmanager
def _store(ctx: typer.Context, *, must_exist: bool = True) -> Iterator[KeyProvider]:
    """The key store the group's flags name, open for one command (closed after it)."""
    with _flags(ctx).open(must_exist=must_exist) as provider:
        yield provider


@contextlib.contextmanager
def _sealing_store(ctx: typer.Context) -> Iterator[SealingKeyStore]:
    """The key store, for a ``sealing-key`` command (one that holds sealing keys)."""
    with _store(ctx) as provider:
        if not isinstance(provider, SealingKeyStore):
            raise UsageError("this key store cannot hold sealing keys")
        yield provider


def _key_id(value: str, listing: str) -> str:
    """*value* as a key id: one printable word (quoted back safely when it is not)."""
    if not value or not value.isprintable() or any(ch.isspace() for ch in value):
        raise UsageError(f"{value[:64]!r} is not a key id; `{listing}` shows them")
    return value


class LogFormat(StrEnum):
    """``--log-format`` of ``kms serve``."""

    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (messages never hold values)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(doc)


def _configure_logging(log_format: LogFormat) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format is LogFormat.JSON
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("kustos")
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@app.command("serve")
def serve(
    ctx: typer.Context,
    socket: Annotated[Path, typer.Option("--socket", help="UNIX socket to listen on.")],
    metrics_address: Annotated[
        str | None, typer.Option("--metrics-address", help="HOST:PORT for Prometheus metrics.")
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="text, or json (one object per line).")
    ] = LogFormat.TEXT,
) -> None:
    """Serve v2.KeyManagementService on a UNIX socket until SIGTERM.

    Fails at start, with one line, when it cannot listen on the socket or serve metrics,
    or cannot open the key store.
    """
    _configure_logging(log_format)
    from kustos.kms.serving import ServeSettings, check_listen  # noqa: PLC0415 - grpc on demand
    from kustos.kms.serving import serve as run  # noqa: PLC0415

    settings = ServeSettings(socket=socket, metrics_address=metrics_address)
    check_listen(settings)  # before the key store is opened: a typo costs no HSM login

    async def main(provider: KeyProvider) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run(provider, settings, stop)

    with _store(ctx) as provider:
        asyncio.run(main(provider))


@keys_app.command("init")
def keys_init(ctx: typer.Context) -> None:
    """Create the first key-encryption key."""
    with _store(ctx, must_exist=False) as provider:
        record = provider.init_keys(created=_now())
    typer.echo(f"created key {record.key_id} (current)")


@keys_app.command("rotate")
def keys_rotate(ctx: typer.Context) -> None:
    """Make a new current key; older keys keep decrypting. Then run `kustos kms reencrypt`."""
    with _store(ctx) as provider:
        record = provider.rotate_keys(created=_now())
    typer.echo(f"created key {record.key_id} (current); a running plugin picks it up within 5s")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json")
    ] = TableOrJson.TABLE,
) -> None:
    """Every key: id, state, creation time (never key material)."""
    with _store(ctx) as provider:
        records = provider.records()
        under = provider.reencrypted_under()
    if output_format is TableOrJson.JSON:
        keys: list[dict[str, Any]] = [
            {
                "key_id": r.key_id,
                "state": r.state.value,
                "created": r.created,
                "key_id_hash": key_id_hash(r.key_id),
            }
            for r in records
        ]
        print_json({"keys": keys, "reencrypted_under": under})
        return
    for r in records:
        typer.echo(f"{r.key_id:<22} {r.state.value:<9} {r.created}")
    typer.echo(f"last complete re-encryption under: {under or 'never'}")


@keys_app.command("retire")
def keys_retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key to retire.")],
    force: Annotated[
        bool, typer.Option("--force", help="Retire without proof of re-encryption.")
    ] = False,
) -> None:
    """Destroy an old key once nothing can be encrypted under it."""
    key_id = _key_id(key_id, "kustos kms keys list")
    with _store(ctx) as provider:
        provider.retire_key(key_id, force=force)
    typer.echo(f"retired key {key_id}")


@keys_app.command("export")
def keys_export(
    ctx: typer.Context,
    recipient: Annotated[str, typer.Option("--recipient", help="age public key (age1...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the backup.")],
) -> None:
    """Back up a local keyring, encrypted to an age recipient (see docs/kms.md, recovery)."""
    from kustos.crypto import age  # noqa: PLC0415

    target = age.Recipient.parse(recipient, where="--recipient")
    with _flags(ctx).open_keyring() as keyring:
        payload = keyring.export_payload()
        count = len(keyring.records())
    write_atomic(output, age.encrypt(payload, [target]), what="key export", mode=0o600)
    typer.echo(f"exported {count} keys to {output} (age, for {recipient[:12]}…)")


def _identities(path: Path) -> Identities:
    """The age identities in *path*; a malformed line is named by number, never quoted."""
    from kustos.crypto import age  # noqa: PLC0415

    return age.Identities.parse(_secret_file(path, "identity").reveal(), source=str(path))


@keys_app.command("import")
def keys_import(
    ctx: typer.Context,
    backup: Annotated[Path, typer.Argument(help="An export made by `kustos kms keys export`.")],
    identity_file: Annotated[
        Path, typer.Option("--identity-file", help="age identity (AGE-SECRET-KEY-...).")
    ],
) -> None:
    """Recreate a keyring from an export, protected by a (new) passphrase."""
    from kustos.crypto import age  # noqa: PLC0415

    flags = _flags(ctx)
    if flags.keyring is None or flags.passphrase_file is None:
        raise UsageError("import needs --keyring (a new file) and --passphrase-file")
    sealed = read_bytes(backup, what="key export")
    identities = _identities(identity_file)
    try:
        payload = identities.decrypt(sealed)
    except age.OpenError as exc:
        raise KmsError(f"{backup}: cannot decrypt with that identity ({exc})") from None
    with flags.open_keyring(must_exist=False) as target:
        records = target.import_payload(payload, source=str(backup))
    typer.echo(f"imported {len(records)} keys into {flags.keyring}")


@app.command("reencrypt")
def reencrypt(
    ctx: typer.Context,
    resources: Annotated[
        str,
        typer.Option(
            "--resources",
            help="Comma-separated: secrets, configmaps, or GROUP/VERSION/PLURAL (v1/PLURAL "
            "for the core group).",
        ),
    ] = "secrets",
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Kubeconfig file.")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")] = None,
    cursor_file: Annotated[
        Path, typer.Option("--cursor-file", help="Progress file; a rerun resumes from it.")
    ] = Path(".kustos-reencrypt.cursor"),
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", help="Seconds to wait for the API server's poll.")
    ] = 180.0,
) -> None:
    """Rewrite every stored object so that it is encrypted under the current key.

    With the key-store flags, first wait until kube-apiserver uses the current key (it polls
    the plugin once a minute), and afterwards record the re-encryption so that older keys
    can be retired.
    """
    from kustos.kms.reencrypting import reencrypt as run  # noqa: PLC0415
    from kustos.kms.reencrypting import wait_for_key  # noqa: PLC0415
    from kustos.kube.client import ClientSettings, make_client, raw_get  # noqa: PLC0415

    names = [r.strip() for r in resources.split(",") if r.strip()]
    if not names:
        raise UsageError("--resources names no resource")
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)
    flags = _flags(ctx)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(flags.open()) if flags.given else None
        key_id = provider.current_key_id() if provider is not None else None
        if key_id is not None:
            typer.echo(
                f"waiting for kube-apiserver to use key {key_id} (it polls once a minute)…",
                err=True,
            )
            wait_for_key(lambda: raw_get(settings, "/metrics"), key_id, timeout=wait_timeout)
        with make_client(settings) as client:
            results = run(
                client,
                names,
                cursor_file=cursor_file,
                on_progress=lambda p: typer.echo(f"  {p.resource}: {p.done} rewritten", err=True),
            )
        for p in results:
            typer.echo(
                f"{p.resource}: {p.done} rewritten "
                f"({p.conflicts} changed meanwhile, {p.missing} deleted)"
            )
        if provider is not None and key_id is not None:
            provider.record_reencrypt(key_id)
            typer.echo(f"recorded: every object rewritten while {key_id} was current")


# ---------------------------------------------------------------------- sealing keys
@sealing_app.command("create")
def sealing_create(ctx: typer.Context) -> None:
    """Create the first sealing key; prints its public recipient."""
    with _sealing_store(ctx) as store:
        key = store.add_sealing_key(created=_now(), first=True)
    typer.echo(f"created sealing key {key.key_id} (current): {key.recipient}")


@sealing_app.command("rotate")
def sealing_rotate(ctx: typer.Context) -> None:
    """Make a new current sealing key; older ones keep unsealing until retired."""
    with _sealing_store(ctx) as store:
        key = store.add_sealing_key(created=_now(), first=False)
    typer.echo(
        f"created sealing key {key.key_id} (current): {key.recipient}; the operator publishes "
        "it within its --sealing-reload; then `kustos kms sealing-key reseal` (or `kustos seal "
        "--reseal --fetch-recipient`) the files, and retire the old key"
    )


@sealing_app.command("list")
def sealing_list(
    ctx: typer.Context,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="table or json")
    ] = TableOrJson.TABLE,
) -> None:
    """Every sealing key, newest first: id, state, creation time, recipient (public)."""
    with _sealing_store(ctx) as store:
        found = store.sealing_keys()
    rows = [
        {
            "key_id": k.key_id,
            "state": "current" if i == 0 else "previous",
            "created": k.created,
            "recipient": k.recipient,
        }
        for i, k in enumerate(found)
    ]
    if output_format is TableOrJson.JSON:
        print_json({"sealing_keys": rows})
        return
    if not rows:
        typer.echo("no sealing key: run `kustos kms sealing-key create`")
    for row in rows:
        typer.echo(f"{row['key_id']:<22} {row['state']:<9} {row['created']}  {row['recipient']}")


@sealing_app.command("retire")
def sealing_retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The old sealing key to delete.")],
) -> None:
    """Delete an old sealing key: files sealed only for it no longer open (reseal them first)."""
    key_id = _key_id(key_id, "kustos kms sealing-key list")
    with _sealing_store(ctx) as store:
        store.retire_sealing_key(key_id)
    typer.echo(f"retired sealing key {key_id}")


@sealing_app.command("reseal")
def sealing_reseal(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Sealed files to rewrite in place.")],
) -> None:
    """Rewrite sealed files for the current sealing key instead of the older ones.

    The files are opened with the store's keys; other recipients (a backup, the team) are
    kept; values, MAC and the namespace/name binding do not change.
    """
    from kustos.cli.seal import reseal_files  # noqa: PLC0415
    from kustos.crypto import sops  # noqa: PLC0415

    with _sealing_store(ctx) as store:
        held = store.sealing_identities()
    if not held:
        raise KmsError("no sealing key: run `kustos kms sealing-key create`")
    identities = sops.Identities.of([secret for _, secret in held], source="the key store")
    current = sops.Recipient.parse(held[0][0].recipient, where="the current sealing key")
    older = [key.recipient for key, _ in held[1:]]
    changed = reseal_files(files, identities, add=[current], drop=older)
    typer.echo(f"resealed {changed} of {len(files)} file(s) for {held[0][0].key_id}")
