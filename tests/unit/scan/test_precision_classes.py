"""The classes of noise and misses of the second review (issue #12), positive and negative.

Aspects: KST020's severity follows what the key holds (name of the key or of the variable,
or the value when the Secret is in the input; settings are not reported); KST022 only for
a default ServiceAccount that holds a binding or a pull secret, and only near the workload
in a file scan; KST025 treats defaultMode 420 and an absent field as one; KST026 names
what a host path holds and leaves CSI plugin folders alone; KST040 only for a Secret many
workloads read and no tool rotates; KST042 counts every consumer outside pods and judges
a Secret only against workloads near it; a Role that repeats a rule gives one finding;
impersonation restricted to named subjects is judged by what they can do; KST050 covers
token Secrets and credential-named keys at high severity.
"""

from __future__ import annotations

import base64

import pytest

from kustos.kube.documents import parse_stream
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import KubeObject
from kustos.scan.checking import ScanInput
from kustos.scan.findings import Finding, Severity
from kustos.scan.scanning import run_checks
from tests.unit.manifests import findings


def deploy(spec: str, *, ns: str = "team", name: str = "app") -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:\n  template:\n    spec:\n{spec}---\n"
    )


def env(variable: str, key: str, source: str = "s") -> str:
    return (
        "      containers:\n      - name: c\n        env:\n"
        f"        - {{name: {variable}, valueFrom: {{secretKeyRef: {{name: {source}, key: {key}}}}}}}\n"
    )


def volume(path: str) -> str:
    return (
        "      containers: [{name: c}]\n"
        f"      volumes:\n      - {{name: h, hostPath: {{path: {path}}}}}\n"
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ------------------------------------------------------------------------------- KST020


@pytest.mark.parametrize(
    ("variable", "key", "severity"),
    [
        ("DB_PASSWORD", "password", Severity.MEDIUM),
        ("HF_TOKEN", "hf_api_token", Severity.MEDIUM),
        ("DB_PASSWORD", "db", Severity.MEDIUM),  # the variable's name says it
        ("X", "elastic", Severity.LOW),  # cannot tell
    ],
)
def test_env_severity_follows_the_key(variable: str, key: str, severity: Severity) -> None:
    (found,) = findings(deploy(env(variable, key)), "KST020")
    assert found.severity is severity


@pytest.mark.parametrize("key", ["username", "port", "region-id", "SubscriptionID", "api-url"])
def test_settings_in_env_are_not_reported(key: str) -> None:
    assert findings(deploy(env("X", key)), "KST020") == []


def test_the_value_decides_when_the_secret_is_in_the_input() -> None:
    aws = "AKIAAM42S3YBQPIQLTVQ"
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team}\n"
        f"data: {{blob: {_b64(aws)}, note: {_b64('hello')}}}\n---\n"
    )
    (found,) = findings(secret + deploy(env("X", "blob")), "KST020")
    assert found.severity is Severity.MEDIUM
    assert aws not in found.message
    assert findings(secret + deploy(env("X", "note")), "KST020") == []


# ------------------------------------------------------------------------------- KST022

DEFAULT_SA_BINDING = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
    "metadata: {name: d, namespace: team}\n"
    "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\n"
    "subjects: [{kind: ServiceAccount, name: default, namespace: team}]\n---\n"
)
DEFAULT_SA_PULL = (
    "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: team}\n"
    "imagePullSecrets: [{name: registry}]\n---\n"
)
NO_AUTOMOUNT = "      automountServiceAccountToken: false\n"


def test_default_service_account_matters_only_with_bindings_or_pull_secrets() -> None:
    app = deploy("      containers: [{name: c}]\n")
    (bound,) = findings(DEFAULT_SA_BINDING + app, "KST022")
    assert "is bound to ClusterRole edit" in bound.message
    (pulls,) = findings(DEFAULT_SA_PULL + app, "KST022")
    assert "image pull secret(s) registry" in pulls.message
    assert findings(app, "KST022") == []
    # Without a token, the binding gives the pod nothing.
    no_token = deploy(NO_AUTOMOUNT + "      containers: [{name: c}]\n")
    assert findings(DEFAULT_SA_BINDING + no_token, "KST022") == []


def _scan_files(files: dict[str, str], rule_id: str) -> list[Finding]:
    objects: list[KubeObject] = []
    for name, text in files.items():
        parsed = parse_stream(text, name)
        assert not parsed.errors
        objects.extend(parsed.objects)
    return [f for f in run_checks(ScanInput(ObjectIndex.of(objects))) if f.rule_id == rule_id]


def test_a_binding_in_an_unrelated_folder_is_not_this_workloads_cluster() -> None:
    app = deploy("      containers: [{name: c}]\n")
    far = {"samples/gmsa/rbac.yaml": DEFAULT_SA_BINDING, "samples/web/app.yaml": app}
    assert _scan_files(far, "KST022") == []
    close = {"deploy/rbac.yaml": DEFAULT_SA_BINDING, "deploy/apps/app.yaml": app}
    assert len(_scan_files(close, "KST022")) == 1


# ------------------------------------------------------------------------------- KST025


def test_mode_420_and_no_mode_are_one_rule() -> None:
    def with_mode(mode: str) -> str:
        extra = f", defaultMode: {mode}" if mode else ""
        return deploy(
            "      containers: [{name: c}]\n"
            f"      volumes:\n      - {{name: v, secret: {{secretName: s{extra}}}}}\n"
        )

    assert findings(with_mode("420"), "KST025") == []
    assert findings(with_mode(""), "KST025") == []
    assert findings(with_mode("0400"), "KST025") == []
    (loose,) = findings(with_mode("0777"), "KST025")
    assert loose.message == 'Secret volume "v" has defaultMode 0777'


# ------------------------------------------------------------------------------- KST026


@pytest.mark.parametrize(
    ("path", "holds"),
    [
        ("/var/lib/kubelet/pods", "every pod's mounted Secrets and ServiceAccount tokens"),
        ("/var/lib/kubelet/pki", "the kubelet's client certificate and key"),
        ("/etc/kubernetes/pki", "the cluster's PKI"),
        ("/etc/kubernetes/admin.conf", "the cluster-admin kubeconfig"),
        ("/var/run/docker.sock", "the container runtime socket"),
        ("/run/containerd/containerd.sock", "the container runtime socket"),
        ("/var/lib/kubelet", "every pod's mounted Secrets"),
        ("/", "more kinds of node credentials"),
    ],
)
def test_host_paths_that_hold_credentials_say_which(path: str, holds: str) -> None:
    (found,) = findings(deploy(volume(path)), "KST026")
    assert holds in found.message
    assert found.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    "path",
    [
        "/var/lib/kubelet/plugins",
        "/var/lib/kubelet/plugins/csi-secrets-store",
        "/var/lib/kubelet/plugins_registry",
        "/var/lib/kubelet/device-plugins",
        "/etc/kubernetes/secrets-store-csi-providers",
        "/var/log",
        "/sys",
    ],
)
def test_csi_plugin_folders_and_logs_hold_no_credentials(path: str) -> None:
    assert findings(deploy(volume(path)), "KST026") == []


# ------------------------------------------------------------------------------- KST040


def _readers(count: int) -> str:
    return "".join(
        deploy(
            "      containers: [{name: c}]\n"
            "      volumes: [{name: v, secret: {secretName: shared}}]\n",
            name=f"r{i}",
        )
        for i in range(count)
    )


SHARED = "apiVersion: v1\nkind: Secret\nmetadata: {name: shared, namespace: team}\n---\n"


def test_immutability_is_asked_for_secrets_many_workloads_read() -> None:
    (found,) = findings(SHARED + _readers(3), "KST040")
    assert "read by 3 workloads" in found.message
    assert findings(SHARED + _readers(2), "KST040") == []


def test_a_secret_a_tool_rotates_is_not_asked_to_be_immutable() -> None:
    external = (
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\n"
        "metadata: {name: e, namespace: team}\nspec: {target: {name: shared}}\n---\n"
    )
    assert findings(SHARED + external + _readers(4), "KST040") == []


# ------------------------------------------------------------------------------- KST042

CONSUMERS = {
    "StorageClass": (
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: sc}\n"
        "provisioner: x\nparameters:\n  csi.storage.k8s.io/node-stage-secret-name: lonely\n"
        "  csi.storage.k8s.io/node-stage-secret-namespace: team\n"
    ),
    "PersistentVolume": (
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\n"
        "spec: {csi: {driver: x, volumeHandle: h, "
        "nodePublishSecretRef: {name: lonely, namespace: team}}}\n"
    ),
    "Ingress": (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: team}\n"
        "spec: {tls: [{secretName: lonely}]}\n"
    ),
    "Gateway": (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: g, namespace: team}\n"
        "spec: {listeners: [{name: l, tls: {certificateRefs: [{name: lonely}]}}]}\n"
    ),
    "SecretStore": (
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\n"
        "metadata: {name: s, namespace: team}\n"
        "spec: {provider: {vault: {auth: {tokenSecretRef: {name: lonely, key: t}}}}}\n"
    ),
    "ClusterSecretStore": (
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\n"
        "spec: {provider: {aws: {auth: {secretRef: {accessKeyIDSecretRef: "
        "{name: lonely, namespace: team, key: k}}}}}}\n"
    ),
    "Issuer": (
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: i, namespace: team}\n"
        "spec: {acme: {privateKeySecretRef: {name: lonely}}}\n"
    ),
    "ClusterIssuer": (
        "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: i}\n"
        "spec: {ca: {secretName: lonely}}\n"
    ),
    "Certificate": (
        "apiVersion: cert-manager.io/v1\nkind: Certificate\n"
        "metadata: {name: c, namespace: team}\nspec: {secretName: lonely, issuerRef: {name: i}}\n"
    ),
    "APIService": (
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: v1.x\n"
        "  annotations: {cert-manager.io/inject-ca-from-secret: team/lonely}\n"
    ),
}


@pytest.mark.parametrize("kind", CONSUMERS)
def test_consumers_outside_pods_are_uses(kind: str) -> None:
    ns = "cert-manager" if kind == "ClusterIssuer" else "team"
    lonely = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: lonely, namespace: {ns}}}\n---\n"
    app = deploy("      containers: [{name: c}]\n", ns=ns)
    assert findings(lonely + app, "KST042"), "the Secret alone is unused"
    assert findings(lonely + app + CONSUMERS[kind] + "---\n", "KST042") == []


def test_service_account_token_secrets_are_used_by_their_account() -> None:
    token = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\n  namespace: team\n"
        "  annotations: {kubernetes.io/service-account.name: builder}\n"
        "type: kubernetes.io/service-account-token\n---\n"
    )
    assert findings(token + deploy("      containers: [{name: c}]\n"), "KST042") == []


def test_unused_is_judged_only_against_workloads_near_the_secret() -> None:
    lonely = "apiVersion: v1\nkind: Secret\nmetadata: {name: lonely, namespace: team}\n"
    app = deploy("      containers: [{name: c}]\n")
    far = {"docs/snippets/secret.yaml": lonely, "examples/web/app.yaml": app}
    assert _scan_files(far, "KST042") == []
    near = {"deploy/secret.yaml": lonely, "deploy/app.yaml": app}
    assert len(_scan_files(near, "KST042")) == 1


# ------------------------------------------------------------------------------- RBAC


def test_a_role_that_repeats_a_rule_gives_one_finding() -> None:
    text = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"
        "rules:\n- {apiGroups: [''], resources: [secrets], verbs: [get, list]}\n"
        "- {apiGroups: [''], resources: [secrets], verbs: [get, list]}\n"
        "- {apiGroups: [''], resources: [secrets], verbs: [watch]}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
        "metadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, "
        "name: r}\nsubjects: [{kind: ServiceAccount, name: op, namespace: ops}]\n"
    )
    (found,) = findings(text, "KST001")
    assert found.message == (
        "ServiceAccount ops/op can get/list/watch Secrets in every namespace via "
        "ClusterRole r rules[0], rules[1], rules[2]"
    )


IMPERSONATOR = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: impersonator}}
rules:
- apiGroups: [""]
  resources: [{resource}]
  verbs: [impersonate]
  resourceNames: [{name}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: reader}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: readers}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}}
subjects:
- {{kind: ServiceAccount, name: vault, namespace: ops}}
- {{kind: User, name: alice}}
- {{kind: Group, name: auditors}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: plain, namespace: ops}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: plain-pods, namespace: ops}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view-pods}}
subjects: [{{kind: ServiceAccount, name: plain, namespace: ops}}]
"""


@pytest.mark.parametrize(
    ("resource", "name", "named"),
    [
        ("serviceaccounts", "vault", "ServiceAccount ops/vault"),
        ("users", "alice", "User alice"),
        ("users", "system:serviceaccount:ops:vault", "ServiceAccount ops/vault"),
        ("groups", "auditors", "Group auditors"),
        ("groups", "system:masters", "Group system:masters"),
    ],
)
def test_named_impersonation_is_judged_by_what_the_subject_can_do(
    resource: str, name: str, named: str
) -> None:
    text = IMPERSONATOR.format(resource=resource, name=f'"{name}"')
    (found,) = findings(text, "KST007")
    assert f"impersonate {named}, who can " in found.message
    assert found.field == "rules[0]"


@pytest.mark.parametrize(
    ("resource", "name"),
    [("serviceaccounts", "plain"), ("users", "bob"), ("groups", "developers")],
)
def test_named_impersonation_of_harmless_subjects_is_not_reported(resource: str, name: str) -> None:
    assert findings(IMPERSONATOR.format(resource=resource, name=name), "KST007") == []


# ------------------------------------------------------------------------------- KST050


@pytest.mark.parametrize(
    ("stype", "data"),
    [
        ("bootstrap.kubernetes.io/token",
         {"token-id": "abcdef", "token-secret": "0123456789abcdef"}),
        ("kubernetes.io/service-account-token", {"token": "Zq93nVb7LxWpK2"}),
        ("Opaque", {"api-key": "shortkey"}),
        ("kubernetes.io/basic-auth", {"username": "admin", "password": "admin"}),
    ],
)  # fmt: skip
def test_committed_token_and_credential_secrets_are_high(stype: str, data: dict[str, str]) -> None:
    body = ", ".join(f"{k}: {_b64(v)}" for k, v in data.items())
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: kube-system}\n"
        f"type: {stype}\ndata: {{{body}}}\n"
    )
    (found,) = findings(text, "KST050")
    assert found.severity is Severity.HIGH
    assert found.message.startswith("Secret t holds ")
    assert all(value not in found.message + str(found.details) for value in data.values())


@pytest.mark.parametrize(
    "data",
    [
        {"ca.crt": "-----BEGIN CERTIFICATE-----"},
        {"username": "admin", "host": "db.local"},
        {"password": "{{ .Values.password }}"},
        {"api-key": "<your-api-key>"},
    ],
)
def test_public_settings_and_templates_are_not_committed_credentials(
    data: dict[str, str],
) -> None:
    body = ", ".join(f'{k}: "{v}"' for k, v in data.items())
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: team}\n"
        f"stringData: {{{body}}}\n"
    )
    assert findings(text, "KST050") == []
