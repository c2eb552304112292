"""How workloads consume Secrets and tokens (KST020-KST039).

Purely data. Reads pod templates through the one reference parser and the pod-spec
locator of :mod:`kustos.kube.references`. Pods and ReplicaSets owned by a controller in
the index are skipped: the finding belongs on the Deployment that wrote the template.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

from kustos.kube.objects import KubeObject, ObjectRef, is_map
from kustos.kube.references import (
    CONTAINER_LISTS,
    POD_SPEC_PATHS,
    SecretReference,
    Via,
    pod_spec_of,
    service_account_name,
)
from kustos.rbac.model import Binding
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.checks.nearby import near
from kustos.scan.credentials import detect, is_credential_name, is_setting_name
from kustos.scan.findings import Finding, Rule, Severity
from kustos.sensitive import Sensitive

ENV_SECRET = Rule(
    id="KST020",
    family="workloads",
    severity=Severity.MEDIUM,
    title="Secret key exposed as an environment variable",
    rationale=(
        "Environment variables are inherited by child processes, shown by `ps e` and crash "
        "dumps, and often logged; a file mount keeps the value out of the process "
        "environment and is updated in place when the Secret changes. Medium when the key "
        "holds a credential (by its name, or by its value when the Secret is in the input), "
        "low when that cannot be told; keys that hold identifiers or settings (username, "
        "port, region-id) are not reported."
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
    severity=Severity.MEDIUM,
    title="Workload runs as a default ServiceAccount that holds permissions or pull secrets",
    rationale=(
        "The namespace's default ServiceAccount is shared by every pod that names none; a "
        "role bound to it, or an image pull secret attached to it, reaches all of them. "
        "Reported only when that default ServiceAccount has such a binding or pull secret: "
        "running as an empty default ServiceAccount gives a pod nothing."
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
    severity=Severity.LOW,
    title="Secret files mode looser than the default 0644",
    rationale=(
        "A defaultMode or item mode that adds write or execute bits for the group or other "
        "users (0666, 0755, 0777) is looser than what Kubernetes does without the field "
        "(0644, defaultMode 420): it documents an intent nobody should have for a "
        "credential. 0644 itself, written or left out, is one rule: not reported."
    ),
    remediation="Use defaultMode: 0400 (or 0440 with an fsGroup that needs it).",
    references=("https://kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod",),
)  # fmt: skip
HOSTPATH_TOKENS = Rule(
    id="KST026",
    family="workloads",
    severity=Severity.CRITICAL,
    title="hostPath mount exposes node or cluster credentials",
    rationale=(
        "Mounting the kubelet's pod volumes or PKI, the control plane's PKI and "
        "kubeconfigs, etcd's data or the container runtime socket gives the container every "
        "Secret and token on the node (or the power to read them). CSI plugin sockets and "
        "registration folders under /var/lib/kubelet/plugins hold no credential and are "
        "not reported."
    ),
    remediation="Remove the hostPath volume; use projected volumes for the pod's own token.",
    references=("Kubescape C-0020", "Kubescape C-0048"),
)

#: Host paths that hold node or cluster credentials, and what they hold. A mount of one of
#: them, of anything inside one, or of a folder that contains one is reported.
SENSITIVE_HOST_PATHS: Final[Mapping[str, str]] = {
    "/var/lib/kubelet/pods": "every pod's mounted Secrets and ServiceAccount tokens",
    "/var/lib/kubelet/pki": "the kubelet's client certificate and key",
    "/var/lib/kubelet/kubeconfig": "the kubelet's kubeconfig",
    "/var/lib/kubelet/bootstrap-kubeconfig": "the kubelet's bootstrap token",
    "/etc/kubernetes/pki": "the cluster's PKI (CA and component keys)",
    "/etc/kubernetes/admin.conf": "the cluster-admin kubeconfig",
    "/etc/kubernetes/super-admin.conf": "the super-admin kubeconfig",
    "/etc/kubernetes/kubelet.conf": "the kubelet's kubeconfig",
    "/etc/kubernetes/bootstrap-kubelet.conf": "the kubelet's bootstrap token",
    "/etc/kubernetes/controller-manager.conf": "the controller manager's kubeconfig",
    "/etc/kubernetes/scheduler.conf": "the scheduler's kubeconfig",
    "/etc/kubernetes/cloud.config": "the cloud provider's credentials",
    "/etc/kubernetes/azure.json": "the cloud provider's credentials",
    "/var/lib/etcd": "etcd's data (every Secret of the cluster)",
    "/var/run/docker.sock": "the container runtime socket (every container on the node)",
    "/run/docker.sock": "the container runtime socket (every container on the node)",
    "/run/containerd": "the container runtime socket (every container on the node)",
    "/var/run/containerd": "the container runtime socket (every container on the node)",
    "/var/run/crio": "the container runtime socket (every container on the node)",
    "/run/crio": "the container runtime socket (every container on the node)",
    "/run/k3s/containerd": "the container runtime socket (every container on the node)",
    "/var/lib/rancher/k3s/server": "k3s's server token and cluster PKI",
    "/etc/rancher": "k3s/RKE2 kubeconfigs",
    "/var/snap/microk8s/current/credentials": "MicroK8s's kubeconfigs and tokens",
}


def _top_level_workloads(scan: ScanInput) -> Iterator[KubeObject]:
    for obj in scan.index.workloads():
        if not scan.index.is_owned(obj.ref):
            yield obj


def check_env(scan: ScanInput) -> Iterator[Finding]:
    """KST020, KST021: Secrets in env and envFrom.

    KST020's severity follows what the key holds: medium for a credential (by the key's
    or the variable's name, or by the value when the Secret is in the input), low when
    that cannot be told, nothing for identifiers and settings (username, port, region-id).
    """
    for obj in _top_level_workloads(scan):
        for ref in scan.index.references_of(obj):
            if ref.via is Via.ENV:
                severity = _env_severity(scan, obj, ref)
                if severity is None:
                    continue
                found = finding(
                    ENV_SECRET, obj,
                    f'container "{ref.container}" reads key "{ref.key}" of Secret {ref.secret} '
                    "from an environment variable",
                    field=ref.field.removesuffix(".valueFrom.secretKeyRef"),
                )  # fmt: skip
                yield (
                    found if severity is ENV_SECRET.severity else replace(found, severity=severity)
                )
            elif ref.via is Via.ENV_FROM:
                yield finding(
                    ENV_FROM_SECRET, obj,
                    f'container "{ref.container}" gets every key of Secret {ref.secret} '
                    "as environment variables",
                    field=ref.field.removesuffix(".secretRef"),
                )  # fmt: skip


def _env_severity(scan: ScanInput, obj: KubeObject, ref: SecretReference) -> Severity | None:
    """What the env reference exposes: a credential (medium), unknown (low), or nothing."""
    key = ref.key or ""
    if is_credential_name(key):
        return ENV_SECRET.severity
    variable = _env_name(obj, ref.field)
    if variable and is_credential_name(variable):
        return ENV_SECRET.severity
    if is_setting_name(key):
        return None  # an identifier or a setting (username, port, region-id)
    value = _secret_value(scan, ref.namespace, ref.secret, key)
    if value is None:
        return Severity.LOW  # cannot tell
    # The value is in the input: the detector decides.
    return ENV_SECRET.severity if detect(key, value) is not None else None


def _env_name(obj: KubeObject, field: str) -> str:
    """The ``name`` of the env entry at *field* (``...env[3].valueFrom.secretKeyRef``).

    The reference parser wrote *field* from this very body as
    ``POD_SPEC.LIST[i].env[j]...``: under the pod spec (found by its kind's path, as the
    parser found it) only the two positions are read; any other shape takes the walk
    along the whole path.
    """
    steps = POD_SPEC_PATHS.get(obj.kind)
    spec: Any = obj.body
    for step in steps or ():
        spec = spec.get(step) if is_map(spec) else None
    head = ".".join(steps) + "." if steps else ""
    tail = field.removesuffix(".valueFrom.secretKeyRef")
    if steps and is_map(spec) and tail.startswith(head):
        list_part, _, env_part = tail[len(head) :].partition(".")
        list_name, _, ci = list_part.partition("[")
        if env_part.startswith("env[") and ci.endswith("]") and env_part.endswith("]"):
            listed = spec.get(list_name)
            container = _at(listed, ci[:-1])
            envs = container.get("env") if is_map(container) else None
            env = _at(envs, env_part[4:-1])
            value = env.get("name") if is_map(env) else None
            return value if isinstance(value, str) else ""
    return _env_name_walked(obj, field)


def _at(node: Any, index: str) -> Any:
    """``node[index]`` of a list, ``None`` past its end or for anything else."""
    if not isinstance(node, list) or not index.isdigit():
        return None
    position = int(index)
    return node[position] if position < len(node) else None


def _env_name_walked(obj: KubeObject, field: str) -> str:
    node: Any = obj.body
    for part in field.removesuffix(".valueFrom.secretKeyRef").split("."):
        name, _, index = part.partition("[")
        node = node.get(name) if is_map(node) else None
        if index and isinstance(node, list):
            position = int(index.rstrip("]"))
            node = node[position] if position < len(node) else None
    value = node.get("name") if is_map(node) else None
    return value if isinstance(value, str) else ""


def _secret_value(scan: ScanInput, namespace: str, name: str, key: str) -> str | None:
    """The text of one key of a Secret in the input, for the detector only; never reported."""
    secret = scan.index.secret(namespace, name)
    if secret is None:
        return None
    for part in ("data", "stringData"):
        values = secret.body.get(part)
        value = values.get(key) if is_map(values) else None
        if isinstance(value, Sensitive):
            try:
                return value.reveal().decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


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
    default_bindings = _default_sa_bindings(scan)
    for obj in _top_level_workloads(scan):
        view = pod_spec_of(obj)
        if view is None:
            continue
        sa_name = service_account_name(view.spec)
        sa = scan.index.get(_sa_ref(obj.namespace, sa_name))
        automount = _automount(view.spec, sa)  # asked once for both rules
        if sa_name == "default":
            holds = _default_sa_holds(scan, obj, sa, default_bindings, automount=automount)
            if holds:
                yield finding(
                    DEFAULT_SA, obj,
                    f"{obj.kind} {obj.name} runs as ServiceAccount {obj.namespace}/default, "
                    f"which {' and '.join(holds)}",
                    field=f"{view.path}.serviceAccountName",
                )  # fmt: skip
        if not automount:
            continue
        if sa_name != "default" and (sa is None or not near(sa, obj)):
            # A ServiceAccount created elsewhere (a script, another chart, a templated
            # name such as $K8S_SA_NAME) comes with bindings we do not see either.
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


def _default_sa_bindings(scan: ScanInput) -> dict[str, list[Binding]]:
    """Per namespace, the user bindings whose subjects include its default ServiceAccount."""
    found: dict[str, list[Binding]] = {}
    for b in scan.policy.bindings:
        if b.role is None or b.bootstrap:
            continue
        for s in b.subjects:
            if s.kind == "ServiceAccount" and s.name == "default":
                found.setdefault(s.namespace, []).append(b)
    return found


def _default_sa_holds(
    scan: ScanInput,
    workload: KubeObject,
    sa: KubeObject | None,
    bindings: Mapping[str, list[Binding]],
    *,
    automount: bool,
) -> list[str]:
    """What a namespace's default ServiceAccount gives every pod that runs as it.

    From files, only bindings and ServiceAccounts near the workload count
    (:func:`~kustos.scan.checks.nearby.near`): an example elsewhere in the tree that binds
    ``default/default`` is not this workload's cluster.
    """
    holds: list[str] = []
    if automount:
        roles = sorted(
            {
                str(b.role)
                for b in bindings.get(workload.namespace, ())
                if b.obj is None or near(b.obj, workload)
            }
        )
        if roles:
            holds.append(f"is bound to {', '.join(roles)}")
    if sa is not None and near(sa, workload):
        pulls = [r.secret for r in scan.index.references_of(sa) if r.via is Via.SA_IMAGE_PULL]
        if pulls:
            holds.append(f"carries image pull secret(s) {', '.join(sorted(set(pulls)))}")
    return holds


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
            if not is_map(volume):
                continue
            secret, host = volume.get("secret"), volume.get("hostPath")
            source = secret or volume.get("projected")
            if source is None and host is None:
                continue  # a configMap, emptyDir... volume: nothing to judge, no path made
            vpath = f"{view.path}.volumes[{vi}]"
            name = str(volume.get("name", ""))
            # A Secret volume, or a projected one with a Secret source.
            if is_map(source) and (is_map(secret) or _projected_secret(volume)):
                secret_volumes[name] = vi
                kind = "secret" if "secret" in volume else "projected"
                yield from _modes(obj, source, f"{vpath}.{kind}", name)
            if is_map(host) and isinstance(host.get("path"), str):
                path = host["path"].rstrip("/") or "/"
                held = _credentials_under(path)
                if held:
                    yield finding(
                        HOSTPATH_TOKENS, obj,
                        f'volume "{name}" mounts host path {path}, which holds {held}',
                        field=f"{vpath}.hostPath",
                        details={"holds": held},
                    )  # fmt: skip
        if scan.live or not secret_volumes:
            continue  # KST024 needs a Secret volume, and files
        # The walk of :func:`containers` and :func:`items`, written out: names and paths
        # are made only for a mount that is reported.
        for list_name in CONTAINER_LISTS:
            listed = view.spec.get(list_name)
            for ci, container in enumerate(listed if isinstance(listed, list) else ()):
                mounts = container.get("volumeMounts") if is_map(container) else None
                for mi, mount in enumerate(mounts if isinstance(mounts, list) else ()):
                    if (
                        is_map(mount)
                        and mount.get("name") in secret_volumes
                        and mount.get("readOnly") is False
                    ):
                        cname = container.get("name")
                        yield finding(
                            WRITABLE_MOUNT, obj,
                            f'container "{cname if isinstance(cname, str) else ""}" mounts '
                            f'Secret volume "{mount.get("name")}" with readOnly: false',
                            field=f"{view.path}.{list_name}[{ci}].volumeMounts[{mi}]",
                        )  # fmt: skip


def _credentials_under(path: str) -> str:
    """What node credentials a host path holds: itself, inside one, or a folder above some."""
    for sensitive, what in SENSITIVE_HOST_PATHS.items():
        if path == sensitive or path.startswith(sensitive + "/"):
            return what
    below = [p for p in SENSITIVE_HOST_PATHS if path == "/" or p.startswith(path + "/")]
    if not below:
        return ""
    whats = list(dict.fromkeys(SENSITIVE_HOST_PATHS[p] for p in below))
    if len(whats) > 2:
        return f"{whats[0]}, {whats[1]} and {len(whats) - 2} more kinds of node credentials"
    return " and ".join(whats)


def _projected_secret(volume: Mapping[str, Any]) -> bool:
    """A projected volume with a Secret among its sources."""
    projected = volume.get("projected")
    sources = projected.get("sources") if is_map(projected) else None
    return isinstance(sources, list) and any(is_map(s) and is_map(s.get("secret")) for s in sources)


#: What Kubernetes uses when defaultMode is left out (0644, written as 420 in YAML).
DEFAULT_MODE: Final = 0o644


def _loose(mode: Any) -> bool:
    """Looser than the default: any group/other bit that 0644 does not have (write, execute)."""
    return (
        isinstance(mode, int) and not isinstance(mode, bool) and bool(mode & 0o077 & ~DEFAULT_MODE)
    )


def _modes(obj: KubeObject, source: Mapping[str, Any], path: str, name: str) -> Iterator[Finding]:
    if _loose(source.get("defaultMode")):
        yield finding(
            PERMISSIVE_MODE, obj,
            f'Secret volume "{name}" has defaultMode {source["defaultMode"]:04o}',
            field=f"{path}.defaultMode",
        )  # fmt: skip
    # Paths are made only for lists that hold items (most volumes have none).
    items: list[tuple[str, Any]] = []
    entries = source.get("items")
    if isinstance(entries, list) and entries:
        items.append((f"{path}.items", entries))
    for si, src in enumerate(source.get("sources") or []):
        if is_map(src) and is_map(src.get("secret")):
            entries = src["secret"].get("items")
            if isinstance(entries, list) and entries:
                items.append((f"{path}.sources[{si}].secret.items", entries))
    for ipath, entries in items:
        for ii, item in enumerate(entries):
            if is_map(item) and _loose(item.get("mode")):
                yield finding(
                    PERMISSIVE_MODE, obj,
                    f'Secret volume "{name}" item "{item.get("key")}" has mode {item["mode"]:04o}',
                    field=f"{ipath}[{ii}].mode",
                )  # fmt: skip


CHECKS: tuple[Check, ...] = (
    # Measured at 100k objects: the second heaviest, a third of the findings.
    Check(ENV_SECRET, check_env, weight=3, reads_tables=True),
    Check(ENV_FROM_SECRET, check_env, weight=3, reads_tables=True),
    Check(DEFAULT_SA, check_service_accounts, reads_tables=True),
    Check(TOKEN_AUTOMOUNT, check_service_accounts, reads_tables=True),
    Check(WRITABLE_MOUNT, check_mounts),
    Check(PERMISSIVE_MODE, check_mounts),
    Check(HOSTPATH_TOKENS, check_mounts),
)
