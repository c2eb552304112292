"""The scan baseline: fingerprints of findings a team has accepted, hidden from later scans.

Purely data: the file's model and how findings become one. The CLI reads and writes it
through :class:`kustos.files.StateFile`, the one codec of Kustos' JSON state files, so a
damaged or foreign file is refused in one line naming it and the first bad field. The
shape is stable: ``{"kustos_baseline": 1, "fingerprints": ["<hex>", ...]}``; fingerprints
hold no line numbers (rule, object, field), so edits elsewhere in a file keep them valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from kustos.files.state import StateModel
from kustos.scan.findings import Finding


class Baseline(StateModel):
    """A ``--baseline`` / ``--write-baseline`` file."""

    kustos_baseline: Literal[1] = 1
    fingerprints: tuple[str, ...]

    def hidden(self) -> frozenset[str]:
        """The fingerprints to suppress."""
        return frozenset(self.fingerprints)


def baseline_of(findings: Iterable[Finding], *, keep: Iterable[str] = ()) -> Baseline:
    """The baseline that hides *findings* and keeps the fingerprints in *keep*, sorted."""
    return Baseline(fingerprints=tuple(sorted({f.fingerprint for f in findings} | set(keep))))
