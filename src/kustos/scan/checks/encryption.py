"""Encryption at rest: checks over the EncryptionConfiguration given with ``--encryption-config``.

Purely data. The file is read the way kube-apiserver reads it (``apiserver.config.k8s.io/v1``,
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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.findings import Finding, Rule, Severity

FAMILY: Final = "encryption"

#: ``(apiVersion, kind)`` pairs kube-apiserver decodes. The second is the pre-1.13 spelling,
#: still registered "due to a docs bug" (``apis/apiserver/v1/register.go``). No
#: ``apiserver.k8s.io`` group was ever used for this file.
ACCEPTED_TYPES: Final = frozenset(
    {("apiserver.config.k8s.io/v1", "EncryptionConfiguration"), ("v1", "EncryptionConfig")}
)

#: Provider type → the fields its configuration may hold.
_PROVIDER_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "identity": frozenset(),
    "aescbc": frozenset({"keys"}),
    "aesgcm": frozenset({"keys"}),
    "secretbox": frozenset({"keys"}),
    "kms": frozenset({"apiVersion", "name", "endpoint", "cachesize", "timeout"}),
}
_ENCRYPTING: Final = frozenset({"aescbc", "aesgcm", "secretbox", "kms"})
_KEY_FIELDS: Final = frozenset({"name", "secret"})
_ENTRY_FIELDS: Final = frozenset({"resources", "providers"})
#: Resources that have no REST API and cannot be named here.
_NOT_REST: Final = frozenset(
    {"apiserveripinfo", "serviceipallocations", "servicenodeportallocations"}
)

_ENCRYPT_DATA: Final = "https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/"
_KMS_PROVIDER: Final = "https://kubernetes.io/docs/tasks/administer-cluster/kms-provider/"
_CONFIG_API: Final = "https://kubernetes.io/docs/reference/config-api/apiserver-encryption.v1/"
_CIS_REFS: Final = (
    "CIS 1.2.28",
    "kube-bench 1.2.28 (cis-1.12)",
    "Kubescape C-0142",
)


# --------------------------------------------------------------------------- reading the file


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider of an entry: its position, its type and, for ``kms``, its API version."""

    index: int
    type: str
    #: ``"v1"`` or ``"v2"`` for ``kms``; ``""`` otherwise.
    kms_version: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of ``resources``: the resources it names and its providers, in order."""

    index: int
    resources: tuple[str, ...]
    providers: tuple[Provider, ...]

    @property
    def field(self) -> str:
        """The field path of this entry."""
        return f"resources[{self.index}]"

    def provider_field(self, provider: Provider) -> str:
        """The field path of one of this entry's providers."""
        return f"{self.field}.providers[{provider.index}]"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the API server would refuse the file: where, and a message free of values."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class EncryptionConfig:
    """What the file says, or why it cannot be used (then ``entries`` is empty)."""

    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...]


def read_config(body: Any) -> EncryptionConfig:
    """Read an EncryptionConfiguration body into entries, or the problems that make it unusable."""
    if not isinstance(body, Mapping):
        return _unusable("", "the file is not a YAML mapping, so not an EncryptionConfiguration")
    if (body.get("apiVersion"), body.get("kind")) not in ACCEPTED_TYPES:
        return _unusable(
            "kind",
            "not an EncryptionConfiguration (expected apiVersion apiserver.config.k8s.io/v1 "
            "and kind EncryptionConfiguration)",
        )
    raw_entries = body.get("resources")
    if not isinstance(raw_entries, list) or not raw_entries:
        return _unusable("resources", "resources is missing or empty: nothing is configured")
    problems: list[Problem] = []
    entries: list[Entry] = []
    for i, raw in enumerate(raw_entries):
        entry = _read_entry(i, raw, problems)
        if entry is not None:
            entries.append(entry)
    if problems:
        return EncryptionConfig((), tuple(problems))
    return EncryptionConfig(tuple(entries), ())


def _unusable(field: str, message: str) -> EncryptionConfig:
    return EncryptionConfig((), (Problem(field, message),))


def _read_entry(index: int, raw: Any, problems: list[Problem]) -> Entry | None:
    where = f"resources[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, f"{where} is not a mapping"))
        return None
    if set(raw) - _ENTRY_FIELDS:
        problems.append(Problem(where, f"{where} has an unknown field (resources, providers)"))
    names = raw.get("resources")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append(
            Problem(f"{where}.resources", f"{where}.resources must be a non-empty list of names")
        )
        names = []
    for j, name in enumerate(names):
        message = _resource_name_problem(name)
        if message:
            problems.append(Problem(f"{where}.resources[{j}]", f"{where}.resources[{j}] {message}"))
    if _overlapping(names):
        problems.append(
            Problem(
                f"{where}.resources",
                f"{where}.resources names a resource twice or overlaps a wildcard",
            )
        )
    raw_providers = raw.get("providers")
    if not isinstance(raw_providers, list) or not raw_providers:
        problems.append(Problem(f"{where}.providers", f"{where}.providers is missing or empty"))
        raw_providers = []
    providers = []
    for j, raw_provider in enumerate(raw_providers):
        provider = _read_provider(f"{where}.providers[{j}]", j, raw_provider, problems)
        if provider is not None:
            providers.append(provider)
    return Entry(index, tuple(names), tuple(providers))


def _read_provider(where: str, index: int, raw: Any, problems: list[Problem]) -> Provider | None:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        problems.append(
            Problem(where, f"{where} must name exactly one provider type ({_provider_types()})")
        )
        return None
    kind, config = next(iter(raw.items()))
    if kind not in _PROVIDER_FIELDS:
        problems.append(Problem(where, f"{where} is not a known provider ({_provider_types()})"))
        return None
    if kind == "identity":
        if config not in (None, {}):
            problems.append(Problem(where, f"{where}.identity takes no fields"))
        return Provider(index, kind)
    if not isinstance(config, Mapping):
        problems.append(Problem(f"{where}.{kind}", f"{where}.{kind} must be a mapping"))
        return None
    unknown = set(config) - _PROVIDER_FIELDS[kind]
    if unknown:
        problems.append(
            Problem(f"{where}.{kind}", f"{where}.{kind} has {len(unknown)} unknown field(s)")
        )
    if kind == "kms":
        return _read_kms(where, index, config, problems)
    keys = config.get("keys")
    if not isinstance(keys, list) or not keys:
        problems.append(Problem(f"{where}.{kind}.keys", f"{where}.{kind}.keys is missing or empty"))
    else:
        for k, key in enumerate(keys):
            if (
                not isinstance(key, Mapping)
                or set(key) - _KEY_FIELDS
                or not key.get("name")
                or not key.get("secret")
            ):
                problems.append(
                    Problem(
                        f"{where}.{kind}.keys[{k}]",
                        f"{where}.{kind}.keys[{k}] must hold a name and a secret only",
                    )
                )
    return Provider(index, kind)


def _read_kms(
    where: str, index: int, config: Mapping[str, Any], problems: list[Problem]
) -> Provider | None:
    version = config.get("apiVersion", "v1")
    if version not in ("v1", "v2"):
        problems.append(
            Problem(f"{where}.kms.apiVersion", f"{where}.kms.apiVersion must be v1 or v2")
        )
        return None
    if not config.get("name"):
        problems.append(Problem(f"{where}.kms.name", f"{where}.kms.name is missing"))
    endpoint = config.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith("unix://"):
        problems.append(
            Problem(f"{where}.kms.endpoint", f"{where}.kms.endpoint must be a unix:// socket")
        )
    if version == "v2" and "cachesize" in config:
        problems.append(
            Problem(f"{where}.kms.cachesize", f"{where}.kms.cachesize is not supported in v2")
        )
    return Provider(index, "kms", str(version))


def _provider_types() -> str:
    return ", ".join(_PROVIDER_FIELDS)


def _resource_name_problem(name: str) -> str:
    """What the API server says is wrong with one resource name, or ``""``."""
    resource, _, group = name.partition(".")
    if name != name.lower():
        return "has capital letters"
    if name == "*":
        return "is '*': use '*.' for every core resource or '*.*' for every resource"
    if name in _NOT_REST:
        return "has no REST API and cannot be encrypted"
    if group == "*" and resource != "*":
        return "names one resource across every group, which is not supported"
    if group in ("events.k8s.io", "extensions"):
        return "uses a group that is not stored under that name"
    return ""


def _overlapping(names: Sequence[str]) -> bool:
    """Mirror ``validateResourceOverlap``: duplicates, or a wildcard masking another name."""
    parsed = [_group_resource(n) for n in names]
    if len(set(parsed)) != len(parsed):
        return True
    if len(parsed) > 1 and ("*", "*") in parsed:
        return True
    return any(a != b and a[1] == b[1] and "*" in (a[0], b[0]) for a in parsed for b in parsed)


def _group_resource(name: str) -> tuple[str, str]:
    """``"deployments.apps"`` → ``("deployments", "apps")``; ``"secrets"`` → ``("secrets", "")``."""
    resource, _, group = name.partition(".")
    return resource, group


def names_secrets(name: str) -> bool:
    """Whether one resource name of an entry applies to core ``secrets``."""
    resource, group = _group_resource(name)
    return name != "*" and resource in ("secrets", "*") and group in ("", "*")


def secrets_entry(entries: Sequence[Entry]) -> Entry | None:
    """The entry that decides how Secrets are stored: the first one that names them."""
    for entry in entries:
        if any(names_secrets(n) for n in entry.resources):
            return entry
    return None


def _config_of(scan: ScanInput) -> EncryptionConfig | None:
    doc = scan.encryption_config
    if doc is None:
        return None
    return read_config(doc.body)


def _usable_secrets_entry(scan: ScanInput) -> Entry | None:
    config = _config_of(scan)
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
    config = _config_of(scan)
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
    return [p for p in rest if p.type in _ENCRYPTING]


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
    config = _config_of(scan)
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
