"""The check interface: what a check receives and how it reports.

Purely data. A check is a :class:`Check`: a :class:`~kustos.scan.findings.Rule` and a
function from :class:`ScanInput` to findings. Several rules may share one function (one
pass over the RBAC policy finds KST001-KST004): the scanner runs each distinct function
once and keeps the findings of the rules that are enabled. Check modules export a
``CHECKS`` tuple; :mod:`kustos.scan.catalog` gathers them. Checks never read files or the
clock themselves: everything they need is in ``ScanInput``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject
from kustos.rbac.model import Policy, build_policy
from kustos.scan.findings import Finding, Resource, Rule


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """A parsed configuration file given on the command line (EncryptionConfiguration,
    audit Policy): its path, its text (to find lines) and its body."""

    path: str
    text: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ScanInput:
    """Everything a check may look at."""

    index: ObjectIndex
    encryption_config: ConfigDocument | None = None
    audit_policy: ConfigDocument | None = None
    #: True when the index was read from a live cluster (age checks need real timestamps).
    live: bool = False
    now: dt.datetime | None = None
    #: Secrets older than this (days) are reported when ``live``.
    max_secret_age_days: int = 90
    _policy: list[Policy] = field(default_factory=list, repr=False, compare=False)

    def policy(self) -> Policy:
        """The RBAC policy of the index, built once per scan and shared by every check."""
        if not self._policy:
            self._policy.append(build_policy(self.index))
        return self._policy[0]


CheckFunction = Callable[[ScanInput], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class Check:
    """A rule and the function that finds its occurrences."""

    rule: Rule
    run: CheckFunction


def resource_of(obj: KubeObject) -> Resource:
    """The report identity of an object."""
    return Resource(obj.api_version, obj.kind, obj.namespace, obj.name)


def finding(
    rule: Rule,
    obj: KubeObject | None,
    message: str,
    *,
    field: str = "",
    details: Mapping[str, str] | None = None,
) -> Finding:
    """Make a finding of *rule* on *obj* (``None`` for a config file) at *field*.

    *message* must be built from names, counts and field paths only, never from a value.
    The file and line are filled in later by the scanner, which knows where objects came from.
    """
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        message=message,
        resource=resource_of(obj) if obj is not None else None,
        field=field,
        details=tuple(sorted((details or {}).items())),
        origin=obj.source if obj is not None else None,
    )
