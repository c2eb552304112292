"""Network isolation of namespaces that hold Secrets (KST080-KST089).

Purely data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kustos.kube.objects import KubeObject
from kustos.kube.references import WORKLOAD_KINDS
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.findings import Finding, Rule, Severity

NO_DEFAULT_DENY = Rule(
    id="KST080",
    family="isolation",
    severity=Severity.MEDIUM,
    title="Namespace uses Secrets but has no default-deny ingress NetworkPolicy",
    rationale=(
        "Pods that hold credentials accept connections from every pod of the cluster unless "
        "a NetworkPolicy selects them; a default-deny policy makes every allowed path explicit."
    ),
    remediation=(
        "Add a NetworkPolicy with podSelector: {} and policyTypes: [Ingress] and no ingress "
        "rules, then allow what each workload needs."
    ),
    references=("CIS 5.3.2", "Kubescape C-0054", "Kubescape C-0260", "Checkov CKV2_K8S_6"),
)


def _default_deny(policy: KubeObject) -> bool:
    spec = policy.body.get("spec")
    if not isinstance(spec, Mapping):
        return False
    selector = spec.get("podSelector")
    if selector is None or (isinstance(selector, Mapping) and any(selector.values())):
        return False
    types: Any = spec.get("policyTypes")
    ingress_denied = (types is None or "Ingress" in types) and not spec.get("ingress")
    return bool(ingress_denied)


def check_default_deny(scan: ScanInput) -> Iterator[Finding]:
    """KST080: a namespace whose workloads use Secrets, without default-deny ingress."""
    index = scan.index
    protected = {p.namespace for p in index.of_kind("NetworkPolicy") if _default_deny(p)}
    using: dict[str, KubeObject] = {}
    # Pods only: an Ingress or a StorageClass naming a Secret runs nothing to protect.
    # Every reference's consumer is the object that holds it, but for a Secret's (its
    # ServiceAccount): the workloads' references, in load order, are exactly those whose
    # consumer is a workload, without a list of the whole index's references.
    for obj in index:
        if obj.kind not in WORKLOAD_KINDS:
            continue
        for ref in index.references_of(obj):
            if ref.consumer.kind in WORKLOAD_KINDS and ref.namespace not in using:
                consumer = index.get(ref.consumer)
                if consumer is not None:
                    using[ref.namespace] = consumer
    # The first declaration of each Namespace, looked up by name (a scan over every
    # Namespace per finding grew with the square of the namespaces).
    declared: dict[str, KubeObject] = {}
    for ns in index.of_kind("Namespace"):
        declared.setdefault(ns.name, ns)
    for namespace in sorted(set(using) - protected):
        target = declared.get(namespace, using[namespace])
        yield finding(
            NO_DEFAULT_DENY, target,
            f"namespace {namespace} runs workloads that use Secrets and has no default-deny "
            "ingress NetworkPolicy",
        )  # fmt: skip


CHECKS: tuple[Check, ...] = (Check(NO_DEFAULT_DENY, check_default_deny, reads_tables=True),)
