"""Finding the line of a field path by indentation, against PyYAML's node tree.

Aspects: for block-style documents the indentation walk (:class:`DocumentLines`) gives the
line PyYAML's composed nodes give, for every path of the document and for missing parts
(the deepest part found); keys that are parts of other keys, of values or of comments
(the walk skips rows whose text does not contain the key before matching it); quoted keys;
sequences at their parent key's level and ``- key: value`` items; comments and blank
lines; one table asked many paths in any order answers as a fresh one does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from kustos.kube.documents import DocumentLines, parse_path

DOCUMENTS = [
    # Keys that are substrings of other keys, of values and of comments, in any order.
    (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  names: x\n  name: s\n  # name: comment\n"
        "  label: name\nstringData:\n  password-old: a\n  password: b\n  'pass': c\n"
        '  "word": d\n  xpassword: e\n'
    ),
    # Sequences at the parent key's level, ``- key: value`` items, nested lists.
    (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: envname\n        env:\n        - name: X\n"
        "          value: name\n        - name: X_name\n          valueFrom:\n"
        "            secretKeyRef:\n              name: s\n              key: name\n"
        "        envFrom:\n        - secretRef:\n            name: s\n      - name: b\n"
        "        image: i\n        env:\n\n        # a comment between items\n"
        "        - name: Y\n          value: '1'\n      volumes:\n      - name: v\n"
        "        secret:\n          secretName: s\n"
    ),
    # Rules as lists of lists, at the parent's indentation.
    (
        "kind: Role\nrules:\n- apiGroups:\n  - ''\n  resources:\n  - secrets\n  verbs:\n"
        "  - get\n  - list\n- apiGroups: [apps]\n  resources: [deployments]\n"
    ),
]


def _paths(node: yaml.Node, prefix: str = "") -> Iterator[str]:
    """Every path below *node*, written as the checks write fields."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            yield path
            yield from _paths(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield f"{prefix}[{i}]"
            yield from _paths(item, f"{prefix}[{i}]")


def _composed_line(node: yaml.Node, path: str) -> int:
    """The line PyYAML's nodes give: the key's line, or the item's; deepest part found."""
    best = node.start_mark.line
    for step in parse_path(path):
        if isinstance(step, int) and isinstance(node, yaml.SequenceNode):
            if step >= len(node.value):
                break
            node = node.value[step]
            best = node.start_mark.line
        elif isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == step]
            if not found:
                break
            best, node = found[0][0].start_mark.line, found[0][1]
        else:
            break
    return best + 1


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_walk_gives_the_composed_line_for_every_path(document: str) -> None:
    root = yaml.compose(document)
    assert root is not None
    paths = list(_paths(root))
    missing = [f"{p}.absent" for p in paths] + [f"{p}[7]" for p in paths] + ["nothere"]
    shared = DocumentLines(document, 1)
    block_style = "[" not in document
    for path in [*paths, *missing, *reversed(paths)]:
        expected = _composed_line(root, path)
        fast = DocumentLines(document, 1).fast_line(path)
        # Flow collections are left to the composed tree; block style never is.
        if block_style or fast is not None:
            assert fast == expected, path
        assert shared.line(path) == expected, path


def test_a_key_inside_a_longer_key_or_a_value_is_not_taken_for_it() -> None:
    lines = DocumentLines(DOCUMENTS[0], 10)
    assert lines.line("metadata.name") == 10 + 4
    assert lines.line("stringData.password") == 10 + 9
    assert lines.line("stringData.pass") == 10 + 10
    assert lines.line("stringData.word") == 10 + 11
