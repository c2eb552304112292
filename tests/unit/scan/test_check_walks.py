"""The check functions' cheaper walks give the answers of the plain ones.

Aspects: ``rule_allows`` written out in one body answers as its four published tests
combined, on every rule and request of a grid (wildcards, ``*/sub``, ``x/*``, names,
rules without resources); KST042's search for Secret names anywhere in a body (exact
types first) finds what the plain ``isinstance`` walk finds, on generated bodies with
``str``/``int``/``list``/``dict`` subclasses, read-only mappings, numbers, booleans, nulls
and non-string keys; ``near``/``within`` with remembered folders answer as ``PurePath``
does on nested, sibling, relative and odd paths; KST020's variable name read from the
pod spec is the name found by walking the whole field path, on every env reference of
600 generated pod specs of odd shapes; the workload, Secret and RBAC checks give the
same findings on those generated workloads whatever the mapping type of their bodies.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections.abc import Mapping
from dataclasses import replace
from pathlib import PurePath
from typing import Any

import pytest

from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject, Source
from kustos.kube.references import Via
from kustos.rbac.matching import (
    Request,
    group_matches,
    name_matches,
    resource_matches,
    rule_allows,
    verb_matches,
)
from kustos.rbac.model import PolicyRule
from kustos.scan.checking import ScanInput
from kustos.scan.checks import nearby, secrets, workloads
from kustos.scan.scanning import run_checks
from tests.unit.kube.test_references_mappings import FrozenMap, SubDict, _convert
from tests.unit.kube.test_references_walk import _generated


def test_rule_allows_is_its_four_tests() -> None:
    values = [frozenset(), frozenset({"*"}), frozenset({"get"}), frozenset({"get", "list"})]
    groups = [frozenset(), frozenset({""}), frozenset({"*"}), frozenset({"apps"})]
    resources = [
        frozenset(), frozenset({"*"}), frozenset({"secrets"}), frozenset({"pods/exec"}),
        frozenset({"*/exec"}), frozenset({"secrets/*"}), frozenset({"pods", "secrets"}),
    ]  # fmt: skip
    names = [frozenset(), frozenset({"x"})]
    requests = [
        Request(verb, group, resource, sub, namespace, name)
        for verb, group, (resource, sub), namespace, name in itertools.product(
            ["get", "list", "create"], ["", "apps"],
            [("secrets", ""), ("pods", "exec"), ("secrets", "*"), ("pods", "")],
            ["", "ns"], ["", "x", "y"],
        )
    ]  # fmt: skip
    allowed = 0
    for verbs, api_groups, res, res_names in itertools.product(values, groups, resources, names):
        rule = PolicyRule(0, verbs, api_groups, res, res_names)
        for request in requests:
            expected = (
                bool(rule.resources)
                and verb_matches(rule, request.verb)
                and group_matches(rule, request.group)
                and resource_matches(rule, request.resource, request.subresource)
                and name_matches(rule, request.name)
            )
            assert rule_allows(rule, request) is expected, (rule, request)
            allowed += expected
    assert allowed > 1000


class Word(str):
    """A ``str`` subclass."""


class Level(enum.IntEnum):
    LOW = 1


class Items(list[Any]):
    """A ``list`` subclass."""


def _plain_strings(value: Any, names: set[str], out: set[str]) -> None:
    if isinstance(value, str):
        if value in names:
            out.add(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str) and k in names:
                out.add(k)
            _plain_strings(v, names, out)
    elif isinstance(value, list):
        for item in value:
            _plain_strings(item, names, out)


def _body(rng: random.Random, depth: int = 0) -> Any:
    leaves = ["db", "api", "other", Word("db"), Word("tls"), 1, 2.5, True, None, Level.LOW, b"db"]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    shape = rng.choice(["dict", "list", "frozen", "sub", "items"])
    if shape in ("list", "items"):
        made = [_body(rng, depth + 1) for _ in range(rng.randrange(4))]
        return Items(made) if shape == "items" else made
    keys = ["db", "name", "tls", Word("api"), 3, None]
    data = {rng.choice(keys): _body(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"dict": dict, "frozen": FrozenMap, "sub": SubDict}[shape](data)


def test_secret_names_are_found_anywhere_as_the_plain_walk_finds_them() -> None:
    rng = random.Random(42)  # noqa: S311 - test shapes, not secrets
    names = {"db", "tls", "api"}
    hits = 0
    for _ in range(3000):
        body = _body(rng)
        expected: set[str] = set()
        _plain_strings(body, names, expected)
        found: set[str] = set()
        secrets._strings(body, names, found)
        assert found == expected, body
        hits += len(found)
    assert hits > 1000


def _at(file: str) -> KubeObject:
    return KubeObject("v1", "Secret", "ns", "s", {}, Source(file, 1))


def test_remembered_folders_answer_as_paths_do() -> None:
    files = ["a/x.yaml", "a/b/y.yaml", "a/b/c/z.yaml", "a/c/w.yaml", "b/x.yaml", "x.yaml",
             "/abs/a/x.yaml", "/abs/x.yaml", "./a/x.yaml", "a//b/y.yaml", "a/./b/y.yaml", "-",
             ""]  # fmt: skip
    live = KubeObject("v1", "Secret", "ns", "s", {})
    objects = [*map(_at, files), live]
    for a, b in itertools.product(objects, objects):
        fa, fb = (
            PurePath(o.source.file).parent if o.source and o.source.file not in ("", "-") else None
            for o in (a, b)
        )
        if fa is None or fb is None:
            near = within = True
        else:
            near = fa == fb or fa in fb.parents or fb in fa.parents
            within = fb == fa or fa in fb.parents
        assert nearby.near(a, b) is near, (a.source, b.source)
        assert nearby.within(a, b) is within, (a.source, b.source)
        assert nearby.folder_of(a) == fa


def test_env_names_read_at_their_place_equal_the_walked_ones() -> None:
    objects = _generated(600, seed=7)
    index = ObjectIndex.of(objects)
    asked = 0
    for obj in objects:
        for make in (dict, FrozenMap, SubDict):
            converted = replace(obj, body=_convert(obj.body, make))
            for ref in index.references_of(obj):
                if ref.via is Via.ENV:
                    expected = workloads._env_name_walked(converted, ref.field)
                    assert workloads._env_name(converted, ref.field) == expected
                    asked += 1
    assert asked > 300
    odd = objects[0]
    for field in ("spec.x[0].env[0].valueFrom.secretKeyRef", "nowhere", "spec.containers[9]"):
        assert workloads._env_name(odd, field) == workloads._env_name_walked(odd, field)


def _rbac_objects() -> list[KubeObject]:
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r", "namespace": "ns"},
        "rules": [{"apiGroups": [""], "resources": ["secrets", "pods/exec"],
                   "verbs": ["get", "list", "create"]},
                  {"apiGroups": ["*"], "resources": ["*"], "verbs": ["bind"]}],
    }  # fmt: skip
    out = []
    for i in range(4):
        binding: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"b{i}", "namespace": "ns"},
            "roleRef": {"kind": "Role", "name": "r", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "ns"},
                         {"kind": "Group", "name": "system:authenticated"}],
        }  # fmt: skip
        out.append(KubeObject(binding["apiVersion"], "RoleBinding", "ns", f"b{i}", binding))
    out.append(KubeObject(role["apiVersion"], "Role", "ns", "r", role))
    return out


@pytest.mark.parametrize("make", [FrozenMap, SubDict], ids=["mapping", "dict-subclass"])
def test_the_checks_answer_alike_on_generated_workloads_of_any_mapping(make: Any) -> None:
    plain = [
        replace(obj, source=Source(f"app{i % 3}/w.yaml", i + 1))
        for i, obj in enumerate(_generated(300, seed=11))
    ]
    plain += _rbac_objects()
    other = [replace(obj, body=_convert(obj.body, make)) for obj in plain]

    def found(objects: list[KubeObject]) -> list[tuple[str, str, str, str]]:
        result = run_checks(ScanInput(ObjectIndex.of(objects)))
        return sorted(
            (f.rule_id, str(f.resource), f.field, f.message + repr(f.details)) for f in result
        )

    expected = found(plain)
    assert {rule for rule, *_ in expected} >= {"KST020", "KST021", "KST002", "KST003", "KST007"}
    assert found(other) == expected
