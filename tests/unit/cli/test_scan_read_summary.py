"""``kustos scan`` says what it read and what it left out, and refuses a file with nothing.

Aspects: the JSON summary lists files, documents and objects read, documents skipped by
reason, files skipped by reason and objects declared more than once; the table ends with
the same facts; a single named file (or stdin) that yields no object is refused with one
line naming it and exit code 2, while a folder without objects is a clean scan;
``--include`` reads files of another extension; ``--jobs`` gives the same report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kustos.cli.main import main

SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: app\ntype: Opaque\n"
REVIEW = "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {uid: x}\n"
KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app.yaml").write_text(SECRET + "---\n" + REVIEW)
    (tmp_path / "copy.yaml").write_text(SECRET)
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    (tmp_path / "chart.yaml.tpl").write_text(SECRET.replace("name: s", "name: t"))
    return tmp_path


def test_the_json_summary_says_what_was_read_and_skipped(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["scan", str(folder), "--format", "json"])
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["read"] == {"files": 3, "documents": 4, "objects": 2}
    assert summary["skipped"] == {
        "documents": {"AdmissionReview": 1, "Kustomization": 1},
        "files": {"other extension": 1},
        "malformed_documents": 0,
    }
    assert summary["duplicates"] == [
        {
            "object": "Secret app/s",
            "declared_at": [f"{folder / 'app.yaml'}:1", f"{folder / 'copy.yaml'}:1"],
        }
    ]


def test_the_table_ends_with_the_same_facts(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["scan", str(folder)])
    out = capsys.readouterr().out
    assert "Read 3 files, 4 documents, 2 objects" in out
    assert "skipped documents: 1 AdmissionReview, 1 Kustomization" in out
    assert "skipped files: 1 other extension" in out
    assert "1 object declared more than once" in out
    assert f"Secret app/s: {folder / 'app.yaml'}:1, {folder / 'copy.yaml'}:1" in out


def test_include_reads_another_extension(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["scan", str(folder), "--format", "json", "--include", "*.tpl"])
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["read"]["objects"] == 3
    assert summary["skipped"]["files"] == {}


def test_a_named_file_without_objects_is_refused(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(folder / "kustomization.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        f"kustos: error: {folder / 'kustomization.yaml'}: no Kubernetes object to check in "
        "this input (documents: 1 Kustomization)"
    )


def test_empty_stdin_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("# nothing rendered\n"))
    assert main(["scan", "-"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "kustos: error: <stdin>: no Kubernetes object to check in this input (no document)"
    )


def test_a_folder_without_objects_is_a_clean_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    assert main(["scan", str(tmp_path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["read"]["objects"] == 0
    assert summary["skipped"]["documents"] == {"Kustomization": 1}


def test_jobs_gives_the_same_report(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["scan", str(folder), "--format", "json", "--jobs", "1"])
    single = capsys.readouterr().out
    main(["scan", str(folder), "--format", "json", "--jobs", "2"])
    assert capsys.readouterr().out == single
