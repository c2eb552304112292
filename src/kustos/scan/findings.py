"""Rules, severities and findings: the values every check produces and every report reads.

Purely data. A ``Finding`` names the object, the field path and (from files) the file and
line; its message is built from names and counts only, never from a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import IntEnum
from typing import Final

from kustos.kube.objects import Source


class Severity(IntEnum):
    """How bad a finding is; ordered so that ``>=`` compares by badness."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The lowercase name used in JSON and on the command line."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` → ``Severity.HIGH``; raise ``ValueError`` for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None


#: SARIF ``security-severity`` per severity (GitHub: >9 critical, 7-8.9 high, ...).
SECURITY_SEVERITY: Final = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.5",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One check in the catalog. ``id`` (``KST###``) is stable forever once released."""

    id: str
    family: str
    severity: Severity
    title: str
    rationale: str
    remediation: str
    #: Corresponding ids elsewhere: ``CIS 5.1.2``, ``Kubescape C-0015``, ``Checkov CKV_K8S_35``,
    #: and documentation URLs.
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resource:
    """The object a finding is about."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file: path as given and a 1-based line."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Finding:
    """One occurrence of one rule on one object (or config file)."""

    rule_id: str
    severity: Severity
    message: str
    resource: Resource | None
    #: Field path inside the object, ``spec.template.spec.containers[0].env[3]``; ``""``
    #: when the finding is about the object as a whole.
    field: str = ""
    location: Location | None = None
    #: Extra, value-free facts for reports (``{"subject": "Group system:authenticated"}``).
    details: tuple[tuple[str, str], ...] = ()
    #: Where the object was read from (file, document line); used to fill ``location``.
    origin: Source | None = dc_field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """A stable identity for baselines and SARIF: rule, object and field, no line."""
        res = self.resource
        obj = f"{res.kind}/{res.namespace}/{res.name}" if res else ""
        loc = self.location.file if self.location and not res else ""
        return f"{self.rule_id}|{obj}|{self.field}|{loc}|{self.message if not res else ''}"
