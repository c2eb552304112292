"""Tell whether a key and its value look like a credential, without ever repeating the value.

Purely data: stdlib only, no I/O. :func:`detect` takes a key name (or ``None``) and a text
value and returns a :class:`CredentialHit` naming *what kind* of credential it looks like
and *why*; no field of a hit holds the value or any part of it, so a hit can go into a
finding, a log line or an exception as it is.

The rules, strongest first (the first that fires wins):

1. **Provider patterns**, searched anywhere in the value: AWS access key ids
   (``AKIA``/``ASIA``/``ABIA``/``ACCA``/``A3T?``), GitHub tokens (``ghp_`` ``gho_`` ``ghu_``
   ``ghs_`` ``ghr_`` and ``github_pat_``), GitLab ``glpat-``, Slack ``xox?-`` tokens and
   incoming-webhook URLs, Google ``AIza`` API keys, Stripe ``sk_live_``/``rk_live_``, PEM
   and PuTTY private-key blocks (with a body of at least 64 base64 characters, so a
   sentence that *mentions* "BEGIN PRIVATE KEY" is not one) and JWTs (three dot-separated
   base64url parts whose first decodes to a JSON header with ``alg``).
2. **Credentials in URLs**: ``scheme://user:password@host``; a URL without a password is
   not a credential.
3. **Base64-wrapped**: a value that is valid base64 (16+ characters) and decodes to
   printable UTF-8 is decoded and checked against rules 1-2; the hit's kind is
   ``base64-encoded:<inner kind>``.
4. **Keyword-named keys**. The key is split into words (``SMTP_PASSWORD``, ``clientSecret``,
   ``api-key``); trailing ``value``/``base``/``data``/``string``... are dropped. The key is
   sensitive only when its *last* word is a keyword: ``password``/``passwd``/``pwd``/``pass``/
   ``passphrase`` (the password class), or ``secret``/``token``/``credential(s)``/``creds``/
   ``auth``/``bearer``/``apikey``... or ``key`` after a qualifier (``api``, ``access``,
   ``secret``, ``private``, ``client``, ``signing``...). So ``secretName``, ``key_id``,
   ``token_path``, ``keyFile``, ``PASSWORD_FILE``, ``MAX_TOKENS`` and a bare ``key`` are
   references or settings, not secrets.

   - password class: any literal single-word value of 3+ characters is a plaintext
     password (``kind="plaintext-password"``) whatever its entropy: ``1234`` and
     ``password`` included. Only templates, paths, URLs, booleans, ``namespace/name``
     references, the key's own name and placeholders are not. Weak values (common,
     short, low-entropy: :func:`is_weak`) are marked ``weak`` so reports rank them higher.
   - a ``secret key`` (``MINIO_SECRET_KEY``, ``secretKey``) is a password by another name:
     a literal word of 6+ characters with letters and digits is ``plaintext-secret-key``.
   - other keyword classes: the value must be high-entropy (``keyword-high-entropy``):
     hex (12+ chars) above 3.0 bits/char; base64-charset (12+ chars) above 4.5 bits/char,
     or, for values too short to ever reach 4.5, above 85% of the maximum ``log2(len)``;
     anything else (10+ chars) above 3.5 bits/char. Each needs a letter and a digit, which
     removes names such as ``my-client-secret``.
5. **Embedded settings**: in a value whose own key is not keyword-named (typically a config
   file kept in a ConfigMap) each ``name = value`` / ``name: value`` line is checked like
   rule 4, but with the high-entropy test only, also for the password class: config files
   are full of ``passwd: compat`` (nsswitch.conf) and ``auth_client_required = cephx``
   (ceph.conf).

Filters (rules 4-5; the password of rule 2 too; a provider token only gets the placeholder
test, so ``AKIAIOSFODNN7EXAMPLE`` from the AWS docs is not reported): empty values;
templates and substitutions (``$(VAR)``, ``${VAR}``, ``$VAR``, ``{{ ... }}``, ``{% %}``,
``<% %>``, ``#{}``, ``%VAR%``); file paths (``/etc/x``, ``./x``, ``../x``, ``~/x``,
``C:\\x``, ``file:``); URLs (handled by rule 2); booleans, ``null`` and numbers (with unit
suffixes: ``30s``, ``512Mi``); ``namespace/name`` references; values with whitespace
(sentences, commands); a value equal to its own key name (``HF_TOKEN=HF_TOKEN``) or to a
bare keyword (``password: password``, the commonest placeholder of all); and placeholders.
A value is a placeholder when, lowercased with leetspeak undone (``Ch4ngeM3`` →
``changeme``) and separators removed, it contains ``change``, ``replace``,
``example``, ``dummy``, ``placeholder``, ``sample``, ``your``, ``insert``, ``redacted``,
``todo``, ``fixme``, ``fake``, ``notreal``, ``test`` or ``xxx``; or it is wrapped in ``<>``;
or it is one character repeated (``*****``), or has a run of 8+ equal characters.

The per-value decision runs in the native core (``kustos._native.detect_credential``, built
from ``native/src/credentials.rs``) when it is built, for ASCII keys and values: it answers
which rule fired (and the few facts that make the same :class:`CredentialHit`), or that it
is unsure (text beyond ASCII, base64 that decodes to it), and then :func:`_detect_all`, the
reference, answers. Both give the same hits (``tests/unit/scan/test_credentials_native.py``).
``KUSTOS_SCAN_NATIVE=0`` turns the native core off (the reference alone, slower).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

try:
    from kustos import _native
except ImportError:  # not built (``make native``): the reference answers alone
    _native = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class CredentialHit:
    """What a value looks like and why; never the value or a piece of it."""

    #: Stable detector id: ``aws-access-key-id``, ``keyword-high-entropy``,
    #: ``base64-encoded:github-token``...
    kind: str
    #: A noun phrase for messages: ``"an AWS access key id"``, ``"a password"``.
    what: str
    #: Why it fired, in words: ``"matches the AWS access key id pattern"``.
    reason: str
    #: A guessable value (short, common, low entropy): worse, so reports rank it higher.
    weak: bool = False


# --------------------------------------------------------------------------- provider patterns

_B: Final = r"(?<![A-Za-z0-9_])"  # no word character before
_E: Final = r"(?![A-Za-z0-9_])"  # and none after


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    what: str
    name: str
    regex: re.Pattern[str]
    #: Literals of which every match holds one: a text with none is not searched.
    marker: re.Pattern[str]


_PATTERNS: Final = (
    _Pattern(
        "aws-access-key-id",
        "an AWS access key id",
        "AWS access key id",
        re.compile(_B + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E),
        re.compile(r"A3T|AKIA|ASIA|ABIA|ACCA"),
    ),
    _Pattern(
        "github-token",
        "a GitHub token",
        "GitHub token",
        re.compile(_B + r"(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_\w{82})" + _E),
        re.compile(r"gh[pousr]_|github_pat_"),
    ),
    _Pattern(
        "gitlab-token",
        "a GitLab token",
        "GitLab personal access token",
        re.compile(_B + r"glpat-[A-Za-z0-9_-]{20,}" + r"(?![A-Za-z0-9_-])"),
        re.compile(r"glpat-"),
    ),
    _Pattern(
        "slack-token",
        "a Slack token",
        "Slack token",
        re.compile(_B + r"xox[aboprs]-(?:[0-9]+-)+[0-9A-Za-z-]{6,}" + r"(?![A-Za-z0-9_-])"),
        re.compile(r"xox"),
    ),
    _Pattern(
        "slack-webhook",
        "a Slack webhook URL",
        "Slack incoming-webhook URL",
        re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,}"),
        re.compile(r"hooks\.slack\.com/services/"),
    ),
    _Pattern(
        "google-api-key",
        "a Google API key",
        "Google API key",
        re.compile(_B + r"AIza[0-9A-Za-z_-]{35}" + r"(?![A-Za-z0-9_-])"),
        re.compile(r"AIza"),
    ),
    _Pattern(
        "stripe-live-key",
        "a Stripe live key",
        "Stripe live secret or restricted key",
        re.compile(_B + r"(?:sk|rk)_live_[0-9A-Za-z]{24,}" + _E),
        re.compile(r"_live_"),
    ),
    _Pattern(
        "jwt",
        "a JSON Web Token",
        "JSON Web Token",
        re.compile(
            _B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
            r"(?![A-Za-z0-9_-])"
        ),
        re.compile("eyJ"),
    ),
)

_PRIVATE_KEY: Final = re.compile(
    r"-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED|SSH2) )?PRIVATE KEY(?: BLOCK)?-----"
    r"(?P<body>.*?)(?:-----END|\Z)",
    re.DOTALL,
)
_PUTTY_KEY: Final = re.compile(
    r"PuTTY-User-Key-File-[23]:.*?Private-Lines:\s*\d+\s*(?P<body>.*)", re.DOTALL
)
_URL_CREDENTIALS: Final = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://(?P<user>[^/\s:@]*):(?P<password>[^/\s@]+)@"
    r"[A-Za-z0-9\[]"
)
#: A literal that each provider pattern, key block and URL above must contain. A value
#: with none of them cannot match any, so most values are dismissed by one scan instead of
#: ten (KST050 and KST061 run this over every Secret and ConfigMap value).
_PROVIDER_MARKERS: Final = re.compile(
    r"A3T|AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|glpat-|xox|AIza|_live_|eyJ"
    r"|PRIVATE KEY|PuTTY-User-Key-File-|://"
)
#: Whitespace a decoded base64 text may hold and still be text.
_LAYOUT: Final = str.maketrans("", "", "\n\r\t")
_BASE64_MIN: Final = 16
_BASE64_TEXT: Final = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_BASE64_BODY: Final = re.compile(r"[A-Za-z0-9+/=]")
_MIN_KEY_BODY: Final = 64

# --------------------------------------------------------------------------- keyword-named keys

_PASSWORD_WORDS: Final = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "passwort"})
_SECRET_WORDS: Final = frozenset(
    {
        "secret",
        "token",
        "credential",
        "credentials",
        "creds",
        "cred",
        "auth",
        "bearer",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "clientsecret",
        "authkey",
        "authtoken",
        "accesstoken",
        "refreshtoken",
    }
)
#: Words that make a following ``key`` a secret key (``api key``, ``signing key``).
_KEY_QUALIFIERS: Final = frozenset(
    {
        "api",
        "access",
        "secret",
        "private",
        "auth",
        "service",
        "account",
        "client",
        "db",
        "database",
        "encryption",
        "signing",
        "session",
        "master",
        "shared",
        "storage",
        "license",
        "hmac",
        "app",
    }
)
#: Trailing words that do not change what a key holds (``SECRET_KEY_BASE``, ``token_value``).
_NEUTRAL_SUFFIXES: Final = frozenset(
    {"value", "base", "data", "string", "str", "plain", "text", "raw", "b64", "base64"}
)
_KEY_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# --------------------------------------------------------------------------- value filters

_TEMPLATE: Final = re.compile(
    r"\$\(|\$\{|\{\{|\{%|<%|#\{|%\{|^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$"
)
_PATH: Final = re.compile(r"^(?:/|\./|\.\./|~/|[A-Za-z]:[\\/]|file:)")
_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BOOL_NULL: Final = frozenset(
    {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "nil", "none", "~"}
)
_NUMBER: Final = re.compile(
    r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|[KMGTP]i?|[kmgt]b?|%)?$"
)
_NAMESPACED_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9.-]*/[a-z0-9][a-z0-9.-]*$")
_LEET: Final = str.maketrans("430157@$", "aeoistas")
_PLACEHOLDER_MARKERS: Final = (
    "change",
    "replace",
    "example",
    "dummy",
    "placeholder",
    "sample",
    "your",
    "insert",
    "redacted",
    "todo",
    "fixme",
    "fake",
    "notreal",
    "test",
    "xxx",
)
#: Passwords every dictionary attack tries first (normalised: lowercase, alphanumerics).
_COMMON_PASSWORDS: Final = frozenset(
    {"password", "passw0rd", "admin", "root", "secret", "letmein", "qwerty", "welcome",
     "123456", "12345678", "1234", "12345", "default", "guest", "minio123", "minioadmin",
     "postgres", "mysql", "pass", "toor", "abc123", "admin123"}
)  # fmt: skip
#: A single literal word: what a hand-written secret key looks like (minio123).
_WORD_SECRET: Final = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])[A-Za-z0-9._@!#%^&*+-]{6,}")
_HEX: Final = re.compile(r"^[0-9a-fA-F-]+$")
_ASCII_LETTER: Final = re.compile(r"[A-Za-z]")
_ASCII_DIGIT: Final = re.compile(r"[0-9]")
_BASE64_CHARSET: Final = re.compile(r"^[A-Za-z0-9+/=_-]+$")
_QUANTITY: Final = re.compile(r"\d+(?:\.\d+)?[a-zA-Z%]{1,2}")
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]")
_SEPARATORS: Final = re.compile(r"[\s\-_.]")
#: The same deletions as ``_NOT_ALNUM`` and ``_SEPARATORS`` on ASCII text, as translation
#: tables (one C-level pass, no pattern engine); ``_LEET_NOT_ALNUM`` maps the look-alike
#: digits and signs first, as ``_LEET`` does before ``_NOT_ALNUM``.
_ASCII_NOT_ALNUM: Final[dict[int, int | None]] = {
    c: None for c in range(128) if _NOT_ALNUM.match(chr(c))
}
_LEET_NOT_ALNUM: Final[dict[int, int | None]] = {**_ASCII_NOT_ALNUM, **_LEET}
_ASCII_SEPARATORS: Final[dict[int, int | None]] = {
    c: None for c in range(128) if _SEPARATORS.match(chr(c))
}
_RUN: Final = re.compile(r"(.)\1{7,}")
_ASSIGNMENT: Final = re.compile(
    r"""^\s*(?:export\s+|-\s+)?["']?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[:=]\s*(?P<value>.*)$"""
)


#: Answers of :func:`detect` already given, by key and a digest of the value (the cache
#: never holds a value), up to this many (then forgotten at once).
_DETECTED_AT_MOST: Final = 50_000
_detected: dict[tuple[str | None, bytes], CredentialHit | None] = {}


def detect(key: str | None, value: str) -> CredentialHit | None:
    """Return the first credential rule *key* = *value* triggers, or ``None``.

    The native core answers an ASCII pair of up to :data:`_NATIVE_DIRECT_AT_MOST`
    characters directly: its answer costs less than the digest and the look-up that would
    remember it (measured on the 100k bench set, docs/decisions.md "Eleventh round (d)").
    Other pairs are remembered by key and a 16-byte digest of the value: a large input
    repeats the same pairs (copies of a Secret or a ConfigMap in every namespace), and the
    answer depends on the pair alone. The digest, not the value, is kept, so nothing here
    outlives the scan's own copies of the values.
    """
    if (
        _core is not None
        and len(value) <= _NATIVE_DIRECT_AT_MOST
        and value.isascii()
        and (key is None or key.isascii())
    ):
        sure, hit = _native_decision(key, value)
        return hit if sure else _remembered(key, value, _reference)
    return _remembered(key, value, _decide)


def _remembered(
    key: str | None, value: str, decide: Callable[[str | None, str], CredentialHit | None]
) -> CredentialHit | None:
    """*decide*'s answer, remembered by key and a digest of the value."""
    remembered = (
        key,
        hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest(),
    )
    if remembered in _detected:
        return _detected[remembered]
    hit = decide(key, value)
    if len(_detected) >= _DETECTED_AT_MOST:
        _detected.clear()
    _detected[remembered] = hit
    return hit


#: Whether the native core decides: built, not turned off by ``KUSTOS_SCAN_NATIVE=0``, and
#: on Python 3.11, whose ``sum`` of floats the core's entropy repeats term for term (3.12
#: compensates the rounding, which the core does not replicate: the reference answers).
NATIVE_ENV: Final = "KUSTOS_SCAN_NATIVE"
_core: Final = (
    _native if os.environ.get(NATIVE_ENV, "1") != "0" and sys.version_info < (3, 12) else None
)
_UNSURE: Final = -1
#: Values up to this long go to the native core without the digest memory (see
#: :func:`detect`); longer ones (config files, certificate chains) are remembered, since
#: the core's passes grow with the length and copies of them repeat.
_NATIVE_DIRECT_AT_MOST: Final = 1024


def _decide(key: str | None, value: str) -> CredentialHit | None:
    """The first hit of :func:`_detect_all`, from the native core when it is sure."""
    if _core is not None and value.isascii() and (key is None or key.isascii()):
        sure, hit = _native_decision(key, value)
        if sure:
            return hit
    return _reference(key, value)


def _native_decision(key: str | None, value: str) -> tuple[bool, CredentialHit | None]:
    """Whether the native core (``_core``, built) is sure about an ASCII pair, and its hit."""
    answer = _native.detect_credential(key, value, _jwt_header)
    if answer is None:
        return True, None
    if isinstance(answer, tuple):
        return True, _embedded_hit(*answer)
    if answer != _UNSURE:
        return True, _native_hit(answer)
    return False, None


def _reference(key: str | None, value: str) -> CredentialHit | None:
    """The first hit of :func:`_detect_all` (the Python reference)."""
    return next(_detect_all(key, value), None)


#: The native core's rule codes (see ``native/src/credentials.rs``): the provider patterns
#: (0-7, ``_PATTERNS``' order), a key block (8), URL credentials (9), any of them
#: base64-wrapped (16 + code), and the keyword rules; plus 32 if weak, plus 64 times the
#: key's class (1 password, 2 token, 3 secret).
_PRIVATE_KEY_HIT: Final = CredentialHit(
    "private-key-block", "a private key", "contains a private key block with key material"
)
_URL_HIT: Final = CredentialHit(
    "url-credentials", "a password in a URL", "a URL carries a user name and a literal password"
)
_BASE64_CODE: Final = 16
_HIGH_ENTROPY_CODE: Final = 26
_PASSWORD_CODE: Final = 27
_SECRET_KEY_CODE: Final = 28
_CLASSES: Final = (None, "password", "token", "secret")


def _provider_hit(code: int) -> CredentialHit:
    if code == 8:
        return _PRIVATE_KEY_HIT
    if code == 9:
        return _URL_HIT
    pattern = _PATTERNS[code]
    return CredentialHit(pattern.kind, pattern.what, f"matches the {pattern.name} pattern")


@lru_cache(maxsize=256)
def _native_hit(answer: int) -> CredentialHit:
    """The hit a native answer stands for (the same fields the reference gives)."""
    code, weak, cls = answer & 31, bool(answer & 32), _CLASSES[answer >> 6]
    if code < _BASE64_CODE:
        return _provider_hit(code)
    if code < _HIGH_ENTROPY_CODE:
        inner = _provider_hit(code - _BASE64_CODE)
        return CredentialHit(
            f"base64-encoded:{inner.kind}",
            f"{inner.what} (base64-encoded)",
            f"decodes from base64 to text that {inner.reason}",
        )
    if code == _HIGH_ENTROPY_CODE:
        return CredentialHit(
            "keyword-high-entropy", f"a {cls}", "keyword-named key with a high-entropy value"
        )
    if code == _PASSWORD_CODE:
        return CredentialHit(
            "plaintext-password",
            "a plaintext password",
            "password-named key with a literal value",
            weak=weak,
        )
    if code == _SECRET_KEY_CODE:
        return CredentialHit(
            "plaintext-secret-key",
            "a plaintext secret key",
            "secret-key-named key with a literal value",
            weak=weak,
        )
    raise ValueError(f"unknown native credential rule {code}")


@lru_cache(maxsize=4096)
def _embedded_hit(answer: int, name: str) -> CredentialHit:
    """The hit of an embedded setting *name* with a high-entropy value."""
    return CredentialHit(
        "keyword-high-entropy",
        f"a {_CLASSES[answer >> 6]}",
        f'embedded setting "{name}" with a high-entropy value',
    )


def provider_fingerprints(text: str) -> frozenset[str]:
    """Digests of every provider-pattern match in *text* (raw or base64-wrapped).

    Lets a check compare two texts ("does this copy hold a token the live object does
    not?") without handling the tokens themselves. A digest is one-way and never reported.
    """
    return frozenset(
        hashlib.blake2b(token.encode(), digest_size=16).hexdigest()
        for _, token in _provider_matches(text, decode=True)
    )


def shannon_entropy(text: str) -> float:
    """Bits per character of *text* (0.0 for an empty text)."""
    if not text:
        return 0.0
    total = len(text)
    log2 = math.log2
    # A list, not a generator: the same terms added in the same order, so the same float.
    return -sum([n / total * log2(n / total) for n in Counter(text).values()])


@lru_cache(maxsize=16384)
def key_class(key: str) -> str | None:
    """``"password"``, ``"token"``, ``"secret"`` or ``None``: what a key's name says it holds.

    Memoised: a large input repeats a few thousand key names over hundreds of thousands of
    values.
    """
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    while len(words) > 1 and words[-1] in _NEUTRAL_SUFFIXES:
        words.pop()
    if not words:
        return None
    last = words[-1]
    if last in _PASSWORD_WORDS:
        return "password"
    if last in _SECRET_WORDS:
        return "token" if "token" in last else "secret"
    if last == "key" and len(words) > 1 and words[-2] in _KEY_QUALIFIERS:
        return "secret"
    return None


#: Last words of key names that hold identifiers or settings, never a credential.
_NOT_CREDENTIAL_WORDS: Final = frozenset(
    {"username", "user", "login", "name", "id", "ids", "port", "host", "hostname", "region",
     "zone", "url", "uri", "endpoint", "arn", "path", "file", "dir", "group", "type",
     "namespace", "database", "db", "email", "fsid", "subscriptionid", "tenantid",
     "clientid", "resourcegroup", "vmtype", "deployment", "location", "project", "account",
     "bucket", "domain", "address", "addr", "version", "mode", "level", "timeout", "issuer",
     "audience", "scope", "scopes", "cluster", "server", "servers"}
)  # fmt: skip


@lru_cache(maxsize=16384)
def is_credential_name(key: str) -> bool:
    """Tell whether a key's name says it holds a credential (``password``, ``api-key``...).

    Memoised, as :func:`key_class` is: the answer depends on the name alone.
    """
    if key_class(key) is not None:
        return True
    normal = _normal(key)
    return any(word in normal for word in ("passw", "passwd", "apikey", "privatekey"))


@lru_cache(maxsize=16384)
def is_setting_name(key: str) -> bool:
    """Tell whether a key's name says it holds an identifier or a setting, not a credential.

    ``username``, ``port``, ``region-id``, ``SubscriptionID``, ``api-url``: reading them from
    an environment variable exposes nothing that needs protecting.
    """
    if is_credential_name(key):
        return False
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    return bool(words) and (words[-1] in _NOT_CREDENTIAL_WORDS or _normal(key) in
                            _NOT_CREDENTIAL_WORDS)  # fmt: skip


# --------------------------------------------------------------------------- internals


def _detect_all(key: str | None, value: str) -> Iterator[CredentialHit]:
    text = value.strip()
    if not text:
        return
    for provider_hit, _ in _provider_matches(text, decode=False):
        yield provider_hit
    for decoded_hit, _ in _decoded_matches(text):
        yield decoded_hit
    if key is not None and "\n" not in text:
        hit = _keyword_hit(key, text, embedded=False)
        if hit is not None:
            yield hit
    if (key is None or key_class(key) is None) and ("=" in text or ":" in text):
        for line in text.splitlines():
            match = _ASSIGNMENT.match(line)
            if match is None or key_class(name := match.group("key")) is None:
                continue  # not a setting, or one whose name never makes a hit
            inner = _unquote(match.group("value"))
            hit = _keyword_hit(name, inner, embedded=True)
            if hit is not None:
                yield hit


def _provider_matches(text: str, *, decode: bool) -> Iterator[tuple[CredentialHit, str]]:
    if _PROVIDER_MARKERS.search(text) is None:
        if decode:
            yield from _decoded_matches(text)
        return
    for pattern in _PATTERNS:
        if pattern.marker.search(text) is None:
            continue  # no match can exist: the same answer, one short search instead
        for match in pattern.regex.finditer(text):
            token = match.group(0)
            if _placeholder_token(token) or (pattern.kind == "jwt" and not _jwt_header(token)):
                continue
            hit = CredentialHit(pattern.kind, pattern.what, f"matches the {pattern.name} pattern")
            yield hit, token
    for regex, marker in ((_PRIVATE_KEY, "PRIVATE KEY"), (_PUTTY_KEY, "PuTTY-User-Key-File-")):
        if marker not in text:
            continue
        for match in regex.finditer(text):
            body = "".join(line for line in match.group("body").splitlines() if ":" not in line)
            if len(_BASE64_BODY.findall(body)) >= _MIN_KEY_BODY and not _placeholder_token(body):
                yield (
                    CredentialHit(
                        "private-key-block",
                        "a private key",
                        "contains a private key block with key material",
                    ),
                    match.group(0),
                )
    for match in _URL_CREDENTIALS.finditer(text) if "://" in text else ():
        password = match.group("password")
        if _filtered(password) or _placeholder(password) or _same_as_key("", password):
            continue
        yield (
            CredentialHit(
                "url-credentials",
                "a password in a URL",
                "a URL carries a user name and a literal password",
            ),
            match.group(0),
        )
    if decode:
        yield from _decoded_matches(text)


def _decoded_matches(text: str) -> Iterator[tuple[CredentialHit, str]]:
    if len(text) < _BASE64_MIN:
        return  # no base64 candidate is shorter
    compact = "".join(text.split())
    candidates = [compact] if _BASE64_TEXT.fullmatch(compact) else []
    candidates += [m.group(0) for m in _BASE64_TEXT.finditer(text) if m.group(0) != compact]
    for candidate in candidates:
        decoded = _b64decode(candidate)
        if decoded is None:
            continue
        for inner, token in _provider_matches(decoded, decode=False):
            yield (
                CredentialHit(
                    f"base64-encoded:{inner.kind}",
                    f"{inner.what} (base64-encoded)",
                    f"decodes from base64 to text that {inner.reason}",
                ),
                token,
            )


def _b64decode(candidate: str) -> str | None:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        if "-" in candidate or "_" in candidate:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if text and text.translate(_LAYOUT).isprintable() else None


def _jwt_header(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _keyword_hit(key: str, value: str, *, embedded: bool) -> CredentialHit | None:
    cls = key_class(key)
    if cls is None or _placeholder(value):
        return None
    setting = f'embedded setting "{key}"' if embedded else "keyword-named key"
    filtered = _filtered(value) or _same_as_key(key, value)
    if not filtered and _high_entropy(value):
        return CredentialHit(
            "keyword-high-entropy", f"a {cls}", f"{setting} with a high-entropy value"
        )
    if not embedded and cls == "password" and _literal_password(key, value):
        # A value named as a password is one whatever its entropy: "1234" and "password"
        # are passwords too, and the worst kind.
        return CredentialHit(
            "plaintext-password",
            "a plaintext password",
            "password-named key with a literal value",
            weak=is_weak(value),
        )
    if filtered:
        return None
    if not embedded and _secret_key_name(key) and _WORD_SECRET.fullmatch(value):
        # MINIO_SECRET_KEY=minio123: a secret key is a password by another name.
        return CredentialHit(
            "plaintext-secret-key",
            "a plaintext secret key",
            "secret-key-named key with a literal value",
            weak=is_weak(value),
        )
    return None


def _literal_password(key: str, value: str) -> bool:
    """A literal password: not a template, path, URL, flag or reference, nor the key's name."""
    text = value.strip()
    if not text or _has_space(text) or text.lower() in _BOOL_NULL:
        return False
    if _TEMPLATE.search(text) or _PATH.match(text) or _URL.match(text):
        return False
    if _NAMESPACED_NAME.match(text) or _normal(text) == _normal(key):
        return False
    return len(text) >= 3 and _QUANTITY.fullmatch(text) is None


def _secret_key_name(key: str) -> bool:
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    return words[-2:] == ["secret", "key"] or (bool(words) and words[-1] == "secretkey")


def is_weak(value: str) -> bool:
    """Tell whether a credential value is guessable: common, short or low in entropy."""
    text = value.strip()
    return (
        _normal(text) in _COMMON_PASSWORDS
        or len(text) < 8
        or text.isdigit()
        or shannon_entropy(text) < 3.0
    )


def _filtered(value: str) -> bool:
    """True for values that are not literal secrets: templates, paths, URLs, flags..."""
    text = value.strip()
    return (
        not text
        or _has_space(text)
        or _TEMPLATE.search(text) is not None
        or _PATH.match(text) is not None
        or _URL.match(text) is not None
        or text.lower() in _BOOL_NULL
        or _NUMBER.match(text) is not None
        or _NAMESPACED_NAME.match(text) is not None
    )


def is_placeholder(value: str) -> bool:
    """Tell whether a value is a stand-in (``changeme``, ``<token>``, ``xxxx``), not a secret."""
    return _placeholder(value)


def _placeholder(value: str) -> bool:
    text = value.strip()
    if len(text) >= 2 and text.startswith("<") and text.endswith(">"):
        return True
    return _placeholder_token(text)


def _placeholder_token(token: str) -> bool:
    normal = _alnum(token.lower(), _LEET_NOT_ALNUM)
    for marker in _PLACEHOLDER_MARKERS:
        if marker in normal:
            return True
    stripped = token.translate(_ASCII_SEPARATORS) if token.isascii() else _SEPARATORS.sub("", token)
    return len(set(stripped)) <= 1 or _RUN.search(stripped) is not None


def _same_as_key(key: str, value: str) -> bool:
    """``HF_TOKEN=HF_TOKEN``, ``password: password``: a name where the value should go."""
    norm = _normal(value)
    return norm == _normal(key) or norm in _PASSWORD_WORDS or norm in _SECRET_WORDS


def _normal(text: str) -> str:
    return _alnum(text.lower(), _ASCII_NOT_ALNUM)


def _alnum(lowered: str, table: dict[int, int | None]) -> str:
    """*lowered* translated by *table* (ASCII deletions), then, only if characters beyond
    ASCII are left, without them: what ``_NOT_ALNUM`` removes, in one pass on ASCII text.
    (``_NOT_ALNUM`` removes every character beyond ASCII.)"""
    out = lowered.translate(table)
    return out if out.isascii() else _NOT_ALNUM.sub("", out)


def _high_entropy(value: str) -> bool:
    if value.isascii():  # then isalpha and isdigit are these classes: one search each
        if _ASCII_LETTER.search(value) is None or _ASCII_DIGIT.search(value) is None:
            return False
    elif not (_has_letter(value) and any(ch.isdigit() for ch in value)):
        return False
    if _HEX.fullmatch(value):
        bare = value.replace("-", "")
        return len(bare) >= 12 and shannon_entropy(bare) > 3.0
    if _BASE64_CHARSET.fullmatch(value):
        if len(value) < 12:
            return False
        return shannon_entropy(value) > min(4.5, 0.85 * math.log2(len(value)))
    return len(value) >= 10 and shannon_entropy(value) > 3.5


def _has_space(text: str) -> bool:
    """Whitespace inside a stripped, non-empty *text* (``str.split`` is one C-level pass)."""
    return len(text.split()) > 1


def _has_letter(value: str) -> bool:
    return any(ch.isalpha() for ch in value)


def _unquote(value: str) -> str:
    text = value.strip().rstrip(",;").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text
