"""``kustos scan``, ``kustos rules`` and ``kustos explain``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console

from kustos.cli.inputs import Cluster, Context, Kubeconfig, Namespaces, Paths, load_index
from kustos.errors import InputError, UsageError, quote_foreign
from kustos.scan.catalog import RULES, rule
from kustos.scan.checking import ConfigDocument, ScanInput
from kustos.scan.findings import Severity
from kustos.scan.reporting import render_table, rule_dict, to_html, to_json, to_sarif
from kustos.scan.scanning import scan as run_scan

FORMATS = ("table", "json", "sarif", "html")
BASELINE_VERSION = 1


def _config(path: Path | None, what: str) -> ConfigDocument | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {type(exc).__name__}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{line}: {what} is not valid YAML") from exc
    if not docs or not isinstance(docs[0], dict):
        raise InputError(f"{path}: {what} holds no YAML mapping")
    return ConfigDocument(str(path), text, docs[0])


def _baseline(path: Path | None) -> frozenset[str]:
    if path is None:
        return frozenset()
    try:
        doc: Any = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable baseline file") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("fingerprints"), list):
        raise InputError(f"{path}: not a Kustos baseline (no fingerprints list)")
    return frozenset(str(x) for x in doc["fingerprints"])


def scan(
    paths: Paths = None,
    cluster: Cluster = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespaces = None,
    encryption_config: Annotated[
        Path | None, typer.Option("--encryption-config", help="EncryptionConfiguration to check.")
    ] = None,
    audit_policy: Annotated[
        Path | None, typer.Option("--audit-policy", help="Audit Policy file to check.")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, json, sarif or html")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here.")
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on", help="Exit 1 on findings at or above: critical, high, medium, low, info."
        ),
    ] = "high",
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Hide findings recorded in this baseline.")
    ] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option("--write-baseline", help="Record current findings as the baseline."),
    ] = None,
    max_secret_age_days: Annotated[
        int, typer.Option("--max-secret-age-days", help="Rotation limit for live Secrets.")
    ] = 90,
) -> int:
    """Find every secrets risk in manifests, a piped stream or a live cluster."""
    if output_format not in FORMATS:
        raise UsageError(f"unknown format {output_format!r} (one of {', '.join(FORMATS)})")
    try:
        threshold = Severity.parse(fail_on)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    enc = _config(encryption_config, "encryption config")
    audit = _config(audit_policy, "audit policy")
    hidden = _baseline(baseline)
    if not paths and not cluster and (enc or audit):
        from kustos.kube.index import ObjectIndex  # noqa: PLC0415 - only for config-only scans

        index, loader = ObjectIndex(), None
    else:
        index, loader = load_index(
            paths, cluster=cluster, kubeconfig=kubeconfig, context=context, namespaces=namespace
        )
    scan_input = ScanInput(
        index=index, encryption_config=enc, audit_policy=audit, live=cluster,
        now=dt.datetime.now(dt.UTC), max_secret_age_days=max_secret_age_days,
    )  # fmt: skip
    result = run_scan(scan_input, locate=loader.line if loader else None, baseline=hidden)
    for err in index.errors:
        typer.echo(f"kustos: skipped {err}", err=True)
    if write_baseline is not None:
        fingerprints = sorted({f.fingerprint for f in result.findings} | hidden)
        doc = {"kustos_baseline": BASELINE_VERSION, "fingerprints": fingerprints}
        write_baseline.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    _emit(result, output_format, output)
    return 1 if any(f.severity >= threshold for f in result.findings) else 0


def _emit(result: Any, output_format: str, output: Path | None) -> None:
    if output_format == "table":
        if output is None:
            render_table(result, Console())
        else:
            with output.open("w", encoding="utf-8") as fh:
                render_table(result, Console(file=fh, width=160, no_color=True))
        return
    text = {"json": to_json, "sarif": to_sarif, "html": to_html}[output_format](result)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def rules(
    output_format: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> int:
    """List the check catalog."""
    if output_format == "json":
        typer.echo(orjson.dumps([rule_dict(r) for r in RULES.values()], option=orjson.OPT_INDENT_2))
        return 0
    if output_format != "table":
        raise UsageError(f"unknown format {output_format!r} (table or json)")
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"Kustos checks ({len(RULES)})")
    for col in ("ID", "Severity", "Family", "Title"):
        table.add_column(col, no_wrap=col != "Title")
    for r in RULES.values():
        table.add_row(r.id, r.severity.label, r.family, r.title)
    Console().print(table)
    return 0


def explain(rule_id: Annotated[str, typer.Argument(help="A check id such as KST001.")]) -> int:
    """Print one check in full: why it matters, how to fix it, what it corresponds to."""
    found = rule(rule_id)
    if found is None:
        raise UsageError(f"no check {quote_foreign(rule_id, 20)!r}; `kustos rules` lists them")
    typer.echo(f"{found.id}  {found.title}")
    typer.echo(f"severity: {found.severity.label}    family: {found.family}\n")
    typer.echo(f"Why:\n  {found.rationale}\n")
    typer.echo(f"Fix:\n  {found.remediation}\n")
    if found.references:
        typer.echo("References:")
        for ref in found.references:
            typer.echo(f"  - {ref}")
    return 0
