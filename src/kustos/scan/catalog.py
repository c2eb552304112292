"""The check catalog: every rule Kustos knows, in id order.

Purely data. Adding a check module means adding its ``CHECKS`` here; ids are stable
forever once released (``docs/scan.md`` lists them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kustos.scan.checking import Check
from kustos.scan.checks import (
    auditpolicy,
    credentials,
    encryption,
    expiry,
    isolation,
    rbac,
    secrets,
    workloads,
)
from kustos.scan.findings import Rule

CHECKS: Final[tuple[Check, ...]] = tuple(
    sorted(
        (
            *rbac.CHECKS,
            *workloads.CHECKS,
            *secrets.CHECKS,
            *expiry.CHECKS,
            *credentials.CHECKS,
            *isolation.CHECKS,
            *encryption.CHECKS,
            *auditpolicy.CHECKS,
        ),
        key=lambda c: c.rule.id,
    )
)
RULES: Final[Mapping[str, Rule]] = {c.rule.id: c.rule for c in CHECKS}


def rule(rule_id: str) -> Rule | None:
    """The rule with this id (case-insensitive), or ``None``."""
    return RULES.get(rule_id.strip().upper())
