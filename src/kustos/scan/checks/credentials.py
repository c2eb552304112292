"""Credentials kept outside Secrets: in ConfigMaps, env literals and annotations (KST060-KST062).

Purely data. Every value goes through :func:`kustos.scan.credentials.detect`; findings
name the key, env var or annotation and the detector's kind, never the value. Secrets are
out of scope here (their values are ``Sensitive`` and belong there).

Decisions:

- Base64-wrapped credentials in a ConfigMap are part of KST060 (detector kind
  ``base64-encoded:<kind>``) rather than a rule of their own: it is the same mistake, and
  one finding per key is easier to act on. There is no KST063.
- ``binaryData`` is decoded; a value that is UTF-8 text is checked like ``data``, real
  binary content is skipped.
- Pods and ReplicaSets owned by a controller in the index are skipped for KST061: the
  finding belongs on the Deployment (or other controller) that wrote the template.
- ``kubectl.kubernetes.io/last-applied-configuration`` on a non-Secret object is a copy of
  the object, so its keyword-named values are already judged in their live fields
  (KST060/KST061). It is reported only when it holds a provider-pattern credential
  (AWS key, GitHub token, private key...) that the live object no longer holds: the
  credential was removed from the object but survives in kubectl's copy.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Final

from kustos.kube.objects import KubeObject
from kustos.kube.references import containers, items, pod_spec_of
from kustos.scan.checking import Check, ScanInput, finding
from kustos.scan.credentials import CredentialHit, detect, provider_fingerprints
from kustos.scan.findings import Finding, Rule, Severity

LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"

_VIEW_ROLE: Final = (
    "The built-in view ClusterRole (and most read-only roles) may read ConfigMaps, pod "
    "templates and annotations but not Secrets; "
)

CONFIGMAP_CREDENTIAL = Rule(
    id="KST060",
    family="credentials",
    severity=Severity.HIGH,
    title="Credential stored in a ConfigMap",
    rationale=(
        _VIEW_ROLE + "a credential kept in a ConfigMap is readable by everyone with read "
        "access to the namespace, is not covered by encryption at rest for Secrets, and "
        "lands in Git, Helm values and backups in clear. Base64 does not hide it."
    ),
    remediation=(
        "Move the value into a Secret (or an external secret store) and reference it with "
        "secretKeyRef or a secret volume; rotate the exposed credential."
    ),
    references=("Kubescape C-0012", "Polaris sensitiveConfigmapContent", "Trivy KSV-0109",
                "Trivy KSV-01010", "Checkov CKV_SECRET_2", "Checkov CKV_SECRET_6",
                "Checkov CKV_SECRET_10", "Checkov CKV_SECRET_13"),
)  # fmt: skip
ENV_LITERAL_CREDENTIAL = Rule(
    id="KST061",
    family="credentials",
    severity=Severity.HIGH,
    title="Credential written as a literal environment variable value",
    rationale=(
        _VIEW_ROLE + "a credential written into `env[].value` is readable by everyone who can "
        "get the workload or its pods, sits in every manifest, diff and rollout history, and "
        "cannot be rotated without editing the workload."
    ),
    remediation=(
        "Put the value in a Secret and mount it as a file (or, at least, use "
        "valueFrom.secretKeyRef); rotate the exposed credential."
    ),
    references=("Kubescape C-0012", "Kubescape C-0259", "Polaris sensitiveContainerEnvVar",
                "kube-linter env-var-secret", "Checkov CKV_SECRET_10"),
)  # fmt: skip
ANNOTATION_CREDENTIAL = Rule(
    id="KST062",
    family="credentials",
    severity=Severity.HIGH,
    title="Credential stored in an annotation",
    rationale=(
        _VIEW_ROLE + "annotations are also returned by every list and watch of the object, "
        "copied by tools that mirror metadata, and shown by `kubectl describe`."
    ),
    remediation=(
        "Remove the value from the annotation (and from kubectl's last-applied copy, e.g. "
        "by re-creating the object), keep it in a Secret, and rotate it."
    ),
    references=("Checkov CKV_SECRET_2", "Checkov CKV_SECRET_9", "Checkov CKV_SECRET_13",
                "Kubescape C-0012"),
)  # fmt: skip


def configmap_credentials(scan: ScanInput) -> Iterator[Finding]:
    """KST060: ConfigMap ``data``/``binaryData`` values that look like credentials."""
    for obj in scan.index.of_kind("ConfigMap"):
        for section, key, text in _configmap_values(obj):
            hit = detect(key, text)
            if hit is not None:
                yield _ranked(
                    hit,
                    finding(
                        CONFIGMAP_CREDENTIAL,
                        obj,
                        f'ConfigMap key "{key}" holds what looks like {_phrase(hit)}',
                        field=f"{section}[{_quote(key)}]",
                        details={"detector": hit.kind, "key": key},
                    ),
                )


def env_literal_credentials(scan: ScanInput) -> Iterator[Finding]:
    """KST061: ``env[].value`` literals in any container list that look like credentials."""
    for obj in scan.index.workloads():
        view = pod_spec_of(obj)
        if view is None or scan.index.is_owned(obj.ref):
            continue
        for cview in containers(view):
            for ei, env in items(cview.container.get("env")):
                if "valueFrom" in env:
                    continue  # a reference, not a literal (about half of the entries)
                name, value = env.get("name"), _text(env.get("value"))
                if not isinstance(name, str) or value is None:
                    continue
                hit = detect(name, value)
                if hit is None:
                    continue
                where = f'container "{cview.name}"' if cview.name else "a container"
                yield _ranked(
                    hit,
                    finding(
                        ENV_LITERAL_CREDENTIAL,
                        obj,
                        f'Env var "{name}" of {where} holds what looks like {_phrase(hit)}',
                        field=f"{cview.path}.env[{ei}]",
                        details={"detector": hit.kind, "env": name},
                    ),
                )


def annotation_credentials(scan: ScanInput) -> Iterator[Finding]:
    """KST062: annotation values (outside Secrets) that look like credentials."""
    for obj in scan.index:
        if obj.kind == "Secret" and obj.api_version == "v1":
            continue
        for key, raw in obj.annotations.items():
            value = _text(raw)
            if not isinstance(key, str) or value is None:
                continue
            if key == LAST_APPLIED:
                hit = _stale_copy_hit(obj, value)
                suffix = " kept only in kubectl's last-applied copy"
            else:
                hit = detect(key, value)
                suffix = ""
            if hit is not None:
                yield _ranked(
                    hit,
                    finding(
                        ANNOTATION_CREDENTIAL,
                        obj,
                        f'Annotation "{key}" holds what looks like {_phrase(hit)}{suffix}',
                        field=f"metadata.annotations[{_quote(key)}]",
                        details={"detector": hit.kind, "annotation": key},
                    ),
                )


CHECKS: tuple[Check, ...] = (
    Check(CONFIGMAP_CREDENTIAL, configmap_credentials),
    Check(ENV_LITERAL_CREDENTIAL, env_literal_credentials),
    Check(ANNOTATION_CREDENTIAL, annotation_credentials),
)


# --------------------------------------------------------------------------- helpers


def _phrase(hit: CredentialHit) -> str:
    weak = ", and a guessable one" if hit.weak else ""
    return f"{hit.what} ({hit.reason}{weak})"


def _ranked(hit: CredentialHit, found: Finding) -> Finding:
    """A guessable credential (``1234``, ``admin``) is worse than a strong one: critical."""
    if not hit.weak:
        return found
    return replace(
        found, severity=Severity.CRITICAL, details=tuple(sorted((*found.details, ("weak", "true"))))
    )


def _quote(key: str) -> str:
    # The bracket form that kustos.kube.documents.parse_path reads back: data["a.b/c"].
    return '"' + key.replace('"', '\\"') + '"'


def _configmap_values(obj: KubeObject) -> Iterator[tuple[str, str, str]]:
    data = obj.body.get("data")
    if isinstance(data, Mapping):
        for key, raw in data.items():
            text = _text(raw)
            if isinstance(key, str) and text is not None:
                yield "data", key, text
    binary = obj.body.get("binaryData")
    if isinstance(binary, Mapping):
        for key, raw in binary.items():
            text = _decoded_text(raw)
            if isinstance(key, str) and text is not None:
                yield "binaryData", key, text


def _stale_copy_hit(obj: KubeObject, copy: str) -> CredentialHit | None:
    """A provider-pattern hit in *copy* whose credential the live object does not hold."""
    in_copy = provider_fingerprints(copy)
    if not in_copy:
        return None
    live: set[str] = set()
    for text in _strings(obj.body, skip=LAST_APPLIED):
        live |= provider_fingerprints(text)
    if in_copy <= live:
        return None
    # Name the kind of credential: the first provider hit of the copy that is not live.
    for text in _json_strings(copy):
        if provider_fingerprints(text) - live:
            return detect(None, text)
    return detect(None, copy)


def _strings(node: Any, *, skip: str = "") -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key != skip:
                yield from _strings(value, skip=skip)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, skip=skip)


def _json_strings(text: str) -> Iterator[str]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return
    yield from _strings(parsed)


def _text(value: Any) -> str | None:
    """A scalar as text; ``None`` for mappings, lists, nulls and (defensively) ``Sensitive``."""
    if type(value) is str:
        return value  # most values: str(value) of a str is the value itself
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _decoded_text(value: Any) -> str | None:
    raw = value if isinstance(value, bytes) else value.encode() if isinstance(value, str) else None
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
