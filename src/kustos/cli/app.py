"""The Typer application: every command, loaded one at a time, and its error handling.

Start-up time is part of every command (``kustos seal`` in a loop, ``kustos scan`` in a
pre-commit hook), so only the module of the command being run is imported: ``kustos scan``
does not load the Kubernetes client or the control-plane harness, and ``kustos --help``
imports no command module at all. The command list of ``--help`` is drawn from
:data:`COMMANDS` (a unit test keeps each summary equal to the command's own help). What a
command may import at start is the import rule of ``docs/architecture.md``;
:mod:`kustos.cli.main` is the entry point (it answers the version forms without Typer, and
imports this module only for the other command lines).
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Annotated, Final

import typer

from kustos import __version__
from kustos.errors import KustosError


@dataclass(frozen=True, slots=True)
class Entry:
    """Where a command lives and what ``kustos --help`` says about it."""

    module: str
    attr: str
    summary: str
    #: A Typer app with sub-commands (``kms``, ``audit``) rather than one function.
    group: bool = False


#: command → where it lives; ``--help`` lists the commands in this order, ``version`` after
#: the single commands (as Typer lists commands before groups).
COMMANDS: Final = {
    "scan": Entry(
        "kustos.cli.scan",
        "scan",
        "Find every secrets risk in manifests, a piped stream or a live cluster.",
    ),
    "rules": Entry("kustos.cli.scan", "rules", "List the check catalog."),
    "explain": Entry(
        "kustos.cli.scan",
        "explain",
        "Print one check in full: why it matters, how to fix it, what it corresponds to.",
    ),
    "who-can": Entry(
        "kustos.cli.whocan",
        "who_can_command",
        "Every User, Group and ServiceAccount that can do VERB on RESOURCE, and how.",
    ),
    "refs": Entry(
        "kustos.cli.refs",
        "refs",
        "List every Secret reference: Secret, consumer, how (env, volume, ...) and field path.",
    ),
    "rotate": Entry(
        "kustos.cli.rotate",
        "rotate",
        "Rotate a ManagedSecret now, roll its consumers and wait for them (or roll back).",
    ),
    "versions": Entry(
        "kustos.cli.rotate",
        "versions",
        "List a ManagedSecret's versions: number, time, reason, fingerprint, state.",
    ),
    "rollback": Entry(
        "kustos.cli.rotate",
        "rollback",
        "Bring an earlier version's value back as a new version, and roll the consumers.",
    ),
    "seal": Entry(
        "kustos.cli.seal",
        "seal",
        "Seal a Secret manifest into a SealedSecret (SOPS format, age recipients).",
    ),
    "unseal": Entry(
        "kustos.cli.seal",
        "unseal",
        "Print the Secret manifest inside a SealedSecret (values in clear; exit 2 if refused).",
    ),
    "demo": Entry(
        "kustos.cli.demo",
        "demo",
        "Run the guided tour: local control plane, example app, Secrets and their consumers.",
    ),
    "operator": Entry("kustos.cli.operator", "app", "The ManagedSecret operator.", group=True),
    "pull-secret": Entry("kustos.cli.pullsecret", "app", "Image pull secrets.", group=True),
    "kms": Entry(
        "kustos.cli.kms",
        "app",
        "KMS v2 plugin for kube-apiserver: serve, manage keys, re-encrypt.",
        group=True,
    ),
    "backup": Entry(
        "kustos.cli.backup",
        "app",
        "Encrypted, verifiable backups of Secrets (age format).",
        group=True,
    ),
    "audit": Entry(
        "kustos.cli.audit",
        "app",
        "Watch: audit policy, receiver, tamper-evident archive, queries.",
        group=True,
    ),
    "rbac": Entry(
        "kustos.cli.rbac", "app", "RBAC from real use: least-privilege suggestions.", group=True
    ),
    "dev-cluster": Entry(
        "kustos.cli.devcluster",
        "app",
        "A local control plane (etcd, kube-apiserver, KWOK nodes) on loopback.",
        group=True,
    ),
}


def print_version() -> None:
    """Print the Kustos version."""
    print(__version__)  # noqa: T201 - the command's output


def _print_version(value: bool) -> None:
    if value:
        print_version()
        raise typer.Exit


def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the Kustos version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Kustos: a Kubernetes secrets custodian."""


def _not_loaded() -> None:
    # run() loads the real command whenever its name comes first on the command line,
    # and the root takes no argument before it: a stand-in only ever shows in --help.
    raise typer.BadParameter("internal: this command was not loaded")  # pragma: no cover


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer app with the command *only* loaded; every other one a stand-in for ``--help``.

    A stand-in carries the command's name and :attr:`Entry.summary`, so listing the
    commands imports none of their modules.
    """
    app = typer.Typer(
        name="kustos",
        help="Kustos: a Kubernetes secrets custodian.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    order = [name for name, entry in COMMANDS.items() if not entry.group]
    order += ["version", *(name for name, entry in COMMANDS.items() if entry.group)]
    for name in order:
        if name == "version":
            app.command("version")(print_version)
            continue
        entry = COMMANDS[name]
        if name != only:
            app.command(name, help=entry.summary)(_not_loaded)
            continue
        target = getattr(importlib.import_module(entry.module), entry.attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def run(args: list[str]) -> int:
    """Run the command line *args* through Typer and return the exit code (as ``main``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    first = args[0] if args else None
    app = build_app(first if first in COMMANDS else None)
    try:
        result = app(args=args, prog_name="kustos", standalone_mode=False)
    except KustosError as exc:
        print(f"kustos: error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's one error line
        return exc.exit_code
    except typer.Abort:
        print("kustos: aborted", file=sys.stderr)  # noqa: T201
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors of the command line itself
        message = exc.format_message().strip()
        if message:  # empty for `kustos` alone, which has printed its help already
            print(f"kustos: error: {message}", file=sys.stderr)  # noqa: T201
        return 2
    return int(result) if isinstance(result, int) else 0
