"""``kustos audit``: policy, lint, serve, ingest, verify, reindex, query, signing-key (Watch).

``serve --config`` with sinks also forwards, from a thread of its own
(:class:`kustos.audit.forwarding.BackgroundForwarding`); ``signing-key rotate|show`` manage
the checkpoint key chain (:mod:`kustos.audit.signing`).

Exit codes: 0 ok; 1 ``lint`` findings at or above ``--fail-on`` or ``verify`` found the
archive or its index damaged; 2 usage or input errors (a bad flag, an unreadable file, a
policy that is no YAML mapping); 1 also when the receiver cannot start or the archive
cannot be written. The alert commands (``alerts``, ``forward``) are added by
:mod:`kustos.cli.auditalerts`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kustos.cli import auditalerts
from kustos.cli.output import TableOrJson, emit, print_json
from kustos.errors import InputError, UsageError

if TYPE_CHECKING:
    from kustos.audit.archive import Archive, Fsync, Hook
    from kustos.audit.forwarding import BackgroundForwarding
    from kustos.audit.signing import KeyLocation

app = typer.Typer(
    name="audit",
    help="Watch: audit policy, receiver, tamper-evident archive, queries.",
    no_args_is_help=True,
)

ArchiveDir = Annotated[
    Path, typer.Option("--archive", help="The archive folder (created when absent).")
]
SigningKey = Annotated[
    str | None,
    typer.Option(
        "--signing-key",
        help="Checkpoint signing key: a file (Ed25519 PEM, 0600; created when absent; "
        "default keys/checkpoint.key inside the archive) or a PKCS#11 token, "
        "'pkcs11:token=LABEL?module-path=SO&pin-source=FILE'.",
    ),
]


class FsyncChoice(StrEnum):
    """``--fsync``: when a batch reaches the disk before it is acknowledged."""

    ALWAYS = "always"
    NONE = "none"


FsyncOption = Annotated[
    FsyncChoice,
    typer.Option(
        "--fsync",
        help="always: on disk before 200 (default); none: in the OS cache (survives a "
        "receiver crash, not a power loss).",
    ),
]


def _fsync(choice: FsyncChoice) -> Fsync:
    from kustos.audit.archive import Fsync  # noqa: PLC0415

    return Fsync(choice.value)


def _hooks(archive: Archive, config: Path | None) -> Sequence[Hook]:
    """The detectors (kustos.audit.watching), run after every durable append."""
    from kustos.audit.watching import hooks_for  # noqa: PLC0415

    return hooks_for(archive.directory, config)


def _signing_key(text: str | None) -> KeyLocation | None:
    from kustos.audit.signing import parse_location  # noqa: PLC0415

    return parse_location(text) if text is not None else None


def _archive(
    directory: Path,
    *,
    signing_key: str | None = None,
    fsync: FsyncChoice = FsyncChoice.ALWAYS,
    config: Path | None = None,
) -> Archive:
    from kustos.audit.archive import Archive  # noqa: PLC0415

    if directory.exists():
        auditalerts.require_folder(directory)
    archive = Archive(directory, signing_key=_signing_key(signing_key), fsync=_fsync(fsync))
    archive.hooks.extend(_hooks(archive, config))
    return archive


# --------------------------------------------------------------------------- policy


@app.command("policy")
def policy(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the policy here.")
    ] = None,
) -> int:
    """Print the recommended audit Policy, each line explained."""
    from kustos.audit.policy import RECOMMENDED  # noqa: PLC0415

    emit(RECOMMENDED, output, what="audit policy")
    return 0


class LintFormat(StrEnum):
    """``--format`` of ``audit lint``."""

    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


@app.command("lint")
def lint(
    policy_file: Annotated[Path, typer.Argument(help="The audit Policy file to check.")],
    output_format: Annotated[
        LintFormat, typer.Option("--format", help="Report format.")
    ] = LintFormat.TABLE,
    fail_on: Annotated[
        str,
        typer.Option("--fail-on", help="Exit 1 on findings at or above this severity."),
    ] = "medium",
) -> int:
    """Check an audit Policy: leaks, blind spots, shadowed rules (KST110-KST114)."""
    from rich.console import Console  # noqa: PLC0415

    from kustos.audit.policy import lint as run_lint  # noqa: PLC0415
    from kustos.cli.scan import FailOn  # noqa: PLC0415
    from kustos.files import read_text  # noqa: PLC0415
    from kustos.kube.documents import load_yaml_all  # noqa: PLC0415
    from kustos.scan.checking import ConfigDocument  # noqa: PLC0415
    from kustos.scan.reporting import render_table, to_json, to_sarif  # noqa: PLC0415

    try:
        threshold = FailOn(fail_on.lower()).severity
    except ValueError:
        raise UsageError(f"--fail-on must be one of {', '.join(f.value for f in FailOn)}") from None
    text = read_text(policy_file, what="audit policy")
    docs = load_yaml_all(text, str(policy_file))
    if not docs or not isinstance(docs[0], dict):
        raise InputError(f"{policy_file}: audit policy holds no YAML mapping")
    result = run_lint(ConfigDocument(str(policy_file), text, docs[0]))
    if output_format is LintFormat.TABLE:
        render_table(result, Console())
    else:
        emit((to_json if output_format is LintFormat.JSON else to_sarif)(result), None)
    return 1 if any(f.severity >= threshold for f in result.findings) else 0


# --------------------------------------------------------------------------- receiving


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the user asked for any


@app.command("serve")
def serve(
    archive: ArchiveDir,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT for the webhook (port 0: any free).")
    ] = "127.0.0.1:8443",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Server certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key.")] = None,
    client_ca: Annotated[
        Path | None, typer.Option("--client-ca", help="Require client certificates of this CA.")
    ] = None,
    fsync: FsyncOption = FsyncChoice.ALWAYS,
    signing_key: SigningKey = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Watch config (detectors, sinks).")
    ] = None,
    max_waiting: Annotated[
        int,
        typer.Option("--max-waiting", min=1, help="Batches waiting for the disk before 429."),
    ] = 16,
    forward: Annotated[
        bool,
        typer.Option(
            "--forward/--no-forward",
            help="Forward events and alerts to the config's sinks from this process "
            "(default when sinks are configured).",
        ),
    ] = True,
) -> int:
    """Receive the API server's audit webhook batches into the archive, and forward them."""
    from kustos.audit.receiving import ReceiverSettings  # noqa: PLC0415
    from kustos.audit.receiving import serve as run  # noqa: PLC0415

    host, port = _listen(listen)
    _readable({"--tls-cert": tls_cert, "--tls-key": tls_key, "--client-ca": client_ca})
    settings = ReceiverSettings(
        host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca,
        max_waiting=max_waiting,
    )  # fmt: skip
    store = _archive(archive, signing_key=signing_key, fsync=fsync, config=config)
    forwarding = _forwarding(store, config) if forward else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def started(bound: int) -> None:
            sinks = f", forwarding to {len(forwarding.forwarders)} sink(s)" if forwarding else ""
            typer.echo(f"listening on {host}:{bound}, archive {archive}{sinks}", err=True)

        receiver = await run(store, settings, stop=stop, started=started)
        typer.echo(f"stopped: {receiver.accepted} events stored", err=True)

    if forwarding is not None:
        forwarding.start()
    try:
        asyncio.run(main())
    finally:
        if forwarding is not None:
            forwarding.stop()
    return 0


def _readable(files: dict[str, Path | None]) -> None:
    """Each file given is a readable file; else one line naming the flag and the path."""
    from kustos.errors import FileAccessError, FileMissingError  # noqa: PLC0415

    for flag, path in files.items():
        if path is None:
            continue
        if not path.exists():
            raise FileMissingError(path, f"read {flag}", "no such file")
        if not path.is_file() or not os.access(path, os.R_OK):
            raise FileAccessError(path, f"read {flag}", "not a readable file")


def _forwarding(store: Archive, config: Path | None) -> BackgroundForwarding | None:
    """Forwarding to the configured sinks beside the receiver, woken by each append."""
    from kustos.audit.forwarding import ArchiveTail, BackgroundForwarding  # noqa: PLC0415
    from kustos.audit.watching import forwarders_for, load_config  # noqa: PLC0415

    watch = load_config(config)
    if not watch.sinks:
        return None
    forwarders = forwarders_for(store.directory, watch)
    for forwarder in forwarders:  # each reads on from where its last pass stopped
        forwarder.events = ArchiveTail(store.directory)
    forwarding = BackgroundForwarding(forwarders, poll_seconds=watch.poll_seconds)
    store.hooks.append(forwarding.wake)  # after the detectors: their alerts go out too
    return forwarding


@app.command("ingest")
def ingest(
    archive: ArchiveDir,
    files: Annotated[list[Path], typer.Argument(help="Audit log files (.gz too), any order.")],
    fsync: FsyncOption = FsyncChoice.ALWAYS,
    signing_key: SigningKey = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Watch config (detectors, sinks).")
    ] = None,
) -> int:
    """Ingest audit log files (--audit-log-path, rotated, gzipped); resumable, never twice."""
    from kustos.audit.ingesting import ingest as run  # noqa: PLC0415

    with _archive(archive, signing_key=signing_key, fsync=fsync, config=config) as store:
        report = run(store, files)
    typer.echo(
        f"{report.files} file(s), {report.lines} new line(s): {report.stored} event(s) "
        f"stored, {report.repeated} already archived, {report.skipped} not audit events, "
        f"{report.stripped} with values stripped"
    )
    return 0


# --------------------------------------------------------------------------- archive


@app.command("verify")
def verify(
    archive: ArchiveDir,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Checkpoint key kept elsewhere (checkpoint.pub)."),
    ] = None,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
) -> int:
    """Check the hash chain, the signed checkpoints and the index; exit 1 if damaged."""
    from kustos.audit.verifying import verify as run  # noqa: PLC0415

    _require_archive(archive)
    _readable({"--public-key": public_key})
    result = run(archive, public_key=public_key)
    if output_format is TableOrJson.JSON:
        print_json(
            {
                "ok": result.ok,
                "records": result.records,
                "checkpoints": result.checkpoints,
                "problems": result.problems,
                "notes": result.notes,
            }
        )
    else:
        for note in result.notes:
            typer.echo(f"note: {note}")
        for problem in result.problems:
            typer.echo(f"FAILED: {problem}")
        if result.ok:
            typer.echo(
                f"ok: {result.records} records, {result.checkpoints} signed checkpoints, "
                "index consistent"
            )
    return 0 if result.ok else 1


signing_app = typer.Typer(
    name="signing-key",
    help="The archive's checkpoint signing key: show the key chain, rotate.",
    no_args_is_help=True,
)
app.add_typer(signing_app, name="signing-key")


@signing_app.command("rotate")
def rotate_signing_key(archive: ArchiveDir, signing_key: SigningKey = None) -> int:
    """Sign what is archived with the current key, then hand signing to a new key.

    The new public key is certified by the old one in checkpoint-keys.jsonl, so `verify`
    accepts old and new checkpoints from the same anchor (checkpoint.pub). The receiver
    must be stopped (it holds the archive's writer lock).
    """
    from kustos.audit.archive import Archive  # noqa: PLC0415

    _require_archive(archive)
    with Archive(archive, signing_key=_signing_key(signing_key)) as store:
        before = store.size
        new = store.rotate_signing_key()
    typer.echo(f"signing key rotated: key {new} signs from record {before + 1}")
    return 0


@signing_app.command("show")
def show_signing_keys(
    archive: ArchiveDir,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
) -> int:
    """List the key chain: the anchor (checkpoint.pub) and each rotation."""
    from kustos.audit.signing import (  # noqa: PLC0415
        PUBLIC_KEY,
        read_chain,
        read_public_key,
        walk_chain,
    )

    _require_archive(archive)
    if not (archive / PUBLIC_KEY).exists():
        raise InputError(f"{archive}: no signing key yet (nothing was archived)")
    links = read_chain(archive)
    chain, broken = walk_chain(read_public_key(archive / PUBLIC_KEY), links)
    times = ["-", *(link.time for link in links)]
    rows = [
        {
            "key_id": key.key_id,
            "from_record": key.from_size + 1,
            "until_record": key.until_size,
            "since": times[i] if i < len(times) else "-",
            "current": i == len(chain) - 1 and not broken,
        }
        for i, key in enumerate(chain)
    ]
    if output_format is TableOrJson.JSON:
        print_json({"keys": rows, "problem": broken or None})
    else:
        typer.echo("KEY       FROM RECORD  UNTIL RECORD  SINCE")
        for row in rows:
            until = row["until_record"]
            typer.echo(
                f"{row['key_id']:<8}  {row['from_record']:<11}  "
                f"{until if until is not None else '-':<12}  {row['since']}"
                f"{'  (current)' if row['current'] else ''}"
            )
    if broken:
        typer.echo(f"kustos: error: {broken}", err=True)
        return 1
    return 0


def _require_archive(archive: Path) -> None:
    """An existing archive folder, or one line saying what *archive* is instead."""
    auditalerts.require_folder(archive)
    if not (archive / "segments").is_dir():
        raise InputError(f"{archive}: not an audit archive (no segments folder)")


@app.command("reindex")
def reindex(archive: ArchiveDir) -> int:
    """Rebuild the index from the segments."""
    from kustos.audit.archive import Archive  # noqa: PLC0415

    _require_archive(archive)
    count = Archive(archive).reindex()
    typer.echo(f"indexed {count} records")
    return 0


def _time(text: str | None, flag: str, now: dt.datetime) -> str | None:
    """An RFC 3339 time, or a duration back from now (``7d``), as MicroTime text."""
    from kustos.audit.records import format_time  # noqa: PLC0415
    from kustos.durations import InvalidDurationError, parse_duration  # noqa: PLC0415

    if text is None:
        return None
    try:
        return format_time(now - parse_duration(text))
    except InvalidDurationError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {text[:40]!r}: expected a time (2024-12-13T05:00:00Z) or a duration (7d)"
        ) from None
    return format_time(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))


@app.command("query")
def query(
    archive: ArchiveDir,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="NS/NAME: requests on it, and lists that returned it."),
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="User name.")] = None,
    verb: Annotated[str | None, typer.Option("--verb", help="get, list, watch, update...")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="Resource (secrets, configmaps...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this time, or this long ago (7d).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before this time.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")] = None,
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
) -> int:
    """Who did what, when, from where: answered from the index."""
    from kustos.audit.querying import EventQuery, run_query  # noqa: PLC0415

    pair = None
    if secret is not None:
        ns, sep, name = secret.partition("/")
        if not sep or not ns or not name:
            raise UsageError(f"--secret {secret[:60]!r}: expected NAMESPACE/NAME")
        pair = (ns, name)
    now = dt.datetime.now(dt.UTC)
    _require_archive(archive)
    if not (archive / "index.sqlite").exists():
        raise InputError(f"{archive}: no archive index here (run `kustos audit reindex`)")
    found = run_query(
        archive,
        EventQuery(
            secret=pair,
            namespace=namespace,
            user=user,
            verb=verb,
            resource=resource,
            since=_time(since, "--since", now),
            until=_time(until, "--until", now),
            limit=limit,
        ),
    )
    if output_format is TableOrJson.JSON:
        print_json({"events": [e.to_json() for e in found]})
        return 0
    if not found:
        typer.echo("no events")
        return 0
    header = ("TIME", "USER", "VERB", "OBJECT", "SOURCE", "CODE")
    rows = [
        (
            e.time,
            e.user,
            e.verb,
            f"{e.resource or '-'} {e.namespace or '*'}/{e.name or '*'}",
            e.source_ip or "-",
            str(e.code) if e.code is not None else "-",
        )
        for e in found
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


auditalerts.register(app)  # alerts and forward: the alert half of Watch
