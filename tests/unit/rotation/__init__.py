"""Helpers for rotation unit tests: seeded and rigged random sources."""

from __future__ import annotations

import random


class SeededRandom:
    """A reproducible ``RandomSource`` (never for real secrets: it is predictable)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)  # noqa: S311 -- reproducible on purpose

    def token_bytes(self, nbytes: int, /) -> bytes:
        """*nbytes* bytes from the seeded stream."""
        return self._random.randbytes(nbytes)

    def randbelow(self, exclusive_upper_bound: int, /) -> int:
        """An integer in ``[0, exclusive_upper_bound)`` from the seeded stream."""
        return self._random.randrange(exclusive_upper_bound)


class ConstantRandom:
    """A broken source that always gives the same answer (zero bytes, index 0)."""

    def token_bytes(self, nbytes: int, /) -> bytes:
        """*nbytes* zero bytes."""
        return bytes(nbytes)

    def randbelow(self, exclusive_upper_bound: int, /) -> int:
        """Always 0."""
        del exclusive_upper_bound
        return 0
