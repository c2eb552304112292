"""The workload and Secret checks answer the same on bodies of other mapping types.

Aspects: the checks ask ``is_map`` (a plain ``dict`` first, then the ``Mapping`` ABC)
instead of the ABC alone; every object of the workload and committed-Secret test sets,
turned into a read-only ``Mapping`` and into a ``dict`` subclass at every level, gives the
same findings of every rule (rule, object, field, message, details) as the plain bodies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kustos.kube.index import ObjectIndex
from kustos.scan.checking import ScanInput
from kustos.scan.scanning import run_checks
from tests.unit.kube.test_references_mappings import FrozenMap, SubDict, _convert
from tests.unit.manifests import index_of
from tests.unit.scan.test_workload_secret_checks import (
    ENV,
    MOUNT,
    VOLUME,
    container,
    deploy,
    secret,
)

DOCS = (
    deploy(container(MOUNT % "false") + VOLUME % "0400", name="writable")
    + deploy(container(ENV) + VOLUME % "0777", name="loose")
    + deploy(
        container()
        + "      volumes:\n"
        + "      - name: proj\n        projected:\n          sources:\n"
        + "          - secret: {name: s, items: [{key: k, path: k, mode: 0666}]}\n"
        + "      - {name: h, hostPath: {path: /var/lib/kubelet/pods}}\n",
        name="host",
    )
    + secret("s", "stringData:\n  a: Zq7vN2xLp9Rt4sKw8mYc\n  password: hunter2x\n")
    + secret("t", "data:\n  token: Z2hwX01GanNEZFBFQVRBNWRaT1BuMTlBcjB5REpGTzRrUmFhdExFdA==\n")
)


def _found(index: ObjectIndex) -> list[tuple[str, str, str, str, tuple[tuple[str, str], ...]]]:
    return [
        (f.rule_id, str(f.resource), f.field, f.message, f.details)
        for f in run_checks(ScanInput(index=index))
    ]


@pytest.mark.parametrize("make", [FrozenMap, SubDict], ids=["mapping", "dict-subclass"])
def test_same_findings_from_dicts_and_other_mappings(make: Any) -> None:
    plain = list(index_of(DOCS))
    other = [replace(obj, body=_convert(obj.body, make)) for obj in plain]
    assert all(type(obj.body) is make for obj in other)
    expected = _found(ObjectIndex.of(plain))
    rules = {rule for rule, *_ in expected}
    assert {"KST024", "KST025", "KST026", "KST050"} <= rules, rules
    assert _found(ObjectIndex.of(other)) == expected
