"""``kustos kms``: the KMS v2 plugin, its keys and re-encryption."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from kustos.errors import KmsError, UsageError
from kustos.kms.keys import key_id_hash
from kustos.kms.providers import KeyProvider
from kustos.kms.providers.keyring import LocalKeyring
from kustos.sensitive import Sensitive

app = typer.Typer(
    help="KMS v2 plugin for kube-apiserver: serve, manage keys, re-encrypt.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Key-encryption keys: init, rotate, list, retire, export, import.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

Keyring = Annotated[Path | None, typer.Option("--keyring", help="Local keyring file.")]
Passphrase = Annotated[
    Path | None, typer.Option("--passphrase-file", help="File holding the keyring passphrase.")
]
Module = Annotated[Path | None, typer.Option("--pkcs11-module", help="PKCS#11 module (.so).")]
Token = Annotated[str | None, typer.Option("--pkcs11-token", help="PKCS#11 token label.")]
PinFile = Annotated[Path | None, typer.Option("--pkcs11-pin-file", help="File holding the PIN.")]


def _secret_file(path: Path, what: str) -> Sensitive:
    try:
        data = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc
    if mode & 0o077:
        typer.echo(f"kustos: warning: {path} is readable by group or others ({mode:04o})", err=True)
    value = data.rstrip(b"\r\n")
    if not value:
        raise UsageError(f"{path}: the {what} file is empty")
    return Sensitive(value)


def open_provider(
    *,
    keyring: Path | None,
    passphrase_file: Path | None,
    module: Path | None,
    token: str | None,
    pin_file: Path | None,
    must_exist: bool = True,
) -> KeyProvider:
    """The provider named by the flags; exactly one of keyring or PKCS#11."""
    if keyring is not None and (module or token or pin_file):
        raise UsageError("give either --keyring or the --pkcs11-* flags, not both")
    if keyring is not None:
        if passphrase_file is None:
            raise UsageError("--keyring needs --passphrase-file")
        return LocalKeyring(
            keyring, _secret_file(passphrase_file, "passphrase"), must_exist=must_exist
        )
    if module is not None or token is not None or pin_file is not None:
        if module is None or token is None or pin_file is None:
            raise UsageError("PKCS#11 needs --pkcs11-module, --pkcs11-token and --pkcs11-pin-file")
        from kustos.kms.providers.pkcs11 import Pkcs11Provider  # noqa: PLC0415 - optional HSM

        return Pkcs11Provider(module=module, token_label=token, pin=_secret_file(pin_file, "PIN"))
    raise UsageError("name a key store: --keyring FILE --passphrase-file F, or --pkcs11-*")


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


def _configure_logging(log_format: str) -> None:
    if log_format not in ("text", "json"):
        raise UsageError(f"unknown --log-format {log_format!r} (text or json)")
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
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
    socket: Annotated[Path, typer.Option("--socket", help="UNIX socket to listen on.")],
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
    metrics_address: Annotated[
        str | None, typer.Option("--metrics-address", help="HOST:PORT for Prometheus metrics.")
    ] = None,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json (one object per line).")
    ] = "text",
) -> None:
    """Serve v2.KeyManagementService on a UNIX socket until SIGTERM."""
    _configure_logging(log_format)
    from kustos.kms.serving import ServeSettings  # noqa: PLC0415 - grpc on demand
    from kustos.kms.serving import serve as run  # noqa: PLC0415

    provider = open_provider(
        keyring=keyring,
        passphrase_file=passphrase_file,
        module=pkcs11_module,
        token=pkcs11_token,
        pin_file=pkcs11_pin_file,
    )
    settings = ServeSettings(socket=socket, metrics_address=metrics_address)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run(provider, settings, stop)

    try:
        asyncio.run(main())
    finally:
        provider.close()


def _provider_options(
    keyring: Path | None,
    passphrase_file: Path | None,
    module: Path | None,
    token: str | None,
    pin_file: Path | None,
    *,
    must_exist: bool = True,
) -> KeyProvider:
    return open_provider(
        keyring=keyring,
        passphrase_file=passphrase_file,
        module=module,
        token=token,
        pin_file=pin_file,
        must_exist=must_exist,
    )


@keys_app.command("init")
def keys_init(
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
) -> None:
    """Create the first key-encryption key."""
    provider = _provider_options(
        keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file, must_exist=False
    )
    record = provider.init_keys(created=_now())
    typer.echo(f"created key {record.key_id} (current)")


@keys_app.command("rotate")
def keys_rotate(
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
) -> None:
    """Make a new current key; older keys keep decrypting. Then run `kustos kms reencrypt`."""
    provider = _provider_options(
        keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file
    )
    record = provider.rotate_keys(created=_now())
    typer.echo(f"created key {record.key_id} (current); a running plugin picks it up within 5s")


@keys_app.command("list")
def keys_list(
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
    output_format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Every key: id, state, creation time (never key material)."""
    provider = _provider_options(
        keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file
    )
    records = provider.records()
    under = provider.reencrypted_under()
    if output_format == "json":
        import orjson  # noqa: PLC0415

        doc = {
            "keys": [
                {
                    "key_id": r.key_id,
                    "state": r.state.value,
                    "created": r.created,
                    "key_id_hash": key_id_hash(r.key_id),
                }
                for r in records
            ],
            "reencrypted_under": under,
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for r in records:
        typer.echo(f"{r.key_id:<22} {r.state.value:<9} {r.created}")
    typer.echo(f"last complete re-encryption under: {under or 'never'}")


@keys_app.command("retire")
def keys_retire(
    key_id: Annotated[str, typer.Argument(help="The key to retire.")],
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retire without proof of re-encryption.")
    ] = False,
) -> None:
    """Destroy an old key once nothing can be encrypted under it."""
    provider = _provider_options(
        keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file
    )
    provider.retire_key(key_id, force=force)
    typer.echo(f"retired key {key_id}")


@keys_app.command("export")
def keys_export(
    recipient: Annotated[str, typer.Option("--recipient", help="age public key (age1...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the backup.")],
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
) -> None:
    """Back up a local keyring, encrypted to an age recipient (see docs/kms.md, recovery)."""
    import pyrage  # noqa: PLC0415

    provider = _provider_options(keyring, passphrase_file, None, None, None)
    if not isinstance(provider, LocalKeyring):
        raise UsageError("export works on a local keyring; HSM keys never leave the token")
    try:
        target = pyrage.x25519.Recipient.from_str(recipient)
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise UsageError(f"--recipient is not an age public key ({type(exc).__name__})") from None
    output.write_bytes(pyrage.encrypt(provider.export_payload(), [target]))
    output.chmod(0o600)
    typer.echo(f"exported {len(provider.records())} keys to {output} (age, for {recipient[:12]}…)")


@keys_app.command("import")
def keys_import(
    backup: Annotated[Path, typer.Argument(help="An export made by `kustos kms keys export`.")],
    identity_file: Annotated[
        Path, typer.Option("--identity-file", help="age identity (AGE-SECRET-KEY-...).")
    ],
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
) -> None:
    """Recreate a keyring from an export, protected by a (new) passphrase."""
    import pyrage  # noqa: PLC0415

    if keyring is None or passphrase_file is None:
        raise UsageError("import needs --keyring (a new file) and --passphrase-file")
    identities = [
        pyrage.x25519.Identity.from_str(line.strip())
        for line in _secret_file(identity_file, "identity").reveal_text().splitlines()
        if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if not identities:
        raise UsageError(f"{identity_file}: no AGE-SECRET-KEY line")
    try:
        payload = pyrage.decrypt(backup.read_bytes(), identities)
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own untyped errors
        raise KmsError(
            f"{backup}: cannot decrypt with that identity ({type(exc).__name__})"
        ) from None
    target = LocalKeyring(keyring, _secret_file(passphrase_file, "passphrase"), must_exist=False)
    records = target.import_payload(payload)
    typer.echo(f"imported {len(records)} keys into {keyring}")


@app.command("reencrypt")
def reencrypt(
    resources: Annotated[
        str, typer.Option("--resources", help="Comma-separated resources.")
    ] = "secrets",
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Kubeconfig file.")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")] = None,
    cursor_file: Annotated[
        Path, typer.Option("--cursor-file", help="Progress file; a rerun resumes from it.")
    ] = Path(".kustos-reencrypt.cursor"),
    keyring: Keyring = None,
    passphrase_file: Passphrase = None,
    pkcs11_module: Module = None,
    pkcs11_token: Token = None,
    pkcs11_pin_file: PinFile = None,
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

    provider = None
    if keyring is not None or pkcs11_module is not None:
        provider = _provider_options(
            keyring, passphrase_file, pkcs11_module, pkcs11_token, pkcs11_pin_file
        )
    key_id = provider.current_key_id() if provider else None
    names = [r.strip() for r in resources.split(",") if r.strip()]
    settings = ClientSettings(kubeconfig=kubeconfig, context=context)
    if key_id is not None:
        typer.echo(
            f"waiting for kube-apiserver to use key {key_id} (it polls once a minute)…", err=True
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
