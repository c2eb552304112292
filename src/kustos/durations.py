"""Durations as people write them in a spec: ``90d``, ``12h``, ``1h30m``, ``45s``, ``2w``.

Go's ``time.ParseDuration`` units (``h``, ``m``, ``s``, ``ms``) plus ``d`` (24 h) and
``w`` (7 d), because rotation periods are counted in days. Pure.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from kustos.errors import InputError

_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Longer than any credential should live; refuses typos such as 1000000d.
MAX_DURATION: Final = dt.timedelta(days=3660)


class InvalidDurationError(InputError, ValueError):
    """A duration or schedule text cannot be read (also a ``ValueError`` for pydantic)."""


def parse_duration(text: str) -> dt.timedelta:
    """``"1h30m"`` → ``timedelta(hours=1, minutes=30)``; ``InvalidDurationError`` otherwise."""
    value = text.strip()
    if not value or _PART.sub("", value):
        raise InvalidDurationError(
            f"{text[:40]!r} is not a duration (use e.g. 90d, 12h, 1h30m, 45s)"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise InvalidDurationError(f"{text[:40]!r}: a duration must be positive")
    if seconds > MAX_DURATION.total_seconds():  # before timedelta(), which overflows
        raise InvalidDurationError(f"{text[:40]!r} is longer than ten years")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The shortest ``parse_duration`` text for *value* (whole seconds)."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
