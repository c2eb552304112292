"""The credential detector behind KST060-KST062, on single keys and values.

Aspects: each provider pattern (AWS, GitHub, GitLab, Slack token and webhook, Google,
Stripe, private-key blocks, JWT) fires on a real-shaped value and not on a near miss;
credentials in URLs; base64-wrapped provider tokens; keyword-named keys with high-entropy
values and password-named keys with literal values; embedded ``name = value`` settings in
multi-line config text; every suppression rule (templates, paths, plain URLs, booleans,
numbers, empty values, placeholders, self-naming values, ``namespace/name`` references,
values with spaces, reference-suffixed keys); how key names are classified; and a canary:
no hit carries the value or any 6-character piece of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from kustos.scan.credentials import (
    CredentialHit,
    detect,
    is_credential_name,
    is_setting_name,
    is_weak,
    key_class,
    shannon_entropy,
)

# Real-shaped but random values (generated for these tests, never issued by anyone).
AWS_AKIA = "AKIAAM42S3YBQPIQLTVQ"
AWS_ASIA = "ASIAQZOD3J2A6LUG7SH1"
GITHUB_CLASSIC = "ghp_MFjsDdPEATA5dZOPn19Ar0yDJFO4kRaatLEt"
GITHUB_FINE = (
    "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"
)
GITLAB = "glpat-WP8u1wv6d9UcaIqWlVd8"
SLACK = "xoxb-05581863621-264287416332-giP0OWMQ22tEx1uVH82JSp0J"
SLACK_WEBHOOK = "https://hooks.slack.com/services/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"
GOOGLE = "AIzaZSgizmLQcQ1o31Xg4xC7hEXcDqztOBuh8na"
STRIPE_SK = "sk_live_ejoB9p1lObGbNgGBQUpmBwta"
STRIPE_RK = "rk_live_q4IEBGIpqiRRcALX8yuXy7xP"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJrdXN0b3MiLCJpYXQiOjE3MDAwMDAwMDB9."
    "Wq7c1bN2vF0pXkLr9sGtQ3mHjY8uZdEa5oCiKw4nBxM"
)
KEY_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo\n"
)
RSA_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}-----END RSA PRIVATE KEY-----\n"
OPENSSH_KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}-----END OPENSSH PRIVATE KEY-----"
PKCS8_KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}-----END PRIVATE KEY-----"
RANDOM_16 = "JHAcS0bPbh7TUWub"
RANDOM_40 = "sZ47ptGqK1zmwqYUazHGdBSxKGI0LJOLbAjpxiKG"
RANDOM_HEX = "fb719f27513f9acf17a3d2bb208096c8"
RANDOM_B64 = "XWL09dFP0Y6xJSOOJ8U9K+nABgSuPFOsOTApHhPeru2H"
RANDOM_SYMBOLS = "nWFOZ^0#0UF7rj"


@dataclass(frozen=True, slots=True)
class Case:
    """One detector input and the kind it must produce."""

    key: str | None
    value: str
    kind: str
    #: The part of *value* that is the credential (defaults to the whole value).
    secret: str = ""

    @property
    def credential(self) -> str:
        return self.secret or self.value


POSITIVE: dict[str, Case] = {
    "aws AKIA": Case(None, AWS_AKIA, "aws-access-key-id"),
    "aws ASIA inside text": Case(
        "config", f"aws_access_key_id = {AWS_ASIA}\n", "aws-access-key-id", AWS_ASIA
    ),
    "github classic": Case(None, GITHUB_CLASSIC, "github-token"),
    # The public "github_pat_" prefix names the format; the canary watches the random part.
    "github fine-grained": Case(None, GITHUB_FINE, "github-token", GITHUB_FINE[11:]),
    "gitlab": Case(None, GITLAB, "gitlab-token"),
    "slack token": Case(None, SLACK, "slack-token"),
    "slack webhook": Case("url", SLACK_WEBHOOK, "slack-webhook"),
    "google api key": Case(None, GOOGLE, "google-api-key"),
    "stripe secret": Case(None, STRIPE_SK, "stripe-live-key"),
    "stripe restricted": Case(None, STRIPE_RK, "stripe-live-key"),
    "rsa private key": Case("tls.key", RSA_KEY, "private-key-block"),
    "openssh private key": Case("id", OPENSSH_KEY, "private-key-block"),
    "pkcs8 private key": Case("id", PKCS8_KEY, "private-key-block"),
    "jwt": Case("header", f"Bearer {JWT}", "jwt", JWT),
    "url with password": Case(
        "DATABASE_URL", "postgres://app:Vq8rT2mLx9@db:5432/app", "url-credentials", "Vq8rT2mLx9"
    ),
    "url with empty user": Case(
        "REDIS_URL", "redis://:Vq8rT2mLx9@redis:6379", "url-credentials", "Vq8rT2mLx9"
    ),
    "base64 github": Case(
        None, base64.b64encode(GITHUB_CLASSIC.encode()).decode(), "base64-encoded:github-token"
    ),
    "base64 aws in text": Case(
        "creds",
        base64.b64encode(f"key={AWS_AKIA}\n".encode()).decode(),
        "base64-encoded:aws-access-key-id",
    ),
    "base64 private key": Case(
        "k", base64.b64encode(RSA_KEY.encode()).decode(), "base64-encoded:private-key-block"
    ),
    "api_key entropy": Case("api_key", RANDOM_16, "keyword-high-entropy"),
    "apiKey entropy": Case("apiKey", RANDOM_40, "keyword-high-entropy"),
    "client_secret entropy": Case("client_secret", RANDOM_B64, "keyword-high-entropy"),
    "clientSecret entropy": Case("clientSecret", RANDOM_40, "keyword-high-entropy"),
    "auth token hex": Case("AUTH_TOKEN", RANDOM_HEX, "keyword-high-entropy"),
    "access key": Case("MINIO_ACCESS_KEY", RANDOM_16, "keyword-high-entropy"),
    "private_key": Case("private_key", RANDOM_40, "keyword-high-entropy"),
    "credentials": Case("registryCredentials", RANDOM_40, "keyword-high-entropy"),
    "secret key base": Case("SECRET_KEY_BASE", RANDOM_HEX, "keyword-high-entropy"),
    "uuid token": Case(
        "SYSDIG_TOKEN", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "keyword-high-entropy"
    ),
    "symbols password": Case("DB_PWD", RANDOM_SYMBOLS, "keyword-high-entropy"),
    "plaintext password": Case("SMTP_PASSWORD", "hunter2", "plaintext-password"),
    "weak default password": Case("GF_SECURITY_ADMIN_PASSWORD", "admin", "plaintext-password"),
    "passwd": Case("db_passwd", "Tr0ub4dor", "plaintext-password"),
    "passphrase": Case("gpgPassphrase", "correct-horse-battery", "plaintext-password"),
    "embedded properties": Case(
        "application.properties",
        f"spring.datasource.url=jdbc:x\nspring.datasource.password={RANDOM_16}\n",
        "keyword-high-entropy",
        RANDOM_16,
    ),
    "embedded yaml": Case(
        "config.yaml",
        f'smtp:\n  host: mail\n  password: "{RANDOM_40}"\n',
        "keyword-high-entropy",
        RANDOM_40,
    ),
}


@pytest.mark.parametrize("case", POSITIVE.values(), ids=POSITIVE.keys())
def test_detects(case: Case) -> None:
    hit = detect(case.key, case.value)
    assert hit is not None
    assert hit.kind == case.kind


NEAR_MISSES: dict[str, tuple[str | None, str]] = {
    "aws too short": (None, "AKIA2S3YBQPIQLTVQ"),
    "aws inside a longer word": (None, f"X{AWS_AKIA}9"),
    "aws documentation example": (None, "AKIAIOSFODNN7EXAMPLE"),
    "github too short": (None, "ghp_MFjsDdPEATA5dZOPn19Ar0"),
    "github placeholder": (None, "ghp_" + "x" * 36),
    "gitlab too short": (None, "glpat-WP8u1wv6d9"),
    "slack without numbers": (None, "xoxb-giP0OWMQ22tEx1uVH82JSp0J"),
    "slack webhook docs": (
        "url",
        "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    "google too short": (None, "AIzaZSgizmLQcQ1o31Xg4x"),
    "stripe test key": (None, "sk_test_ejoB9p1lObGbNgGBQUpmBwta"),
    "private key header only": ("doc", "paste the -----BEGIN PRIVATE KEY----- block here"),
    "public key": ("k", f"-----BEGIN PUBLIC KEY-----\n{KEY_BODY}-----END PUBLIC KEY-----"),
    "certificate": ("tls.crt", f"-----BEGIN CERTIFICATE-----\n{KEY_BODY}-----END CERTIFICATE-----"),
    "jwt-like without a header": (
        None,
        "eyJub3RoaW5nIjoxfQ.eyJzdWIiOiJrdXN0b3MifQ.Wq7c1bN2vF0pXkLr9sGtQ",
    ),
    "url without password": ("ENDPOINT", "https://user@example.org/path"),
    "url with a port": ("ENDPOINT", "http://db:5432/app"),
    "url with template password": ("DATABASE_URL", "postgres://app:${DB_PASSWORD}@db/app"),
    "url with placeholder password": ("DATABASE_URL", "postgres://app:password@db/app"),
    "base64 of harmless text": (
        "data",
        base64.b64encode(b"listen_port = 8080\nlog_level = info").decode(),
    ),
    "token low entropy": ("token", "mytoken1"),
    "secret without digits": ("client_secret", "my-client-secret-for-kustos"),
    "api key too short": ("api_key", "Zx9Qm2Lp7"),
    "password too short": ("password", "ab"),
    "embedded nsswitch passwd": (
        "nsswitch.conf",
        "passwd:         compat\ngroup:          compat\n",
    ),
    "embedded plaintext password": ("app.properties", "db.user=app\ndb.password=admin123\n"),
    "embedded template": ("init.sh", 'AUTH_TOKEN=$(cat /run/token)\nSECRET="${SENTINELAUTH}"\n'),
    "no key, low entropy": (None, RANDOM_16),
}


@pytest.mark.parametrize(("key", "value"), NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_ignores_near_misses(key: str | None, value: str) -> None:
    assert detect(key, value) is None


SUPPRESSED: dict[str, tuple[str, str]] = {
    "empty": ("password", ""),
    "blank": ("password", "   "),
    "$(VAR)": ("DB_PASSWORD", "$(POSTGRES_PASSWORD)"),
    "${VAR}": ("DB_PASSWORD", "${POSTGRES_PASSWORD}"),
    "$VAR": ("DB_PASSWORD", "$POSTGRES_PASSWORD"),
    "{{ }}": ("api_key", "{{ .Values.apiKey }}"),
    "{% %}": ("api_key", "{% raw %}k9{% endraw %}"),
    "%VAR%": ("DB_PASSWORD", "%DB_PASSWORD%"),
    "absolute path": ("TLS_KEY", "/etc/tls/tls.key"),
    "relative path": ("password", "./secrets/db-password"),
    "parent path": ("password", "../secrets/db-password"),
    "home path": ("private_key", "~/.ssh/id_ed25519"),
    "windows path": ("password", "C:\\secrets\\db.txt"),
    "file url": ("credentials", "file:creds.json"),
    "plain url": ("auth", "https://auth.example.org/oauth2/token"),
    "boolean": ("MYSQL_ALLOW_EMPTY_PASSWORD", "true"),
    "yes": ("password", "yes"),
    "null": ("password", "null"),
    "float": ("token", "0.75"),
    "duration": ("token", "30s"),
    "quantity": ("secret", "512Mi"),
    "changeme": ("MYSQL_ROOT_PASSWORD", "changeme"),
    "change-me leet": ("REGISTRY_HTTP_SECRET", "Ple4seCh4ngeThisN0tAVerySecretV4lue"),
    "angle brackets": ("HF_TOKEN", "<your-token>"),
    "angle password": ("password", "<password>"),
    "xxx": ("password", "xxxxxx"),
    "REPLACE_ME": ("api_key", "REPLACE_ME_9f8e7d6c5b4a"),
    "example": ("password", "example123"),
    "dummy": ("password", "dummy-pass"),
    "test": ("password", "testpass1"),
    "your": ("MYSQL_ROOT_PASSWORD", "yourpassword"),
    "insert": ("ETCD_DISCOVERY_TOKEN", "INSERT_ETCD_DISCOVERY_TOKEN"),
    "stars": ("password", "********"),
    "same as key": ("HF_TOKEN", "HF_TOKEN"),
    "password named password": ("password", "password"),
    "secret key with a sentence-like name": ("secretKey", "my-secret"),
    "short secret key": ("MINIO_SECRET_KEY", "abc12"),
    "secret word without digits": ("API_SECRET", "backend"),
    "namespace/name reference": (
        "cert-manager.io/inject-ca-from-secret",
        "cert-manager/webhook-ca",
    ),
    "sentence": ("password", "set in the vault at deploy time"),
    "keyFile": ("keyFile", RANDOM_40),
    "key_id": ("key_id", RANDOM_40),
    "secret_name": ("secret_name", RANDOM_40),
    "secretName": ("secretName", RANDOM_40),
    "token_path": ("token_path", RANDOM_40),
    "PASSWORD_FILE": ("PASSWORD_FILE", "/run/secrets/db"),
    "SECRET_ID": ("SECRET_ID", "bq-readonly-key"),
    "token count": ("MAX_TOTAL_TOKENS", "2048"),
    "bare key": ("key", RANDOM_40),
    "tls key name": ("TLS_KEY_NAME", RANDOM_40),
}


@pytest.mark.parametrize(("key", "value"), SUPPRESSED.values(), ids=SUPPRESSED.keys())
def test_suppresses_non_secrets(key: str, value: str) -> None:
    assert detect(key, value) is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("SMTP_PASSWORD", "password"),
        ("dbPasswd", "password"),
        ("PWD", "password"),
        ("client_secret", "secret"),
        ("clientSecret", "secret"),
        ("apikey", "secret"),
        ("api-key", "secret"),
        ("SECRET_KEY_BASE", "secret"),
        ("GITHUB_TOKEN", "token"),
        ("accessToken", "token"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "secret"),
        ("secretName", None),
        ("keyFile", None),
        ("key_id", None),
        ("token_path", None),
        ("key", None),
        ("TLS_KEY", None),
        ("MAX_TOKENS", None),
        ("bypass", None),
    ],
)
def test_key_class(key: str, expected: str | None) -> None:
    assert key_class(key) == expected


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert shannon_entropy(RANDOM_B64) > 4.5


def test_password_hit_says_what_and_why() -> None:
    hit = detect("SMTP_PASSWORD", RANDOM_40)
    assert hit == CredentialHit(
        "keyword-high-entropy", "a password", "keyword-named key with a high-entropy value"
    )


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("MYSQL_PASSWORD", "1234", "plaintext-password"),
        ("MYSQL_DB_PASSWORD", "password", "plaintext-password"),
        ("GF_SECURITY_ADMIN_PASSWORD", "admin", "plaintext-password"),
        ("MINIO_SECRET_KEY", "minio123", "plaintext-secret-key"),
        ("secretKey", "s3cret99", "plaintext-secret-key"),
    ],
)
def test_a_value_named_as_a_password_is_one_whatever_its_entropy(
    key: str, value: str, kind: str
) -> None:
    hit = detect(key, value)
    assert hit is not None
    assert (hit.kind, hit.weak) == (kind, True)


def test_strong_passwords_are_not_weak() -> None:
    hit = detect("DB_PASSWORD", "Tr0ub4dor&3-horse-Staple")
    assert hit is not None
    assert not hit.weak
    assert is_weak("minio123")
    assert is_weak("letmein")
    assert not is_weak("Tr0ub4dor&3-horse-Staple")


@pytest.mark.parametrize(
    ("key", "credential", "setting"),
    [
        ("password", True, False),
        ("hf_api_token", True, False),
        ("rootpasswd", True, False),
        ("username", False, True),
        ("region-id", False, True),
        ("SubscriptionID", False, True),
        ("port", False, True),
        ("api-url", False, True),
        ("elastic", False, False),
    ],
)
def test_names_of_credentials_and_of_settings(key: str, credential: bool, setting: bool) -> None:
    assert (is_credential_name(key), is_setting_name(key)) == (credential, setting)


def test_embedded_hit_names_the_setting_not_the_value() -> None:
    hit = detect("app.properties", f"db.password={RANDOM_16}\n")
    assert hit is not None
    assert '"db.password"' in hit.reason


def _pieces(text: str, size: int = 6) -> set[str]:
    return {text[i : i + size] for i in range(max(len(text) - size + 1, 1))}


@pytest.mark.parametrize("case", POSITIVE.values(), ids=POSITIVE.keys())
def test_canary_no_hit_repeats_the_value(case: Case) -> None:
    hit = detect(case.key, case.value)
    assert hit is not None
    shown = repr(hit) + str(hit) + hit.kind + hit.what + hit.reason
    assert case.credential not in shown
    leaked = {piece for piece in _pieces(case.credential) if piece in shown}
    assert not leaked


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("A3TX", "aws-access-key-id"),
        ("AKIA", "aws-access-key-id"),
        ("ASIA", "aws-access-key-id"),
        ("ABIA", "aws-access-key-id"),
        ("ACCA", "aws-access-key-id"),
    ]
    + [(f"gh{c}_", "github-token") for c in "pousr"],
)
def test_every_prefix_of_a_pattern_passes_the_quick_dismissal(prefix: str, kind: str) -> None:
    # Values without any pattern's literal are dismissed before the patterns run: each
    # alternative of a pattern must still be found, alone and inside a longer text.
    body = "Q7" * 20
    length = 20 if kind == "aws-access-key-id" else 40
    token = (prefix + body)[:length]
    for value in (token, f"export X={token} # rotated"):
        hit = detect(None, value)
        assert hit is not None
        assert hit.kind == kind
    stripe = detect(None, "rk_live_" + "a1B2" * 7)
    assert stripe is not None
    assert stripe.kind == "stripe-live-key"
