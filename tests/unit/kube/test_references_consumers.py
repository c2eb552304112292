"""The secret-reference parser on consumers outside pods, with their field paths.

Aspects: StorageClass CSI and in-tree secret parameters (templated names are not
references; a name without its namespace parameter is not either); PersistentVolume CSI
and in-tree secret refs; Ingress TLS; Gateway API certificateRefs (Secret kind only, the
namespace defaulting to the Gateway's); cert-manager Issuer, ClusterIssuer (the cluster
resource namespace) and Certificate; external-secrets SecretStore, ClusterSecretStore
(explicit namespaces only) and ExternalSecret targets; ServiceAccount token Secrets; CA
bundles injected from a Secret, or from a Certificate (``inject-ca-from``: its
``spec.secretName`` when the Certificate is indexed, nothing guessed when it is not); the
index answering ``consumers_of`` for all of them.
"""

from __future__ import annotations

from kustos.kube.index import ObjectIndex
from kustos.kube.references import Via, secret_references
from tests.unit.manifests import index_of

CONSUMERS = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: ceph-rbd}
provisioner: rbd.csi.ceph.com
parameters:
  csi.storage.k8s.io/provisioner-secret-name: rbd-provisioner
  csi.storage.k8s.io/provisioner-secret-namespace: rook-ceph
  csi.storage.k8s.io/node-stage-secret-name: ${pvc.name}
  csi.storage.k8s.io/node-stage-secret-namespace: ${pvc.namespace}
  csi.storage.k8s.io/controller-expand-secret-name: no-namespace
  adminSecretName: heketi
  adminSecretNamespace: storage
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  csi:
    driver: x
    volumeHandle: h
    nodeStageSecretRef: {name: pv-stage, namespace: storage}
    nodePublishSecretRef: {name: pv-publish}
  rbd:
    secretRef: {name: rbd-user, namespace: storage}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  tls: [{hosts: [a], secretName: web-tls}, {hosts: [b]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  listeners:
  - name: https
    tls:
      certificateRefs:
      - {name: gw-cert}
      - {kind: Secret, name: shared-cert, namespace: certs}
      - {group: example.com, kind: Vault, name: not-a-secret}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: acme, namespace: shop}
spec:
  acme:
    privateKeySecretRef: {name: acme-account}
    solvers:
    - dns01:
        cloudflare:
          apiTokenSecretRef: {name: cloudflare, key: token}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: ca}
spec:
  ca: {secretName: root-ca}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web, namespace: shop}
spec:
  secretName: web-cert
  issuerRef: {name: acme}
  keystores: {pkcs12: {create: true, passwordSecretRef: {name: p12-password, key: pw}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: aws, namespace: shop}
spec:
  provider:
    aws:
      service: SecretsManager
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws-creds, key: id}
          secretAccessKeySecretRef: {name: aws-creds, key: secret}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: vault}
spec:
  provider:
    vault:
      caProvider: {type: Secret, name: vault-ca, namespace: vault, key: ca.crt}
      auth:
        tokenSecretRef: {name: vault-token, namespace: vault, key: token}
        appRole: {secretRef: {name: no-namespace, key: id}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: shop}
spec:
  secretStoreRef: {name: aws, kind: SecretStore}
  target: {name: db-credentials}
---
apiVersion: v1
kind: Secret
metadata:
  name: builder-token
  namespace: ci
  annotations: {kubernetes.io/service-account.name: builder}
type: kubernetes.io/service-account-token
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: hook
  annotations: {cert-manager.io/inject-ca-from-secret: hooks/hook-ca}
webhooks: []
"""


def _refs(index: ObjectIndex) -> set[tuple[str, str, str, str, str]]:
    return {
        (r.consumer.kind, r.namespace, r.secret, r.via.value, r.field)
        for r in index.secret_references()
    }


def test_every_consumer_outside_pods_with_its_field() -> None:
    found = _refs(index_of(CONSUMERS))
    sc = 'parameters["csi.storage.k8s.io/provisioner-secret-name"]'
    assert found == {
        ("StorageClass", "rook-ceph", "rbd-provisioner", "storageClass.parameters", sc),
        ("StorageClass", "storage", "heketi", "storageClass.parameters",
         'parameters["adminSecretName"]'),
        ("PersistentVolume", "storage", "pv-stage", "persistentVolume",
         "spec.csi.nodeStageSecretRef"),
        ("PersistentVolume", "storage", "rbd-user", "persistentVolume", "spec.rbd.secretRef"),
        ("Ingress", "shop", "web-tls", "ingress.tls", "spec.tls[0].secretName"),
        ("Gateway", "shop", "gw-cert", "gateway.certificateRefs",
         "spec.listeners[0].tls.certificateRefs[0]"),
        ("Gateway", "certs", "shared-cert", "gateway.certificateRefs",
         "spec.listeners[0].tls.certificateRefs[1]"),
        ("Issuer", "shop", "acme-account", "cert-manager", "spec.acme.privateKeySecretRef"),
        ("Issuer", "shop", "cloudflare", "cert-manager",
         "spec.acme.solvers[0].dns01.cloudflare.apiTokenSecretRef"),
        ("ClusterIssuer", "cert-manager", "root-ca", "cert-manager", "spec.ca.secretName"),
        ("Certificate", "shop", "web-cert", "cert-manager", "spec.secretName"),
        ("Certificate", "shop", "p12-password", "cert-manager",
         "spec.keystores.pkcs12.passwordSecretRef"),
        ("SecretStore", "shop", "aws-creds", "secretStore.auth",
         "spec.provider.aws.auth.secretRef.accessKeyIDSecretRef"),
        ("SecretStore", "shop", "aws-creds", "secretStore.auth",
         "spec.provider.aws.auth.secretRef.secretAccessKeySecretRef"),
        ("ClusterSecretStore", "vault", "vault-ca", "secretStore.auth",
         "spec.provider.vault.caProvider"),
        ("ClusterSecretStore", "vault", "vault-token", "secretStore.auth",
         "spec.provider.vault.auth.tokenSecretRef"),
        ("ExternalSecret", "shop", "db-credentials", "externalSecret.target", "spec.target.name"),
        ("ServiceAccount", "ci", "builder-token", "serviceAccount.token",
         'metadata.annotations["kubernetes.io/service-account.name"]'),
        ("ValidatingWebhookConfiguration", "hooks", "hook-ca", "caBundle.injection",
         'metadata.annotations["cert-manager.io/inject-ca-from-secret"]'),
    }  # fmt: skip


def test_templated_and_unnamespaced_references_are_not_guessed() -> None:
    names = {secret for _, _, secret, _, _ in _refs(index_of(CONSUMERS))}
    assert not names & {"${pvc.name}", "no-namespace", "pv-publish", "not-a-secret"}


def test_the_index_answers_for_consumers_outside_pods() -> None:
    index = index_of(CONSUMERS)
    (ref,) = index.consumers_of("shop", "web-tls")
    assert (ref.consumer.kind, ref.via) == ("Ingress", Via.INGRESS_TLS)
    (token,) = index.consumers_of("ci", "builder-token")
    assert (token.consumer.kind, token.consumer.name) == ("ServiceAccount", "builder")


def test_other_kinds_and_groups_reference_nothing() -> None:
    text = (
        "apiVersion: example.com/v1\nkind: Issuer\nmetadata: {name: i, namespace: x}\n"
        "spec: {secretName: s}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: plain, namespace: x}\ntype: Opaque\n"
    )
    assert all(secret_references(obj) == () for obj in index_of(text))


INJECT_FROM_CERTIFICATE = """
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: injected
  annotations: {cert-manager.io/inject-ca-from: hooks/serving-cert}
webhooks: []
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
  annotations: {cert-manager.io/inject-ca-from: hooks/no-such-cert}
spec: {group: example.com, names: {kind: Widget, plural: widgets}, scope: Namespaced}
"""
CERTIFICATE = """
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: serving-cert, namespace: hooks}
spec: {secretName: webhook-tls, issuerRef: {name: selfsigned}}
"""
INJECT_FROM = 'metadata.annotations["cert-manager.io/inject-ca-from"]'


def test_inject_ca_from_names_the_secret_of_a_certificate_in_the_index() -> None:
    found = _refs(index_of(INJECT_FROM_CERTIFICATE + CERTIFICATE))
    assert found == {
        # The annotation names the Certificate; the Secret is the one the Certificate writes.
        ("MutatingWebhookConfiguration", "hooks", "webhook-tls", "caBundle.injection",
         INJECT_FROM),
        ("Certificate", "hooks", "webhook-tls", "cert-manager", "spec.secretName"),
    }  # fmt: skip
    index = index_of(INJECT_FROM_CERTIFICATE + CERTIFICATE)
    consumers = {r.consumer.kind for r in index.consumers_of("hooks", "webhook-tls")}
    assert consumers == {"MutatingWebhookConfiguration", "Certificate"}
    assert index.consumers_of("hooks", "serving-cert") == []  # a Certificate is not a Secret


def test_inject_ca_from_without_its_certificate_is_not_guessed() -> None:
    index = index_of(INJECT_FROM_CERTIFICATE)
    assert _refs(index) == set()
    assert index.consumers_of("hooks", "serving-cert") == []
    # Alone, an object cannot resolve the Certificate: the parser yields nothing for it.
    webhook = index.of_kind("MutatingWebhookConfiguration")[0]
    assert secret_references(webhook) == ()
    resolved = secret_references(webhook, certificate_secret=lambda ns, name: f"{ns}-{name}")
    assert [(r.namespace, r.secret, r.field) for r in resolved] == [
        ("hooks", "hooks-serving-cert", INJECT_FROM)
    ]
