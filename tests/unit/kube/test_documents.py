"""Parsing YAML/JSON streams into objects.

Aspects: multi-document streams and their line numbers; ``List`` kinds expanded; JSON;
malformed documents reported with file and line while the rest still loads; documents
that are not objects skipped; namespaces defaulted only for namespaced kinds; Secret
values wrapped in ``Sensitive`` (data, stringData, last-applied annotation); locating the
line of a field path.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest

from kustos.errors import InputError
from kustos.kube.documents import line_of, parse_path, parse_stream, split_documents
from kustos.kube.loading import ManifestLoader, load_manifests
from kustos.sensitive import Sensitive

STREAM = """\
# leading comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: first
data: {a: "1"}
---
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
  namespace: other
"""


def test_multi_document_stream_keeps_start_lines() -> None:
    result = parse_stream(STREAM, "s.yaml")
    assert [(o.name, o.namespace, o.source.line if o.source else None) for o in result.objects] == [
        ("first", "default", 1),
        ("second", "other", 10),
    ]
    assert result.errors == ()


def test_empty_and_comment_documents_are_not_counted() -> None:
    assert [c.line for c in split_documents(STREAM)] == [1, 10]


def test_malformed_document_is_reported_and_the_rest_loads() -> None:
    text = (
        STREAM
        + "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: [unclosed\n---\n"
        + ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: third\n")
    )
    result = parse_stream(text, "bad.yaml")
    assert [o.name for o in result.objects] == ["first", "second", "third"]
    assert len(result.errors) == 1
    err = result.errors[0]
    assert err.source == "bad.yaml"
    assert err.line == 20  # the line of the unclosed flow sequence
    assert str(err).startswith("bad.yaml:")


def test_object_without_name_is_an_error_not_a_crash() -> None:
    result = parse_stream("apiVersion: v1\nkind: Secret\nmetadata: {labels: {a: b}}\n", "x.yaml")
    assert result.objects == ()
    assert "has no metadata.name" in str(result.errors[0])


def test_non_objects_are_skipped_quietly() -> None:
    text = (
        "replicaCount: 3\n---\n- a\n- b\n---\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n"
    )
    result = parse_stream(text, "values.yaml")
    assert result.objects == ()
    assert result.errors == ()
    assert result.skipped == 3


def test_list_kinds_are_expanded_with_item_paths() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: a, namespace: n}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: reader, namespace: ignored-for-cluster-scope}
"""
    result = parse_stream(text, "list.yaml")
    assert [(o.kind, o.namespace, o.name) for o in result.objects] == [
        ("ServiceAccount", "n", "a"),
        ("ClusterRole", "", "reader"),
    ]
    assert result.objects[1].source is not None
    assert result.objects[1].source.path_prefix == "items[1]"


def test_json_documents_and_json_lists() -> None:
    text = (
        '{"apiVersion": "v1", "kind": "List", "items": '
        '[{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]}'
    )
    result = parse_stream(text, "x.json")
    assert [o.name for o in result.objects] == ["s"]
    broken = parse_stream('{"apiVersion": "v1",\n "kind": }', "broken.json")
    assert broken.objects == ()
    assert broken.errors[0].line == 2


def test_default_namespace_applies_to_namespaced_kinds_only() -> None:
    text = (
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
    )
    objs = parse_stream(text, "x.yaml", default_namespace="team").objects
    assert [(o.kind, o.namespace) for o in objs] == [("Namespace", ""), ("Pod", "team")]


def test_secret_values_are_wrapped_in_sensitive() -> None:
    canary = "canary-value-8f3a"
    encoded = base64.b64encode(canary.encode()).decode()
    text = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: s
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"stringData": {{"p": "{canary}"}}}}'
data:
  token: {encoded}
  not-base64: "%%%"
stringData:
  password: {canary}
"""
    (obj,) = parse_stream(text, "s.yaml").objects
    data = obj.body["data"]
    assert isinstance(data["token"], Sensitive)
    assert data["token"].reveal() == canary.encode()
    assert data["not-base64"].reveal() == b"%%%"
    assert obj.body["stringData"]["password"].reveal_text() == canary
    assert isinstance(
        obj.annotations["kubectl.kubernetes.io/last-applied-configuration"], Sensitive
    )
    assert canary not in repr(obj.body)
    assert encoded not in repr(obj.body)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("spec.containers[0].env[1]", ["spec", "containers", 0, "env", 1]),
        (
            'metadata.annotations["kustos.io/ignore"]',
            ["metadata", "annotations", "kustos.io/ignore"],
        ),
    ],
)
def test_field_paths_parse(path: str, expected: list[str | int]) -> None:
    assert parse_path(path) == expected


def test_line_of_a_field_path() -> None:
    doc = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n"
        "    env:\n    - name: X\n      value: y\n    - name: Z\n      value: w\n"
    )
    assert line_of(doc, 5, "spec.containers[0].env[1]") == 5 + 10
    # Missing parts fall back to the deepest part found.
    assert line_of(doc, 1, "spec.containers[3]") == 6


def test_loader_reads_folders_recursively_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / ".git").mkdir()
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"
    (tmp_path / "a" / "one.yaml").write_text(cm % "one")
    (tmp_path / "two.yml").write_text(cm % "two")
    (tmp_path / ".git" / "hidden.yaml").write_text(cm % "hidden")
    (tmp_path / "notes.txt").write_text(cm % "txt")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    index = load_manifests([tmp_path])
    assert sorted(o.name for o in index) == ["one", "two"]
    assert [str(e) for e in index.errors] == [
        f"{tmp_path / 'binary.yaml'}: cannot read manifest: not UTF-8 text (binary data at byte 0)"
    ]


def test_loader_reads_stdin_and_locates_fields_in_it() -> None:
    stdin = io.StringIO(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"
    )
    loader = ManifestLoader(stdin=stdin)
    index = loader.load(["-"])
    (pod,) = list(index)
    assert pod.source is not None
    assert pod.source.file == "<stdin>"
    assert loader.line(pod.source, "spec.containers[0]") == 6


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        load_manifests([tmp_path / "nope"])
