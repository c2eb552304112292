"""Which objects a backup takes, and whether a ManagedSecret's family is consistent. Pure.

A backup takes the Secrets of the namespaces asked for (all of them by default) that match
the label selector, the ManagedSecrets that match it, and, with each ManagedSecret, every
Secret labelled as its own (the live Secret and its versions ``<secretName>-v<N>``,
:mod:`kustos.rotation.versions`), whatever their labels. Service-account token Secrets
are left out and counted: the cluster mints their value and deletes them when their
ServiceAccount is gone, so a restored copy would be a stale credential.

A ManagedSecret is consistent when no rotation is under way and its live Secret holds the
version its status calls current, and that version's Secret exists: a backup taken in the
middle of a rotation would restore a live Secret that disagrees with its history.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from kustos.backup.format import Entry, clean
from kustos.conventions import ANNOTATION_VERSION, LABEL_MANAGED_SECRET
from kustos.errors import UsageError
from kustos.kube.objects import KubeObject
from kustos.rotation.versions import version_secret_name

#: Secrets whose value the cluster makes and owns; never backed up.
EXCLUDED_TYPES: Final = frozenset({"kubernetes.io/service-account-token"})

_KEY: Final = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE: Final = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET: Final = re.compile(rf"^\s*(!?)\s*({_KEY})\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ: Final = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
#: A namespace name (DNS-1123 label) and an object name (DNS-1123 subdomain).
_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE: Final = re.compile(rf"^{_LABEL}$")
_NAME: Final = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def namespace_name(text: str, *, flag: str) -> str:
    """*text* if it can name a namespace; ``UsageError`` naming *flag* before any request."""
    if len(text) > 63 or not _NAMESPACE.match(text):
        raise UsageError(
            f"{flag}: {text[:70]!r} is not a namespace name (lowercase letters, digits and "
            "'-', at most 63)"
        )
    return text


def object_name(text: str, *, flag: str) -> str:
    """*text* if it can name a Secret or ManagedSecret; ``UsageError`` naming *flag*."""
    if len(text) > 253 or not _NAME.match(text):
        raise UsageError(
            f"{flag}: {text[:70]!r} is not an object name (lowercase letters, digits, '-' "
            "and '.', at most 253)"
        )
    return text


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector: ``key op values``."""

    key: str
    op: str  # "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Tell whether *labels* satisfy this term (as the API server reads selectors)."""
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector as ``kubectl -l`` takes it: ``a=b,c!=d,e,!f,g in (h,i)``."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        """Parse *text*; ``UsageError`` naming the term that is not a selector."""
        if not text or not text.strip():
            return cls()
        terms = re.split(r",(?![^()]*\))", text)
        found = []
        for term in terms:
            eq = _EQ.match(term)
            if eq is not None:
                op = "notin" if eq[3] == "!=" else "in"
                found.append(Requirement(eq[1], op, frozenset({eq[4]})))
                continue
            match = _SET.match(term)
            if match is None or (match[1] and match[4]):
                raise UsageError(f"--selector: {term.strip()[:60]!r} is not a label selector term")
            if match[4]:
                values = frozenset(v.strip() for v in match[5].split(",") if v.strip())
                found.append(Requirement(match[2], match[4], values))
            else:
                found.append(Requirement(match[2], "!exists" if match[1] else "exists"))
        return cls(tuple(found), text.strip())

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Tell whether *labels* satisfy every term (an empty selector matches everything)."""
        return all(r.matches(labels) for r in self.requirements)


@dataclass(frozen=True, slots=True)
class Selection:
    """What a backup takes: cleaned entries and the Secrets left out, by type."""

    entries: tuple[Entry, ...]
    excluded: Mapping[str, int]


def select(
    objects: Iterable[KubeObject], *, selector: Selector, namespaces: Sequence[str] = ()
) -> Selection:
    """The entries of a backup from the listed Secrets, ManagedSecrets and Namespaces."""
    secrets: list[KubeObject] = []
    managed: list[KubeObject] = []
    namespace_objects: dict[str, KubeObject] = {}
    for obj in objects:
        if obj.kind == "Secret":
            secrets.append(obj)
        elif obj.kind == "ManagedSecret":
            managed.append(obj)
        elif obj.kind == "Namespace":
            namespace_objects[obj.name] = obj
    chosen_managed = [m for m in managed if selector.matches(m.labels)]
    families = {(m.namespace, m.name) for m in chosen_managed}
    excluded: Counter[str] = Counter()
    chosen: list[KubeObject] = list(chosen_managed)
    for secret in secrets:
        kind = str(secret.body.get("type") or "Opaque")
        if kind in EXCLUDED_TYPES:
            excluded[kind] += 1
            continue
        owner = secret.labels.get(LABEL_MANAGED_SECRET)
        if (secret.namespace, owner) in families or selector.matches(secret.labels):
            chosen.append(secret)
    used = {o.namespace for o in chosen} | set(namespaces)
    entries = [Entry.of(clean(o.kind, o.body)) for o in chosen]
    entries.extend(
        Entry.of(clean("Namespace", namespace_objects[name].body))
        for name in sorted(used)
        if name in namespace_objects
    )
    return Selection(tuple(entries), dict(excluded))


def inconsistencies(entries: Iterable[Entry]) -> list[str]:
    """ManagedSecrets whose live Secret or history disagree with their status (pure)."""
    secrets: dict[tuple[str, str], Entry] = {}
    managed: list[Entry] = []
    for entry in entries:
        if entry.kind == "Secret":
            secrets[(entry.namespace, entry.name)] = entry
        elif entry.kind == "ManagedSecret":
            managed.append(entry)
    problems = []
    for entry in managed:
        status = entry.body.get("status") or {}
        if status.get("rotation"):
            problems.append(f"{entry}: a rotation is under way")
            continue
        current = status.get("currentVersion")
        if current is None:
            continue
        secret_name = str((entry.body.get("spec") or {}).get("secretName") or "")
        live = secrets.get((entry.namespace, secret_name))
        if live is None:
            problems.append(f"{entry}: its live Secret {secret_name} is missing")
            continue
        held = (live.body["metadata"].get("annotations") or {}).get(ANNOTATION_VERSION)
        if held != str(current):
            problems.append(
                f"{entry}: live Secret holds version {held or '-'}, status says {current}"
            )
        elif (entry.namespace, version_secret_name(secret_name, int(current))) not in secrets:
            problems.append(f"{entry}: the Secret of its current version {current} is missing")
    return problems
