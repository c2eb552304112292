"""``kustos operator run``: the ManagedSecret operator as a foreground service.

Every option also reads a ``KUSTOS_OPERATOR_*`` environment variable (the Deployment in
``deploy/rotation`` sets them). SIGTERM and SIGINT stop it cleanly: watches close, running
rotations are cancelled between steps (the next leader resumes them from status), and the
Lease is released so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from kustos.cli.options import Context, Kubeconfig  # not cli.inputs: a faster start
from kustos.errors import UsageError
from kustos.kms.keys import SealingKeyStore
from kustos.kube.client import ClientSettings, make_async_client

app = typer.Typer(help="The ManagedSecret operator.", no_args_is_help=True)


@app.command("run")
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "-n",
            "--namespace",
            help="Watch only these namespaces (repeatable).",
            envvar="KUSTOS_OPERATOR_NAMESPACES",
        ),
    ] = None,
    all_namespaces: Annotated[
        bool,
        typer.Option(
            "--all-namespaces",
            "-A",
            help="Watch every namespace.",
            envvar="KUSTOS_OPERATOR_ALL_NAMESPACES",
        ),
    ] = False,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="HOST:PORT for /healthz, /readyz, /metrics.",
            envvar="KUSTOS_OPERATOR_LISTEN",
        ),
    ] = "127.0.0.1:8080",
    leader_elect: Annotated[
        bool,
        typer.Option(
            "--leader-elect/--no-leader-elect",
            help="Lead through a Lease (needed for several replicas).",
            envvar="KUSTOS_OPERATOR_LEADER_ELECT",
        ),
    ] = True,
    lease_namespace: Annotated[
        str,
        typer.Option(
            "--lease-namespace",
            help="Namespace of the Lease.",
            envvar="KUSTOS_OPERATOR_LEASE_NAMESPACE",
        ),
    ] = "kube-system",
    lease_name: Annotated[
        str, typer.Option("--lease-name", envvar="KUSTOS_OPERATOR_LEASE_NAME")
    ] = "kustos-operator",
    identity: Annotated[
        str | None,
        typer.Option(
            "--identity",
            help="This replica's name in the Lease [hostname-pid].",
            envvar="KUSTOS_OPERATOR_IDENTITY",
        ),
    ] = None,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", min=1, max=64, envvar="KUSTOS_OPERATOR_MAX_PARALLEL")
    ] = 4,
    reload_window: Annotated[
        float,
        typer.Option(
            "--reload-window",
            min=0.0,
            max=600.0,
            help="Seconds to gather Secret changes before one reload restart.",
            envvar="KUSTOS_OPERATOR_RELOAD_WINDOW",
        ),
    ] = 5.0,
    unseal_identity: Annotated[
        list[Path] | None,
        typer.Option(
            "--unseal-identity",
            help="age identity file that opens SealedSecrets (repeatable; keep it off etcd).",
            envvar="KUSTOS_OPERATOR_UNSEAL_IDENTITY",
        ),
    ] = None,
    sealing_keyring: Annotated[
        Path | None,
        typer.Option(
            "--sealing-keyring",
            help="Keyring holding the sealing keys (kustos kms sealing-key create).",
            envvar="KUSTOS_OPERATOR_SEALING_KEYRING",
        ),
    ] = None,
    sealing_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--sealing-passphrase-file",
            help="Passphrase of --sealing-keyring.",
            envvar="KUSTOS_OPERATOR_SEALING_PASSPHRASE_FILE",
        ),
    ] = None,
    sealing_pkcs11_module: Annotated[
        Path | None,
        typer.Option(
            "--sealing-pkcs11-module",
            help="PKCS#11 module of the token holding the sealing keys.",
            envvar="KUSTOS_OPERATOR_SEALING_PKCS11_MODULE",
        ),
    ] = None,
    sealing_pkcs11_token: Annotated[
        str | None,
        typer.Option(
            "--sealing-pkcs11-token",
            help="Label of that token.",
            envvar="KUSTOS_OPERATOR_SEALING_PKCS11_TOKEN",
        ),
    ] = None,
    sealing_pkcs11_pin_file: Annotated[
        Path | None,
        typer.Option(
            "--sealing-pkcs11-pin-file",
            help="File holding the token's PIN.",
            envvar="KUSTOS_OPERATOR_SEALING_PKCS11_PIN_FILE",
        ),
    ] = None,
    sealing_reload: Annotated[
        float,
        typer.Option(
            "--sealing-reload",
            min=1.0,
            max=3600.0,
            help="Seconds between reads of the sealing keys (a rotation is seen this late).",
            envvar="KUSTOS_OPERATOR_SEALING_RELOAD",
        ),
    ] = 30.0,
    recipient_configmap: Annotated[
        str,
        typer.Option(
            "--recipient-configmap",
            help="NAMESPACE/NAME of the ConfigMap publishing the sealing recipient.",
            envvar="KUSTOS_OPERATOR_RECIPIENT_CONFIGMAP",
        ),
    ] = "kube-system/kustos-sealing",
    no_reload: Annotated[
        bool, typer.Option("--no-reload", help="Do not roll workloads that opt in to reloads.")
    ] = False,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Use the pod's ServiceAccount.")
    ] = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="KUSTOS_LOG_LEVEL")] = "info",
) -> int:
    """Watch ManagedSecrets and rotate each one when it is due; roll back failed rollouts."""
    from kustos.operator.leading import LeaseSettings  # noqa: PLC0415
    from kustos.operator.running import Operator, OperatorSettings  # noqa: PLC0415

    if namespace and all_namespaces:
        raise UsageError("give -n NAMESPACE or --all-namespaces, not both")
    if not namespace and not all_namespaces:
        raise UsageError("say which namespaces to watch: -n NAMESPACE ... or --all-namespaces")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise UsageError(f"--log-level {log_level[:20]!r}: use debug, info, warning or error")
    logging.getLogger().setLevel(level)
    if level > logging.DEBUG:  # one line per HTTP request is for debugging only
        for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    me = identity or f"{socket.gethostname()}-{os.getpid()}"
    namespaces = tuple(n for item in namespace or () for n in item.split(",") if n)
    lease = LeaseSettings(lease_namespace, lease_name, me) if leader_elect else None
    identities = None
    if unseal_identity:
        from kustos.crypto.sops import Identities  # noqa: PLC0415
        from kustos.files import read_text  # noqa: PLC0415

        text = "\n".join(read_text(p, what="age identity") for p in unseal_identity)
        identities = Identities.parse(text, source=", ".join(map(str, unseal_identity)))
    from kustos.cli.kms import KeyStoreFlags  # noqa: PLC0415
    from kustos.sources.sealing import configmap_ref  # noqa: PLC0415

    configmap_ref(recipient_configmap)  # a typo fails here, before any key store opens
    flags = KeyStoreFlags(
        sealing_keyring, sealing_passphrase_file,
        sealing_pkcs11_module, sealing_pkcs11_token, sealing_pkcs11_pin_file,
    )  # fmt: skip
    store = flags.open() if flags.given else None
    if store is not None and not isinstance(store, SealingKeyStore):
        raise UsageError("this key store cannot hold sealing keys")
    settings = OperatorSettings(
        namespaces=namespaces, listen=listen, lease=lease, max_parallel=max_parallel,
        reload=not no_reload, reload_window=reload_window, unseal_identities=identities,
        sealing_store=store, sealing_reload=sealing_reload,
        recipient_configmap=recipient_configmap,
    )  # fmt: skip
    client_settings = ClientSettings(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        client = make_async_client(client_settings)
        try:
            await Operator(client, settings).run(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await client.close()

    try:
        asyncio.run(main())
    finally:
        if store is not None:
            store.close()
    return 0
