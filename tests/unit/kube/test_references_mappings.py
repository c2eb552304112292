"""The reference parser's plain-``dict`` fast path gives the ``Mapping`` answer.

Aspects: the parser checks ``type(value) is dict`` before asking the ``Mapping`` ABC (the
YAML and JSON loaders make plain dicts); every object of the pod-spec and consumer test
sets, with each of its mappings turned into a mapping that is not a ``dict`` (and into a
``dict`` subclass), yields the same references in the same order; the in-tree plugin
volumes are found whether the volume is a ``dict`` or not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from kustos.kube.documents import to_object
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject
from kustos.kube.references import POD_SPEC_PATHS, SecretReference, secret_references
from tests.unit.kube.test_references import POD_SPEC, _wrap
from tests.unit.kube.test_references_consumers import CONSUMERS
from tests.unit.manifests import index_of


class FrozenMap(Mapping[str, Any]):
    """A read-only mapping that is not a ``dict``."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class SubDict(dict[str, Any]):
    """A ``dict`` subclass (not ``type(x) is dict``)."""


def _convert(value: Any, make: Any) -> Any:
    if isinstance(value, Mapping):
        return make({k: _convert(v, make) for k, v in value.items()})
    if isinstance(value, list):
        return [_convert(v, make) for v in value]
    return value


def _bodies() -> list[Mapping[str, Any]]:
    bodies: list[Mapping[str, Any]] = [_wrap(kind, POD_SPEC) for kind in sorted(POD_SPEC_PATHS)]
    bodies.append(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "sa", "namespace": "default"},
            "imagePullSecrets": [{"name": "sa-pull"}],
            "secrets": [{"name": "sa-token"}],
        }
    )
    bodies.extend(obj.body for obj in index_of(CONSUMERS))
    return bodies


def _refs(index: ObjectIndex) -> list[SecretReference]:
    return index.secret_references()


@pytest.mark.parametrize("make", [FrozenMap, SubDict], ids=["mapping", "dict-subclass"])
def test_same_references_from_dicts_and_other_mappings(make: Any) -> None:
    bodies = _bodies()
    plain = [to_object(body, None) for body in bodies]
    other = [replace(obj, body=_convert(obj.body, make)) for obj in plain]
    assert all(type(obj.body) is dict for obj in plain)
    assert all(type(obj.body) is make for obj in other)
    for a, b in zip(plain, other, strict=True):
        assert secret_references(a) == secret_references(b)
    expected = _refs(ObjectIndex.of(plain))
    assert len(expected) > 30
    assert _refs(ObjectIndex.of(other)) == expected


def _volume_object(volume: Mapping[str, Any]) -> KubeObject:
    body = _wrap("Pod", {"containers": [{"name": "c"}], "volumes": [volume]})
    obj = to_object(body, None)
    return replace(obj, body=_convert(obj.body, type(volume)))


@pytest.mark.parametrize("plugin", ["cephfs", "rbd", "flexVolume", "iscsi", "scaleIO", "storageos"])
def test_every_in_tree_plugin_volume_whatever_its_mapping(plugin: str) -> None:
    volume = {"name": "v", plugin: {"secretRef": {"name": f"{plugin}-s"}}}
    found = [
        secret_references(_volume_object(_convert(volume, make)))  # the whole body converted
        for make in (dict, FrozenMap, SubDict)
    ]
    assert [(r.secret, r.field) for r in found[0]] == [
        (f"{plugin}-s", f"spec.volumes[0].{plugin}.secretRef")
    ]
    assert found[1] == found[0] == found[2]
