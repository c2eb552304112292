"""The native credential detector gives the reference's hits, value for value.

``kustos.scan.credentials._decide`` asks the native core (``native/src/credentials.rs``)
and falls back on ``_detect_all`` (the reference, pure Python) whenever the core is unsure;
``detect`` asks the core directly for short ASCII pairs and remembers the others' answers.
Aspects: on every string of the real corpus manifests (Secret data decoded too), on every
string of a generated bench set, and on thousands of generated adversarial values (each
provider pattern with good and bad boundaries and lengths, placeholders, leetspeak,
base64-wrapped tokens in both alphabets with and without padding and line breaks, URLs,
key blocks, JWTs with and without ``alg``, embedded settings, quotes, templates, paths,
numbers with units, every ASCII control and whitespace character, text beyond ASCII) under
many key names, the two paths give the same :class:`CredentialHit` (or none); the key
classes agree; a canary value never appears in what the native path raises. ``detect``
(asked twice, so remembered answers are compared too) gives the same hits, with the core
and without it; it remembers only what the core does not answer directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from bench.synth import generate_cluster

from kustos.kube.loading import load_manifests
from kustos.scan import credentials
from kustos.scan.credentials import CredentialHit, _decide, _detect_all, detect, key_class

native = pytest.importorskip("kustos._native", reason="the native core is not built")

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus" / "manifests"
pytestmark = pytest.mark.timeout(300)

#: Key names of every class: password, secret key, token, qualified key, neutral suffixes,
#: settings, nothing (``None``).
KEYS: tuple[str | None, ...] = (
    None,
    "password",
    "DB_PASSWORD",
    "adminPasswd",
    "pass",
    "MINIO_SECRET_KEY",
    "secretKey",
    "secret_key",
    "api-key",
    "clientSecret",
    "GITHUB_TOKEN",
    "token_value",
    "SECRET_KEY_BASE",
    "accessKey",
    "authToken",
    "key",
    "key_id",
    "secretName",
    "token_path",
    "MAX_TOKENS",
    "config.yaml",
    "username",
    "PASSWORD",
    "HF_TOKEN",
    "x",
)

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _reference(key: str | None, value: str) -> CredentialHit | None:
    return next(_detect_all(key, value), None)


def _assert_same(pairs: Iterator[tuple[str | None, str]]) -> int:
    """Compare both paths on every pair; the number of pairs compared."""
    count = 0
    differ: list[tuple[str | None, int, CredentialHit | None, CredentialHit | None]] = []
    for key, value in pairs:
        count += 1
        expected = _reference(key, value)
        for got in (_decide(key, value), detect(key, value), detect(key, value)):
            if got != expected:
                differ.append((key, count, expected, got))
    # The values are not printed (some look like credentials): the key, position and hits.
    assert not differ, differ[:20]
    return count


def _strings(body: object, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(body, Mapping):
        for k, v in body.items():
            if isinstance(k, str):
                yield None, k
            yield from _strings(v, k if isinstance(k, str) else None)
        if body.get("kind") == "Secret" and isinstance(body.get("data"), Mapping):
            for k, v in body["data"].items():
                if isinstance(v, str):
                    try:
                        yield k, base64.b64decode(v).decode("utf-8")
                    except (binascii.Error, ValueError):
                        continue
    elif isinstance(body, Sequence) and not isinstance(body, str):
        for item in body:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str) and "value" in item:
                value = item["value"]
                if isinstance(value, str):
                    yield item["name"], value  # an env literal, under its variable's name
            yield from _strings(item, key)
    elif isinstance(body, str):
        yield key, body


def _index_pairs(paths: list[Path]) -> Iterator[tuple[str | None, str]]:
    index = load_manifests(paths)
    for ref in sorted(index.refs(), key=str):
        obj = index.get(ref)
        assert obj is not None
        for key, value in _strings(obj.body):
            yield key, value
            yield None, value
            yield "password", value


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared/corpus not beside the repo")
def test_corpus_values_give_the_same_hits() -> None:
    assert _assert_same(_index_pairs([CORPUS])) > 10_000


def test_bench_set_values_give_the_same_hits(tmp_path: Path) -> None:
    generate_cluster(tmp_path / "set", 3000, per_file=500)
    assert _assert_same(_index_pairs([tmp_path / "set"])) > 5_000


# --------------------------------------------------------------------------- adversarial values


def _tok(rng: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(rng: random.Random, *, alg: bool) -> str:
    header = {"alg": "HS256", "typ": "JWT"} if alg else {"typ": "JWT"}
    parts = [
        _b64url(json.dumps(header).encode()),
        _b64url(json.dumps({"sub": _tok(rng, 8)}).encode()),
        _b64url(rng.randbytes(rng.choice((4, 6, 32)))),
    ]
    return ".".join(parts)


def _pem(rng: random.Random, label: str, size: int, *, end: bool = True) -> str:
    body = base64.b64encode(rng.randbytes(size)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    if rng.random() < 0.3:
        lines.insert(0, "Proc-Type: 4,ENCRYPTED")
    tail = [f"-----END {label}-----"] if end else []
    return "\n".join([f"-----BEGIN {label}-----", *lines, *tail])


def _putty(rng: random.Random, lines: int) -> str:
    body = base64.b64encode(rng.randbytes(lines * 48)).decode()
    rows = [body[i : i + 64] for i in range(0, len(body), 64)]
    spaces = rng.choice((" ", "  ", "\t", "\n", ""))
    return "\n".join(
        [
            f"PuTTY-User-Key-File-{rng.choice('234')}: ssh-rsa",
            "Encryption: none",
            f"Private-Lines:{spaces}{rng.choice((str(len(rows)), 'x', ''))}",
            *rows,
            "Private-MAC: " + _tok(rng, 40, "0123456789abcdef"),
        ]
    )


def _provider_tokens(rng: random.Random) -> list[str]:
    """Tokens of every provider pattern, at, under and over their lengths."""
    n = rng.choice((15, 16, 17, 20, 35, 36, 37, 81, 82, 83, 24, 23))
    return [
        rng.choice(("AKIA", "ASIA", "ABIA", "ACCA", "A3TX", "A3T", "AKIB"))
        + _tok(rng, rng.choice((15, 16, 17)), _UPPER),
        rng.choice(("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "ghx_")) + _tok(rng, n),
        "github_pat_" + _tok(rng, rng.choice((81, 82, 83)), _ALNUM + "_"),
        "glpat-" + _tok(rng, rng.choice((19, 20, 26)), _ALNUM + "_-"),
        rng.choice(("xoxb-", "xoxp-", "xoxa-", "xoxz-"))
        + "-".join(_tok(rng, rng.randint(0, 12), "0123456789") for _ in range(rng.randint(1, 3)))
        + rng.choice(("-", "", "--"))
        + _tok(rng, rng.choice((5, 6, 24)), _ALNUM + "-")
        + rng.choice(("", "_", "-")),
        "https://hooks.slack.com/services/T"
        + _tok(rng, rng.randint(0, 9), _UPPER)
        + "/B"
        + _tok(rng, rng.randint(0, 9), _UPPER)
        + "/"
        + _tok(rng, rng.choice((19, 20, 24))),
        "AIza" + _tok(rng, rng.choice((34, 35, 36)), _ALNUM + "_-"),
        rng.choice(("sk_live_", "rk_live_", "pk_live_")) + _tok(rng, rng.choice((23, 24, 30))),
        _jwt(rng, alg=True),
        _jwt(rng, alg=False),
        "eyJ" + _tok(rng, 7) + ".eyJ" + _tok(rng, 9) + "." + _tok(rng, 8),
        "eyJhbGciOiJub25lIn0" + "." + "eyJ" + _tok(rng, 12) + "." + _tok(rng, 12),
        "eyJ" + _b64url(b'{"alg":1}')[3:] + "x" + ".eyJ" + _tok(rng, 9) + "." + _tok(rng, 9),
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "x" * 36,
        "ghp_" + "0" * 36,
    ]


_FRAGMENTS = (
    "",
    " ",
    "changeme",
    "Ch4ngeM3",
    "<your-token>",
    "<x>",
    "${VAR}",
    "$(VAR)",
    "$VAR",
    "%VAR%",
    "{{ .Values.x }}",
    "{% x %}",
    "<%= x %>",
    "#{x}",
    "%{x}",
    "/etc/secret",
    "./x",
    "../x",
    "~/x",
    "C:\\x",
    "c:/x",
    "file:x",
    "true",
    "No",
    "NULL",
    "~",
    "30s",
    "512Mi",
    "1.5e3",
    "-.5",
    "+3.",
    "1e",
    "10ms",
    "4kb",
    "2Ti",
    "12%",
    "1.5GB",
    "ns/name",
    "my-ns/my.name",
    "A/b",
    "password",
    "P@ssw0rd",
    "hunter2",
    "1234",
    "minio123",
    "*****",
    "aaaaaaaaa1",
    "abcabcabc",
    "xxx",
    "TODO",
    "s3cr3t-t0k3n",
    "=",
    ":",
    ",",
    ";",
    "'",
    '"',
    "@",
    "é",
    "ä1b2c3d4e5f6",
    "ß",
    "\u2028",
    "\x85",
    "\U0001d518",  # a letter beyond the basic plane
)


def _random_secretish(rng: random.Random) -> str:
    choice = rng.randrange(8)
    if choice == 0:
        return _tok(rng, rng.randint(1, 40))
    if choice == 1:
        return _tok(rng, rng.randint(8, 40), "0123456789abcdef-")
    if choice == 2:
        return _tok(rng, rng.randint(8, 40), _ALNUM + "+/=_-")
    if choice == 3:
        return _tok(rng, rng.randint(3, 20), _ALNUM + "._@!#%^&*+-$")
    if choice == 4:
        return _tok(rng, rng.randint(1, 12), "aA1")
    if choice == 5:
        return _tok(rng, rng.randint(1, 30), "".join(map(chr, range(32, 127))))
    if choice == 6:
        return str(rng.randint(0, 10**12))
    return rng.choice(_FRAGMENTS)


def _wrap_b64(rng: random.Random, inner: str) -> str:
    raw = inner.encode()
    text = (base64.urlsafe_b64encode if rng.random() < 0.4 else base64.b64encode)(raw).decode()
    if rng.random() < 0.5:
        text = text.rstrip("=")
    if rng.random() < 0.3:
        text = text + "=" * rng.randint(0, 3)
    if rng.random() < 0.3:
        step = rng.choice((4, 16, 60, 76))
        text = rng.choice(("\n", "\r\n", " ", "\t")).join(
            text[i : i + step] for i in range(0, len(text), step)
        )
    if rng.random() < 0.2:
        text = text[: rng.randint(0, len(text))]
    return text


def _embedded(rng: random.Random, value: str) -> str:
    name = rng.choice(
        ("password", "db_password", "passwd", "auth_client_required", "API_KEY", "token",
         "secret", "export", "name", "bearer_token_file", "clientSecret", "x-key", "2fa")
    )  # fmt: skip
    quote = rng.choice(("", '"', "'"))
    line = (
        rng.choice(("", "  ", "export ", "- ", "-", "export\t", "\t"))
        + rng.choice(("", '"', "'"))
        + name
        + rng.choice(("", '"', "'"))
        + rng.choice((" = ", "=", ": ", ":", " : ", " "))
        + quote
        + value
        + quote
        + rng.choice(("", ",", ";", " ,; "))
    )
    other = rng.choice(("[global]", "# comment", "passwd: compat", "user = admin", ""))
    sep = rng.choice(("\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f"))
    return sep.join(rng.sample([line, other], 2))


def _adversarial(rng: random.Random) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        token = rng.choice(_provider_tokens(rng))
        before = rng.choice(("", " ", "x", "_", "-", "=", "token: ", ".", "/", "\n", "é"))
        after = rng.choice(("", " ", "x", "_", "-", ".", "=", "/", "\n", "é", "0"))
        return before + token + after
    if kind == 1:
        inner = [*_provider_tokens(rng), _pem(rng, "PRIVATE KEY", 60), "redis://u:S3cr3tPw9x@db"]
        return _wrap_b64(rng, rng.choice(inner) + rng.choice(("", "\n", " x")))
    if kind == 2:
        return _wrap_b64(rng, _random_secretish(rng))
    if kind == 3:
        label = rng.choice(
            ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
             "PGP PRIVATE KEY BLOCK", "ENCRYPTED PRIVATE KEY", "SSH2 PRIVATE KEY",
             "FOO PRIVATE KEY", "PUBLIC KEY", "PRIVATE KEY BLOCK")
        )  # fmt: skip
        size = rng.choice((0, 10, 40, 47, 48, 49, 60, 300))
        pem = _pem(rng, label, size, end=rng.random() < 0.8)
        return rng.choice(("", "key:\n", "BEGIN PRIVATE KEY mention ")) + pem
    if kind == 4:
        return _putty(rng, rng.choice((0, 1, 2, 6)))
    if kind == 5:
        scheme = rng.choice(("https", "postgres", "redis+tls", "a.b-c", "1x", "x"))
        user = rng.choice(("", "admin", "us:er", "u@x", "u/x"))
        password = rng.choice(("", _random_secretish(rng), "changeme", "pass:word", "$(PW)"))
        host = rng.choice(("db.local", "[::1]", "-x", "", "/path", "@x"))
        return rng.choice(("", "url=", "x", "+", " ")) + f"{scheme}://{user}:{password}@{host}"
    if kind == 6:
        return _embedded(rng, _random_secretish(rng))
    if kind == 7:
        parts = [_random_secretish(rng) for _ in range(rng.randint(1, 3))]
        return rng.choice(("", " ", "\n", "\t", "-", "_", ".")).join(parts)
    if kind == 8:
        control = chr(rng.randrange(32)) if rng.random() < 0.8 else chr(127)
        base = _random_secretish(rng)
        at = rng.randint(0, len(base))
        return base[:at] + control + base[at:]
    if kind == 9:
        base = _random_secretish(rng)
        return (
            rng.choice((" ", "\x1c", "\x1f", "\x0b", "\t\n"))
            + base
            + rng.choice(("", "\x1e", " \r\n"))
        )
    if kind == 10:
        token = rng.choice(_provider_tokens(rng))
        leet = token.translate(str.maketrans("aeiost", "4301$7"))
        return rng.choice((leet, token.replace(token[5:13], "EXAMPLE!"), token + "test"))
    if kind == 11:
        return _tok(rng, rng.randint(10, 64), _ALNUM) + rng.choice(_FRAGMENTS)
    if kind == 12:
        # Two tokens in one value: the first may be skipped (placeholder, no alg), the next counts.
        # A search goes on at the end of a skipped match, not inside it.
        tokens = _provider_tokens(rng)
        first = rng.choice(
            ("ghp_" + "x" * 36, _jwt(rng, alg=False), "AKIAIOSFODNN7EXAMPLE", "glpat-" + "x" * 20,
             "xoxb-1-changeme")
        )  # fmt: skip
        return first + rng.choice((" ", "-", "")) + rng.choice(tokens)
    return rng.choice(_FRAGMENTS) + _random_secretish(rng)


def _adversarial_pairs(count: int, seed: int) -> Iterator[tuple[str | None, str]]:
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    for _ in range(count):
        value = _adversarial(rng)
        for key in rng.sample(KEYS, 6):
            yield key, value
        yield None, value


@pytest.mark.parametrize("seed", range(4))
def test_adversarial_values_give_the_same_hits(seed: int) -> None:
    assert _assert_same(_adversarial_pairs(5000, seed)) == 35_000


def test_every_fragment_and_token_under_every_key() -> None:
    rng = random.Random(7)  # noqa: S311 - test data, not security
    values = [*_FRAGMENTS, *(t for _ in range(50) for t in _provider_tokens(rng))]
    values += [chr(c) + "aZ9xQ2mW8vL4kR7t" + chr(c) for c in range(128)]
    values += [f"password{chr(c)}=aZ9xQ2mW8vL4kR7t" for c in range(128)]
    assert _assert_same((key, value) for value in values for key in KEYS) > 10_000


def test_the_native_path_answers_most_ascii_values() -> None:
    """The fallback is for what the core does not replicate, not for ordinary values."""
    rng = random.Random(3)  # noqa: S311 - test data, not security
    unsure = 0
    values = [_adversarial(rng) for _ in range(3000)]
    ascii_values = [v for v in values if v.isascii()]
    for value in ascii_values:
        if native.detect_credential("password", value, credentials._jwt_header) == -1:
            unsure += 1
    assert unsure < len(ascii_values) // 50


def test_key_classes_agree() -> None:
    rng = random.Random(11)  # noqa: S311 - test data, not security
    words = ["password", "PASSWORD", "Password", "secret", "Secret", "key", "Key", "KEY",
             "api", "API", "token", "Token", "value", "base", "data", "b64", "id", "ID",
             "client", "signing", "x", "2", "_", "-", ".", "s3", "URL", "Url", "access",
             "auth", "bearer", "creds", "passwd", "pwd", "pass"]  # fmt: skip
    names = [*(k for k in KEYS if k is not None)]
    names += ["".join(rng.choices(words, k=rng.randint(1, 5))) for _ in range(5000)]
    classes = {None: 0, "password": 1, "token": 2, "secret": 3}
    assert [native.credential_key_class(n) for n in names] == [classes[key_class(n)] for n in names]


def test_canary_never_in_what_the_native_path_raises() -> None:
    canary = "CANARY-5f3a9c1e-ghp_" + "Q" * 36
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N"

    def failing(token: str) -> bool:
        raise RuntimeError("header check failed")

    for value in (f"{canary} {jwt}", f"token: {jwt} {canary}", f"{jwt}\n{canary}"):
        with pytest.raises(RuntimeError) as caught:
            native.detect_credential("password", value, failing)
        assert "CANARY" not in str(caught.value)
        assert "eyJ" not in str(caught.value)
    with pytest.raises(TypeError) as wrong:
        native.detect_credential("password", canary.encode(), credentials._jwt_header)
    assert "CANARY" not in str(wrong.value)


def test_the_switch_turns_the_native_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = credentials._detect_all

    def counting(key: str | None, value: str) -> Iterator[CredentialHit]:
        calls.append("reference")
        return real(key, value)

    monkeypatch.setattr(credentials, "_detect_all", counting)
    _decide("PASSWORD", "hunter2")
    assert calls == []
    monkeypatch.setattr(credentials, "_core", None)
    _decide("PASSWORD", "hunter2")
    assert calls == ["reference"]


def test_detect_remembers_only_what_the_core_does_not_answer() -> None:
    rng = random.Random(5)  # noqa: S311 - test data, not security
    short = "aZ9xQ2mW8vL4kR7tP3nB"
    long = "config: " + "x" * credentials._NATIVE_DIRECT_AT_MOST + f"\ntoken: {short}\n"
    beyond = f"{short}é"
    unsure = base64.b64encode(f"token é {short}".encode()).decode()
    assert native.detect_credential("password", unsure, credentials._jwt_header) == -1
    credentials._detected.clear()
    for key in KEYS:
        for value in (short, long, beyond, unsure, _adversarial(rng)):
            assert detect(key, value) == _reference(key, value)
    remembered = {key for key, _ in credentials._detected}
    assert len(credentials._detected) >= 3 * len(KEYS) - 1  # long, beyond, unsure
    assert remembered == set(KEYS)
    credentials._detected.clear()
    for key in KEYS:
        detect(key, short)
    assert not credentials._detected


def test_detect_without_the_core_gives_the_same_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = list(_adversarial_pairs(1000, 9))
    expected = [_reference(key, value) for key, value in pairs]
    monkeypatch.setattr(credentials, "_core", None)
    credentials._detected.clear()
    assert [detect(key, value) for key, value in pairs] == expected
    assert [detect(key, value) for key, value in pairs] == expected
