"""The credential detector remembers its answers by key and value digest.

Aspects: a pair asked again gets the answer a fresh detector gives (hit or none); the key
is part of what is remembered (the same value under a password key and under a plain key);
what is remembered holds no value (canary); the memory is emptied at its bound and the
answers stay the same.
"""

from __future__ import annotations

import pytest

from kustos.scan import credentials
from kustos.scan.credentials import _detect_all, detect

CANARY = "Zq7vN2xLp9Rt4sKw8mYc"
PAIRS = [
    ("password", CANARY),
    ("description", CANARY),
    (None, CANARY),
    ("token", "ghp_MFjsDdPEATA5dZOPn19Ar0yDJFO4kRaatLEt"),
    ("image", "nginx:1.25"),
    ("password", "changeme"),
    ("config", f"user = admin\npassword = {CANARY}\n"),
    ("name", "\ud800lone surrogate"),
]


def _fresh(key: str | None, value: str) -> credentials.CredentialHit | None:
    return next(_detect_all(key, value), None)


def test_a_pair_asked_again_gets_the_fresh_answer() -> None:
    credentials._detected.clear()
    for _ in range(3):
        for key, value in PAIRS:
            assert detect(key, value) == _fresh(key, value)
    assert detect("password", CANARY) is not None
    assert detect("description", CANARY) is None


def test_what_is_remembered_holds_no_value() -> None:
    credentials._detected.clear()
    for key, value in PAIRS:
        detect(key, value)
    remembered = repr(credentials._detected)
    assert CANARY not in remembered
    assert CANARY[:6] not in remembered
    assert all(len(digest) == 16 for _, digest in credentials._detected)


def test_the_memory_is_emptied_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "_DETECTED_AT_MOST", 3)
    credentials._detected.clear()
    for key, value in PAIRS * 2:
        assert detect(key, value) == _fresh(key, value)
        assert len(credentials._detected) <= 3
