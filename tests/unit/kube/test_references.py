"""The secret-reference parser on hand-written edge cases.

Aspects: every workload kind's pod template location (CronJob's nested template too);
env ``secretKeyRef`` with key and ``optional``; ``envFrom``; init and ephemeral
containers; ``secret`` and projected volumes; CSI and in-tree storage plugins;
pod-level and ServiceAccount ``imagePullSecrets``; field paths; the index's consumer
lookups, including owned copies in a live cluster being left out of top-level consumers;
the index's kept ownership answers, asked again, and changed by an owner added later.
"""

from __future__ import annotations

from typing import Any

import pytest

from kustos.kube.documents import to_object
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject, ObjectRef
from kustos.kube.references import POD_SPEC_PATHS, Via, secret_references, service_account_name

POD_SPEC: dict[str, Any] = {
    "serviceAccountName": "runner",
    "imagePullSecrets": [{"name": "pull"}],
    "initContainers": [
        {
            "name": "init",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-s", "key": "k"}}}],
        }
    ],
    "containers": [
        {
            "name": "main",
            "env": [
                {"name": "PLAIN", "value": "x"},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                {
                    "name": "OPT",
                    "valueFrom": {"secretKeyRef": {"name": "opt-s", "key": "k", "optional": True}},
                },
            ],
            "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "bulk-s"}}],
        }
    ],
    "ephemeralContainers": [
        {"name": "debug", "envFrom": [{"secretRef": {"name": "debug-s", "optional": True}}]}
    ],
    "volumes": [
        {"name": "plain", "secret": {"secretName": "vol-s", "defaultMode": 0o400}},
        {"name": "cm", "configMap": {"name": "cm"}},
        {
            "name": "proj",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"secret": {"name": "proj-s", "optional": True}},
                    {"configMap": {"name": "cm"}},
                ]
            },
        },
        {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-s"}}},
        {"name": "ceph", "cephfs": {"monitors": ["m"], "secretRef": {"name": "ceph-s"}}},
        {"name": "az", "azureFile": {"secretName": "az-s", "shareName": "x"}},
    ],
}

EXPECTED = [
    ("init-s", Via.ENV, "initContainers[0].env[0].valueFrom.secretKeyRef", "init", "k", False),
    ("opt-s", Via.ENV, "containers[0].env[2].valueFrom.secretKeyRef", "main", "k", True),
    ("bulk-s", Via.ENV_FROM, "containers[0].envFrom[1].secretRef", "main", None, False),
    ("debug-s", Via.ENV_FROM, "ephemeralContainers[0].envFrom[0].secretRef", "debug", None, True),
    ("vol-s", Via.VOLUME, "volumes[0].secret", None, None, False),
    ("proj-s", Via.PROJECTED, "volumes[2].projected.sources[1].secret", None, None, True),
    ("csi-s", Via.CSI, "volumes[3].csi.nodePublishSecretRef", None, None, False),
    ("ceph-s", Via.STORAGE, "volumes[4].cephfs.secretRef", None, None, False),
    ("az-s", Via.STORAGE, "volumes[5].azureFile.secretName", None, None, False),
    ("pull", Via.IMAGE_PULL, "imagePullSecrets[0]", None, None, False),
]


def _wrap(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Put a pod spec where *kind* keeps it."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "w", "namespace": "ns"},
    }
    node = body
    steps = POD_SPEC_PATHS[kind]
    for step in steps[:-1]:
        node = node.setdefault(step, {})
    node[steps[-1]] = spec
    return body


def _obj(body: dict[str, Any]) -> KubeObject:
    return to_object(body, None)


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PATHS))
def test_every_reference_in_every_workload_kind(kind: str) -> None:
    refs = secret_references(_obj(_wrap(kind, POD_SPEC)))
    prefix = ".".join(POD_SPEC_PATHS[kind]) + "."
    got = [
        (r.secret, r.via, r.field.removeprefix(prefix), r.container, r.key, r.optional)
        for r in refs
    ]
    assert got == EXPECTED
    assert all(r.field.startswith(prefix) for r in refs)
    assert {r.namespace for r in refs} == {"ns"}
    assert {r.consumer for r in refs} == {ObjectRef("", kind, "ns", "w")}


def test_cronjob_template_path_is_nested_twice() -> None:
    refs = secret_references(_obj(_wrap("CronJob", POD_SPEC)))
    assert (
        refs[0].field
        == "spec.jobTemplate.spec.template.spec.initContainers[0].env[0].valueFrom.secretKeyRef"
    )


def test_volume_references_name_their_volume() -> None:
    refs = secret_references(_obj(_wrap("Pod", POD_SPEC)))
    assert {r.secret: r.volume for r in refs if r.volume} == {
        "vol-s": "plain",
        "proj-s": "proj",
        "csi-s": "csi",
        "ceph-s": "ceph",
        "az-s": "az",
    }


def test_service_account_pull_secrets_and_secrets() -> None:
    sa = _obj(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "sa", "namespace": "ns"},
            "imagePullSecrets": [{"name": "pull-a"}, {}],
            "secrets": [{"name": "token-x"}, {"name": "elsewhere", "namespace": "other"}],
        }
    )
    got = [(r.secret, r.via, r.field) for r in secret_references(sa)]
    assert got == [
        ("pull-a", Via.SA_IMAGE_PULL, "imagePullSecrets[0]"),
        ("token-x", Via.SA_SECRET, "secrets[0]"),
    ]


def test_malformed_shapes_yield_nothing_instead_of_crashing() -> None:
    spec = {"containers": "oops", "volumes": [None, {"secret": "x"}, {"projected": {"sources": 3}}]}
    assert secret_references(_obj(_wrap("Pod", spec))) == ()
    assert (
        secret_references(
            _obj({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        )
        == ()
    )


def test_service_account_name_defaults() -> None:
    assert service_account_name({}) == "default"
    assert service_account_name({"serviceAccount": "old"}) == "old"
    assert service_account_name({"serviceAccountName": "new", "serviceAccount": "old"}) == "new"


def test_index_lookups_and_owned_copies() -> None:
    deployment = _wrap(
        "Deployment", {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}
    )
    deployment["apiVersion"] = "apps/v1"
    rs = _wrap(
        "ReplicaSet", {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}
    )
    rs["apiVersion"] = "apps/v1"
    rs["metadata"] = {
        "name": "w-123",
        "namespace": "ns",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}],
    }
    pod = _wrap("Pod", {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]})
    pod["metadata"] = {
        "name": "w-123-abc",
        "namespace": "ns",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w-123"}],
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}}
    index = ObjectIndex.of(_obj(b) for b in (deployment, rs, pod, secret))
    assert len(index.consumers_of("ns", "s")) == 3
    assert [r.consumer.kind for r in index.top_level_consumers("ns", "s")] == ["Deployment"]
    assert index.secret("ns", "s") is not None
    assert index.consumers_of("ns", "missing") == []
    # Sorted by identity: core group ("") before "apps".
    assert [o.kind for o in index.workloads("ns")] == ["Pod", "Deployment", "ReplicaSet"]


def test_kept_ownership_answers_follow_added_objects() -> None:
    rs = _wrap("ReplicaSet", {"containers": [{"name": "c"}]})
    rs["apiVersion"] = "apps/v1"
    rs["metadata"] = {
        "name": "w-1",
        "namespace": "ns",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}],
    }
    deployment = _wrap("Deployment", {"containers": [{"name": "c"}]})
    deployment["apiVersion"] = "apps/v1"
    index = ObjectIndex.of([_obj(rs)])
    owned = ObjectRef("apps", "ReplicaSet", "ns", "w-1")
    missing = ObjectRef("apps", "ReplicaSet", "ns", "gone")
    assert [index.is_owned(owned), index.is_owned(owned)] == [False, False]  # no owner yet
    assert not index.is_owned(missing)
    index.add(_obj(deployment))
    assert [index.is_owned(owned), index.is_owned(owned)] == [True, True]
    assert not index.is_owned(ObjectRef("apps", "Deployment", "ns", "w"))
    assert not index.is_owned(missing)
