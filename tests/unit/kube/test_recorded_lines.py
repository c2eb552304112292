"""Lines recorded during the parse give the indentation walk's answers, or no answer.

Aspects: on every document of the real corpus and of a generated bench set, every path
(every key and item, a key missing below each, an index past each sequence, dotted keys
written unquoted as some checks write them) looked up in the record gives the line
:class:`DocumentLines` gives, whenever the record answers; the record answers most paths
(missing parts included); the value built while recording is the one :func:`load_yaml`
builds; the shapes the record does not promise to get right (explicit keys, tabs, an item
below its ``-``, flow collections below their key or over several rows, quoted scalars
over several rows, keys with ``:`` or ``#`` or a leading ``-`` or an anchor or tag,
escaped quoted keys, a key twice, merge keys, an indented root)
are not recorded, and the loader still answers them by walking; quoted keys and one-row
flow collections are recorded; a document longer than 65,535 rows keeps exact lines;
non-ASCII text; the loader answers the same lines with the record as without it, from
files parsed in one process or two, and from stdin; generated documents mixing those odd
shapes with ordinary ones give the walked line whenever the record answers; a path's
steps kept from an earlier question (or dropped when many are kept) give the same lines.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.synth import generate_cluster

from kustos.kube import documents
from kustos.kube.documents import (
    DocumentLines,
    load_yaml,
    load_yaml_recorded,
    read_documents,
    recorded_line,
    split_documents,
)
from kustos.kube.loading import ManifestLoader
from kustos.kube.objects import Source


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every path of *value*, parts that are missing, and dotted keys written both ways."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                continue
            quoted = f'["{key}"]' if any(c in key for c in ".[]") else key
            for written in {quoted, key}:
                path = (
                    f"{prefix}{written}"
                    if written.startswith("[") or not prefix
                    else f"{prefix}.{written}"
                )
                if written is quoted:
                    yield from _paths(item, path)
                else:
                    yield path
            yield f"{prefix}.absent" if prefix else "absent"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, f"{prefix}[{i}]")
        yield f"{prefix}[{len(value)}]"


def _compare(text: str, source: str) -> tuple[int, int, int, int]:
    """(documents, recorded, paths asked, answered by the record); asserts every answer."""
    raw = read_documents(text, source)
    chunks = {c.line: c for c in split_documents(text)}
    documents = recorded = asked = answered = 0
    for (value, line, _), lines in zip(raw.docs, raw.lines, strict=True):
        documents += 1
        assert value == load_yaml(chunks[line].text)
        if lines is None:
            continue
        recorded += 1
        walk = DocumentLines(chunks[line].text, line)
        for path in _paths(value):
            asked += 1
            found = recorded_line(lines, line, path)
            if found is not None:
                answered += 1
                assert found == walk.line(path), (source, line, path)
    return documents, recorded, asked, answered


@pytest.mark.timeout(300)  # every path of every document of the corpus, walked too
def test_every_corpus_document_path_gives_the_walked_line(corpus_dir: Path) -> None:
    totals = [0, 0, 0, 0]
    for path in sorted((corpus_dir / "manifests").rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        counts = _compare(text.replace("\r\n", "\n").replace("\r", "\n"), str(path))
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    documents, recorded, asked, answered = totals
    assert recorded > 0.95 * documents
    assert answered > 0.6 * asked


def test_every_generated_document_path_gives_the_walked_line(tmp_path: Path) -> None:
    generate_cluster(tmp_path, 1_500)
    totals = [0, 0, 0, 0]
    for path in sorted(tmp_path.rglob("*.yaml")):
        counts = _compare(path.read_text(), str(path))
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    documents, recorded, asked, answered = totals
    assert documents >= 1_500
    assert recorded == documents
    assert answered > 0.6 * asked


NOT_RECORDED = {
    "explicit key": "a:\n  ? b\n  : 1\n",
    "tab": "a:\n  b:\t1\n",
    "item below its dash": "a:\n-\n  b: 1\n",
    "flow below its key": "a:\n  b:\n    [x, y]\n",
    "flow over rows": "a: {b: 1,\n  c: 2}\n",
    "quoted over rows": 'a: "x\n  y"\nb: 1\n',
    "key with a colon": "a:\n  'b:c': 1\n  d:e: 2\n",
    "key with a hash": "a:\n  b#c: 1\n",
    "escaped quoted key": 'a:\n  "b\\tc": 1\n',
    "key twice": "a: 1\nb: 2\na: 3\n",
    "merge key": "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n",
    "content on the marker row": "--- !!map\na: 1\n",
    "a key like an item": "a:\n- 1\n-x: 2\n",
    "an indented root": "--- # c\n  a:\n    b: 1\n",
    "an anchored key": "a:\n  &k b: 1\n",
    "a tagged key": "a:\n  !!str b: 1\n",
}


@pytest.mark.parametrize("text", NOT_RECORDED.values(), ids=NOT_RECORDED.keys())
def test_shapes_the_walk_reads_differently_are_not_recorded(text: str) -> None:
    value, lines = load_yaml_recorded(text)
    assert lines is None
    assert value == load_yaml(text)


def test_quoted_keys_one_row_flows_aliases_and_non_ascii_are_recorded() -> None:
    text = (
        "# é\napiVersion: v1\nkind: Secret\nmetadata:\n  name: ünïcode\n"
        '  annotations: {"a.b/c": "1"}\ndata:\n  ".dockerconfigjson": e30=\n'
        "  'tls.key': eA==\nlist: &l\n  k: [a, b]\nagain: *l\nitems:\n- - x\n  - y\n-   z: 1\n"
        "    w: 2\n"
    )
    value, lines = load_yaml_recorded(text)
    assert lines is not None
    assert value == load_yaml(text)
    walk = DocumentLines(text, 5)
    for path in _paths(value):
        found = recorded_line(lines, 5, path)
        assert found is None or found == walk.line(path), path
    assert recorded_line(lines, 5, "") == 5 + 1  # the first row of content, not the comment
    assert recorded_line(lines, 5, 'data[".dockerconfigjson"]') == 5 + 7
    assert recorded_line(lines, 5, "items[1].w") == 5 + 16
    assert recorded_line(lines, 5, "again.k[1]") == 5 + 10  # the anchor's rows


def test_a_document_longer_than_65535_rows_keeps_exact_lines() -> None:
    rows = 70_000
    text = "kind: ConfigMapList\nitems:\n" + "".join(f"- k{i}: v\n" for i in range(rows))
    value, lines = load_yaml_recorded(text)
    assert lines is not None
    assert len(lines[2]) == 8 * len(lines[1])  # 4-byte marks
    assert recorded_line(lines, 1, f"items[{rows - 1}].k{rows - 1}") == 2 + rows
    assert recorded_line(lines, 1, f"items[{rows}]") == 2  # past the end: the key's line
    assert value == load_yaml(text)


def _questions(folder: Path) -> list[tuple[Source, str]]:
    loader = ManifestLoader(workers=1)
    index = loader.load([folder])
    return [
        (obj.source, path) for obj in index if obj.source is not None for path in _paths(obj.body)
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_loader_answers_the_same_lines_with_the_record_or_without(
    tmp_path: Path, workers: int
) -> None:
    generate_cluster(tmp_path / "set", 300)
    odd = tmp_path / "set" / "odd.yaml"
    odd.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\n  labels:\n"
        "    ? a\n    : b\ndata:\n  x: '1'\n---\napiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n  data:\n    k: eA==\n"
    )
    questions = _questions(tmp_path / "set")
    recorded = ManifestLoader(workers=workers)
    recorded.load([tmp_path / "set"])
    walked = ManifestLoader(workers=1)
    walked.load([tmp_path / "set"])
    walked._recorded.clear()  # the same loader with nothing recorded
    assert recorded._recorded
    for source, path in questions:
        assert recorded.line(source, path) == walked.line(source, path), (source, path)


def test_stdin_documents_are_located_from_the_record_as_by_the_walk() -> None:
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: x\n"
        "---\n# c\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n"
    )
    loader = ManifestLoader(stdin=io.StringIO(text))
    index = loader.load(["-"])
    for obj in index:
        assert obj.source is not None
        chunk = next(c for c in split_documents(text) if c.line == obj.source.line)
        walk = DocumentLines(chunk.text, chunk.line)
        for path in _paths(obj.body):
            assert loader.line(obj.source, path) == walk.line(path), path


#: Pieces of odd YAML for generated documents: keys and values the walk reads its own way.
_ODD_KEYS = ["-k", "k#1", "'q'", '"d"', '"e.f"', "&an g", "!!str t", "? ex", "n m", "k:v"]
_KEYS = ["a", "b", "c", "name", "x.y", "d-e"]
_VALUES = [
    "1", "v", "'s q'", '"d q"', "|\n{i}  line1\n{i}  line2", ">-\n{i}  folded", "[1, 2]",
    "{{p: 1}}", "[]", "{{}}", '"multi\n{i}  row"', "&an2 w", "!!str 5", "plain\n{i}  more", "# c",
]  # fmt: skip


def _block(rnd: random.Random, depth: int, indent: str) -> list[str]:
    """Rows of a random block mapping: nested mappings, sequences in both indentations,
    items on and below their ``-``, comments, and now and then an odd key or value."""
    rows: list[str] = []
    for _ in range(rnd.randint(1, 3)):
        key = rnd.choice(_ODD_KEYS) if rnd.random() < 0.25 else rnd.choice(_KEYS)
        if rnd.random() < 0.15:
            rows.append(f"{indent}# comment")
        shape = rnd.random() if depth < 3 else 1.0
        if shape < 0.3:
            rows += [f"{indent}{key}:", *_block(rnd, depth + 1, indent + "  ")]
        elif shape < 0.55:
            rows.append(f"{indent}{key}:")
            items = indent if rnd.random() < 0.5 else indent + "  "
            for _ in range(rnd.randint(1, 3)):
                item = rnd.random()
                if item < 0.4:
                    inner = _block(rnd, depth + 1, items + "  ")
                    if not inner[0].lstrip().startswith("#") and rnd.random() < 0.8:
                        rows += [f"{items}- {inner[0][len(items) + 2 :]}", *inner[1:]]
                    else:
                        rows += [f"{items}-", *inner]
                elif item < 0.5:
                    rows.append(f"{items}- - x")
                else:
                    rows.append(f"{items}- " + rnd.choice(_VALUES).format(i=items))
        else:
            rows.append(f"{indent}{key}: " + rnd.choice(_VALUES).format(i=indent))
    return rows


def test_generated_odd_documents_give_the_walked_line_or_none() -> None:
    rnd = random.Random(13)  # noqa: S311 - shapes of test documents, not secrets
    recorded = answered = 0
    for _ in range(1_500):
        head = rnd.choice(["", "---\n", "--- # c\n", "# top\n"])
        text = head + "\n".join(_block(rnd, 0, rnd.choice(["", "", "", "  "]))) + "\n"
        try:
            value = load_yaml(text)
        except yaml.YAMLError:
            continue
        built, lines = load_yaml_recorded(text)
        assert built == value
        if lines is None:
            continue
        recorded += 1
        walk = DocumentLines(text, 1)
        for path in _paths(value):
            found = recorded_line(lines, 1, path)
            if found is not None:
                answered += 1
                assert found == walk.line(path), (text, path)
    assert recorded > 300
    assert answered > 2_000


def test_kept_steps_give_the_same_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(11)  # noqa: S311 - shapes of test documents, not secrets
    monkeypatch.setattr(documents, "_STEPS", {})
    monkeypatch.setattr(documents, "_STEPS_KEPT", 7)  # dropped and split again, often
    asked = 0
    for _ in range(300):
        text = "\n".join(_block(rnd, 0, "")) + "\n"
        try:
            value = load_yaml(text)
        except yaml.YAMLError:
            continue
        _, lines = load_yaml_recorded(text)
        if lines is None:
            continue
        walk = DocumentLines(text, 3)
        paths = list(_paths(value))
        for path in paths + paths[::-1]:  # each asked once unknown, once kept
            found = recorded_line(lines, 3, path)
            assert found is None or found == walk.line(path), (text, path)
            asked += 1
        assert len(documents._STEPS) <= 7
    assert asked > 1_000
