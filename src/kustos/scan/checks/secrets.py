"""The Secrets themselves: type, immutability, use, placement and age (KST040-KST059).

Purely data. Nothing here reads a value beyond its shape: a type check looks at key names
only, never at the bytes.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

from kustos.conventions import ANNOTATION_ROTATED_AT
from kustos.kube.objects import KubeObject
from kustos.kube.references import Via
from kustos.rbac.matching import Request, rule_allows
from kustos.rbac.model import Subject
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.credentials import detect
from kustos.scan.findings import Finding, Rule, Severity
from kustos.sensitive import Sensitive

#: Types written by the platform or by tools that manage their own lifecycle.
MANAGED_TYPES: Final = frozenset(
    {"kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token", "helm.sh/release.v1"}
)

NOT_IMMUTABLE = Rule(
    id="KST040",
    family="secrets",
    severity=Severity.LOW,
    title="Static Secret not marked immutable",
    rationale=(
        "An immutable Secret cannot be changed by accident or by an attacker with update "
        "rights, and the kubelet stops watching it, which lowers API server load. Rotation "
        "then means a new Secret (a new version), which is also what makes rollback possible."
    ),
    remediation="Set immutable: true and rotate by creating a new Secret version.",
    references=("https://kubernetes.io/docs/concepts/configuration/secret/#secret-immutable",),
)
WRONG_TYPE = Rule(
    id="KST041",
    family="secrets",
    severity=Severity.MEDIUM,
    title="Secret type does not match its content",
    rationale=(
        "A TLS pair or a registry credential stored as Opaque escapes the validation of its "
        "type (both keys present, well-formed docker config) and the tools that look for it "
        "by type (Ingress controllers, image pull, rotation)."
    ),
    remediation="Recreate the Secret with the matching type (kubernetes.io/tls, ...).",
    references=("https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",),
)
UNUSED = Rule(
    id="KST042",
    family="secrets",
    severity=Severity.LOW,
    title="Secret not used by anything",
    rationale=(
        "A Secret no workload, ServiceAccount or Ingress references is a credential that "
        "still works, is still readable and is never rotated."
    ),
    remediation="Confirm it is unused, then delete it and revoke the credential it holds.",
)
DEFAULT_SA_PULL = Rule(
    id="KST043",
    family="secrets",
    severity=Severity.MEDIUM,
    title="Image pull secret attached to the default ServiceAccount",
    rationale=(
        "Every pod that names no ServiceAccount gets the registry credential, including pods "
        "that have no business pulling from that registry."
    ),
    remediation="Attach the pull secret to the ServiceAccounts of the workloads that need it.",
    references=(
        "https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#add-imagepullsecrets-to-a-service-account",
    ),
)
SHARED_PULL = Rule(
    id="KST044",
    family="secrets",
    severity=Severity.LOW,
    title="One image pull secret shared by many ServiceAccounts",
    rationale=(
        "A registry credential shared by many ServiceAccounts cannot be revoked or scoped "
        "for one of them without breaking the others."
    ),
    remediation="Issue one registry credential (robot account) per workload or team.",
)
DEFAULT_NAMESPACE = Rule(
    id="KST045",
    family="secrets",
    severity=Severity.LOW,
    title="Secret in the default namespace",
    rationale=(
        "The default namespace is where everything lands by accident; RBAC and "
        "NetworkPolicies there are rarely tight."
    ),
    remediation="Move the Secret and its workloads to a dedicated namespace.",
    references=("CIS 5.6.4", "Kubescape C-0212", "Checkov CKV_K8S_21"),
)
TOO_OLD = Rule(
    id="KST046",
    family="secrets",
    severity=Severity.MEDIUM,
    title="Secret not rotated within the rotation limit",
    rationale="Long-lived credentials are more likely to have leaked and still be valid.",
    remediation="Rotate it (kustos rotate) and set a rotation schedule.",
)

IN_GIT = Rule(
    id="KST050",
    family="secrets",
    severity=Severity.MEDIUM,
    title="Credential committed in a Secret manifest",
    rationale=(
        "A Secret manifest in a repository is base64, not encryption: everybody who can read "
        "the repository, its forks, CI logs and every clone ever made can read the value, and "
        "removing it later does not remove it from history."
    ),
    remediation=(
        "Rotate the value, then keep the manifest sealed: `kustos seal -f FILE > sealed.yaml` "
        "writes a SealedSecret in SOPS's format (the cluster and the holders of your age keys "
        "open it; `sops` edits it), or take the value from a secrets manager with a "
        "ManagedSecret (vault / awsSecretsManager sources)."
    ),
    references=("Checkov CKV_SECRET_6", "https://getsops.io/docs/"),
)

#: SOPS-encrypted values look like this; such a file is already sealed.
_SOPS_VALUE: Final = b"ENC[AES256_GCM,"

#: Key sets that betray a more specific type.
_TYPE_HINTS: Final = (
    (frozenset({"tls.crt", "tls.key"}), "kubernetes.io/tls"),
    (frozenset({".dockerconfigjson"}), "kubernetes.io/dockerconfigjson"),
    (frozenset({".dockercfg"}), "kubernetes.io/dockercfg"),
    (frozenset({"ssh-privatekey"}), "kubernetes.io/ssh-auth"),
)
SHARED_PULL_MIN: Final = 3


def _keys(secret: KubeObject) -> frozenset[str]:
    keys: set[str] = set()
    for part in ("data", "stringData"):
        values = secret.body.get(part)
        if isinstance(values, Mapping):
            keys.update(str(k) for k in values)
    return frozenset(keys)


def _type(secret: KubeObject) -> str:
    value = secret.body.get("type")
    return value if isinstance(value, str) and value else "Opaque"


def check_secret_objects(scan: ScanInput) -> Iterator[Finding]:
    """KST040, KST041, KST045: type, immutability and namespace of each Secret."""
    for secret in scan.index.of_kind("Secret"):
        if secret.api_version != "v1":
            continue
        stype = _type(secret)
        managed = stype in MANAGED_TYPES or bool(secret.owner_refs)
        if stype == "Opaque":
            keys = _keys(secret)
            for needed, better in _TYPE_HINTS:
                if needed <= keys:
                    yield finding(
                        WRONG_TYPE,
                        secret,
                        f"Secret {secret.name} holds {', '.join(sorted(needed))} but has type "
                        f"Opaque; use {better}",
                        field="type",
                    )
                    break
        if not managed and secret.body.get("immutable") is not True:
            yield finding(
                NOT_IMMUTABLE, secret, f"Secret {secret.name} is not immutable", field="immutable"
            )
        explicit = scan.live or secret.metadata.get("namespace") == "default"
        if explicit and secret.namespace == "default" and not managed:
            yield finding(
                DEFAULT_NAMESPACE,
                secret,
                f"Secret {secret.name} is in the default namespace",
                field="metadata.namespace",
            )


def _other_consumers(scan: ScanInput) -> set[tuple[str, str]]:
    """Secrets named by objects the reference parser does not cover (Ingress TLS, ...)."""
    used: set[tuple[str, str]] = set()
    for ingress in scan.index.of_kind("Ingress"):
        for tls in _list(_get(ingress.body, "spec", "tls")):
            if isinstance(tls, Mapping) and isinstance(tls.get("secretName"), str):
                used.add((ingress.namespace, tls["secretName"]))
    for obj in scan.index:
        # cert-manager Certificates and most operators name their output Secret secretName.
        name = _get(obj.body, "spec", "secretName")
        if isinstance(name, str) and obj.kind != "Secret":
            used.add((obj.namespace, name))
    return used


def _strings(value: Any, out: set[str]) -> None:
    """Every string inside a manifest body (keys and values), for name lookups."""
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str):
                out.add(k)
            _strings(v, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def _named_elsewhere(
    scan: ScanInput, namespaces: set[str]
) -> tuple[set[tuple[str, str]], set[str]]:
    """(namespace, string) for every string in non-Secret objects of *namespaces*, and the
    strings of cluster-scoped ones (which count in every namespace).

    Operators and custom resources name the Secrets they read in fields Kustos cannot know
    (an ExternalSecret's target, an Alertmanager's configSecret, a controller's flags). A
    Secret whose name appears anywhere in its namespace's other objects, or in a role's
    resourceNames, is taken as used.
    """
    found: set[tuple[str, str]] = set()
    everywhere: set[str] = set()
    for obj in scan.index:
        if obj.kind == "Secret":
            continue
        if obj.namespace in namespaces or obj.kind in ("ClusterRole", "ClusterRoleBinding"):
            strings: set[str] = set()
            _strings(obj.body, strings)
            if obj.namespace:
                found.update((obj.namespace, s) for s in strings)
            else:
                everywhere |= strings
    return found, everywhere


def _get(body: Mapping[str, Any], *path: str) -> Any:
    node: Any = body
    for step in path:
        node = node.get(step) if isinstance(node, Mapping) else None
    return node


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def check_usage(scan: ScanInput) -> Iterator[Finding]:
    """KST042-KST044: unused Secrets and how pull secrets are shared."""
    index = scan.index
    namespaces_with_workloads = {w.namespace for w in index.workloads()}
    others = _other_consumers(scan)
    candidates = [
        secret
        for secret in index.of_kind("Secret")
        if _type(secret) not in MANAGED_TYPES
        and not secret.owner_refs
        and not secret.annotations.get("kubernetes.io/service-account.name")
        # A namespace without workloads in the input: we do not see its consumers.
        and secret.namespace in namespaces_with_workloads
        and not index.consumers_of(secret.namespace, secret.name)
        and (secret.namespace, secret.name) not in others
    ]
    named, named_everywhere = (
        _named_elsewhere(scan, {s.namespace for s in candidates}) if candidates else (set(), set())
    )
    readers = _api_readers(scan) if candidates else {}
    for secret in candidates:
        if (secret.namespace, secret.name) in named or secret.name in named_everywhere:
            continue
        message = f"no workload, ServiceAccount or Ingress in the input uses Secret {secret.name}"
        api = readers.get(secret.namespace, 0)
        if not api:
            yield finding(UNUSED, secret, message)
            continue
        # A controller may read it through the API by a name compiled into its binary:
        # say so, at info level, instead of claiming it is unused.
        yield replace(
            finding(UNUSED, secret, f"{message}; {api} ServiceAccount(s) may read it via the API"),
            severity=Severity.INFO,
        )
    pull_users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sa in index.of_kind("ServiceAccount"):
        for ref in index.references_of(sa):
            if ref.via is not Via.SA_IMAGE_PULL:
                continue
            pull_users[(ref.namespace, ref.secret)].append(sa.name)
            if sa.name == "default":
                yield finding(
                    DEFAULT_SA_PULL,
                    sa,
                    f"pull secret {ref.secret} is attached to ServiceAccount "
                    f"{sa.namespace}/default, so every pod of the namespace gets it",
                    field=ref.field,
                )
    for (namespace, name), users in sorted(pull_users.items()):
        shared = index.secret(namespace, name)
        if len(users) >= SHARED_PULL_MIN and shared is not None:
            yield finding(
                SHARED_PULL,
                shared,
                f"pull secret {name} is attached to {len(users)} ServiceAccounts",
                details={"serviceAccounts": ",".join(sorted(users))},
            )


def _api_readers(scan: ScanInput) -> dict[str, int]:
    """Per namespace: how many ServiceAccounts RBAC lets get Secrets there.

    Whether a binding's role allows it does not depend on the namespace, so each binding is
    tested once; a ClusterRoleBinding's readers count in every namespace that has Secrets.
    """
    request = Request("get", "", "secrets", name="*")
    everywhere: set[Subject] = set()
    readers: dict[str, set[Subject]] = defaultdict(set)
    for binding in scan.policy.bindings:
        if binding.role is None or binding.bootstrap:
            continue
        if not any(
            rule_allows(replace(r, resource_names=frozenset()), request) for r in binding.role.rules
        ):
            continue
        accounts = (s for s in binding.subjects if s.kind == "ServiceAccount")
        if binding.cluster_wide:
            everywhere.update(accounts)
        else:
            readers[binding.namespace].update(accounts)
    if everywhere:
        for ns in {s.namespace for s in scan.index.of_kind("Secret")}:
            readers[ns] |= everywhere
    return {ns: len(subjects) for ns, subjects in readers.items()}


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def check_committed(scan: ScanInput) -> Iterator[Finding]:
    """KST050: Secret manifests (files, not a live cluster) holding credentials in clear."""
    if scan.live:
        return
    for secret in scan.index.of_kind("Secret"):
        if secret.source is None or _type(secret) in MANAGED_TYPES:
            continue
        hits: list[tuple[str, str]] = []
        for part in ("data", "stringData"):
            values = secret.body.get(part)
            if not isinstance(values, Mapping):
                continue
            for key, value in values.items():
                if not isinstance(value, Sensitive) or not value:
                    continue
                raw = value.reveal()
                if raw.startswith(_SOPS_VALUE):
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    hits.append((f"{part}.{key}", "binary key material"))
                    continue
                hit = detect(str(key), text)
                if hit is not None:
                    hits.append((f"{part}.{key}", hit.kind))
        if hits:
            keys = ", ".join(sorted(field.split(".", 1)[1] for field, _ in hits))
            yield finding(
                IN_GIT,
                secret,
                f"Secret {secret.name} holds {len(hits)} credential value(s) in clear in this "
                f"file (keys: {keys})",
                field=hits[0][0],
                details={"kinds": ", ".join(sorted({k for _, k in hits}))},
            )


def check_age(scan: ScanInput) -> Iterator[Finding]:
    """KST046: Secrets older than the rotation limit (live clusters only)."""
    if not scan.live or scan.now is None:
        return
    limit = dt.timedelta(days=scan.max_secret_age_days)
    for secret in scan.index.of_kind("Secret"):
        if _type(secret) in MANAGED_TYPES or secret.owner_refs:
            continue
        born = _timestamp(secret.annotations.get(ANNOTATION_ROTATED_AT)) or _timestamp(
            secret.metadata.get("creationTimestamp")
        )
        if born is not None and scan.now - born > limit:
            days = (scan.now - born).days
            yield finding(
                TOO_OLD,
                secret,
                f"Secret {secret.name} was last rotated {days} days ago "
                f"(limit {scan.max_secret_age_days})",
                field="metadata.creationTimestamp",
            )


CHECKS: tuple[Check, ...] = (
    Check(NOT_IMMUTABLE, check_secret_objects),
    Check(WRONG_TYPE, check_secret_objects),
    Check(UNUSED, check_usage),
    Check(DEFAULT_SA_PULL, check_usage),
    Check(SHARED_PULL, check_usage),
    Check(DEFAULT_NAMESPACE, check_secret_objects),
    Check(TOO_OLD, check_age),
    Check(IN_GIT, check_committed),
)
