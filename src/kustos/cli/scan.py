"""``kustos scan``, ``kustos rules`` and ``kustos explain``.

Exit codes of ``scan`` (``docs/scan.md``): 0 nothing at or above ``--fail-on``; 1 findings
at or above it; 2 a usage or input error (a bad option, a named file that cannot be read, an
invalid configuration file or baseline, an unwritable ``--output``); 3 the API server did
not answer.
"""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console

from kustos.cli.inputs import Cluster, Namespaces, Paths, load_index, without_cycle_collection
from kustos.cli.options import Context, Kubeconfig
from kustos.cli.output import (
    ReportFormat,
    TableOrJson,
    emit,
    emit_with,
    print_json,
    print_table,
    report_console,
    report_skipped,
)
from kustos.errors import InputError, UsageError, quote_foreign
from kustos.files import read_text
from kustos.files.state import StateFile
from kustos.kube.documents import load_yaml_all
from kustos.kube.index import ObjectIndex
from kustos.kube.loading import default_workers
from kustos.scan.baseline import Baseline, baseline_of
from kustos.scan.catalog import RULES, rule
from kustos.scan.checking import ConfigDocument, scan_input
from kustos.scan.findings import Severity
from kustos.scan.forking import Forking
from kustos.scan.reporting import render_table, rule_dict, rules_table, to_html, to_json, to_sarif
from kustos.scan.scanning import ScanResult, Share
from kustos.scan.scanning import scan as run_scan

#: A report written to a file is as wide as a wide terminal and has no colour codes.
FILE_WIDTH: Final = 160
#: Baselines are committed to repositories: readable by everyone, unlike key state.
BASELINE_MODE: Final = 0o644
#: From this many objects the checks are shared out over the cores: at 2,000 to 10,000
#: objects one process and two were within the noise of this machine (a fork, the findings
#: sent back), at 100,000 two save about a third of the checks' time (docs/decisions.md).
CHECK_PROCESSES_MIN_OBJECTS: Final = 10_000


class FailOn(StrEnum):
    """``--fail-on``: the least severity that makes ``scan`` exit 1."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def severity(self) -> Severity:
        """The severity this choice names."""
        return Severity[self.name]


def _config(path: Path | None, what: str) -> ConfigDocument | None:
    """Read a configuration file given on the command line; its first document is the body."""
    if path is None:
        return None
    text = read_text(path, what=what)
    docs = load_yaml_all(text, str(path))
    if not docs or not isinstance(docs[0], dict):
        raise InputError(f"{path}: {what} holds no YAML mapping")
    return ConfigDocument(str(path), text, docs[0])


def _baseline_file(path: Path) -> StateFile[Baseline]:
    return StateFile(path, Baseline, what="baseline", mode=BASELINE_MODE)


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
        ReportFormat, typer.Option("--format", help="Report format.")
    ] = ReportFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here.")
    ] = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on", case_sensitive=False, help="Exit 1 on findings at or above this severity."
        ),
    ] = FailOn.HIGH,
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
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            help="Also read files of walked folders whose name matches this glob "
            "(repeatable), e.g. '*.yaml.tpl'.",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Processes that parse files and run the checks (default: one per core for "
            "a large input; 1: all in this process).",
        ),
    ] = None,
) -> int:
    """Find every secrets risk in manifests, a piped stream or a live cluster."""
    enc = _config(encryption_config, "encryption config")
    audit = _config(audit_policy, "audit policy")
    hidden = _baseline_file(baseline).read().hidden() if baseline is not None else frozenset()
    with without_cycle_collection():
        if not paths and not cluster and (enc or audit):
            index, loader = ObjectIndex(), None  # a config-only scan
        else:
            index, loader = load_index(
                paths, cluster=cluster, kubeconfig=kubeconfig, context=context,
                namespaces=namespace, include=include or (), workers=jobs,
            )  # fmt: skip
        parsed = scan_input(
            index, encryption_config=enc, audit_policy=audit, live=cluster,
            now=dt.datetime.now(dt.UTC), max_secret_age_days=max_secret_age_days,
        )  # fmt: skip
        result = run_scan(
            parsed, locate=loader.line if loader else None, baseline=hidden,
            share=check_sharing(jobs, len(index)),
        )  # fmt: skip
        report_skipped(index.errors)
        # The findings hold names, never objects: the index goes before the report is
        # built, so that peak memory is the larger of the two rather than their sum.
        del parsed, index, loader
        if write_baseline is not None:
            _baseline_file(write_baseline).write(baseline_of(result.findings, keep=hidden))
        _write_report(result, output_format, output)
    return 1 if any(f.severity >= fail_on.severity for f in result.findings) else 0


def check_sharing(jobs: int | None, objects: int) -> Share | None:
    """How the checks are shared out: forked copies of this process for a large index.

    ``--jobs`` counts processes for the checks as for the parse; by default a core each
    from :data:`CHECK_PROCESSES_MIN_OBJECTS` objects up (below, a second process saves
    nothing measurable).
    """
    processes = jobs if jobs is not None else default_workers()
    if processes < 2 or (jobs is None and objects < CHECK_PROCESSES_MIN_OBJECTS):
        return None
    if not hasattr(os, "fork"):  # not on Windows: the checks run here
        return None
    return Forking(processes)


def _write_report(result: ScanResult, output_format: ReportFormat, output: Path | None) -> None:
    if output_format is ReportFormat.TABLE:
        if output is None:
            render_table(result, report_console())
        else:
            emit_with(
                lambda fh: render_table(
                    result, Console(file=fh, width=FILE_WIDTH, no_color=True, soft_wrap=True)
                ),
                output,
                what="report",
            )
        return
    render = {ReportFormat.JSON: to_json, ReportFormat.SARIF: to_sarif, ReportFormat.HTML: to_html}
    emit(render[output_format](result), output, what="report")


def rules(
    output_format: Annotated[
        TableOrJson, typer.Option("--format", help="Output format.")
    ] = TableOrJson.TABLE,
) -> int:
    """List the check catalog."""
    if output_format is TableOrJson.JSON:
        print_json([rule_dict(r) for r in RULES.values()])
    else:
        print_table(rules_table(RULES.values()))
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
