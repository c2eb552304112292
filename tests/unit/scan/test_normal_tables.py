"""The translation tables that normalise values give the regular expressions' answers.

Aspects: ``_normal`` and the placeholder test's normal form and separator-free form equal
the ``re.sub`` forms they replaced (``[^a-z0-9]`` after ``lower`` and the look-alike map,
``[\\s\\-_.]``), and the marker test equals one search for any marker, for every ASCII
character alone and in words, for text beyond ASCII (letters, digits, spaces, a Kelvin
sign that lowers to ASCII, a dotted capital I that lowers to two characters), and for every
key and value of a generated bench set's Secrets and ConfigMaps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.synth import generate_cluster

from kustos.kube.loading import ManifestLoader
from kustos.scan import credentials
from kustos.sensitive import Sensitive

_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_SEPARATORS = re.compile(r"[\s\-_.]")
_LEET = str.maketrans("430157@$", "aeoistas")
_MARKER = re.compile("|".join(map(re.escape, credentials._PLACEHOLDER_MARKERS)))

TEXTS = [
    "",
    "change-me",
    "Ch@ng3_M3",
    "R3PL4CE.this",
    "y0ur token here",
    "t\u00e9st",
    "\u212aey",  # Kelvin sign: lowers to an ASCII k
    "\u0130nsert",  # dotted capital I: lowers to i and a combining dot
    "p\u00e4ssw\u00f6rd\u00b2\u00b3",
    "\u0661\u0662\u0663abc",
    "a\u00a0b\u2003c\u3000d",  # spaces beyond ASCII
    "x\x1cy\x1fz\x0bw",  # ASCII separators \s matches
    "xxxxxxxxxxxx",
    "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----",
    "".join(map(chr, range(128))),
    *[chr(c) for c in range(256)],
    *[f"ab{chr(c)}cd{chr(c)}" for c in range(128)],
]


def _old_placeholder_parts(token: str) -> tuple[bool, str]:
    normal = _NOT_ALNUM.sub("", token.lower().translate(_LEET))
    return _MARKER.search(normal) is not None, _SEPARATORS.sub("", token)


def _bench_values(tmp: Path) -> Iterator[tuple[str, str]]:
    generate_cluster(tmp, 600, seed=7)
    index = ManifestLoader().load([tmp])
    for kind in ("Secret", "ConfigMap"):
        for obj in index.of_kind(kind):
            for part in ("data", "stringData"):
                values = obj.body.get(part)
                if not isinstance(values, dict):
                    continue
                for key, value in values.items():
                    if isinstance(value, Sensitive):
                        raw = value.reveal().decode("utf-8", "replace")
                    else:
                        raw = str(value)
                    yield str(key), raw


def _check(text: str) -> None:
    assert credentials._normal(text) == _NOT_ALNUM.sub("", text.lower())
    lowered = text.lower()
    marked, stripped = _old_placeholder_parts(text)
    normal = credentials._alnum(lowered, credentials._LEET_NOT_ALNUM)
    assert normal == _NOT_ALNUM.sub("", lowered.translate(_LEET))
    assert any(m in normal for m in credentials._PLACEHOLDER_MARKERS) is marked
    if text.isascii():
        assert text.translate(credentials._ASCII_SEPARATORS) == stripped
    run = re.compile(r"(.)\1{7,}").search(stripped) is not None
    expected = marked or len(set(stripped)) <= 1 or run
    assert credentials._placeholder_token(text) is expected


@pytest.mark.parametrize("text", TEXTS)
def test_tables_equal_the_patterns(text: str) -> None:
    _check(text)


def test_tables_equal_the_patterns_on_a_bench_set(tmp_path: Path) -> None:
    seen = 0
    for key, value in _bench_values(tmp_path):
        _check(key)
        _check(value)
        _check(value.strip())
        seen += 1
    assert seen > 500
