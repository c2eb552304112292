"""The eleventh round's cheaper checks give the findings of the plain ones.

Each changed path is held to the code it replaced, written out here as it was: the
certificate keys of a Secret (a list, the PEM marker searched with bounds: markers at,
across and past the 4 KiB edge, values that are not ``Sensitive``, data that is not a
mapping); a Secret volume told in one test (every volume of generated pod specs and odd
shapes); KST080's walk of the workloads' references (Secrets' ServiceAccount tokens,
Ingresses, duplicates of one identity); KST001-KST004 judged once per rule list;
KST040/KST041/KST045 with the ownership remembered by identity and the namespace tested
first; KST042's candidates tested cheapest first. Generated workloads, Secrets, bindings
and policies, on ``dict``, read-only mapping and ``dict`` subclass bodies.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from kustos.conventions import ANNOTATION_ROTATED_AT
from kustos.kube.documents import to_object
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject, ObjectRef, Source, is_map
from kustos.kube.references import POD_SPEC_PATHS, WORKLOAD_KINDS
from kustos.rbac.model import Binding, PolicyRule, Subject
from kustos.scan.checking import ScanInput, finding
from kustos.scan.checks import expiry, isolation, rbac, secrets, workloads
from kustos.scan.findings import Finding
from kustos.sensitive import Sensitive
from tests.unit.kube.test_references import _wrap
from tests.unit.kube.test_references_mappings import FrozenMap, SubDict, _convert
from tests.unit.kube.test_references_walk import _pod_spec, _volume

MAKES = [dict, FrozenMap, SubDict]
MAKE_IDS = ["dict", "mapping", "subclass"]


# ------------------------------------------------------------------ the replaced code


def _old_certificates(secret: KubeObject) -> Iterator[tuple[str, bytes]]:
    data = secret.body.get("data")
    if not isinstance(data, Mapping):
        return
    for key in expiry.CERTIFICATE_KEYS:
        value = data.get(key)
        if isinstance(value, Sensitive) and expiry._PEM in value.reveal()[:4096]:
            yield key, value.reveal()


def _old_has_secret(volume: Mapping[str, Any]) -> bool:
    if is_map(volume.get("secret")):
        return True
    projected = volume.get("projected")
    sources = projected.get("sources") if is_map(projected) else None
    return isinstance(sources, list) and any(is_map(s) and is_map(s.get("secret")) for s in sources)


def _old_default_deny(scan: ScanInput) -> Iterator[Finding]:
    index = scan.index
    protected = {p.namespace for p in index.of_kind("NetworkPolicy") if isolation._default_deny(p)}
    using: dict[str, KubeObject] = {}
    for ref in index.secret_references():
        if ref.consumer.kind in WORKLOAD_KINDS and ref.namespace not in using:
            consumer = index.get(ref.consumer)
            if consumer is not None:
                using[ref.namespace] = consumer
    declared: dict[str, KubeObject] = {}
    for ns in index.of_kind("Namespace"):
        declared.setdefault(ns.name, ns)
    for namespace in sorted(set(using) - protected):
        target = declared.get(namespace, using[namespace])
        yield finding(
            isolation.NO_DEFAULT_DENY, target,
            f"namespace {namespace} runs workloads that use Secrets and has no default-deny "
            "ingress NetworkPolicy",
        )  # fmt: skip


def _old_grant_message(
    subject: Subject, verbs: list[str], binding: Binding, rules: list[PolicyRule]
) -> str:
    assert binding.role is not None
    vias = []
    for rule in rules:
        via = f"rules[{rule.index}]"
        if rule.origin:
            via += f" (aggregated from ClusterRole {rule.origin})"
        vias.append(via)
    via_text = f"{binding.role} {', '.join(dict.fromkeys(vias))}"
    return f"{subject} can {'/'.join(verbs)} Secrets {rbac._where(binding)} via {via_text}"


def _old_secret_reads(scan: ScanInput) -> Iterator[Finding]:
    judged: dict[tuple[PolicyRule, ...], list[tuple[PolicyRule, list[str]]]] = {}
    for _, binding in rbac._user_bindings(scan):
        if rbac._is_cluster_admin(binding):
            continue
        assert binding.role is not None
        granted = judged.get(binding.role.rules)
        if granted is None:
            granted = judged[binding.role.rules] = rbac._secret_rules(binding, rbac._READ_VERBS)
        if not granted:
            continue
        verbs = [v for v in rbac._READ_VERBS if any(v in allowed for _, allowed in granted)]
        rules = [rule for rule, _ in granted]
        for subject in binding.subjects:
            field = rbac._subject_field(binding, subject)
            message = _old_grant_message(subject, verbs, binding, rules)
            details = {
                "role": str(binding.role),
                "rule": "; ".join(dict.fromkeys(r.describe() for r in rules)),
            }
            obj = binding.obj
            if rbac._is_broad(subject):
                yield finding(rbac.BROAD_GROUP_READ, obj, message, field=field, details=details)
            elif subject.kind == "ServiceAccount" and subject.name == "default":
                yield finding(rbac.DEFAULT_SA_READ, obj, message, field=field, details=details)
            elif binding.cluster_wide:
                yield finding(rbac.CLUSTER_WIDE_READ, obj, message, field=field, details=details)
            elif {"list", "watch"} & set(verbs):
                yield finding(rbac.NAMESPACE_LIST, obj, message, field=field, details=details)


def _old_static_readers(
    scan: ScanInput, secret: KubeObject, owned: dict[ObjectRef, bool]
) -> list[str]:
    if ANNOTATION_ROTATED_AT in secret.annotations:
        return []
    readers: dict[str, None] = {}
    for ref in scan.index.consumers_of(secret.namespace, secret.name):
        if ref.via in secrets._ROTATORS:
            return []
        consumer = ref.consumer
        if consumer.kind in WORKLOAD_KINDS:
            is_owned = owned.get(consumer)
            if is_owned is None:
                is_owned = owned[consumer] = scan.index.is_owned(consumer)
            if not is_owned:
                readers[f"{consumer.kind} {consumer.name}"] = None
    return list(readers)


def _old_secret_objects(scan: ScanInput) -> Iterator[Finding]:
    owned: dict[ObjectRef, bool] = {}
    for secret in scan.index.of_kind("Secret"):
        if secret.api_version != "v1":
            continue
        stype = secrets._type(secret)
        managed = stype in secrets.MANAGED_TYPES or bool(secret.owner_refs)
        if stype == "Opaque":
            keys = secrets._keys(secret)
            for needed, better in secrets._TYPE_HINTS:
                if needed <= keys:
                    yield finding(
                        secrets.WRONG_TYPE, secret,
                        f"Secret {secret.name} holds {', '.join(sorted(needed))} but has type "
                        f"Opaque; use {better}",
                        field="type",
                    )  # fmt: skip
                    break
        if not managed and secret.body.get("immutable") is not True:
            readers = _old_static_readers(scan, secret, owned)
            if len(readers) >= secrets.IMMUTABLE_MIN_READERS:
                yield finding(
                    secrets.NOT_IMMUTABLE, secret,
                    f"Secret {secret.name} is read by {len(readers)} workloads "
                    f"({', '.join(readers[:3])}{', ...' if len(readers) > 3 else ''}), "
                    "no tool rotates it, and it is not immutable",
                    field="immutable",
                )  # fmt: skip
        explicit = scan.live or secret.metadata.get("namespace") == "default"
        if explicit and secret.namespace == "default" and not managed:
            yield finding(
                secrets.DEFAULT_NAMESPACE, secret,
                f"Secret {secret.name} is in the default namespace",
                field="metadata.namespace",
            )  # fmt: skip


def _old_candidates(scan: ScanInput) -> list[KubeObject]:
    index = scan.index
    others = secrets._other_consumers(scan)
    by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
    for workload in index.workloads():
        by_namespace[workload.namespace].append(workload)
    return [
        secret
        for secret in index.of_kind("Secret")
        if secrets._type(secret) not in secrets.MANAGED_TYPES
        and not secret.owner_refs
        and not secret.annotations.get("kubernetes.io/service-account.name")
        and not index.consumers_of(secret.namespace, secret.name)
        and (secret.namespace, secret.name) not in others
        and secrets._consumers_visible(secret, by_namespace)
    ]


def _old_unused(scan: ScanInput) -> Iterator[Finding]:
    candidates = _old_candidates(scan)
    if not candidates:
        return
    named, everywhere = secrets._named_elsewhere(
        scan, {s.namespace for s in candidates}, {s.name for s in candidates}
    )
    readers = secrets._api_readers(scan)
    for secret in candidates:
        if (
            (secret.namespace, secret.name) in named
            or secret.name in everywhere
            or readers.get(secret.namespace, 0)
        ):
            continue
        yield finding(secrets.UNUSED, secret, f"nothing in the input uses Secret {secret.name}")


# ------------------------------------------------------------------ generated inputs

_NAMESPACES = ["default", "ns", "a", "b"]
_PEM = b"-----BEGIN CERTIFICATE-----"
_KEYS = ["username", "password", "tls.crt", "tls.key", "ca.crt", ".dockerconfigjson", "token"]


def _pick(rng: random.Random, values: list[Any]) -> Any:
    return values[rng.randrange(len(values))]


def _workload(rng: random.Random, i: int, kind: str) -> dict[str, Any]:
    body = _wrap(kind, _pod_spec(rng))
    meta = body["metadata"]
    meta["name"] = f"w{rng.randrange(40)}"  # repeats: duplicates of one identity
    meta["namespace"] = _pick(rng, _NAMESPACES)
    if rng.random() < 0.2:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": _pick(rng, ["Deployment", "ReplicaSet", "Job"]),
             "name": f"w{rng.randrange(40)}"}
        ]  # fmt: skip
    if rng.random() < 0.2:
        meta["annotations"] = {ANNOTATION_ROTATED_AT: "2026-01-01T00:00:00Z"}
    return body


def _secret(rng: random.Random, i: int) -> dict[str, Any]:
    namespace = _pick(rng, [*_NAMESPACES, None])
    meta: dict[str, Any] = {"name": _pick(rng, ["s1", "s2", "dup", "tls", "pull", f"x{i}"])}
    if namespace is not None:
        meta["namespace"] = namespace
    body: dict[str, Any] = {"apiVersion": _pick(rng, ["v1", "v1", "v2"]), "kind": "Secret",
                            "metadata": meta}  # fmt: skip
    stype = _pick(rng, [None, "Opaque", "", "kubernetes.io/tls",
                        "kubernetes.io/service-account-token", 5])  # fmt: skip
    if stype is not None:
        body["type"] = stype
    data = dict.fromkeys(rng.sample(_KEYS, 3), "dmFsdWU=")
    if rng.random() < 0.8:
        body[_pick(rng, ["data", "stringData"])] = data
    if rng.random() < 0.3:
        body["immutable"] = _pick(rng, [True, False, "true"])
    if rng.random() < 0.2:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "X", "name": "o"}]
    if rng.random() < 0.2:
        meta["annotations"] = _pick(
            rng, [{ANNOTATION_ROTATED_AT: "x"}, {"kubernetes.io/service-account.name": "default"}]
        )
    return body


def _others(rng: random.Random, *, bindings: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ns in _NAMESPACES:
        if rng.random() < 0.5:
            out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if rng.random() < 0.4:
            spec = _pick(rng, [{"podSelector": {}}, {"podSelector": {"matchLabels": {"a": "b"}}},
                               {"podSelector": {}, "policyTypes": ["Egress"]}, "odd"])  # fmt: skip
            out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "p", "namespace": ns}, "spec": spec})  # fmt: skip
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "i", "namespace": ns},
                    "spec": {"tls": [{"secretName": "s2"}]}})  # fmt: skip
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": ns},
                    "imagePullSecrets": [{"name": "pull"}]})  # fmt: skip
    out.append(_wrap("Pod", {
        "containers": [{"name": "c", "volumeMounts": [{"name": "v", "readOnly": False}]}],
        "volumes": [
            {"name": "v", "secret": {"secretName": "s1", "defaultMode": 0o777,
                                     "items": [{"key": "k", "path": "p", "mode": 0o666}]}},
            {"name": "p", "projected": {"sources": [
                {"secret": {"name": "s2", "items": [{"key": "k", "path": "p", "mode": 0o777}]}}
            ]}},
            {"name": "h", "hostPath": {"path": "/var/lib/kubelet"}},
        ],
    }))  # fmt: skip
    rules = [
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
        [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["watch"], "resourceNames": ["x"]},
         {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
         {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    ]  # fmt: skip
    for r, rule_list in enumerate(rules):
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": f"r{r}"}, "rules": rule_list})  # fmt: skip
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": f"r{r}", "namespace": "ns"}, "rules": rule_list})  # fmt: skip
    subjects = [
        {"kind": "ServiceAccount", "name": "default", "namespace": "ns"},
        {"kind": "ServiceAccount", "name": "app", "namespace": "a"},
        {"kind": "Group", "name": "system:authenticated"},
        {"kind": "Group", "name": "system:serviceaccounts:ns"},
        {"kind": "User", "name": "alice"},
    ]
    for b in range(40 if bindings else 0):
        cluster = rng.random() < 0.4
        role_kind = "ClusterRole" if cluster or rng.random() < 0.5 else "Role"
        meta: dict[str, Any] = {"name": f"b{b}"}
        if not cluster:
            meta["namespace"] = "ns"
        if rng.random() < 0.1:
            meta["labels"] = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        role = _pick(rng, ["r0", "r1", "r2", "r3", "cluster-admin", "missing"])
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding" if cluster else "RoleBinding", "metadata": meta,
                    "roleRef": {"kind": role_kind, "name": role,
                                "apiGroup": "rbac.authorization.k8s.io"},
                    "subjects": rng.sample(subjects, rng.randrange(1, 4))})  # fmt: skip
    return out


def _objects(seed: int, make: Any) -> list[KubeObject]:
    rng = random.Random(seed)  # noqa: S311 - test shapes, not secrets
    kinds = sorted(POD_SPEC_PATHS)
    bodies = [_workload(rng, i, kinds[i % len(kinds)]) for i in range(120)]
    bodies += [_secret(rng, i) for i in range(120)]
    bodies += _others(rng, bindings=seed % 3 != 0)  # without RBAC, KST042 can tell
    rng.shuffle(bodies)
    objects = []
    for i, body in enumerate(bodies):
        obj = to_object(body, Source(f"{_pick(rng, ['app', 'app/x', 'docs'])}/f.yaml", i + 1))
        objects.append(replace(obj, body=_convert(obj.body, make)))
    return objects


def _scan(seed: int, make: Any, *, live: bool = False) -> ScanInput:
    return ScanInput(ObjectIndex.of(_objects(seed, make)), live=live)


def _same(new: Iterator[Finding], old: Iterator[Finding]) -> list[Finding]:
    found = list(new)
    assert found == list(old)
    return found


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("make", MAKES, ids=MAKE_IDS)
def test_secret_reads_judged_per_rule_list_are_the_per_subject_ones(make: Any) -> None:
    total: set[str] = set()
    for seed in range(12):
        scan = _scan(seed, make)
        total |= {f.rule_id for f in _same(rbac.check_secret_reads(scan), _old_secret_reads(scan))}
    assert total == {"KST001", "KST002", "KST003", "KST004"}


@pytest.mark.parametrize("make", MAKES, ids=MAKE_IDS)
def test_secret_objects_answer_as_before(make: Any) -> None:
    total: set[str] = set()
    for seed in range(12):
        for live in (False, True):
            scan = _scan(seed, make, live=live)
            found = _same(secrets.check_secret_objects(scan), _old_secret_objects(scan))
            total |= {f.rule_id for f in found}
    assert total == {"KST040", "KST041", "KST045"}


@pytest.mark.parametrize("make", MAKES, ids=MAKE_IDS)
def test_unused_secret_candidates_tested_cheapest_first_are_the_same(make: Any) -> None:
    unused = 0
    for seed in range(12):
        scan = _scan(seed, make)
        found = [f for f in secrets.check_usage(scan) if f.rule_id == secrets.UNUSED.id]
        assert found == list(_old_unused(scan))
        unused += len(found)
    assert unused > 0


@pytest.mark.parametrize("make", MAKES, ids=MAKE_IDS)
def test_default_deny_from_the_workloads_references_is_the_same(make: Any) -> None:
    total = 0
    for seed in range(12):
        scan = _scan(seed, make)
        total += len(_same(isolation.check_default_deny(scan), _old_default_deny(scan)))
    assert total > 10


def test_certificate_keys_as_a_list_are_the_generator_ones() -> None:
    rng = random.Random(5)  # noqa: S311 - test shapes, not secrets
    edges = [0, 1, 4096 - len(_PEM) - 1, 4096 - len(_PEM), 4096 - len(_PEM) + 1, 4095, 4096, 5000]
    values: list[Any] = ["text", 7, None, Sensitive(b""), Sensitive(_PEM)]
    values += [Sensitive(b"x" * at + _PEM + b"y" * rng.randrange(10)) for at in edges]
    seen = 0
    for make in MAKES:
        for _ in range(300):
            data: Any = {k: _pick(rng, values) for k in rng.sample(["tls.crt", "ca.crt", "x"], 2)}
            data = _pick(rng, [make(data), make(data), "not a map", None, [data]])
            secret = KubeObject("v1", "Secret", "ns", "s", make({"data": data}))
            expected = list(_old_certificates(secret))
            assert expiry._certificates(secret) == expected
            seen += len(expected)
    assert seen > 100


def test_a_secret_volume_told_in_one_test_is_the_old_test() -> None:
    rng = random.Random(9)  # noqa: S311 - test shapes, not secrets
    volumes: list[Any] = [_volume(rng) for _ in range(2000)]
    volumes += [
        {"secret": {}}, {"secret": "x"}, {"projected": {"sources": "x"}},
        {"projected": {"sources": [None, {"secret": None}, {"secret": {}}]}},
        {"secret": {}, "projected": {"sources": [{"secret": {"name": "s"}}]}},
        {"secret": None, "projected": {"sources": [{"configMap": {}}]}},
    ]  # fmt: skip
    told = 0
    for make in MAKES:
        for volume in volumes:
            if not is_map(volume):
                continue
            converted = _convert(volume, make)
            secret = converted.get("secret")
            new = is_map(secret) or workloads._projected_secret(converted)
            assert new is _old_has_secret(converted), volume
            told += new
    assert told > 500


@pytest.mark.parametrize("make", MAKES, ids=MAKE_IDS)
def test_the_changed_checks_answer_alike_whatever_the_mapping(make: Any) -> None:
    checks = [
        rbac.check_secret_reads, secrets.check_secret_objects, secrets.check_usage,
        isolation.check_default_deny, workloads.check_mounts, expiry.check_certificates,
        workloads.check_service_accounts,
    ]  # fmt: skip
    rules: set[str] = set()
    for seed in range(6):
        plain, other = _scan(seed, dict), _scan(seed, make)
        for check in checks:
            expected = list(check(plain))
            assert list(check(other)) == expected, check.__name__
            rules |= {f.rule_id for f in expected}
    assert {"KST001", "KST040", "KST042", "KST080", "KST024", "KST025", "KST026"} <= rules
