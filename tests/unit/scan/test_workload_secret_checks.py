"""Workload, Secret and isolation checks: a positive and a negative fixture for each.

Aspects: env and envFrom Secret use (init containers, CronJobs); default ServiceAccount;
token automount with pod-level and ServiceAccount-level settings (the pod wins) and bound
ServiceAccounts; readOnly: false; permissive defaultMode and item modes; hostPath to node
credentials; Secret type vs content; immutable; unused Secrets (Ingress TLS counts as a
use; unseen namespaces are not judged); pull secrets on default and shared; default
namespace only when explicit; age (live only, with the rotated-at annotation);
default-deny NetworkPolicy.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.unit.manifests import findings, where


def deploy(spec: str, *, ns: str = "team", name: str = "app") -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n  template:\n    spec:\n{spec}---\n"
    )


def container(extra: str = "") -> str:
    return f"      containers:\n      - name: c\n        image: x\n{extra}"


def secret(name: str = "s", body: str = "", *, ns: str = "team", meta: str = "") -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}{meta}}}\n{body}---\n"


SA_BOUND = (
    "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: runner, namespace: team}\n---\n"
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: team}\n"
    "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n"
    "subjects: [{kind: ServiceAccount, name: runner, namespace: team}]\n---\n"
)
SA_OTHER = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: other, namespace: team}\n---\n"
DEFAULT_BOUND = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: d, namespace: team}\n"
    "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n"
    "subjects: [{kind: ServiceAccount, name: default, namespace: team}]\n---\n"
)
ENV = "        env:\n        - {name: P, valueFrom: {secretKeyRef: {name: s, key: p}}}\n"
ENV_FROM = "        envFrom:\n        - secretRef: {name: s}\n"
MOUNT = "        volumeMounts:\n        - {name: v, mountPath: /s, readOnly: %s}\n"
VOLUME = "      volumes:\n      - name: v\n        secret: {secretName: s, defaultMode: %s}\n"


READERS = "".join(
    deploy(container("        volumeMounts: [{name: v, mountPath: /s}]\n")
           + "      volumes: [{name: v, secret: {secretName: s}}]\n", name=f"r{i}")
    for i in range(3)
)  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "positive", "negative"),
    [
        ("KST020", deploy(container(ENV)), deploy(container(ENV_FROM))),
        ("KST021", deploy(container(ENV_FROM)), deploy(container(ENV))),
        ("KST022", DEFAULT_BOUND + deploy(container()), deploy(container())),
        ("KST023", SA_BOUND + SA_OTHER + deploy("      serviceAccountName: other\n" + container()),
         SA_BOUND + deploy("      serviceAccountName: runner\n" + container())),
        ("KST024", deploy(container(MOUNT % "false") + VOLUME % "0400"),
         deploy(container(MOUNT % "true") + VOLUME % "0400")),
        ("KST025", deploy(container() + VOLUME % "0777"), deploy(container() + VOLUME % "0644")),
        ("KST026", deploy(container() + "      volumes:\n      - {name: h, hostPath: {path: /var/lib/kubelet/pods}}\n"),
         deploy(container() + "      volumes:\n      - {name: h, hostPath: {path: /var/log}}\n")),
        ("KST040", secret() + READERS, secret(body="immutable: true\n") + READERS),
        ("KST041", secret(body="stringData: {tls.crt: a, tls.key: b}\n"),
         secret(body="type: kubernetes.io/tls\nstringData: {tls.crt: a, tls.key: b}\n")),
        ("KST042", secret("lonely") + deploy(container()), secret() + deploy(container(ENV))),
        ("KST043", secret("pull") + "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: team}\nimagePullSecrets: [{name: pull}]\n",
         secret("pull") + "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: builder, namespace: team}\nimagePullSecrets: [{name: pull}]\n"),
        ("KST045", secret(ns="default"), secret(ns="team")),
    ],
)  # fmt: skip
def test_positive_and_negative(rule_id: str, positive: str, negative: str) -> None:
    assert findings(positive, rule_id), f"{rule_id} missed"
    assert findings(negative, rule_id) == [], f"{rule_id} false positive"


def test_env_findings_cover_init_containers_and_cronjobs_with_exact_fields() -> None:
    text = (
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: team}\n"
        "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n"
        "          initContainers:\n          - name: i\n            env:\n"
        "            - {name: A, valueFrom: {secretKeyRef: {name: s, key: a}}}\n"
        "          containers: [{name: c}]\n"
    )
    assert where(findings(text, "KST020")) == [
        ("CronJob team/nightly", "spec.jobTemplate.spec.template.spec.initContainers[0].env[0]")
    ]


def test_pod_level_automount_wins_over_service_account() -> None:
    sa_off = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: other, namespace: team}\nautomountServiceAccountToken: false\n---\n"
    pod_on = deploy(
        "      serviceAccountName: other\n      automountServiceAccountToken: true\n" + container()
    )
    pod_default = deploy("      serviceAccountName: other\n" + container())
    assert findings(SA_BOUND + sa_off + pod_on, "KST023")
    assert findings(SA_BOUND + sa_off + pod_default, "KST023") == []


def test_no_rbac_in_input_means_no_automount_judgement() -> None:
    assert findings(deploy(container()), "KST023") == []


def test_a_service_account_defined_elsewhere_is_not_judged() -> None:
    # Created by a script or another chart (or named $K8S_SA_NAME): its bindings are
    # elsewhere too.
    assert (
        findings(SA_BOUND + deploy("      serviceAccountName: other\n" + container()), "KST023")
        == []
    )
    templated = deploy("      serviceAccountName: $K8S_SA_NAME\n" + container())
    assert findings(SA_BOUND + templated, "KST023") == []


def test_item_modes_and_projected_volumes() -> None:
    text = deploy(container() + (
        "      volumes:\n      - name: p\n        projected:\n          sources:\n"
        "          - secret: {name: s, items: [{key: k, path: k, mode: 0666}, {key: j, path: j, mode: 0640}]}\n"
    ))  # fmt: skip
    assert where(findings(text, "KST025")) == [
        (
            "Deployment team/app",
            "spec.template.spec.volumes[0].projected.sources[0].secret.items[0].mode",
        )
    ]


def test_ingress_tls_counts_as_use_and_unseen_namespaces_are_not_judged() -> None:
    ingress = (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: team}\n"
        "spec: {tls: [{secretName: cert}]}\n---\n"
    )
    assert findings(secret("cert") + ingress + deploy(container()), "KST042") == []
    assert findings(secret("cert", ns="elsewhere"), "KST042") == []


def test_pull_secret_shared_by_many_service_accounts() -> None:
    sas = "".join(
        f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa{i}, namespace: team}}\n"
        "imagePullSecrets: [{name: pull}]\n---\n"
        for i in range(3)
    )
    (f,) = findings(secret("pull") + sas, "KST044")
    assert dict(f.details) == {"serviceAccounts": "sa0,sa1,sa2"}
    assert findings(secret("pull") + sas.rsplit("apiVersion", 1)[0], "KST044") == []


def test_default_namespace_needs_an_explicit_namespace_in_files() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: implicit}\n"
    assert findings(text, "KST045") == []


def test_age_is_judged_on_live_clusters_only() -> None:
    old = secret(meta=", creationTimestamp: '2020-01-01T00:00:00Z'")
    rotated = secret(
        meta=", creationTimestamp: '2020-01-01T00:00:00Z', annotations: {kustos.io/rotated-at: '2026-11-01T00:00:00Z'}"
    )
    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    (f,) = findings(old, "KST046", live=True, now=now)
    assert "days ago (limit 90)" in f.message
    assert findings(old, "KST046", live=False, now=now) == []
    assert findings(rotated, "KST046", live=True, now=now) == []


def test_default_deny_network_policy() -> None:
    deny = (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: team}\n"
        "spec: {podSelector: {}, policyTypes: [Ingress]}\n---\n"
    )
    allow_all = deny.replace("policyTypes: [Ingress]", "policyTypes: [Ingress], ingress: [{}]")
    using = deploy(container(ENV))
    assert findings(using, "KST080")
    assert findings(using + deny, "KST080") == []
    assert findings(using + allow_all, "KST080")
    assert findings(deploy(container()), "KST080") == []
