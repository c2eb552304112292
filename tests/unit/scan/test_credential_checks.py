"""KST060-KST062: credentials in ConfigMaps, env literals and annotations, on small manifests.

Aspects: the rule catalog (ids, no KST063, severities, references); KST060 on ``data`` (plain,
base64-wrapped, embedded settings, keys with dots) and ``binaryData`` (text decoded, binary
skipped), never on Secrets; KST061 in every container list and workload kind with the exact
field path, not on ``valueFrom`` or substitutions, and not on Pods owned by a controller in
the index; KST062 on any object but Secrets, and the last-applied-configuration rule (only a
provider-pattern credential the live object no longer holds); messages name the key and the
detector; field paths point at the right line; and a canary: no secret value, nor any
6-character piece of one, appears in any finding.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import pytest

from kustos.kube.documents import line_of, parse_stream
from kustos.kube.index import ObjectIndex
from kustos.scan.checking import ScanInput
from kustos.scan.checks.credentials import CHECKS
from kustos.scan.findings import Finding, Severity

SMTP_PASSWORD = "Xq7Lm2Vp9Rt4Wz8Kc3Nb"
GITHUB = "ghp_MFjsDdPEATA5dZOPn19Ar0yDJFO4kRaatLEt"
AWS = "AKIAAM42S3YBQPIQLTVQ"
API_KEY = "JHAcS0bPbh7TUWub"
PLAIN_PASSWORD = "kq9Hw2pp"
SECRETS = (SMTP_PASSWORD, GITHUB, AWS, API_KEY, PLAIN_PASSWORD)
WRAPPED_AWS = base64.b64encode(f"aws_access_key_id={AWS}".encode()).decode()
BINARY_INI = base64.b64encode(f"[default]\nkey = {AWS}\n".encode()).decode()
BINARY_PNG = base64.b64encode(bytes(range(256))).decode()


def _scan(yaml_text: str, rule_id: str) -> list[Finding]:
    parsed = parse_stream(yaml_text, "x.yaml")
    assert not parsed.errors
    scan = ScanInput(ObjectIndex.of(parsed.objects))
    (check,) = [c for c in CHECKS if c.rule.id == rule_id]
    return list(check.run(scan))


def _fields(findings: Iterable[Finding]) -> list[str]:
    return [f.field for f in findings]


def test_catalog() -> None:
    rules = {c.rule.id: c.rule for c in CHECKS}
    assert sorted(rules) == ["KST060", "KST061", "KST062"]
    for rule in rules.values():
        assert rule.family == "credentials"
        assert rule.severity is Severity.HIGH
        assert rule.references
        assert "Secrets" in rule.rationale


# --------------------------------------------------------------------------- KST060

CONFIGMAP = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: app, namespace: shop}}
data:
  SMTP_HOST: mail.internal
  SMTP_PASSWORD: "{SMTP_PASSWORD}"
  SMTP_PASSWORD_FILE: /run/secrets/smtp
  DB_PASSWORD: "$(DB_PASSWORD)"
  API_TOKEN: "{{{{ .Values.apiToken }}}}"
  ADMIN_PASSWORD: changeme
  ENABLE_AUTH: "true"
  app.properties: |
    server.port=8080
    github.token={GITHUB}
  wrapped: "{WRAPPED_AWS}"
binaryData:
  creds.ini: "{BINARY_INI}"
  logo.png: "{BINARY_PNG}"
"""


def test_configmap_findings_and_fields() -> None:
    findings = _scan(CONFIGMAP, "KST060")
    assert _fields(findings) == [
        'data["SMTP_PASSWORD"]',
        'data["app.properties"]',
        'data["wrapped"]',
        'binaryData["creds.ini"]',
    ]
    by_field = {f.field: f for f in findings}
    assert by_field['data["SMTP_PASSWORD"]'].message == (
        'ConfigMap key "SMTP_PASSWORD" holds what looks like a password '
        "(keyword-named key with a high-entropy value)"
    )
    assert dict(by_field['data["app.properties"]'].details)["detector"] == "github-token"
    assert dict(by_field['data["wrapped"]'].details)["detector"] == (
        "base64-encoded:aws-access-key-id"
    )
    assert dict(by_field['binaryData["creds.ini"]'].details)["detector"] == "aws-access-key-id"
    assert all(f.resource is not None and f.resource.name == "app" for f in findings)
    assert all(f.severity is Severity.HIGH for f in findings)


def test_configmap_field_points_at_the_key_line() -> None:
    (finding, *_) = _scan(CONFIGMAP, "KST060")
    line = line_of(CONFIGMAP, 1, finding.field)
    assert CONFIGMAP.splitlines()[line - 1].strip().startswith("SMTP_PASSWORD:")


def test_configmap_without_credentials() -> None:
    clean = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  LOG_LEVEL: info
  PASSWORD_MIN_LENGTH: "12"
  secretName: app-tls
  TOKEN_PATH: /var/run/secrets/tokens/app
  nsswitch.conf: |
    passwd: compat
  DATABASE_URL: postgres://app@db:5432/app
"""
    assert _scan(clean, "KST060") == []


def test_secrets_are_not_configmaps() -> None:
    secret = f"""
apiVersion: v1
kind: Secret
metadata: {{name: app}}
stringData:
  SMTP_PASSWORD: "{SMTP_PASSWORD}"
"""
    assert _scan(secret, "KST060") == []


# --------------------------------------------------------------------------- KST061

DEPLOYMENT = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          env:
            - {{name: DB_HOST, value: db}}
            - {{name: MYSQL_ROOT_PASSWORD, value: {PLAIN_PASSWORD}}}
      containers:
        - name: api
          env:
            - {{name: LOG_LEVEL, value: debug}}
            - {{name: DB_PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}
            - {{name: STRIPE_API_KEY, value: "{API_KEY}"}}
            - {{name: DB_URL, value: "postgres://app:$(DB_PASSWORD)@db/app"}}
            - {{name: GITHUB_PAT, value: "{GITHUB}"}}
      ephemeralContainers:
        - name: debug
          env:
            - {{name: ADMIN_PASSWORD, value: "{PLAIN_PASSWORD}"}}
"""


def test_env_literals_in_every_container_list() -> None:
    findings = _scan(DEPLOYMENT, "KST061")
    assert _fields(findings) == [
        "spec.template.spec.initContainers[0].env[1]",
        "spec.template.spec.containers[0].env[2]",
        "spec.template.spec.containers[0].env[4]",
        "spec.template.spec.ephemeralContainers[0].env[0]",
    ]
    assert findings[0].message == (
        'Env var "MYSQL_ROOT_PASSWORD" of container "migrate" holds what looks like a '
        "plaintext password (password-named key with a literal value, and a guessable one)"
    )
    assert [dict(f.details)["detector"] for f in findings] == [
        "plaintext-password",
        "keyword-high-entropy",
        "github-token",
        "plaintext-password",
    ]
    # A guessable password is worse than a strong token: ranked higher, not lower.
    assert [f.severity.label for f in findings] == ["critical", "high", "high", "critical"]


def test_env_literal_in_cronjob_and_pod() -> None:
    manifests = f"""
apiVersion: batch/v1
kind: CronJob
metadata: {{name: report}}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: report
              env:
                - {{name: AWS_ACCESS_KEY_ID, value: {AWS}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: once}}
spec:
  containers:
    - name: once
      env:
        - {{name: SMTP_PASSWORD, value: "{SMTP_PASSWORD}"}}
"""
    findings = _scan(manifests, "KST061")
    assert sorted((f.resource.kind if f.resource else "", f.field) for f in findings) == [
        ("CronJob", "spec.jobTemplate.spec.template.spec.containers[0].env[0]"),
        ("Pod", "spec.containers[0].env[0]"),
    ]


def test_owned_pods_are_left_to_their_controller() -> None:
    manifests = f"""
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: api-1, namespace: shop}}
spec:
  template:
    spec:
      containers:
        - name: api
          env: [{{name: MYSQL_PASSWORD, value: {PLAIN_PASSWORD}}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: api-1-abcde
  namespace: shop
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: api-1}}]
spec:
  containers:
    - name: api
      env: [{{name: MYSQL_PASSWORD, value: {PLAIN_PASSWORD}}}]
"""
    findings = _scan(manifests, "KST061")
    assert [f.resource.kind if f.resource else "" for f in findings] == ["ReplicaSet"]


def test_env_without_credentials() -> None:
    clean = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers:
        - name: db
          env:
            - {name: MYSQL_ALLOW_EMPTY_PASSWORD, value: "1"}
            - {name: MYSQL_ROOT_PASSWORD, value: changeme}
            - {name: HF_TOKEN, value: HF_TOKEN}
            - {name: TOKEN, value: "$(API_TOKEN)"}
            - {name: GOOGLE_APPLICATION_CREDENTIALS, value: /var/secrets/google/key.json}
            - {name: SECRET_ID, value: bq-readonly-key}
            - {name: MAX_TOTAL_TOKENS, value: "2048"}
            - {name: API_KEY, valueFrom: {secretKeyRef: {name: api, key: key}}}
"""
    assert _scan(clean, "KST061") == []


# --------------------------------------------------------------------------- KST062


def test_annotations_on_any_object_but_secrets() -> None:
    manifests = f"""
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    ci.example.org/token: "{GITHUB}"
    cert-manager.io/inject-ca-from-secret: cert-manager/webhook-ca
    example.org/owner: team-a
---
apiVersion: v1
kind: Secret
metadata:
  name: web
  annotations:
    ci.example.org/token: "{GITHUB}"
"""
    findings = _scan(manifests, "KST062")
    assert [(f.resource.kind if f.resource else "", f.field) for f in findings] == [
        ("Service", 'metadata.annotations["ci.example.org/token"]'),
    ]
    assert findings[0].message == (
        'Annotation "ci.example.org/token" holds what looks like a GitHub token '
        "(matches the GitHub token pattern)"
    )


def _with_last_applied(data: dict[str, str], applied: dict[str, str]) -> str:
    copy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app"},
        "data": applied,
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "app",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(copy),
            },
        },
        "data": data,
    }
    return json.dumps(body)


def test_last_applied_copy_of_live_credential_is_not_reported_twice() -> None:
    manifest = _with_last_applied({"key": AWS}, {"key": AWS})
    assert _scan(manifest, "KST062") == []
    assert _fields(_scan(manifest, "KST060")) == ['data["key"]']


def test_last_applied_copy_keeps_a_removed_credential() -> None:
    manifest = _with_last_applied({"key": "moved-to-a-secret"}, {"key": AWS})
    findings = _scan(manifest, "KST062")
    assert _fields(findings) == [
        'metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]'
    ]
    assert findings[0].message.endswith("kept only in kubectl's last-applied copy")
    assert dict(findings[0].details)["detector"] == "aws-access-key-id"


def test_last_applied_keyword_values_are_left_to_live_fields() -> None:
    manifest = _with_last_applied({}, {"SMTP_PASSWORD": SMTP_PASSWORD})
    assert _scan(manifest, "KST062") == []


# --------------------------------------------------------------------------- canary


def _pieces(text: str, size: int = 6) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


@pytest.mark.parametrize(
    ("manifest", "rule_id"),
    [
        (CONFIGMAP, "KST060"),
        (DEPLOYMENT, "KST061"),
        (_with_last_applied({}, {"key": AWS}), "KST062"),
    ],
)
def test_canary_no_value_in_findings(manifest: str, rule_id: str) -> None:
    findings = _scan(manifest, rule_id)
    assert findings
    shown = "\n".join(repr(f) + f.message + f.fingerprint for f in findings)
    for secret in SECRETS:
        assert secret not in shown
        assert not {piece for piece in _pieces(secret) if piece in shown}, secret
