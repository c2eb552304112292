"""The credential detector's prefilters change no answer.

Aspects: with every prefilter turned off (each provider pattern searched whatever its
marker, base64 candidates sought in values of any length) the detector gives the same hit
(kind, words, weakness) or none, for every key and value of the Secrets and ConfigMaps of
the real corpus and of a generated bench set, and for values made to sit on the edges
(tokens of every provider, private keys, URLs with passwords, base64-wrapped tokens,
embedded settings, non-ASCII letters and digits); the entropy is the same float as the
sum of the same terms written as a generator; the ASCII shortcut for "a letter and a
digit" agrees with ``str.isalpha``/``str.isdigit`` on every ASCII character, and non-ASCII
text still takes the ``str`` methods.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.synth import generate_cluster

from kustos.kube.loading import ManifestLoader
from kustos.scan import credentials
from kustos.scan.credentials import CredentialHit, _detect_all, shannon_entropy
from kustos.sensitive import Sensitive

EDGES = [
    ("token", "ghp_MFjsDdPEATA5dZOPn19Ar0yDJFO4kRaatLEt"),
    ("aws", "AKIAZ7QWERTYUIOPASD2"),
    ("key", "AIza" + "Sy0123456789abcdefghijklmnopqrstuvw"),
    ("stripe", "sk_live_" + "a1B2c3D4e5F6g7H8i9J0k1L2"),
    ("slack", "xoxb-1234-5678-abcdefGHIJ"),
    ("hook", "https://hooks.slack.com/services/T0ABC/B0DEF/abcdefghij0123456789xy"),
    ("gitlab", "glpat-" + "a1B2c3D4e5F6g7H8i9J0"),
    ("url", "postgres://admin:S3cr3tPassw0rd@db:5432/app"),
    ("url", "https://example.org/path"),
    ("tls.key", "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 20 + "\n-----END PRIVATE KEY-----"),
    ("ppk", "PuTTY-User-Key-File-3: ssh-rsa\nPrivate-Lines: 2\n" + "QUJD" * 20),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIz"),
    ("wrapped", base64.b64encode(b"ghp_MFjsDdPEATA5dZOPn19Ar0yDJFO4kRaatLEt").decode()),
    ("config", "user = admin\npassword = Zq7vN2xLp9Rt4sKw8mYc\n"),
    ("config", "a: 1\nb: 2\n"),
    ("password", "1234"),
    ("password", "p\u00e4ssw\u00f6rd\u00b2\u00b3x"),
    ("api_key", "\u0661\u0662\u0663abc\u0664\u0665\u0666def\u0667"),
    ("secret", "\u00b2\u00b3\u00b9" * 5 + "abc"),
    ("secret", "x" * 15),
    ("secret", "a1" * 8),
    (None, "a" * 15 + "1"),
]


def _hit(hit: CredentialHit | None) -> tuple[object, ...] | None:
    return dataclasses.astuple(hit) if hit is not None else None


def _values(folder: Path) -> Iterator[tuple[str | None, str]]:
    index = ManifestLoader(workers=1).load([folder])
    for obj in index:
        if obj.kind not in ("Secret", "ConfigMap"):
            continue
        for part in ("data", "stringData"):
            values = obj.body.get(part)
            if not isinstance(values, dict):
                continue
            for key, stored in values.items():
                value = stored
                if isinstance(stored, Sensitive):
                    raw = stored.reveal()
                    value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                if isinstance(value, str):
                    yield str(key), value
                    yield None, value


def _unfiltered(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = re.compile("")
    patterns = tuple(dataclasses.replace(p, marker=everything) for p in credentials._PATTERNS)
    monkeypatch.setattr(credentials, "_PATTERNS", patterns)
    monkeypatch.setattr(credentials, "_BASE64_MIN", 0)


def _answers(pairs: list[tuple[str | None, str]]) -> list[tuple[object, ...] | None]:
    return [_hit(next(_detect_all(key, value), None)) for key, value in pairs]


@pytest.mark.timeout(300)
def test_prefiltered_answers_are_the_unfiltered_ones(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_cluster(tmp_path, 2_000)
    pairs = [*EDGES, *_values(corpus_dir / "manifests"), *_values(tmp_path)]
    filtered = _answers(pairs)
    assert sum(hit is not None for hit in filtered) > 500  # the set holds many credentials
    with monkeypatch.context() as patched:
        _unfiltered(patched)
        assert _answers(pairs) == filtered


def test_the_entropy_is_the_generator_sum_to_the_last_bit() -> None:
    texts = [pair[1] for pair in EDGES] + ["", "a", "ab" * 40, "Zq7vN2xLp9Rt4sKw8mYc"]
    for text in texts:
        total = len(text)
        expected = (
            -sum(n / total * math.log2(n / total) for n in Counter(text).values()) if text else 0.0
        )
        assert shannon_entropy(text) == expected


def test_the_ascii_classes_are_what_str_methods_say_of_every_ascii_character() -> None:
    for code in range(128):
        char = chr(code)
        assert (credentials._ASCII_LETTER.search(char) is not None) == char.isalpha()
        assert (credentials._ASCII_DIGIT.search(char) is not None) == char.isdigit()


@pytest.mark.parametrize(
    "value", ["\u0661\u0662\u0663abcdefgh", "\u00b2\u00b3abcdefghij", "\u00e9" * 12]
)
def test_non_ascii_text_takes_the_str_methods(value: str) -> None:
    # Arabic-Indic digits and superscripts are digits to str.isdigit: the value goes on to
    # the entropy rules; letters alone never reach them.
    has_both = any(c.isalpha() for c in value) and any(c.isdigit() for c in value)
    if not has_both:
        assert not credentials._high_entropy(value)
    else:
        assert credentials._high_entropy(value) == (
            len(value) >= 10 and shannon_entropy(value) > 3.5
        )
