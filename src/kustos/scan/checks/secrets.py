"""The Secrets themselves: type, immutability, use, placement and age (KST040-KST059).

Purely data. Nothing here reads a value beyond its shape: a type check looks at key names
only, never at the bytes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any, Final

from kustos.conventions import ANNOTATION_ROTATED_AT
from kustos.kube.objects import KubeObject, ObjectRef, is_map
from kustos.kube.references import WORKLOAD_KINDS, Via
from kustos.rbac.matching import Request, rule_allows
from kustos.rbac.model import PolicyRule, Subject
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.checks.nearby import within
from kustos.scan.credentials import detect, is_credential_name, is_placeholder, is_setting_name
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
    title="Secret read by many workloads, not rotated by a tool and not immutable",
    rationale=(
        "A Secret that several workloads read is one edit away from breaking (or silently "
        "changing) all of them, and every kubelet running their pods watches it. Marked "
        "immutable, it cannot be changed by accident or by an attacker with update rights, "
        "the kubelets stop watching it, and rotation becomes a new Secret version, which is "
        "also what makes rollback possible. Reported only for Secrets read by at least three "
        "workloads that no tool (cert-manager, external-secrets, an owner, Kustos) rewrites: "
        "for the others immutability buys little."
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
        "A Secret nothing references (no workload, ServiceAccount, Ingress, Gateway, "
        "StorageClass, PersistentVolume, cert-manager or external-secrets resource, webhook "
        "CA injection) is a credential that still works, is still readable and is never "
        "rotated. From files, judged only where the Secret's consumers would be: workloads "
        "of its namespace in its folder or below. Not reported when RBAC lets some "
        "ServiceAccount read Secrets there: a controller may read it by a compiled-in name."
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
    severity=Severity.HIGH,
    title="Credential committed in a Secret manifest",
    rationale=(
        "A Secret manifest in a repository is base64, not encryption: everybody who can read "
        "the repository, its forks, CI logs and every clone ever made can read the value, and "
        "removing it later does not remove it from history. Bootstrap tokens and "
        "ServiceAccount token Secrets are credentials too. Judged on files only, never on a "
        "live cluster."
    ),
    remediation=(
        "Rotate the value, then keep the manifest sealed: `kustos seal -f FILE > sealed.yaml` "
        "writes a SealedSecret in SOPS's format (the cluster and the holders of your age keys "
        "open it; `sops` edits it; docs/seal.md), or take the value from a secrets manager "
        "with a ManagedSecret (vault / awsSecretsManager sources)."
    ),
    references=("Checkov CKV_SECRET_6", "gitleaks kubernetes-secret-yaml",
                "https://getsops.io/docs/"),
)  # fmt: skip

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
#: KST040: workloads reading one Secret before immutability is worth asking for.
IMMUTABLE_MIN_READERS: Final = 3
#: Secret types whose named keys hold a credential, whatever the value looks like.
_CREDENTIAL_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "kubernetes.io/service-account-token": frozenset({"token"}),
    "bootstrap.kubernetes.io/token": frozenset({"token-secret"}),
    "kubernetes.io/basic-auth": frozenset({"password"}),
    "kubernetes.io/ssh-auth": frozenset({"ssh-privatekey"}),
    "kubernetes.io/tls": frozenset({"tls.key"}),
    "kubernetes.io/dockerconfigjson": frozenset({".dockerconfigjson"}),
    "kubernetes.io/dockercfg": frozenset({".dockercfg"}),
}
#: What rewrites a Secret on its own: its value is rotated, immutability would fight it.
_ROTATORS: Final = frozenset({Via.CERT_MANAGER, Via.EXTERNAL_SECRET, Via.SA_TOKEN})


def _keys(secret: KubeObject) -> frozenset[str]:
    keys: set[str] = set()
    for part in ("data", "stringData"):
        values = secret.body.get(part)
        if is_map(values):
            keys.update(map(str, values))
    return frozenset(keys)


def _type(secret: KubeObject) -> str:
    value = secret.body.get("type")
    return value if isinstance(value, str) and value else "Opaque"


def check_secret_objects(scan: ScanInput) -> Iterator[Finding]:
    """KST040, KST041, KST045: type, immutability and namespace of each Secret."""
    owned: dict[int, tuple[ObjectRef, bool]] = {}
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
            readers = _static_readers(scan, secret, owned)
            if len(readers) >= IMMUTABLE_MIN_READERS:
                yield finding(
                    NOT_IMMUTABLE,
                    secret,
                    f"Secret {secret.name} is read by {len(readers)} workloads "
                    f"({', '.join(readers[:3])}{', ...' if len(readers) > 3 else ''}), "
                    "no tool rotates it, and it is not immutable",
                    field="immutable",
                )
        # The namespace first: the explicit one is read only for a Secret in "default".
        explicit = secret.namespace == "default" and not managed
        if explicit and (scan.live or secret.metadata.get("namespace") == "default"):
            yield finding(
                DEFAULT_NAMESPACE,
                secret,
                f"Secret {secret.name} is in the default namespace",
                field="metadata.namespace",
            )


def _static_readers(
    scan: ScanInput, secret: KubeObject, owned: dict[int, tuple[ObjectRef, bool]]
) -> list[str]:
    """Top-level workloads reading a Secret that nothing rotates (``[]`` if something does).

    *owned* remembers the index's answer per consumer for the whole check: a workload
    reads several Secrets, and each asked it again. It is keyed by the consumer's
    identity (the references of one object share its one ``ref``; an equal one kept
    apart is only asked once more), so no dataclass hash is computed per reference; the
    entry keeps its ``ObjectRef`` alive, so an identity is never reused within the check.
    """
    if ANNOTATION_ROTATED_AT in secret.annotations:
        return []
    readers: dict[str, None] = {}
    for ref in scan.index.consumers_of(secret.namespace, secret.name):
        if ref.via in _ROTATORS:
            return []
        consumer = ref.consumer
        if consumer.kind in WORKLOAD_KINDS:
            known = owned.get(id(consumer))
            if known is None:
                known = owned[id(consumer)] = (consumer, scan.index.is_owned(consumer))
            if not known[1]:
                readers[f"{consumer.kind} {consumer.name}"] = None
    return list(readers)


def _other_consumers(scan: ScanInput) -> set[tuple[str, str]]:
    """Secrets named ``spec.secretName`` by objects the reference parser does not know."""
    used: set[tuple[str, str]] = set()
    for obj in scan.index:
        if obj.kind == "Secret":
            continue
        # cert-manager Certificates and most operators name their output Secret secretName.
        spec = obj.body.get("spec")
        name = spec.get("secretName") if is_map(spec) else None
        if isinstance(name, str):
            used.add((obj.namespace, name))
    return used


def _consumers_visible(secret: KubeObject, workloads: Mapping[str, list[KubeObject]]) -> bool:
    """True when the input shows the workloads that would use *secret*.

    Live: its namespace has workloads. Files: a workload of its namespace sits in the
    Secret's folder or below it (:func:`~kustos.scan.checks.nearby.within`); a Secret kept
    in a folder of its own (an example, a docs snippet) is not judged against workloads
    elsewhere that merely share its namespace.
    """
    return any(within(secret, w) for w in workloads.get(secret.namespace, ()))


#: Leaves that hold no string: skipped without a call (most values of a manifest).
_NOT_TEXT: Final = frozenset({int, float, bool, type(None)})


def _strings(value: Any, names: AbstractSet[str], out: set[str]) -> None:
    """Every string inside a manifest body (keys and values) that is one of *names*.

    A plain ``dict``, ``list`` or ``str`` answers by its exact type; only other types ask
    ``isinstance`` (the ``Mapping`` ABC for read-only bodies). The values of a mapping or
    list that are strings or numbers are judged in the loop, not by a call each.
    """
    kind = type(value)
    if kind is str or (
        kind is not dict and kind is not list and kind not in _NOT_TEXT and isinstance(value, str)
    ):
        if value in names:
            out.add(value)
        return
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        for k, v in value.items():
            if (type(k) is str or isinstance(k, str)) and k in names:
                out.add(k)
            if type(v) is str:
                if v in names:
                    out.add(v)
            elif type(v) not in _NOT_TEXT:
                _strings(v, names, out)
    elif kind is list or isinstance(value, list):
        for item in value:
            if type(item) is str:
                if item in names:
                    out.add(item)
            elif type(item) not in _NOT_TEXT:
                _strings(item, names, out)


def _named_elsewhere(
    scan: ScanInput, namespaces: set[str], names: AbstractSet[str]
) -> tuple[set[tuple[str, str]], set[str]]:
    """(namespace, name) for every one of *names* in non-Secret objects of *namespaces*, and
    those in cluster-scoped ones (which count in every namespace).

    Operators and custom resources name the Secrets they read in fields Kustos cannot know
    (an ExternalSecret's target, an Alertmanager's configSecret, a controller's flags). A
    Secret whose name appears anywhere in its namespace's other objects, or in a role's
    resourceNames, is taken as used. Only the candidates' names are kept: every string of
    every object made sets of millions of entries at 100k objects.
    """
    found: set[tuple[str, str]] = set()
    everywhere: set[str] = set()
    for obj in scan.index:
        if obj.kind == "Secret":
            continue
        if obj.namespace in namespaces or obj.kind in ("ClusterRole", "ClusterRoleBinding"):
            strings: set[str] = set()
            _strings(obj.body, names, strings)
            if obj.namespace:
                found.update((obj.namespace, s) for s in strings)
            else:
                everywhere |= strings
    return found, everywhere


def check_usage(scan: ScanInput) -> Iterator[Finding]:
    """KST042-KST044: unused Secrets and how pull secrets are shared."""
    index = scan.index
    others = _other_consumers(scan)
    workloads: dict[str, list[KubeObject]] = defaultdict(list)
    for workload in index.workloads():
        workloads[workload.namespace].append(workload)
    candidates = [
        secret
        for secret in index.of_kind("Secret")
        # The cheapest and most selective test first: most Secrets have a consumer.
        if not index.consumers_of(secret.namespace, secret.name)
        and _type(secret) not in MANAGED_TYPES
        and not secret.owner_refs
        and not secret.annotations.get("kubernetes.io/service-account.name")
        and (secret.namespace, secret.name) not in others
        # Where we do not see the workloads that would use it, we cannot call it unused.
        # (Tested last: it compares the Secret with every workload of its namespace.)
        and _consumers_visible(secret, workloads)
    ]
    named, named_everywhere = (
        _named_elsewhere(scan, {s.namespace for s in candidates}, {s.name for s in candidates})
        if candidates
        else (set(), set())
    )
    readers = _api_readers(scan) if candidates else {}
    for secret in candidates:
        if (
            (secret.namespace, secret.name) in named
            or secret.name in named_everywhere
            or readers.get(secret.namespace, 0)
        ):
            # A controller may read it through the API by a name compiled into its binary
            # (argocd-secret) or set at run time (Longhorn's backup target): "unused" would
            # be a guess nobody can act on.
            continue
        yield finding(UNUSED, secret, f"nothing in the input uses Secret {secret.name}")
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
    # A role's answer depends on its rules alone: many bindings share a few rule lists.
    allows: dict[tuple[PolicyRule, ...], bool] = {}
    for binding in scan.policy.bindings:
        if binding.role is None or binding.bootstrap:
            continue
        allowed = allows.get(binding.role.rules)
        if allowed is None:
            allowed = allows[binding.role.rules] = any(
                rule_allows(replace(r, resource_names=frozenset()), request)
                for r in binding.role.rules
            )
        if not allowed:
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
    """KST050: Secret manifests (files, not a live cluster) holding credentials in clear.

    A value counts when the credential detector recognises it, when its key is named as
    a credential (``password``, ``api-key``...), or when the Secret's type makes every
    non-public key a credential (ServiceAccount and bootstrap tokens, basic-auth, ssh-auth,
    registry configs); binary content is key material. Empty values, SOPS-encrypted
    values, templates and placeholders are not.
    """
    if scan.live:
        return
    for secret in scan.index.of_kind("Secret"):
        if secret.source is None or secret.api_version != "v1":
            continue
        stype = _type(secret)
        hits: list[tuple[str, str, str]] = []  # (part, key, kind)
        for part in ("data", "stringData"):
            values = secret.body.get(part)
            if not is_map(values):
                continue
            for key, value in values.items():
                if isinstance(value, Sensitive):
                    raw = value.reveal()
                    if raw:
                        name = str(key)
                        kind = _committed_kind(stype, name, raw)
                        if kind is not None:
                            hits.append((part, name, kind))
        if hits:
            keys = ", ".join(sorted(key for _, key, _ in hits))
            yield finding(
                IN_GIT,
                secret,
                f"Secret {secret.name} holds {len(hits)} credential value(s) in clear in this "
                f"file (keys: {keys})",
                field=f"{hits[0][0]}.{hits[0][1]}",
                details={"kinds": ", ".join(sorted({kind for _, _, kind in hits})), "type": stype},
            )


def _committed_kind(stype: str, key: str, raw: bytes) -> str | None:
    """What kind of credential one committed value (*raw*, not empty) is, or ``None``."""
    if raw.startswith(_SOPS_VALUE):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "binary key material"
    hit = detect(key, text)
    if hit is not None:
        return hit.kind
    kind = _named_kind(stype, key)
    if kind is None or not text.strip() or _not_a_value(text) or _stand_in(key, text):
        return None
    return kind


#: :func:`_named_kind`'s answers by Secret type and key (a large input repeats a few key
#: names over tens of thousands of values).
_NAMED_KINDS: dict[tuple[str, str], str | None] = {}
_NAMED_KINDS_AT_MOST: Final = 16384


def _named_kind(stype: str, key: str) -> str | None:
    """The kind a key's name (and its Secret's type) gives any literal value, or ``None``."""
    pair = (stype, key)
    if pair in _NAMED_KINDS:
        return _NAMED_KINDS[pair]
    if key in _CREDENTIAL_KEYS.get(stype, ()):
        kind: str | None = f"{stype} {key}"
    elif is_credential_name(key) and not is_setting_name(key):
        kind = "credential-named key"
    else:
        kind = None
    if len(_NAMED_KINDS) >= _NAMED_KINDS_AT_MOST:
        _NAMED_KINDS.clear()
    _NAMED_KINDS[pair] = kind
    return kind


_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]")


def _stand_in(key: str, text: str) -> bool:
    """A placeholder, also once base64-decoded, or a value that spells its own key's name
    (``ClientSecret: my-service-principal-client-secret``): a description, not a secret."""
    decoded = _b64_text(text)
    if is_placeholder(text) or (decoded is not None and is_placeholder(decoded)):
        return True
    name = _NOT_ALNUM.sub("", key.lower())
    return len(name) >= 4 and name in _NOT_ALNUM.sub("", text.lower())


def _b64_text(text: str) -> str | None:
    compact = "".join(text.split())
    if len(compact) < 16 or len(compact) % 4:
        return None
    try:
        return base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _not_a_value(text: str) -> bool:
    """Templates and substitutions: the real value comes from elsewhere."""
    return any(marker in text for marker in ("{{", "${", "$(", "<%"))


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
    Check(NOT_IMMUTABLE, check_secret_objects, reads_tables=True),
    Check(WRONG_TYPE, check_secret_objects, reads_tables=True),
    Check(UNUSED, check_usage, reads_tables=True),
    Check(DEFAULT_SA_PULL, check_usage, reads_tables=True),
    Check(SHARED_PULL, check_usage, reads_tables=True),
    Check(DEFAULT_NAMESPACE, check_secret_objects, reads_tables=True),
    Check(TOO_OLD, check_age),
    # Measured at 100k objects: about 40 % of the checks' time with its findings' lines.
    Check(IN_GIT, check_committed, weight=7),
)
