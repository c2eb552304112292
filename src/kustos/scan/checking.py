"""The check interface: what a check receives and how it reports.

Purely data. A check is a :class:`Check`: a :class:`~kustos.scan.findings.Rule` and a
function from :class:`ScanInput` to findings. Several rules may share one function (one
pass over the RBAC policy finds KST001-KST004): the scanner runs each distinct function
once and keeps the findings of the rules that are enabled. Check modules export a
``CHECKS`` tuple; :mod:`kustos.scan.catalog` gathers them. Checks never read files or the
clock themselves: everything they need is in ``ScanInput``, where the configuration files
are already parsed, once per scan, into plain typed fields, and the RBAC policy is built
once, when a check first asks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject
from kustos.rbac.model import Policy, build_policy
from kustos.scan.configs import auditpolicy, encryption
from kustos.scan.configs.auditpolicy import AuditPolicy
from kustos.scan.configs.encryption import EncryptionConfig
from kustos.scan.findings import Finding, Resource, Rule


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """A configuration file given on the command line (EncryptionConfiguration, audit
    Policy) as read: its path, its text (to find lines) and its first YAML document."""

    path: str
    text: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where a parsed configuration file came from: its path and its text (to find lines)."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class ScanInput:
    """Everything a check may look at, parsed once: build it with :func:`scan_input`."""

    index: ObjectIndex
    encryption: EncryptionConfig | None = None
    audit: AuditPolicy | None = None
    #: The configuration files by the ``Rule.family`` that checks them: findings of that
    #: family that name no object are located in that file.
    sources: Mapping[str, ConfigSource] = field(default_factory=dict)
    #: True when the index was read from a live cluster (age checks need real timestamps).
    live: bool = False
    now: dt.datetime | None = None
    #: Secrets older than this (days) are reported when ``live``.
    max_secret_age_days: int = 90
    #: The RBAC policy once built (see :attr:`policy`); not an argument.
    _policy: list[Policy] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def policy(self) -> Policy:
        """The RBAC policy of ``index``, derived from it when a check first asks and shared
        by every check after that (so it can never describe another index).

        Built on demand rather than when the input is made: when the checks are shared out
        over processes (:mod:`kustos.scan.scanning`), only the process that runs the RBAC
        checks builds it, while the others check.
        """
        if not self._policy:
            # Every declaration: a binding declared in two files is a finding in each.
            self._policy.append(build_policy(self.index, every_declaration=True))
        return self._policy[0]


def scan_input(
    index: ObjectIndex,
    *,
    encryption_config: ConfigDocument | None = None,
    audit_policy: ConfigDocument | None = None,
    live: bool = False,
    now: dt.datetime | None = None,
    max_secret_age_days: int = 90,
) -> ScanInput:
    """Parse the configuration files once (the RBAC policy when first asked); the checks
    read the result."""
    sources: dict[str, ConfigSource] = {}
    if encryption_config is not None:
        sources[encryption.FAMILY] = ConfigSource(encryption_config.path, encryption_config.text)
    if audit_policy is not None:
        sources[auditpolicy.FAMILY] = ConfigSource(audit_policy.path, audit_policy.text)
    return ScanInput(
        index=index,
        encryption=encryption.read_config(encryption_config.body) if encryption_config else None,
        audit=auditpolicy.read_policy(audit_policy.body) if audit_policy else None,
        sources=sources,
        live=live,
        now=now,
        max_secret_age_days=max_secret_age_days,
    )


CheckFunction = Callable[[ScanInput], Iterable[Finding]]


@dataclass(frozen=True, slots=True)
class Check:
    """A rule and the function that finds its occurrences."""

    rule: Rule
    run: CheckFunction
    #: Relative cost on a large input (1: ordinary). When the checks run in several
    #: processes, the heaviest functions are drawn first; it never changes a finding.
    weight: int = 1
    #: The function reads what is built when first asked and then kept: the index's
    #: reference tables (every object's Secret references, consumers by Secret) or the
    #: input's RBAC policy. With several processes, one process runs all such functions,
    #: so that these are built once; it never changes a finding (a unit test holds the flag
    #: to what each function builds).
    reads_tables: bool = False


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
