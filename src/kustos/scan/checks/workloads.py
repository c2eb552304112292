"""How workloads consume Secrets and tokens (KST020-KST039).

Purely data. Reads pod templates through the one reference parser and the pod-spec
locator of :mod:`kustos.kube.references`. Pods and ReplicaSets owned by a controller in
the index are skipped: the finding belongs on the Deployment that wrote the template.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from kustos.kube.objects import KubeObject, ObjectRef
from kustos.kube.references import Via, containers, items, pod_spec_of, service_account_name
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.findings import Finding, Rule, Severity

ENV_SECRET = Rule(
    id="KST020",
    family="workloads",
    severity=Severity.MEDIUM,
    title="Secret key exposed as an environment variable",
    rationale=(
        "Environment variables are inherited by child processes, shown by `ps e` and crash "
        "dumps, and often logged; a file mount keeps the value out of the process "
        "environment and is updated in place when the Secret changes."
    ),
    remediation="Mount the Secret as a read-only volume and read the key from the file.",
    references=("CIS 5.4.1", "Kubescape C-0207", "Checkov CKV_K8S_35",
                "kube-linter read-secret-from-env-var"),
)  # fmt: skip
ENV_FROM_SECRET = Rule(
    id="KST021",
    family="workloads",
    severity=Severity.MEDIUM,
    title="Whole Secret exposed as environment variables (envFrom)",
    rationale=(
        "envFrom copies every key of the Secret, including keys added later, into the "
        "environment of the container."
    ),
    remediation="Mount the Secret as a volume, or reference only the keys needed.",
    references=("CIS 5.4.1", "Checkov CKV_K8S_35"),
)
DEFAULT_SA = Rule(
    id="KST022",
    family="workloads",
    severity=Severity.LOW,
    title="Workload runs as the default ServiceAccount",
    rationale=(
        "The namespace's default ServiceAccount is shared by every pod that names none; any "
        "permission given to it reaches all of them."
    ),
    remediation="Create a ServiceAccount per workload and set serviceAccountName.",
    references=("CIS 5.1.5", "Kubescape C-0189", "kube-linter default-service-account"),
)
TOKEN_AUTOMOUNT = Rule(
    id="KST023",
    family="workloads",
    severity=Severity.MEDIUM,
    title="ServiceAccount token mounted into a pod that has no API permissions",
    rationale=(
        "The token lets whoever takes over the container talk to the API as the pod. When its "
        "ServiceAccount is bound to no role, the pod does not use the API and needs no token."
    ),
    remediation=(
        "Set automountServiceAccountToken: false on the ServiceAccount or the pod spec "
        "(the pod spec wins)."
    ),
    references=("CIS 5.1.6", "Kubescape C-0034", "Kubescape C-0190", "Checkov CKV_K8S_38",
                "Polaris automountServiceAccountToken", "Trivy KSV-0036"),
)  # fmt: skip
WRITABLE_MOUNT = Rule(
    id="KST024",
    family="workloads",
    severity=Severity.LOW,
    title="Secret volume mounted with readOnly: false",
    rationale=(
        "Kubernetes mounts secret and projected volumes read-only whatever the flag says "
        "(since the CVE-2017-1002102 fix), so readOnly: false is misleading: it documents an "
        "intent to write that cannot work."
    ),
    remediation="Set readOnly: true (or leave it out) on Secret volume mounts.",
    references=("https://github.com/kubernetes/kubernetes/issues/60814",),
)
PERMISSIVE_MODE = Rule(
    id="KST025",
    family="workloads",
    severity=Severity.MEDIUM,
    title="Secret files readable by group or others",
    rationale=(
        "defaultMode or an item mode that lets the group or other users read the files "
        "exposes the Secret to every process in the container that runs as another user."
    ),
    remediation="Use defaultMode: 0400 (or 0440 with an fsGroup that needs it).",
    references=("https://kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod",),
)  # fmt: skip
HOSTPATH_TOKENS = Rule(
    id="KST026",
    family="workloads",
    severity=Severity.CRITICAL,
    title="hostPath mount exposes kubelet or ServiceAccount credentials",
    rationale=(
        "Mounting the node's kubelet directory, its pod volumes or the control plane's PKI "
        "gives the container every Secret and token on the node."
    ),
    remediation="Remove the hostPath volume; use projected volumes for the pod's own token.",
    references=("Kubescape C-0020", "Kubescape C-0048"),
)

#: Host paths whose content includes other pods' Secrets, tokens or cluster keys.
SENSITIVE_HOST_PATHS: Final = (
    "/var/lib/kubelet", "/var/run/secrets", "/run/secrets", "/etc/kubernetes",
    "/var/lib/etcd", "/var/lib/rancher", "/etc/rancher", "/var/snap/microk8s",
)  # fmt: skip


def _top_level_workloads(scan: ScanInput) -> Iterator[KubeObject]:
    for obj in scan.index.workloads():
        if not scan.index.is_owned(obj.ref):
            yield obj


def check_env(scan: ScanInput) -> Iterator[Finding]:
    """KST020, KST021: Secrets in env and envFrom."""
    for obj in _top_level_workloads(scan):
        for ref in scan.index.references_of(obj):
            if ref.via is Via.ENV:
                yield finding(
                    ENV_SECRET, obj,
                    f'container "{ref.container}" reads key "{ref.key}" of Secret {ref.secret} '
                    "from an environment variable",
                    field=ref.field.removesuffix(".valueFrom.secretKeyRef"),
                )  # fmt: skip
            elif ref.via is Via.ENV_FROM:
                yield finding(
                    ENV_FROM_SECRET, obj,
                    f'container "{ref.container}" gets every key of Secret {ref.secret} '
                    "as environment variables",
                    field=ref.field.removesuffix(".secretRef"),
                )  # fmt: skip


def _automount(spec: Mapping[str, Any], sa: KubeObject | None) -> bool:
    pod = spec.get("automountServiceAccountToken")
    if isinstance(pod, bool):
        return pod
    if sa is not None and isinstance(sa.body.get("automountServiceAccountToken"), bool):
        return bool(sa.body["automountServiceAccountToken"])
    return True


def check_service_accounts(scan: ScanInput) -> Iterator[Finding]:
    """KST022, KST023: default ServiceAccount use and needless token mounts."""
    policy = scan.policy
    # The API server's own bindings (service-account issuer discovery for every
    # ServiceAccount, ...) do not mean a pod talks to the API.
    user_bindings = [b for b in policy.bindings if b.role is not None and not b.bootstrap]
    bound = {
        (s.namespace, s.name)
        for b in user_bindings
        for s in b.subjects
        if s.kind == "ServiceAccount"
    }
    bound_groups = {s.name for b in user_bindings for s in b.subjects if s.kind == "Group"}
    for obj in _top_level_workloads(scan):
        view = pod_spec_of(obj)
        if view is None:
            continue
        sa_name = service_account_name(view.spec)
        sa = scan.index.get(_sa_ref(obj.namespace, sa_name))
        if sa_name == "default" and _automount(view.spec, sa):
            yield finding(
                DEFAULT_SA, obj,
                f"{obj.kind} {obj.name} runs as ServiceAccount {obj.namespace}/default",
                field=f"{view.path}.serviceAccountName",
            )  # fmt: skip
        if not _automount(view.spec, sa):
            continue
        groups = {"system:serviceaccounts", f"system:serviceaccounts:{obj.namespace}"}
        if (obj.namespace, sa_name) in bound or groups & bound_groups:
            continue
        if not user_bindings:
            continue  # no RBAC in the input at all: cannot tell whether the pod uses the API
        yield finding(
            TOKEN_AUTOMOUNT, obj,
            f"{obj.kind} {obj.name} gets a token for ServiceAccount {obj.namespace}/{sa_name}, "
            "which no binding in the input grants anything",
            field=f"{view.path}.automountServiceAccountToken",
        )  # fmt: skip


def _sa_ref(namespace: str, name: str) -> ObjectRef:
    return ObjectRef("", "ServiceAccount", namespace, name)


def check_mounts(scan: ScanInput) -> Iterator[Finding]:
    """KST024-KST026: how Secret volumes and host paths are mounted.

    KST024 is judged on files only: the API server drops ``readOnly: false`` (Go
    ``omitempty``), so a live object cannot tell it from an absent flag.
    """
    for obj in _top_level_workloads(scan):
        view = pod_spec_of(obj)
        if view is None:
            continue
        volumes = view.spec.get("volumes")
        if not isinstance(volumes, list):
            continue
        secret_volumes: dict[str, int] = {}
        for vi, volume in enumerate(volumes):
            if not isinstance(volume, Mapping):
                continue
            vpath = f"{view.path}.volumes[{vi}]"
            name = str(volume.get("name", ""))
            source = volume.get("secret") or volume.get("projected")
            if isinstance(source, Mapping) and _has_secret(volume):
                secret_volumes[name] = vi
                kind = "secret" if "secret" in volume else "projected"
                yield from _modes(obj, source, f"{vpath}.{kind}", name)
            host = volume.get("hostPath")
            if isinstance(host, Mapping) and isinstance(host.get("path"), str):
                path = host["path"].rstrip("/") or "/"
                if path == "/" or any(
                    path == p or path.startswith(p + "/") or p.startswith(path + "/")
                    for p in SENSITIVE_HOST_PATHS
                ):
                    yield finding(
                        HOSTPATH_TOKENS, obj,
                        f'volume "{name}" mounts host path {path}, which holds node credentials',
                        field=f"{vpath}.hostPath",
                    )  # fmt: skip
        for cview in containers(view):
            for mi, mount in items(cview.container.get("volumeMounts")):
                if (
                    not scan.live
                    and mount.get("name") in secret_volumes
                    and mount.get("readOnly") is False
                ):
                    yield finding(
                        WRITABLE_MOUNT, obj,
                        f'container "{cview.name}" mounts Secret volume '
                        f'"{mount.get("name")}" with readOnly: false',
                        field=f"{cview.path}.volumeMounts[{mi}]",
                    )  # fmt: skip


def _has_secret(volume: Mapping[str, Any]) -> bool:
    if isinstance(volume.get("secret"), Mapping):
        return True
    projected = volume.get("projected")
    sources = projected.get("sources") if isinstance(projected, Mapping) else None
    return isinstance(sources, list) and any(
        isinstance(s, Mapping) and isinstance(s.get("secret"), Mapping) for s in sources
    )


def _loose(mode: Any) -> bool:
    return isinstance(mode, int) and not isinstance(mode, bool) and bool(mode & 0o077)


def _modes(obj: KubeObject, source: Mapping[str, Any], path: str, name: str) -> Iterator[Finding]:
    if _loose(source.get("defaultMode")):
        yield finding(
            PERMISSIVE_MODE, obj,
            f'Secret volume "{name}" has defaultMode {source["defaultMode"]:04o}',
            field=f"{path}.defaultMode",
        )  # fmt: skip
    items: list[tuple[str, Any]] = [(f"{path}.items", source.get("items"))]
    for si, src in enumerate(source.get("sources") or []):
        if isinstance(src, Mapping) and isinstance(src.get("secret"), Mapping):
            items.append((f"{path}.sources[{si}].secret.items", src["secret"].get("items")))
    for ipath, entries in items:
        for ii, item in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(item, Mapping) and _loose(item.get("mode")):
                yield finding(
                    PERMISSIVE_MODE, obj,
                    f'Secret volume "{name}" item "{item.get("key")}" has mode {item["mode"]:04o}',
                    field=f"{ipath}[{ii}].mode",
                )  # fmt: skip


CHECKS: tuple[Check, ...] = (
    Check(ENV_SECRET, check_env),
    Check(ENV_FROM_SECRET, check_env),
    Check(DEFAULT_SA, check_service_accounts),
    Check(TOKEN_AUTOMOUNT, check_service_accounts),
    Check(WRITABLE_MOUNT, check_mounts),
    Check(PERMISSIVE_MODE, check_mounts),
    Check(HOSTPATH_TOKENS, check_mounts),
)
