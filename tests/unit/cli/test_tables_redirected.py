"""Tables printed to a redirected stdout keep one line per row (cli/output.print_table).

Aspects: ``kustos who-can --matrix`` written to a file or a pipe (no ``COLUMNS``: rich's
80 columns) keeps every Secret on one line and every subject of its cells on one line; the shared helper
widens a console for one table only, and leaves a terminal's wrapping alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from kustos.cli.main import main
from kustos.cli.output import print_table
from kustos.scan.catalog import RULES

#: Long enough that the Direct column of one row cannot fit in 80 columns.
_READERS = [f"reporting-pipeline-reader-{n:02d}" for n in range(6)]


def _manifests(tmp_path: Path) -> Path:
    """A namespace with two Secrets, one readable by name by six long-named ServiceAccounts."""
    docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ledger}\n",
        *(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ledger}}\n"
            for name in ("ledger-database-credentials", "ledger-api-token")
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n"
            "metadata: {name: read-db, namespace: ledger}\n"
            "rules:\n- apiGroups: ['']\n  resources: [secrets]\n"
            "  resourceNames: [ledger-database-credentials]\n  verbs: [get]\n"
        ),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
        "metadata: {name: read-db, namespace: ledger}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-db}\n"
        "subjects:\n"
        + "".join(
            f"- {{kind: ServiceAccount, name: {sa}, namespace: ledger}}\n" for sa in _READERS
        ),
    ]
    path = tmp_path / "ledger.yaml"
    path.write_text("---\n".join(docs))
    return path


def test_who_can_matrix_redirected_keeps_one_line_per_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # as a cron job or a pipe sees it: 80 columns
    path = _manifests(tmp_path)
    assert main(["who-can", "--matrix", "-n", "ledger", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    table = lines[start:]
    rows = [line for line in table if line.startswith("│")]
    # One line per Secret and one per subject in its cell (the matrix lists a subject a
    # line), none folded onto a second: 80 columns would cut every name in two.
    assert len(rows) == 1 + len(_READERS)
    assert any("ledger-api-token" in row for row in rows)
    db = rows.index(next(row for row in rows if "ledger-database-credentials" in row))
    for row, sa in zip(rows[db:], _READERS, strict=True):
        assert f"ServiceAccount ledger/{sa}" in row
    assert max(len(line) for line in table) > 80  # wider than rich's default, not folded
    assert len({len(line) for line in table}) == 1  # a whole table: every line as wide


def _wide_table() -> Table:
    table = Table()
    table.add_column("Key", no_wrap=True)
    table.add_column("Value", overflow="fold")
    table.add_row("a", "x" * 150)
    return table


def test_print_table_widens_a_redirected_console_for_that_table_only() -> None:
    out = io.StringIO()
    console = Console(file=out, width=90)
    print_table(_wide_table(), console)
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("│") for line in lines) == 1
    assert console.width == 90  # later lines of the same report wrap as before


def test_print_table_leaves_a_terminal_wrapped() -> None:
    out = io.StringIO()
    console = Console(file=out, width=60, force_terminal=True, color_system=None)
    print_table(_wide_table(), console)
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("│") for line in lines) > 1  # folded to the terminal's width
    assert max(len(line) for line in lines) <= 60


def test_rules_redirected_keeps_one_line_per_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["rules"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    ids = [row.split("│")[1].strip() for row in rows]
    assert ids == sorted(RULES)  # every title on its check's line, none folded below it
