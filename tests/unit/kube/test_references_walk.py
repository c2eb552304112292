"""The pod-spec walk written out inline gives the references of the plain walk.

Aspects: ``secret_references`` on a pod spec (its lists, env, envFrom, volumes and pull
secrets walked in one pass, paths made only for what is found) returns exactly what the
plain walk over :func:`containers` and :func:`items` returns (same references, same
order, same fields) on the shapes of ``test_references.py`` and on 600 generated pod
specs of odd shapes: env entries without a name or with a ``valueFrom`` that is not a
mapping, secret selectors without a name or with one that is not a string, volumes
without a source, non-mapping items in every list, lists that are not lists, init and
ephemeral containers, duplicate names, every workload kind (CronJob templates nested
twice), bodies made of ``dict`` subclasses and of read-only mappings. A Secret's short
way (only a core token Secret names anything) gives the general path's answer on every
type, group and annotation shape. ``KubeObject.ref`` made once answers as a fresh one
does and takes no part in equality.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from kustos.kube.documents import to_object
from kustos.kube.objects import KubeObject, ObjectRef
from kustos.kube.references import (
    POD_SPEC_PATHS,
    SA_NAME_ANNOTATION,
    SA_TOKEN_TYPE,
    SecretReference,
    Via,
    _other_refs,
    containers,
    items,
    pod_spec_of,
    secret_references,
)
from tests.unit.kube.test_references import POD_SPEC, _wrap
from tests.unit.kube.test_references_mappings import FrozenMap, SubDict, _convert


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _plain_walk(obj: KubeObject) -> list[SecretReference]:
    """The reference: the pod-spec walk as it was written before (generators, helpers)."""
    view = pod_spec_of(obj)
    assert view is not None
    ref, ns, out = obj.ref, obj.namespace, []
    for cview in containers(view):
        for ei, env in items(cview.container.get("env")):
            value_from = env.get("valueFrom")
            key_ref = value_from.get("secretKeyRef") if isinstance(value_from, Mapping) else None
            if isinstance(key_ref, Mapping) and _text(key_ref.get("name")):
                out.append(
                    SecretReference(
                        ref, ns, _text(key_ref.get("name")), Via.ENV,
                        f"{cview.path}.env[{ei}].valueFrom.secretKeyRef", container=cview.name,
                        key=_text(key_ref.get("key")) or None,
                        optional=key_ref.get("optional") is True,
                    )
                )  # fmt: skip
        for fi, env_from in items(cview.container.get("envFrom")):
            secret_ref = env_from.get("secretRef")
            if isinstance(secret_ref, Mapping) and _text(secret_ref.get("name")):
                out.append(
                    SecretReference(
                        ref, ns, _text(secret_ref.get("name")), Via.ENV_FROM,
                        f"{cview.path}.envFrom[{fi}].secretRef", container=cview.name,
                        optional=secret_ref.get("optional") is True,
                    )
                )  # fmt: skip
    for vi, volume in items(view.spec.get("volumes")):
        out.extend(_plain_volume(ref, ns, volume, f"{view.path}.volumes[{vi}]"))
    for pi, pull in items(view.spec.get("imagePullSecrets")):
        if _text(pull.get("name")):
            out.append(
                SecretReference(
                    ref, ns, pull["name"], Via.IMAGE_PULL, f"{view.path}.imagePullSecrets[{pi}]"
                )
            )
    return out


def _plain_volume(
    ref: ObjectRef, ns: str, volume: Mapping[str, Any], vpath: str
) -> Iterator[SecretReference]:
    vname = _text(volume.get("name")) or None
    secret = volume.get("secret")
    if isinstance(secret, Mapping) and _text(secret.get("secretName")):
        yield SecretReference(
            ref, ns, secret["secretName"], Via.VOLUME, f"{vpath}.secret",
            optional=secret.get("optional") is True, volume=vname,
        )  # fmt: skip
    projected = volume.get("projected")
    if isinstance(projected, Mapping):
        for si, source in items(projected.get("sources")):
            psecret = source.get("secret")
            if isinstance(psecret, Mapping) and _text(psecret.get("name")):
                yield SecretReference(
                    ref, ns, psecret["name"], Via.PROJECTED,
                    f"{vpath}.projected.sources[{si}].secret",
                    optional=psecret.get("optional") is True, volume=vname,
                )  # fmt: skip
    csi = volume.get("csi")
    node_ref = csi.get("nodePublishSecretRef") if isinstance(csi, Mapping) else None
    if isinstance(node_ref, Mapping) and _text(node_ref.get("name")):
        yield SecretReference(
            ref, ns, node_ref["name"], Via.CSI, f"{vpath}.csi.nodePublishSecretRef", volume=vname
        )
    for plugin in ("cephfs", "rbd", "flexVolume", "iscsi", "scaleIO", "storageos"):
        plugin_source = volume.get(plugin)
        secret_ref = plugin_source.get("secretRef") if isinstance(plugin_source, Mapping) else None
        if isinstance(secret_ref, Mapping) and _text(secret_ref.get("name")):
            yield SecretReference(
                ref, ns, secret_ref["name"], Via.STORAGE, f"{vpath}.{plugin}.secretRef",
                volume=vname,
            )  # fmt: skip
    azure = volume.get("azureFile")
    if isinstance(azure, Mapping) and _text(azure.get("secretName")):
        yield SecretReference(
            ref, ns, azure["secretName"], Via.STORAGE, f"{vpath}.azureFile.secretName",
            volume=vname,
        )  # fmt: skip


# --------------------------------------------------------------------------- generated


def _name(rng: random.Random) -> Any:
    return rng.choice(["s1", "s1", "s2", "dup", "", None, 7, ["x"], {"n": 1}])


def _selector(rng: random.Random, name_key: str) -> Any:
    shape = rng.random()
    if shape < 0.1:
        return rng.choice([None, "s1", 3, ["s1"]])
    selector: dict[str, Any] = {}
    if rng.random() < 0.85:
        selector[name_key] = _name(rng)
    if rng.random() < 0.5:
        selector["key"] = rng.choice(["password", "token", "", None, 1])
    if rng.random() < 0.3:
        selector["optional"] = rng.choice([True, False, "true", None])
    return selector


def _env(rng: random.Random) -> Any:
    shape = rng.random()
    if shape < 0.05:
        return rng.choice([None, "A=b", 1, []])
    env: dict[str, Any] = {}
    if rng.random() < 0.85:
        env["name"] = rng.choice(["DB_PASSWORD", "A", "A", "", None])
    if shape < 0.4:
        env["value"] = rng.choice(["x", "", 5])
    elif shape < 0.5:
        env["valueFrom"] = rng.choice([None, "secret", [], {"configMapKeyRef": {"name": "c"}}])
    else:
        env["valueFrom"] = {"secretKeyRef": _selector(rng, "name")}
    return env


def _container(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice([None, "c", 1, []])
    container: dict[str, Any] = {}
    if rng.random() < 0.9:
        container["name"] = rng.choice(["app", "app", "side", "", None, 3])
    if rng.random() < 0.8:
        container["env"] = (
            [_env(rng) for _ in range(rng.randrange(5))]
            if rng.random() < 0.9
            else rng.choice([None, {}, "env"])
        )
    if rng.random() < 0.5:
        container["envFrom"] = (
            [
                rng.choice([{"secretRef": _selector(rng, "name")}, {"configMapRef": {"name": "c"}},
                            {}, None, "x"])
                for _ in range(rng.randrange(3))
            ]
            if rng.random() < 0.9
            else rng.choice([None, {}, "envFrom"])
        )  # fmt: skip
    return container


def _volume(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice([None, "v", 2])
    volume: dict[str, Any] = {}
    if rng.random() < 0.9:
        volume["name"] = rng.choice(["v", "v", "tls", "", None, 4])
    source = rng.choice(
        ["secret", "projected", "csi", "azureFile", "cephfs", "rbd", "flexVolume", "iscsi",
         "scaleIO", "storageos", "configMap", "emptyDir", "hostPath", "none", "two"]
    )  # fmt: skip
    if source == "secret":
        volume["secret"] = _selector(rng, "secretName")
    elif source == "projected":
        volume["projected"] = rng.choice(
            [
                {"sources": [rng.choice([{"secret": _selector(rng, "name")},
                                         {"configMap": {"name": "c"}}, None, "s"])
                             for _ in range(rng.randrange(4))]},
                {"sources": "x"}, {}, None,
            ]
        )  # fmt: skip
    elif source == "csi":
        volume["csi"] = {"driver": "d", "nodePublishSecretRef": _selector(rng, "name")}
    elif source == "azureFile":
        volume["azureFile"] = _selector(rng, "secretName")
    elif source in ("configMap", "emptyDir", "hostPath"):
        volume[source] = {"name": "c"} if source == "configMap" else {}
    elif source == "two":
        volume["secret"] = _selector(rng, "secretName")
        volume["cephfs"] = {"secretRef": _selector(rng, "name")}
    elif source != "none":
        volume[source] = rng.choice([{"secretRef": _selector(rng, "name")}, {}, None, "x"])
    return volume


def _pod_spec(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        if rng.random() < 0.6:
            spec[list_name] = (
                [_container(rng) for _ in range(rng.randrange(1, 4))]
                if rng.random() < 0.9
                else rng.choice([None, {}, "containers"])
            )
    if rng.random() < 0.8:
        spec["volumes"] = (
            [_volume(rng) for _ in range(rng.randrange(6))]
            if rng.random() < 0.9
            else rng.choice([None, {}, "v"])
        )
    if rng.random() < 0.4:
        spec["imagePullSecrets"] = [
            rng.choice([{"name": _name(rng)}, {}, None, "p"]) for _ in range(rng.randrange(3))
        ]
    return spec


def _generated(count: int, seed: int) -> list[KubeObject]:
    rng = random.Random(seed)  # noqa: S311 - test shapes, not secrets
    kinds = sorted(POD_SPEC_PATHS)
    return [to_object(_wrap(kinds[i % len(kinds)], _pod_spec(rng)), None) for i in range(count)]


@pytest.mark.parametrize("make", [dict, FrozenMap, SubDict], ids=["dict", "mapping", "subclass"])
def test_the_inline_walk_gives_the_plain_walk_references(make: Any) -> None:
    objects = [to_object(_wrap(kind, POD_SPEC), None) for kind in sorted(POD_SPEC_PATHS)]
    objects += _generated(600, seed=13)
    found = 0
    for obj in objects:
        converted = replace(obj, body=_convert(obj.body, make))
        expected = _plain_walk(converted)
        assert list(secret_references(converted)) == expected, converted.body
        found += len(expected)
    assert found > 500  # the generated shapes do reach every kind of reference
    kinds = {r.via for obj in objects for r in _plain_walk(obj)}
    assert kinds == {Via.ENV, Via.ENV_FROM, Via.VOLUME, Via.PROJECTED, Via.CSI, Via.STORAGE,
                     Via.IMAGE_PULL}  # fmt: skip


def test_a_reference_made_once_answers_as_a_fresh_one() -> None:
    obj = to_object(_wrap("Deployment", POD_SPEC), None)
    first = obj.ref
    assert first == ObjectRef("", "Deployment", "ns", "w")
    assert obj.ref is first  # made once
    twin = to_object(_wrap("Deployment", POD_SPEC), None)
    assert twin == obj  # the cached ref takes no part in equality
    assert hash(twin) == hash(obj)
    assert "_ref" not in repr(obj)
    assert replace(obj, name="other").ref == ObjectRef("", "Deployment", "ns", "other")


@pytest.mark.parametrize("api_version", ["v1", "example.com/v1"])
@pytest.mark.parametrize("secret_type", [SA_TOKEN_TYPE, "Opaque", None, 3, ["x"]])
@pytest.mark.parametrize("account", ["runner", "", None, 5])
def test_a_secret_takes_the_short_way_to_the_general_answer(
    api_version: str, secret_type: Any, account: Any
) -> None:
    annotations = {} if account is None else {SA_NAME_ANNOTATION: account}
    body = {"apiVersion": api_version, "kind": "Secret", "type": secret_type,
            "metadata": {"name": "t", "namespace": "ns", "annotations": annotations}}  # fmt: skip
    obj = to_object(body, None)
    expected = tuple(_other_refs(obj, None))  # the path every other consumer kind takes
    assert secret_references(obj) == expected
    assert bool(expected) == (
        api_version == "v1" and secret_type == SA_TOKEN_TYPE and account == "runner"
    )
