"""What a load read and what it left out, by reason; where a whole object starts.

Aspects: documents that are not objects counted by reason (AdmissionReview, Kustomization
by kind and by file name, documents without apiVersion/kind, configuration files without
metadata); files of walked folders with another extension counted, not read, unless an
``include`` glob names them; unreadable and malformed inputs counted apart; objects
declared twice listed with every place they are declared; a finding about a whole object
points at its first line of content, not at the ``---`` or the comments above it; the
RBAC policy counts a binding declared in two files once, a scan reports each copy.
"""

from __future__ import annotations

from pathlib import Path

from kustos.kube.documents import (
    SKIP_ADMISSION_REVIEW,
    SKIP_KUSTOMIZATION,
    SKIP_NO_METADATA,
    SKIP_NO_TYPE,
)
from kustos.kube.index import SKIP_OTHER_EXTENSION, SKIP_UNREADABLE
from kustos.kube.loading import ManifestLoader
from kustos.rbac.model import build_policy
from kustos.scan.checking import scan_input
from kustos.scan.scanning import scan

SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: app\ntype: Opaque\n"
BINDING = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n"
    "  name: everyone-reads\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n"
    "  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n"
    "- kind: Group\n  name: system:authenticated\n"
)


def test_documents_left_out_are_counted_by_reason(tmp_path: Path) -> None:
    (tmp_path / "mixed.yaml").write_text(
        "---\n".join(
            [
                SECRET,
                "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {uid: x}\n",
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
                "replicaCount: 3\nimage: {tag: v1}\n",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n",
                "kind: [broken\n",
            ]
        )
    )
    (tmp_path / "kustomization.yaml").write_text("resources:\n- mixed.yaml\n")
    index = ManifestLoader().load([tmp_path])
    read = index.read_summary()
    assert (read.files, read.documents, read.objects) == (2, 7, 1)
    assert dict(read.skipped_documents) == {
        SKIP_ADMISSION_REVIEW: 1,
        SKIP_KUSTOMIZATION: 2,  # one by its kind, one by its file name
        SKIP_NO_TYPE: 1,
        SKIP_NO_METADATA: 1,
    }
    assert read.malformed == 1
    assert index.skipped_documents == 5


def test_other_files_are_counted_and_include_adds_them(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SECRET)
    (tmp_path / "b.yaml.tpl").write_text(SECRET.replace("name: s", "name: t"))
    (tmp_path / "notes.md").write_text("# notes\n")
    (tmp_path / "bad.yaml").write_bytes(b"\x00\xff binary")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("hidden folders are not walked\n")

    plain = ManifestLoader().load([tmp_path]).read_summary()
    assert plain.objects == 1
    assert dict(plain.skipped_files) == {SKIP_OTHER_EXTENSION: 2, SKIP_UNREADABLE: 1}

    included = ManifestLoader(include=["*.tpl"]).load([tmp_path]).read_summary()
    assert included.objects == 2
    assert dict(included.skipped_files) == {SKIP_OTHER_EXTENSION: 1, SKIP_UNREADABLE: 1}


def test_objects_declared_twice_are_listed_with_every_place(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(SECRET + "---\n" + BINDING)
    (tmp_path / "two.yaml").write_text("# again\n" + BINDING)
    index = ManifestLoader().load([tmp_path])
    ((ref, where),) = index.read_summary().duplicates
    assert (ref.kind, ref.name) == ("ClusterRoleBinding", "everyone-reads")
    assert where == (f"{tmp_path / 'one.yaml'}:7", f"{tmp_path / 'two.yaml'}:1")
    # RBAC grants once whatever the number of copies; a scan reports each copy to fix.
    assert len(build_policy(index).bindings) == 1
    assert len(build_policy(index, every_declaration=True).bindings) == 2
    kst = [f for f in scan(scan_input(index)).findings if f.rule_id == "KST012"]
    assert {f.location.file for f in kst if f.location} == {
        str(tmp_path / "one.yaml"),
        str(tmp_path / "two.yaml"),
    }


def test_a_whole_object_finding_points_at_its_first_line(tmp_path: Path) -> None:
    # The Secret's document starts at the "---" on line 4; its content on line 7.
    (tmp_path / "s.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n---\n# the db password\n"
        "\n"
        + SECRET.replace("type: Opaque\n", "type: Opaque\nstringData: {password: hunter2-Prod}\n")
    )
    (tmp_path / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: app}\nspec:\n"
        "  template:\n    spec:\n      containers: [{name: c, image: i}]\n"
    )
    loader = ManifestLoader()
    index = loader.load([tmp_path])
    found = scan(scan_input(index), locate=loader.line).findings
    unused = [f for f in found if f.rule_id == "KST042"]
    assert unused
    assert unused[0].field == ""
    assert unused[0].location is not None
    assert unused[0].location.line == 7
    # A finding on a field still points at the field.
    committed = next(f for f in found if f.rule_id == "KST050")
    assert committed.field == "stringData.password"
    assert committed.location is not None
    assert committed.location.line == 13
