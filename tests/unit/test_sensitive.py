"""``Sensitive`` never shows its value.

Aspects: repr/str/format/f-strings redacted; reveal gives the bytes; equality only with
another ``Sensitive`` and constant-time; hashing does not expose the value; pickling refused.
"""

from __future__ import annotations

import pickle

import pytest

from kustos.sensitive import Sensitive


def test_text_forms_are_redacted() -> None:
    value = Sensitive("hunter2-canary")
    for text in (repr(value), str(value), f"{value}", f"{value!r:>30}", "%s" % value, str([value])):  # noqa: UP031
        assert "hunter2" not in text
        assert "Sensitive(***)" in text


def test_reveal_and_length() -> None:
    value = Sensitive(b"\x00\x01secret")
    assert value.reveal() == b"\x00\x01secret"
    assert len(value) == 8
    assert Sensitive("é").reveal_text() == "é"
    assert not Sensitive(b"")


def test_equality_only_between_sensitive_values() -> None:
    assert Sensitive("a") == Sensitive(b"a")
    assert Sensitive("a") != Sensitive("b")
    assert Sensitive("a") != "a"
    assert len({Sensitive("a"), Sensitive("a")}) == 1


def test_pickling_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Sensitive("x"))
