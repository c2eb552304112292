"""Encryption at rest: checks over the EncryptionConfiguration given with ``--encryption-config``.

Purely data. The file arrives parsed (``ScanInput.encryption``, read by
:mod:`kustos.scan.configs.encryption`) and means what it means to kube-apiserver
(``apiserver.config.k8s.io/v1``,
``staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation_encryption.go``):

- ``resources`` entries are tried in order and the first entry naming a resource decides how
  that resource is stored; ``secrets`` is named by ``secrets``, ``*.`` (every core resource)
  or ``*.*`` (every resource).
- Only the first provider of an entry encrypts writes; the others only decrypt what is already
  stored. With no entry for Secrets, the API server writes them as they are (``identity``).
- A ``kms`` provider without ``apiVersion: v2`` is KMS v1 (the API server's default).

A document the API server would refuse (wrong kind, no ``resources``, an unknown provider, an
unknown field under a provider: the API server decodes this file strictly) is reported once
per problem as KST095 and nothing else is evaluated: order and strength of providers mean
nothing in a file that does not load.

For Secrets stored in plain text exactly one of KST090 (no entry), KST091 (``identity`` first
and nothing to encrypt with) or KST094 (``identity`` first although an encrypting provider is
listed after it, which is an ordering mistake) is reported.

Messages carry entry and provider indexes and provider types only; never a key name, a key,
a plugin name or an endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.configs.encryption import ENCRYPTING, FAMILY, Entry, Provider, secrets_entry
from kustos.scan.findings import Finding, Rule, Severity

_ENCRYPT_DATA: Final = "https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/"
_KMS_PROVIDER: Final = "https://kubernetes.io/docs/tasks/administer-cluster/kms-provider/"
_CONFIG_API: Final = "https://kubernetes.io/docs/reference/config-api/apiserver-encryption.v1/"
_CIS_REFS: Final = (
    "CIS 1.2.28",
    "kube-bench 1.2.28 (cis-1.12)",
    "Kubescape C-0142",
)


def _usable_secrets_entry(scan: ScanInput) -> Entry | None:
    config = scan.encryption
    if config is None or config.problems:
        return None
    entry = secrets_entry(config.entries)
    if entry is None or not entry.providers:
        return None
    return entry


# --------------------------------------------------------------------------- rules

NOT_COVERED: Final = Rule(
    id="KST090",
    family=FAMILY,
    severity=Severity.HIGH,
    title="Secrets are not encrypted at rest: no entry covers them",
    rationale=(
        "No entry of the EncryptionConfiguration names secrets, '*.' or '*.*', so the API "
        "server stores Secrets with the identity provider: in plain text in etcd, in every "
        "etcd backup and snapshot. Anyone who reads etcd or a backup reads every Secret. "
        "High: it is the whole of encryption at rest missing for the data that needs it most."
    ),
    remediation=(
        "Add an entry for secrets whose first provider is kms with apiVersion v2 (or "
        "secretbox / aesgcm with key rotation), restart the API servers, then rewrite every "
        "Secret (kubectl get secrets -A -o json | kubectl replace -f -)."
    ),
    references=(
        *_CIS_REFS,
        "CIS 1.2.27",
        "Kubescape C-0066",
        "Kubescape C-0141",
        "Checkov CKV_K8S_104",
        _ENCRYPT_DATA,
        _CONFIG_API,
    ),
)

IDENTITY_FIRST: Final = Rule(
    id="KST091",
    family=FAMILY,
    severity=Severity.HIGH,
    title="Secrets are written unencrypted: identity is the first provider",
    rationale=(
        "Only the first provider of an entry encrypts writes. The entry that covers secrets "
        "starts with identity and lists no encrypting provider, so every Secret written is "
        "stored in plain text in etcd. The docs say of this layout that it 'does not provide "
        "data confidentiality'. High for the same reason as a missing entry. kube-bench and "
        "Kubescape read only provider names and accept identity-first files whenever an "
        "encrypting provider appears anywhere. When identity comes first and an encrypting "
        "provider follows, KST094 is reported instead."
    ),
    remediation=(
        "Put an encrypting provider (kms apiVersion v2, or secretbox) first and keep identity "
        "last only while old plain-text Secrets remain; then rewrite every Secret."
    ),
    references=(*_CIS_REFS, "Kubescape C-0066", _ENCRYPT_DATA, _CONFIG_API),
)

AESCBC_FIRST: Final = Rule(
    id="KST092",
    family=FAMILY,
    severity=Severity.MEDIUM,
    title="Secrets are encrypted with aescbc, which the docs rate weak",
    rationale=(
        "aescbc is the write provider for secrets. The Kubernetes docs rate AES-CBC 'Weak' "
        "and 'not recommended due to CBC's vulnerability to padding oracle attacks', and its "
        "key sits in this file on every control-plane host. Medium: Secrets are encrypted, but "
        "not as well as the docs recommend. kube-bench (CIS 1.2.28), Kubescape C-0142 and "
        "Checkov still accept aescbc."
    ),
    remediation=(
        "Add kms with apiVersion v2 (or secretbox) as the first provider, keep aescbc after it "
        "to read existing data, rewrite every Secret, then remove aescbc."
    ),
    references=(*_CIS_REFS, _ENCRYPT_DATA),
)

KMS_V1: Final = Rule(
    id="KST093",
    family=FAMILY,
    severity=Severity.MEDIUM,
    title="Secrets use a deprecated KMS v1 provider",
    rationale=(
        "A kms provider without apiVersion: v2 is KMS v1, deprecated since Kubernetes 1.28 "
        "and disabled by default since 1.29 (the API server then refuses to start unless the "
        "KMSv1 feature gate is set). KMS v1 calls the plugin for every write and every cache "
        "miss. Medium: Secrets stay encrypted, but on a path that is going away and that "
        "blocks the API server upgrade. Reported for the write provider and for decrypt-only "
        "providers alike, since both need the plugin and the gate."
    ),
    remediation=(
        "Run a KMS v2 plugin, add it first with apiVersion: v2, keep the v1 provider after it "
        "until every Secret has been rewritten, then remove it."
    ),
    references=(*_CIS_REFS, _KMS_PROVIDER, _ENCRYPT_DATA),
)

ENCRYPTION_NEVER_USED: Final = Rule(
    id="KST094",
    family=FAMILY,
    severity=Severity.HIGH,
    title="An encrypting provider is never used for writes: identity comes before it",
    rationale=(
        "The entry that covers secrets lists an encrypting provider, so encryption was "
        "meant, but identity comes first. Only the first provider encrypts writes, so the "
        "encrypting providers after identity only decrypt and every Secret written is stored "
        "in plain text. High: the outcome is the same as no encryption, and tools that only "
        "look for an encrypting provider (Kubescape C-0142) report this file as compliant. "
        "The same layout is also the documented way to decrypt a cluster back to plain text; "
        "then this finding is the intended result. It replaces KST091 for the entry, so a "
        "plain-text Secret store is reported once."
    ),
    remediation=(
        "Move the encrypting provider to the top of providers (identity last), restart the "
        "API servers and rewrite every Secret."
    ),
    references=(*_CIS_REFS, "Kubescape C-0066", _ENCRYPT_DATA, _CONFIG_API),
)

MALFORMED: Final = Rule(
    id="KST095",
    family=FAMILY,
    severity=Severity.HIGH,
    title="The encryption configuration is not a usable EncryptionConfiguration",
    rationale=(
        "The file given as the encryption configuration is not one the API server would load: "
        "wrong kind or apiVersion, no resources, an entry without providers, an unknown "
        "provider or field. kube-apiserver refuses to start with it, and nothing can be "
        "said about how Secrets are stored. High: either the control plane will not come up "
        "or the scan was pointed at the wrong file."
    ),
    remediation=(
        "Fix the field named in the finding (see the EncryptionConfiguration reference) or "
        "pass the file that kube-apiserver reads with --encryption-provider-config."
    ),
    references=(*_CIS_REFS, "CIS 1.2.27", _CONFIG_API, _ENCRYPT_DATA),
)


# --------------------------------------------------------------------------- checks


def _not_covered(scan: ScanInput) -> Iterator[Finding]:
    config = scan.encryption
    if config is None or config.problems or secrets_entry(config.entries) is not None:
        return
    yield finding(
        NOT_COVERED,
        None,
        f"no entry of resources names secrets, '*.' or '*.*' ({len(config.entries)} entries): "
        "Secrets are written to etcd unencrypted",
        field="resources",
    )


def _encrypting_after_identity(entry: Entry) -> list[Provider]:
    first, *rest = entry.providers
    if first.type != "identity":
        return []
    return [p for p in rest if p.type in ENCRYPTING]


def _identity_first(scan: ScanInput) -> Iterator[Finding]:
    entry = _usable_secrets_entry(scan)
    if entry is None or entry.providers[0].type != "identity":
        return
    if _encrypting_after_identity(entry):
        return  # KST094 names the misplaced provider instead.
    yield finding(
        IDENTITY_FIRST,
        None,
        f"{entry.field} covers secrets and its first provider is identity, with no "
        "encrypting provider after it: Secrets are written to etcd unencrypted",
        field=entry.provider_field(entry.providers[0]),
    )


def _encryption_never_used(scan: ScanInput) -> Iterator[Finding]:
    entry = _usable_secrets_entry(scan)
    if entry is None:
        return
    unused = _encrypting_after_identity(entry)
    if not unused:
        return
    first = unused[0]
    others = f" and {len(unused) - 1} more encrypting provider(s)" if len(unused) > 1 else ""
    yield finding(
        ENCRYPTION_NEVER_USED,
        None,
        f"{entry.provider_field(first)} ({first.type}){others} never encrypt secrets: "
        f"identity at {entry.provider_field(entry.providers[0])} is the write provider, so "
        "Secrets are written to etcd unencrypted",
        field=entry.provider_field(first),
    )


def _aescbc_first(scan: ScanInput) -> Iterator[Finding]:
    entry = _usable_secrets_entry(scan)
    if entry is None or entry.providers[0].type != "aescbc":
        return
    yield finding(
        AESCBC_FIRST,
        None,
        f"{entry.field} covers secrets and writes them with aescbc (providers[0]), "
        "rated weak (padding oracle)",
        field=entry.provider_field(entry.providers[0]),
    )


def _kms_v1(scan: ScanInput) -> Iterator[Finding]:
    entry = _usable_secrets_entry(scan)
    if entry is None:
        return
    for provider in entry.providers:
        if provider.type != "kms" or provider.kms_version != "v1":
            continue
        role = "the write provider" if provider.index == 0 else "a decrypt-only provider"
        yield finding(
            KMS_V1,
            None,
            f"{entry.provider_field(provider)} is a KMS v1 provider ({role}) for secrets: "
            "KMS v1 is deprecated and disabled by default since Kubernetes 1.29",
            field=entry.provider_field(provider),
        )


def _malformed(scan: ScanInput) -> Iterator[Finding]:
    config = scan.encryption
    if config is None:
        return
    for problem in config.problems:
        yield finding(MALFORMED, None, problem.message, field=problem.field)


CHECKS: Final[tuple[Check, ...]] = (
    Check(NOT_COVERED, _not_covered),
    Check(IDENTITY_FIRST, _identity_first),
    Check(AESCBC_FIRST, _aescbc_first),
    Check(KMS_V1, _kms_v1),
    Check(ENCRYPTION_NEVER_USED, _encryption_never_used),
    Check(MALFORMED, _malformed),
)
