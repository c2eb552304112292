"""What a restore does to each object: create, overwrite, replace, skip or nothing. Pure.

The plan is made from the backup and what the cluster holds now, before anything is
written, so ``--dry-run`` shows exactly what a real run does, and ``--conflict fail``
refuses before the first write. An object that exists with the same content is
``unchanged`` whatever the policy; one that differs is skipped (``--conflict skip``, the
default), overwritten (``overwrite``) or stops the restore (``fail``). An immutable
Secret, or one whose type changes, cannot be updated: overwriting it is a ``replace``
(delete, then create). Namespaces are created when missing and never modified; a
namespace being deleted counts as missing (the restore waits for it to go).

``--namespace-map FROM=TO`` moves objects; ``--only NS/NAME`` (``NS/*`` for a whole
namespace) names objects by their namespace in the backup. A ManagedSecret named by
``--only`` brings its live Secret and versions with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kustos.backup.format import Entry
from kustos.backup.selecting import namespace_name, object_name
from kustos.conventions import LABEL_MANAGED_SECRET
from kustos.errors import UsageError


class Conflict(StrEnum):
    """``--conflict``: what to do with an object that exists and differs."""

    SKIP = "skip"
    OVERWRITE = "overwrite"
    FAIL = "fail"


class Verb(StrEnum):
    """What happens to one object."""

    CREATE = "create"
    OVERWRITE = "overwrite"
    REPLACE = "replace"  # delete and create: immutable, or a type change
    SKIP = "skip"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # --conflict fail: nothing is written

    @property
    def writes(self) -> bool:
        """Tell whether this verb changes the cluster."""
        return self in (Verb.CREATE, Verb.OVERWRITE, Verb.REPLACE)


@dataclass(frozen=True, slots=True)
class Live:
    """What the cluster holds for one object: its cleaned body, and for namespaces, phase."""

    body: Mapping[str, Any] = field(repr=False)
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    """One line of the plan: the object as it will be in the cluster, and what happens."""

    kind: str
    namespace: str
    name: str
    verb: Verb
    reason: str
    body: Mapping[str, Any] = field(repr=False, compare=False)
    source_namespace: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Every action, in the order they are carried out (namespaces, ManagedSecrets, Secrets)."""

    actions: tuple[Action, ...]

    def count(self, verb: Verb) -> int:
        """How many actions have *verb*."""
        return sum(1 for a in self.actions if a.verb is verb)

    @property
    def conflicts(self) -> list[Action]:
        """Objects that stop a ``--conflict fail`` restore."""
        return [a for a in self.actions if a.verb is Verb.CONFLICT]


def parse_namespace_map(items: Iterable[str]) -> dict[str, str]:
    """``FROM=TO`` pairs; ``UsageError`` for a malformed, invalid or repeated FROM."""
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = (part.strip() for part in item.partition("="))
        if not sep or not source or not target:
            raise UsageError(f"--namespace-map {item[:80]!r}: give FROM=TO")
        namespace_name(source, flag="--namespace-map FROM")
        namespace_name(target, flag="--namespace-map TO")
        if source in mapping:
            raise UsageError(f"--namespace-map: {source[:60]!r} is mapped twice")
        mapping[source] = target
    return mapping


def check_namespace_map(
    mapping: Mapping[str, str], entries: Sequence[Entry], *, source: str
) -> None:
    """``UsageError`` if a ``FROM`` of *mapping* is no namespace of the backup (a typo)."""
    held = {e.namespace for e in entries if e.namespace}
    missing = sorted(set(mapping) - held)
    if missing:
        has = ", ".join(sorted(held)[:5]) + (", …" if len(held) > 5 else "")
        raise UsageError(
            f"--namespace-map: {missing[0]!r} is not a namespace of {source} "
            f"(it holds {has or 'none'})"
        )


def parse_only(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``NS/NAME`` or ``NS/*`` patterns; ``UsageError`` for anything else."""
    found = []
    for item in items:
        namespace, sep, name = item.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise UsageError(f"--only {item[:80]!r}: give NAMESPACE/NAME or NAMESPACE/*")
        namespace_name(namespace, flag="--only")
        if name != "*":
            object_name(name, flag="--only")
        found.append((namespace, name))
    return tuple(found)


def _selected(entries: Sequence[Entry], only: Sequence[tuple[str, str]]) -> list[Entry]:
    if not only:
        return list(entries)

    def named(entry: Entry) -> bool:
        return any(ns == entry.namespace and name in ("*", entry.name) for ns, name in only)

    families = {(e.namespace, e.name) for e in entries if e.kind == "ManagedSecret" and named(e)}
    chosen = [
        e
        for e in entries
        if e.kind != "Namespace"
        and (
            named(e)
            or (
                e.kind == "Secret"
                and (
                    e.namespace,
                    (e.body["metadata"].get("labels") or {}).get(LABEL_MANAGED_SECRET),
                )
                in families
            )
        )
    ]
    used = {e.namespace for e in chosen}
    return [e for e in entries if e.kind == "Namespace" and e.name in used] + chosen


def _moved(entry: Entry, mapping: Mapping[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(target namespace, target name, body as it will be written)."""
    body = dict(entry.body)
    meta = dict(body["metadata"])
    if entry.kind == "Namespace":
        target = mapping.get(entry.name, entry.name)
        meta["name"] = target
        body["metadata"] = meta
        return "", target, body
    target_ns = mapping.get(entry.namespace, entry.namespace)
    meta["namespace"] = target_ns
    body["metadata"] = meta
    return target_ns, entry.name, body


def _comparable(kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    # A ManagedSecret's status moves on with every rotation; its spec is what it is.
    return {k: v for k, v in body.items() if k != "status"} if kind == "ManagedSecret" else body


def _verb(kind: str, body: Mapping[str, Any], live: Live, conflict: Conflict) -> tuple[Verb, str]:
    if kind == "Namespace":
        return Verb.UNCHANGED, "exists"
    if _comparable(kind, live.body) == _comparable(kind, body):
        return Verb.UNCHANGED, "exists, same content"
    if conflict is Conflict.SKIP:
        return Verb.SKIP, "exists, differs (--conflict overwrite replaces it)"
    if conflict is Conflict.FAIL:
        return Verb.CONFLICT, "exists, differs"
    if kind == "Secret":
        if live.body.get("immutable"):
            return Verb.REPLACE, "immutable: deleted and created"
        if live.body.get("type") != body.get("type"):
            return Verb.REPLACE, "type differs: deleted and created"
    return Verb.OVERWRITE, "exists, differs"


def _bare_namespace(name: str, state: Live | None) -> Action:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if state is None or state.terminating:
        return Action("Namespace", "", name, Verb.CREATE, "missing", body)
    return Action("Namespace", "", name, Verb.UNCHANGED, "exists", body)


def plan(
    entries: Sequence[Entry],
    live: Mapping[tuple[str, str, str], Live],
    *,
    conflict: Conflict = Conflict.SKIP,
    namespace_map: Mapping[str, str] | None = None,
    only: Sequence[tuple[str, str]] = (),
) -> Plan:
    """The restore plan of *entries* against *live* (keyed by kind, namespace, name)."""
    mapping = dict(namespace_map or {})
    chosen = _selected(entries, only)
    targets = {mapping.get(e.namespace, e.namespace) for e in chosen if e.kind != "Namespace"}
    have_namespace = {mapping.get(e.name, e.name) for e in chosen if e.kind == "Namespace"}
    # Namespaces the objects go to but the backup does not describe (a --namespace-map
    # target, or a backup of a namespace that was not listed): made with no labels.
    actions = [
        _bare_namespace(target, live.get(("Namespace", "", target)))
        for target in sorted(targets - have_namespace)
    ]
    gone = {
        name for (kind, _, name), state in live.items() if kind == "Namespace" and state.terminating
    }
    for entry in chosen:
        namespace, name, body = _moved(entry, mapping)
        if entry.kind == "Namespace" and name not in targets:
            continue
        state = live.get((entry.kind, namespace, name))
        if state is None or state.terminating or namespace in gone:
            verb, reason = Verb.CREATE, "missing"
            if state is not None and state.terminating:
                reason = "being deleted: created once it is gone"
        else:
            verb, reason = _verb(entry.kind, body, state, conflict)
        actions.append(
            Action(
                entry.kind, namespace, name, verb, reason, body, source_namespace=entry.namespace
            )
        )
    return Plan(tuple(actions))


def target_namespaces(
    entries: Sequence[Entry],
    *,
    namespace_map: Mapping[str, str] | None = None,
    only: Sequence[tuple[str, str]] = (),
) -> set[str]:
    """The namespaces a restore writes to (to read what they hold before planning)."""
    mapping = dict(namespace_map or {})
    return {mapping.get(e.namespace, e.namespace) for e in _selected(entries, only) if e.namespace}
