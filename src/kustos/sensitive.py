"""A value that must never be shown: ``Sensitive`` keeps secret bytes out of text.

``repr``, ``str`` and ``format`` all give ``Sensitive(***)``; pickling and equality with
plain values are refused so that a secret cannot leak through a cache key or a log call
by accident. Only code that must use the bytes calls :meth:`Sensitive.reveal`.
"""

from __future__ import annotations

import hmac
from typing import Final, NoReturn

_MASK: Final = "Sensitive(***)"


class Sensitive:
    """Secret bytes with a redacted text form."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        self._value = value.encode() if isinstance(value, str) else bytes(value)

    def reveal(self) -> bytes:
        """Return the bytes. Call this only where the value itself is needed."""
        return self._value

    def reveal_text(self) -> str:
        """Return the value decoded as UTF-8 (errors replaced)."""
        return self._value.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        # Constant-time, and only against another Sensitive: comparing a secret with a
        # plain string is almost always a bug that would also put the value in a diff.
        if not isinstance(other, Sensitive):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        # Hash of the length only: usable in sets without making the value guessable.
        return hash((Sensitive, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Sensitive values cannot be pickled")
