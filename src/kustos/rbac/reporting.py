"""``who-can`` answers as reports: JSON documents for programs, console text for people.

Formatting only, as :mod:`kustos.scan.reporting` is for scan, and pure like the rest of
``kustos.rbac``: a JSON report is a dict; a text report is a :class:`TextReport`, lines in
console markup (``[bold]…[/]``) and, for the matrix, a :class:`Grid` of cells. The CLI
prints them with rich; no terminal library is imported here (the import contracts keep
``kustos.rbac`` free of them). Reports name subjects, bindings, roles and rules, never an
object's content.

Control-plane identities (:func:`~kustos.rbac.access.is_platform_subject`) are left out of
every report unless ``all_subjects`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from kustos.rbac.access import Matrix, Path, SubjectPaths, is_platform_subject
from kustos.rbac.matching import Request


@dataclass(frozen=True, slots=True)
class Grid:
    """A table: a title, column names and rows of cells (cells may hold several lines).

    The first column is a key and is never wrapped; the others fold when too long.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class TextReport:
    """What a person reads: lines of console markup, then an optional grid."""

    lines: tuple[str, ...]
    grid: Grid | None = None


def shown(subjects: Sequence[SubjectPaths], *, all_subjects: bool) -> list[SubjectPaths]:
    """The subjects a report lists: all of them, or all but the control plane's own."""
    if all_subjects:
        return list(subjects)
    return [sp for sp in subjects if not is_platform_subject(sp.subject)]


def subjects_doc(subjects: Sequence[SubjectPaths]) -> list[dict[str, Any]]:
    """Subjects and every path of each, in the documented JSON shape."""
    return [
        {
            "kind": sp.subject.kind,
            "namespace": sp.subject.namespace,
            "name": sp.subject.name,
            "paths": [
                {"type": p.type, "via": p.via, "binding": p.binding, "role": p.role, "rule": p.rule}
                for p in sp.paths
            ],
        }
        for sp in subjects
    ]


# --------------------------------------------------------------------------- one request


@dataclass(frozen=True, slots=True)
class Question:
    """A single ``who-can`` question as the user typed it (echoed in the JSON report)."""

    verb: str
    resource: str
    namespace: str
    name: str


def request_doc(
    question: Question, subjects: Sequence[SubjectPaths], *, all_subjects: bool
) -> dict[str, Any]:
    """The JSON answer to one question: the question, then every subject and its paths."""
    return {
        "verb": question.verb,
        "resource": question.resource,
        "namespace": question.namespace,
        "name": question.name,
        "subjects": subjects_doc(shown(subjects, all_subjects=all_subjects)),
    }


def request_text(
    request: Request, subjects: Sequence[SubjectPaths], *, all_subjects: bool
) -> TextReport:
    """The answer to one question for a terminal: each subject, then one line per binding
    and rule, its verbs and resources grouped (``create, patch, update deployments,
    statefulsets (mounts any Secret)``), not one line per verb and resource."""
    lines = [f"[bold]Who can {request}[/]"]
    for sp in shown(subjects, all_subjects=all_subjects):
        lines.append(f"[bold]{sp.subject}[/]")
        for (kind, binding, role, rule), vias in _by_rule(sp.paths).items():
            colour = "red" if kind == "direct" else "yellow"
            for via in group_vias(vias):
                line = f"  [{colour}]{kind}[/] {via}"
                if binding:
                    line += f" [dim]({binding} → {role}: {rule})[/]"
                lines.append(line)
    return TextReport(tuple(lines))


def _by_rule(paths: Sequence[Path]) -> dict[tuple[str, str, str, str], list[str]]:
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for p in paths:
        grouped.setdefault((p.type, p.binding, p.role, p.rule), []).append(p.via)
    return grouped


#: ``VERB RESOURCE[/SUB] [why]``: the paths that differ only by verb and resource.
_VERB_RESOURCE: Final = re.compile(r"^(?P<verb>[a-z]+) (?P<res>[a-z]+s(?:/[a-z]+)?)(?P<why> .*)?$")


def group_vias(vias: Sequence[str]) -> list[str]:
    """Merge ``create pods (why)``, ``update deployments (why)``... into one line per reason
    and verb set: ``create pods (why)``, ``create, patch, update deployments (why)``."""
    out: dict[str, None] = {}
    reasons: dict[str, dict[str, list[str]]] = {}
    for via in vias:
        match = _VERB_RESOURCE.match(via)
        if match is None:
            out[via] = None
            continue
        verbs = reasons.setdefault(match["why"] or "", {}).setdefault(match["res"], [])
        if match["verb"] not in verbs:
            verbs.append(match["verb"])
        out[f"\x00{match['why'] or ''}"] = None  # keeps the reason's place in the order
    lines: list[str] = []
    for key in out:
        if not key.startswith("\x00"):
            lines.append(key)
            continue
        why = key[1:]
        by_verbs: dict[tuple[str, ...], list[str]] = {}
        for resource, verbs in reasons[why].items():
            by_verbs.setdefault(tuple(sorted(verbs)), []).append(resource)
        lines.extend(
            f"{', '.join(verbs)} {', '.join(resources)}{why}"
            for verbs, resources in by_verbs.items()
        )
    return lines


# --------------------------------------------------------------------------- the matrix


def matrix_doc(matrix: Matrix, *, all_subjects: bool) -> dict[str, Any]:
    """The JSON matrix: what every Secret shares once, then what each Secret adds."""

    def listed(subjects: Sequence[SubjectPaths]) -> dict[str, Any]:
        return {"subjects": subjects_doc(shown(subjects, all_subjects=all_subjects))}

    # Secrets named by the same rules share one list in the matrix (thousands of Secrets,
    # a hundred combinations): each is rendered once and the same JSON value reused.
    rendered: dict[int, list[dict[str, Any]]] = {}

    def secret_subjects(subjects: list[SubjectPaths]) -> list[dict[str, Any]]:
        found = rendered.get(id(subjects))
        if found is None:
            found = rendered[id(subjects)] = subjects_doc(
                shown(subjects, all_subjects=all_subjects)
            )
        return found

    return {
        "namespace": matrix.namespace,
        "all_secrets": listed(matrix.common),
        "secrets_used_by_pods": listed(matrix.in_use),
        "become_any_serviceaccount_in": {
            ns: listed(subjects) for ns, subjects in matrix.become_any.items()
        },
        "secrets": [
            {
                "name": name,
                "used_by_pods": name in matrix.used_by_pods,
                "subjects": secret_subjects(subjects),
            }
            for name, subjects in sorted(matrix.extra.items())
        ],
    }


def matrix_text(matrix: Matrix, *, all_subjects: bool) -> TextReport:
    """The matrix for a terminal: who reaches every Secret, then a grid of what each adds."""
    common = shown(matrix.common, all_subjects=all_subjects)
    in_use = shown(matrix.in_use, all_subjects=all_subjects)
    heading = (
        f"[bold]Every Secret in {matrix.namespace} ({len(matrix.extra)}) can be read by "
        f"{len(common)} subjects:[/]"
    )
    lines = [heading]
    for sp in common:
        kinds = sorted({p.type for p in sp.paths})
        lines.append(f"  {sp.subject} [dim]({', '.join(kinds)})[/]")
    if in_use:
        lines.append(
            f"[bold]and every Secret a pod uses ({len(matrix.used_by_pods)}) by "
            f"{len(in_use)} more (exec/attach):[/]"
        )
        lines.extend(f"  {sp.subject}" for sp in in_use)
    rows = []
    for secret, extra in sorted(matrix.extra.items()):
        subjects = shown(extra, all_subjects=all_subjects)
        direct = [str(s.subject) for s in subjects if any(p.type == "direct" for p in s.paths)]
        indirect = [str(s.subject) for s in subjects if all(p.type == "indirect" for p in s.paths)]
        rows.append((secret, "\n".join(direct) or "-", "\n".join(indirect) or "-"))
    grid = Grid("Beyond those, per Secret", ("Secret", "Direct", "Indirect"), tuple(rows))
    return TextReport(tuple(lines), grid)
