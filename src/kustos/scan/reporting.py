"""Scan results as JSON, SARIF 2.1.0, HTML and a terminal table.

Formatting only: every renderer takes a ``ScanResult`` and returns text (the table writes
to a rich ``Console``). No renderer sees a secret value: findings carry names only.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson
from rich.console import Console
from rich.table import Table

from kustos import __version__
from kustos.kube.index import ReadSummary
from kustos.kube.objects import ObjectRef
from kustos.scan.catalog import RULES
from kustos.scan.findings import SECURITY_SEVERITY, Finding, Rule, Severity
from kustos.scan.scanning import ScanResult

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI: Final = "https://github.com/kustos-io/kustos"
_SARIF_LEVEL: Final = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_COLOURS: Final = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


#: Duplicated objects named in the table footer; the JSON lists them all.
TABLE_DUPLICATES: Final = 10


def summary(result: ScanResult) -> dict[str, Any]:
    """Counts for the report footer and the JSON ``summary``.

    With ``read``: what was read (files, documents, objects), what was left out by reason,
    and the objects declared more than once with where each declaration is.
    """
    counts = Counter(f.severity.label for f in result.findings)
    out: dict[str, Any] = {
        "objects": result.objects,
        "findings": len(result.findings),
        "suppressed": len(result.suppressed),
        "by_severity": {s.label: counts.get(s.label, 0) for s in sorted(Severity, reverse=True)},
    }
    read = result.read
    if read is not None:
        out["read"] = {"files": read.files, "documents": read.documents, "objects": read.objects}
        out["skipped"] = {
            "documents": dict(read.skipped_documents),
            "files": dict(read.skipped_files),
            "malformed_documents": read.malformed,
        }
        out["duplicates"] = [
            {"object": _object(ref), "declared_at": list(where)} for ref, where in read.duplicates
        ]
    return out


def _object(ref: ObjectRef) -> str:
    """``Kind namespace/name``, as findings name their object."""
    return f"{ref.kind} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"


def _read_lines(read: ReadSummary) -> list[str]:
    """The footer lines about what was read, skipped and declared twice."""
    skipped = [f"{n} {reason}" for reason, n in read.skipped_documents]
    files = [f"{n} {reason}" for reason, n in read.skipped_files]
    line = f"Read {read.files} files, {read.documents} documents, {read.objects} objects"
    if skipped:
        line += f"; skipped documents: {', '.join(skipped)}"
    if files:
        line += f"; skipped files: {', '.join(files)}"
    if read.malformed:
        line += f"; {read.malformed} malformed documents"
    lines = [line]
    if read.duplicates:
        count = len(read.duplicates)
        lines.append(
            f"{count} object{'s' if count != 1 else ''} declared more than once "
            "(the last declaration is checked):"
        )
        for ref, where in read.duplicates[:TABLE_DUPLICATES]:
            lines.append(f"  {_object(ref)}: {', '.join(where)}")
        if len(read.duplicates) > TABLE_DUPLICATES:
            lines.append(f"  ... {len(read.duplicates) - TABLE_DUPLICATES} more (--format json)")
    return lines


def _rule(finding: Finding) -> Rule:
    return RULES[finding.rule_id]


def _resource_dict(finding: Finding) -> dict[str, str] | None:
    res = finding.resource
    if res is None:
        return None
    return {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "namespace": res.namespace,
        "name": res.name,
    }


def finding_dict(finding: Finding) -> dict[str, Any]:
    """One finding in the documented JSON shape."""
    loc = finding.location
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.label,
        "title": _rule(finding).title,
        "message": finding.message,
        "resource": _resource_dict(finding),
        "field": finding.field,
        "location": {"file": loc.file, "line": loc.line} if loc else None,
        "references": list(_rule(finding).references),
        "details": dict(finding.details),
    }


def to_json(result: ScanResult) -> str:
    """``{"findings": [...], "summary": {...}}``."""
    doc = {"findings": [finding_dict(f) for f in result.findings], "summary": summary(result)}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


#: The SARIF base id of the scanned repository's root; GitHub resolves it to the checkout.
SRCROOT: Final = "%SRCROOT%"


def _artifact(file: str, root: Path) -> dict[str, str]:
    """A SARIF artifactLocation: relative to ``%SRCROOT%`` when under *root*, else absolute."""
    path = Path(file).resolve()
    try:
        relative = path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": quote(relative), "uriBaseId": SRCROOT}


def pascal_case(title: str) -> str:
    """A rule title as a SARIF rule name: ``Secrets readable in every namespace`` →
    ``SecretsReadableInEveryNamespace`` (letters and digits only)."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    return "".join(word[:1].upper() + word[1:] for word in words)


def to_sarif(result: ScanResult, *, root: Path | None = None) -> str:
    """SARIF 2.1.0 as GitHub code scanning accepts it (rules, security-severity, fingerprints)."""
    root = root or Path.cwd()
    used = sorted({f.rule_id for f in result.findings} | set(RULES))
    index = {rule_id: i for i, rule_id in enumerate(used)}
    rules = []
    for rule_id in used:
        r = RULES[rule_id]
        refs = "\n".join(f"- {x}" for x in r.references)
        rules.append({
            "id": r.id,
            "name": pascal_case(r.title),
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.rationale},
            "help": {
                "text": f"{r.rationale}\n\nRemediation: {r.remediation}",
                "markdown": f"{r.rationale}\n\n**Remediation:** {r.remediation}\n\n{refs}",
            },
            "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
            "properties": {
                "security-severity": SECURITY_SEVERITY[r.severity],
                "tags": list(dict.fromkeys(("security", "kubernetes", "secrets", r.family))),
                "precision": "high",
            },
        })  # fmt: skip
    results = []
    for f in result.findings:
        location: dict[str, Any] = {}
        if f.location is not None:
            location["physicalLocation"] = {
                "artifactLocation": _artifact(f.location.file, root),
                "region": {"startLine": f.location.line},
            }
        if f.resource is not None:
            location["logicalLocations"] = [
                {"fullyQualifiedName": f"{f.resource}{'.' + f.field if f.field else ''}"}
            ]
        results.append({
            "ruleId": f.rule_id,
            "ruleIndex": index[f.rule_id],
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f.message},
            "locations": [location] if location else [],
            "partialFingerprints": {
                "primaryLocationLineHash": hashlib.sha256(f.fingerprint.encode()).hexdigest()[:32],
            },
        })  # fmt: skip
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "kustos", "version": __version__,
                                "informationUri": INFO_URI, "rules": rules}},
            "originalUriBaseIds": {SRCROOT: {"uri": root.resolve().as_uri() + "/"}},
            "automationDetails": {"id": "kustos/scan"},
            "results": results,
        }],
    }  # fmt: skip
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _short(finding: Finding) -> str:
    return Path(finding.location.file).name if finding.location else ""


def render_table(result: ScanResult, console: Console) -> None:
    """Findings grouped by severity (worst first), then by object; coloured; one block each.

    A block per finding rather than a grid: messages and field paths are long, and a grid
    squeezed into 80 columns is unreadable.
    """
    for severity in sorted(Severity, reverse=True):
        group = [f for f in result.findings if f.severity is severity]
        if not group:
            continue
        style = _COLOURS[severity]
        console.rule(f"[{style}]{severity.label.upper()}[/] ({len(group)})", align="left")
        last = None
        for f in group:
            obj = str(f.resource) if f.resource else f"config file {_short(f)}"
            if obj != last:
                console.print(f"[bold]{obj}[/]", highlight=False)
                last = obj
            console.print(f"  [{style}]{f.rule_id}[/] {_rule(f).title}", highlight=False)
            console.print(f"    {f.message}", highlight=False)
            where = f"{f.location.file}:{f.location.line}" if f.location else ""
            if f.field:
                where = f"{where}  {f.field}" if where else f.field
            if where:
                console.print(f"    [dim]{where}[/]", highlight=False)
    counts = summary(result)
    parts = ", ".join(f"{n} {s}" for s, n in counts["by_severity"].items() if n)
    console.print(
        f"\n{counts['findings']} findings in {counts['objects']} objects"
        + (f" ({parts})" if parts else "")
        + (f"; {counts['suppressed']} suppressed" if counts["suppressed"] else ""),
        highlight=False,
    )
    if result.read is not None and result.read.files:
        for line in _read_lines(result.read):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


def rules_table(rules: Collection[Rule]) -> Table:
    """The catalog as a table: id, severity, family and title of each rule."""
    table = Table(title=f"Kustos checks ({len(rules)})")
    for col in ("ID", "Severity", "Family", "Title"):
        table.add_column(col, no_wrap=col != "Title")
    for r in rules:
        table.add_row(r.id, r.severity.label, r.family, r.title)
    return table


def rule_dict(rule: Rule) -> dict[str, Any]:
    """One rule of the catalog, for ``kustos rules --format json``."""
    return {
        "id": rule.id, "family": rule.family, "severity": rule.severity.label,
        "title": rule.title, "rationale": rule.rationale, "remediation": rule.remediation,
        "references": list(rule.references),
    }  # fmt: skip


_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc}main{padding:20px 28px}
.cards{display:flex;gap:12px;margin-bottom:18px;flex-wrap:wrap}
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:110px;cursor:pointer;
box-shadow:0 1px 2px #0002;border-top:4px solid var(--c)}.card b{font-size:22px;display:block}
.card.off{opacity:.35}input{padding:6px 10px;width:320px;border:1px solid #ccd;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002;
margin-top:12px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #eef;vertical-align:top}
th{background:#eef1f5;font-weight:600}.sev{font-weight:700;color:var(--c);white-space:nowrap}
code{font-size:12px;color:#4a5568;word-break:break-all}details summary{cursor:pointer;color:#2b6cb0}
.critical{--c:#b00020}.high{--c:#e53e3e}.medium{--c:#d69e2e}.low{--c:#3182ce}.info{--c:#718096}
"""
_JS: Final = """
const off=new Set();function apply(){const q=document.getElementById('q').value.toLowerCase();
document.querySelectorAll('tbody tr').forEach(r=>{r.style.display=(!off.has(r.dataset.sev)&&
r.textContent.toLowerCase().includes(q))?'':'none'})}
document.querySelectorAll('.card').forEach(c=>c.onclick=()=>{const s=c.dataset.sev;
off.has(s)?off.delete(s):off.add(s);c.classList.toggle('off');apply()});
document.getElementById('q').oninput=apply;
"""


def to_html(result: ScanResult, *, title: str = "Kustos scan") -> str:
    """One self-contained page: severity cards that filter, a search box, every finding."""
    e = html.escape
    counts: Mapping[str, int] = summary(result)["by_severity"]
    cards = "".join(
        f'<div class="card {s}" data-sev="{s}"><b>{n}</b>{s}</div>' for s, n in counts.items()
    )
    rows = []
    for f in result.findings:
        r = _rule(f)
        where = f"{e(f.location.file)}:{f.location.line}" if f.location else ""
        refs = "".join(f"<li>{e(x)}</li>" for x in r.references)
        rows.append(
            f'<tr data-sev="{f.severity.label}" class="{f.severity.label}">'
            f'<td class="sev">{f.severity.label}</td><td><b>{e(f.rule_id)}</b><br>{e(r.title)}</td>'
            f"<td>{e(str(f.resource)) if f.resource else '(config file)'}</td>"
            f"<td>{e(f.message)}<details><summary>why and how to fix</summary>"
            f"<p>{e(r.rationale)}</p><p><b>Fix:</b> {e(r.remediation)}</p><ul>{refs}</ul>"
            f"</details></td><td><code>{where}</code><br><code>{e(f.field)}</code></td></tr>"
        )
    s = summary(result)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style>"
        f"</head><body><header><h1>{e(title)}</h1><p>{s['findings']} findings in "
        f"{s['objects']} objects · {s['suppressed']} suppressed · kustos {__version__}</p>"
        f"</header><main><div class=cards>{cards}</div>"
        f"<input id=q placeholder='Filter by rule, object, namespace, file…'>"
        f"<table><thead><tr><th>Severity</th><th>Rule</th><th>Object</th><th>Finding</th>"
        f"<th>Where</th></tr></thead><tbody>{''.join(rows)}</tbody></table></main>"
        f"<script>{_JS}</script></body></html>\n"
    )
