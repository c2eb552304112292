"""The EncryptionConfiguration given with ``--encryption-config``, read into types once.

Purely data. The file is read the way kube-apiserver reads it (``apiserver.config.k8s.io/v1``,
``staging/src/k8s.io/apiserver/pkg/apis/apiserver/validation/validation_encryption.go``):
entries in order, each naming resources and listing providers; the API server decodes this
file strictly, so a wrong kind, no ``resources``, an unknown provider or an unknown field
under a provider makes it unusable, and :func:`read_config` returns the problems instead of
entries. Problems carry entry and provider indexes and provider types only; never a key
name, a key, a plugin name or an endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: The rule family (``Rule.family``) that checks this file: its findings are located here.
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
#: Provider types that encrypt what they write.
ENCRYPTING: Final = frozenset({"aescbc", "aesgcm", "secretbox", "kms"})
_KEY_FIELDS: Final = frozenset({"name", "secret"})
_ENTRY_FIELDS: Final = frozenset({"resources", "providers"})
#: Resources that have no REST API and cannot be named here.
_NOT_REST: Final = frozenset(
    {"apiserveripinfo", "serviceipallocations", "servicenodeportallocations"}
)


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
