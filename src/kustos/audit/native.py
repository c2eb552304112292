"""The archive writer's native core (``kustos._native``, built from ``native/``).

The per-event work of every ingest path (reading the few fields the archive needs from an
event's JSON text, the hash chain, the record lines, the index's posting rows, the dedupe
window) runs there a whole batch at a time, without a Python object per event. Whatever
the native reader is unsure about (bodies to strip, unexpected types, anything but plain
JSON) it hands back to :func:`kustos.audit.records.prepare`, the reference, whose answer is
used as is; segments, index rows and reports are byte-identical on both paths
(``tests/unit/audit/test_native_equality.py``). The detectors' state machine runs there
too (``Detector``, from ``native/src/detect.rs``, on a thread of the writer's process,
without the GIL) over each batch's texts, with the alerts and baselines of
:class:`kustos.audit.detecting.Detector`, the reference, which takes over for any event
the core is unsure about (``tests/unit/audit/test_detect_native_equality.py``). Without
the built module Kustos runs the Python path, slower. ``KUSTOS_AUDIT_NATIVE=0`` turns the
native core off.
"""

from __future__ import annotations

import logging
import os
from typing import Final

log = logging.getLogger(__name__)

__all__ = ["ENV", "core", "enabled"]

ENV: Final = "KUSTOS_AUDIT_NATIVE"

try:
    from kustos import _native as core

    _BUILT = True
except ImportError:  # not built (``make native``): the Python path; ``core`` is unset
    _BUILT = False

_said = False


def enabled() -> bool:
    """Whether the native core is built and not turned off; says once when it is not built."""
    global _said  # noqa: PLW0603 - one debug line per process
    if not _BUILT:
        if not _said:
            _said = True
            log.debug("the native audit core is not built (make native): ingest is slower")
        return False
    return os.environ.get(ENV, "1") != "0"
