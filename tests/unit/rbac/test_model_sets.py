"""A role's rule fields read the plain-string lists in one step, with the general answer.

``_set`` takes a list of plain strings as it is; anything else (numbers, booleans,
``str`` subclasses, nulls, mappings, nested lists, non-lists) takes the general path.
The rules and subjects of role and binding bodies of any mapping type are the same.
"""

from __future__ import annotations

import enum
import random
from typing import Any

from kustos.kube.objects import KubeObject
from kustos.rbac import model
from tests.unit.kube.test_references_mappings import FrozenMap, SubDict, _convert


class Word(str):
    """A ``str`` subclass."""


class Level(enum.IntEnum):
    ONE = 1


def _old_set(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        return frozenset(str(v) for v in value if isinstance(v, str | int))
    return frozenset()


_ELEMENTS: list[Any] = ["get", "", "*", "secrets", Word("list"), 3, True, None, 1.5,
                        Level.ONE, {"a": 1}, ["x"], "get"]  # fmt: skip


def test_sets_of_any_list_are_the_general_ones() -> None:
    rng = random.Random(3)  # noqa: S311 - test shapes, not secrets
    values: list[Any] = [None, "get", 3, {"verbs": ["get"]}, (), ("get",), [], ["get"]]
    for _ in range(3000):
        size = rng.randrange(6)
        pool = _ELEMENTS if rng.random() < 0.5 else ["get", "list", "*", ""]
        values.append([rng.choice(pool) for _ in range(size)])
    fast = 0
    for value in values:
        got = model._set(value)
        assert got == _old_set(value), value
        assert all(type(v) is str for v in got)
        fast += isinstance(value, list) and all(type(v) is str for v in value)
    assert fast > 1000


def test_rules_and_subjects_of_any_mapping_are_the_same() -> None:
    rules = [
        {"verbs": ["get", Word("list"), 1], "apiGroups": [""], "resources": ["secrets"]},
        "not a rule",
        {"verbs": "get", "resources": ["pods", None], "resourceNames": ["a", "a"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]
    subjects = [
        {"kind": "ServiceAccount", "name": "sa"},
        {"kind": "User", "name": "u"},
        {"kind": "Group", "name": 3},
        "odd",
        {"kind": "ServiceAccount", "name": "x", "namespace": "other"},
    ]
    expected = model.parse_rules(rules, "agg")
    assert len(expected) == 3
    for make in (dict, FrozenMap, SubDict):
        assert model.parse_rules(_convert(rules, make), "agg") == expected
    plain = KubeObject("rbac.authorization.k8s.io/v1", "RoleBinding", "ns", "b",
                       {"subjects": subjects})  # fmt: skip
    want = list(model._subjects(plain))
    assert [s.name for s in want] == ["sa", "u", "x"]
    for make in (FrozenMap, SubDict):
        other = KubeObject(plain.api_version, plain.kind, "ns", "b", _convert(plain.body, make))
        assert list(model._subjects(other)) == want
