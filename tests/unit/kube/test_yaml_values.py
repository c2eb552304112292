"""``load_yaml`` gives exactly ``yaml.safe_load``'s value: same types, same order, same errors.

Aspects: YAML 1.1 scalars whose tag the resolver decides (booleans such as yes/no/on/off in
every spelling, null and ~, octal, hexadecimal, sexagesimal and underscored integers,
floats with infinities and NaN, dates and timestamps, the ``=`` value), with quoted
spellings that stay strings; keys of every such type; merge keys, anchors and aliases;
explicit tags; duplicate keys; block scalars; documents that PyYAML refuses fail here too;
the remembered tags of short scalars never leak from one value to another (the same text
quoted and plain, many distinct short scalars past the memory's size); and every document
of the real corpus. Values are compared by type as well as by ``==`` (``True == 1``).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from kustos.kube.documents import load_yaml, split_documents
from kustos.kube.loading import MANIFEST_SUFFIXES

SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _typed(value: Any) -> Any:
    """*value* with the type of every part spelled out, mapping order kept."""
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, (set, frozenset, tuple)):
        return (type(value).__name__, sorted(repr(_typed(v)) for v in value))
    if isinstance(value, float) and math.isnan(value):  # NaN equals nothing, not even NaN
        return ("float", "nan")
    return (type(value).__name__, value)


def _safe_load(text: str) -> Any:
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - the C safe loader


def _same(text: str) -> None:
    refused: type[yaml.YAMLError] | None = None
    try:
        expected = _safe_load(text)
    except yaml.YAMLError as exc:
        refused = type(exc)
    if refused is not None:
        with pytest.raises(refused):
            load_yaml(text)
        return
    assert _typed(load_yaml(text)) == _typed(expected)


def _words(text: str) -> list[str]:
    return text.split()


SCALARS = [
    *_words("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF"),
    *_words("y n Y N yES tRUE oN nO ofF"),
    *_words("~ null Null NULL nULL"),
    *_words("0 7 -7 +7 010 0o10 08 0x1F 0X1f 0b101 1_000 -1_0 190:20:30 1:2 0.5 .5 5. -.5"),
    *_words("1e3 1.0e+3 6.8523015e+5 685.230_15e+03 .inf -.Inf +.INF .nan .NaN .NAN .Nan"),
    *_words("2001-12-14 2001-12-14t21:59:43.10-05:00 2001-12-14T21:59:43Z 2002-12-14"),
    "2001-12-14 21:59:43.10 -5",
    "2001-12-14 21:59:43.1234567",
    *_words("= << - -- . .. : a:b 1.2.3 12:34:56.7 0o 0x 1__0 _1 +.5 -0 +0 1e 1.e3"),
    *_words("nginx tcp80 ofa onion yesterday nullable true1 falsey 8080/TCP v1 v1.2"),
    "",
]


@pytest.mark.parametrize("scalar", SCALARS)
def test_every_resolved_scalar_plain_quoted_and_as_key(scalar: str) -> None:
    _same(f"value: {scalar}\n")
    _same(f"value: '{scalar}'\n")
    _same(f'value: "{scalar}"\n')
    _same(f"- {scalar}\n- [{scalar}, x]\n- {{k: {scalar}}}\n")
    if scalar not in ("", "-", "--", ":", "<<", "=") and not scalar.startswith((":", "- ")):
        _same(f"{scalar}: v\nother: {scalar}\n")


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {a: 1, b: yes}\nuse:\n  <<: *b\n  b: no\n",
        "- &x [1, 2]\n- *x\n- {<<: [{a: 1}, {b: 2}], c: 3}\n",
        "a: !!str 123\nb: !!int '7'\nc: !!float '1'\nd: !!bool 'yes'\ne: !!null ''\n",
        "f: !!binary aGVsbG8=\ng: !!timestamp 2001-12-14\nh: !!set {a, b}\n",
        "i: !!omap [{a: 1}, {b: 2}]\nj: !!pairs [{a: 1}, {a: 2}]\n",
        "k: !!str\nl: !!seq []\nm: !!map {}\n",
        "dup: 1\ndup: 2\nother: on\n",
        "text: |\n  line yes\n  no\nfolded: >-\n  on\n  off\nkeep: |+\n  x\n\n",
        "? complex\n: value\n? [a, b]\n: v\n",
        "1: int\n1.5: float\ntrue: bool\n~: null\n2001-01-01: date\n",
        "port: 0755\nmode: 0o755\nsize: 1_024\nratio: 1:30\nneg: -0x1A\n",
        "quoted: 'it''s'\ndouble: \"tab\\there\"\nunicode: \"\\u00e9\"\n",
        "!!python/object:os.system x\n",
        "a: [unclosed\n",
        "a: *missing\n",
        "- !unknown tag\n",
    ],
)
def test_yaml_1_1_shapes_and_refusals(text: str) -> None:
    _same(text)


def test_remembered_tags_do_not_leak_between_values() -> None:
    # The same text plain then quoted, and thousands of short distinct scalars (past the
    # number remembered), keep their own types.
    _same("a: yes\nb: 'yes'\nc: yes\nd: \"1\"\ne: 1\nf: '~'\ng: ~\n")
    many = "".join(f"k{i}: {v}\n" for i, v in enumerate(_distinct(30_000)))
    _same(many)
    _same(many.replace(": ", ": '").replace("\n", "'\n"))


def _distinct(count: int) -> list[str]:
    kinds = ("{i}", "0{i}", "n{i}", "{i}.5", "t{i}x", "1:{i}", "o{i}")
    return [kinds[i % len(kinds)].format(i=i) for i in range(count)]


def test_dates_and_timestamps_have_their_types() -> None:
    value = load_yaml("d: 2002-12-14\nt: 2001-12-14T21:59:43.10-05:00\n")
    assert type(value["d"]) is dt.date
    assert isinstance(value["t"], dt.datetime)
    assert value["t"].utcoffset() == dt.timedelta(hours=-5)


@pytest.mark.timeout(300)  # every document of the corpus, parsed twice
def test_every_document_of_the_corpus(corpus_dir: Path) -> None:
    files = sorted(
        p
        for p in (corpus_dir / "manifests").rglob("*")
        if p.suffix in MANIFEST_SUFFIXES and p.suffix != ".json" and p.is_file()
    )
    assert len(files) > 1000
    documents = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for chunk in split_documents(text.replace("\r\n", "\n")):
            documents += 1
            _same(chunk.text)
    assert documents > 3000
