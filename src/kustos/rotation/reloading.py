"""Reloads of workloads that opt in, when a Secret they use changes. Pure.

A workload opts in with ``kustos.io/reload: "true"`` (every Secret its pods use, found by
the one secret-reference parser) or, for users coming from Reloader, with
``secret.reloader.stakater.com/reload: "a,b"`` (the named Secrets, used or not),
``reloader.stakater.com/auto: "true"`` or ``secret.reloader.stakater.com/auto: "true"``.

What the pods last rolled to is recorded on the workload's *metadata* (not its pod
template) as ``kustos.io/secret-hashes: name=fingerprint,...``. Writing metadata does not
roll pods, so a workload seen for the first time gets its baseline recorded without a
restart: starting the operator never causes a restart storm. A restart happens only when
a Secret's fingerprint differs from the recorded one, which also catches changes made
while the operator was down. Secrets a ManagedSecret owns are left to the rotation engine,
which rolls their consumers itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kustos import conventions as c
from kustos.kube.objects import KubeObject
from kustos.kube.references import secret_references

RELOADER_AUTO: Final = ("reloader.stakater.com/auto", "secret.reloader.stakater.com/auto")
TRUE: Final = ("true", "True", "TRUE", "yes", "1")


def watched_secrets(workload: KubeObject) -> frozenset[str] | None:
    """Names of the Secrets whose change should roll *workload*; ``None`` if it did not opt in."""
    annotations = workload.metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return None
    names: set[str] = set()
    opted = False
    auto = annotations.get(c.ANNOTATION_RELOAD) in TRUE or any(
        annotations.get(a) in TRUE for a in RELOADER_AUTO
    )
    if auto:
        opted = True
        names.update(
            r.secret for r in secret_references(workload) if r.namespace == workload.namespace
        )
    listed = annotations.get(c.ANNOTATION_RELOADER_SECRETS)
    if isinstance(listed, str) and listed.strip():
        opted = True
        names.update(n.strip() for n in listed.split(",") if n.strip())
    return frozenset(names) if opted else None


def parse_hashes(text: str | None) -> dict[str, str]:
    """``"a=1f..,b=9c.."`` → ``{"a": "1f..", "b": "9c.."}``; junk entries are dropped."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name and value:
            out[name] = value
    return out


def format_hashes(hashes: Mapping[str, str]) -> str:
    """The annotation value for *hashes*, sorted so equal maps give equal text."""
    return ",".join(f"{k}={hashes[k]}" for k in sorted(hashes))


@dataclass(frozen=True, slots=True)
class ReloadDecision:
    """What to do with one workload."""

    restart: bool
    record: str | None  # new metadata annotation value, or None to leave it
    changed: tuple[str, ...] = ()


#: Fingerprint recorded for a watched Secret that does not exist (yet).
ABSENT: Final = "absent"


def decide(
    recorded: str | None, watched: frozenset[str], current: Mapping[str, str | None]
) -> ReloadDecision:
    """Compare what the pods rolled to (*recorded*) with the Secrets now (*current*).

    *current* maps each watched name to its fingerprint, or ``None`` when the Secret is
    missing. No record yet: record a baseline, do not restart.
    """
    before = parse_hashes(recorded)
    # A Secret missing now keeps its recorded fingerprint: recreated unchanged, no restart.
    now = {name: current.get(name) or before.get(name) or ABSENT for name in watched}
    if recorded is None:
        return ReloadDecision(restart=False, record=format_hashes(now))
    changed = tuple(
        sorted(
            n
            for n in watched
            if before.get(n, ABSENT) != ABSENT and now[n] != ABSENT and before[n] != now[n]
        )
    )
    text = format_hashes(now)
    if changed:
        return ReloadDecision(restart=True, record=text, changed=changed)
    # A new name (annotation edited) or a Secret that appeared updates the record only.
    return ReloadDecision(restart=False, record=text if text != recorded else None)


def restart_patch(record: str, reason: str, now_text: str, *, restart: bool) -> dict[str, Any]:
    """The merge patch that records *record* and, with *restart*, rolls the pods."""
    patch: dict[str, Any] = {"metadata": {"annotations": {c.ANNOTATION_SECRET_HASHES: record}}}
    if restart:
        patch["spec"] = {
            "template": {
                "metadata": {
                    "annotations": {
                        c.ANNOTATION_RESTARTED_AT: now_text,
                        c.ANNOTATION_RESTART_REASON: reason[:253],
                    }
                }
            }
        }
    return patch
