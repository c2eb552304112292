"""The recommended audit Policy and ``kustos audit lint``: one implementation with the scanner.

Purely data. :data:`RECOMMENDED` is the policy ``kustos audit policy`` prints, each line
explained in a comment. :func:`lint` runs the scanner's audit-policy checks (KST110-KST114 in
:mod:`kustos.scan.checks.auditpolicy`) over one policy file, through the scanner itself, so
``kustos scan --audit-policy F`` and ``kustos audit lint F`` cannot disagree.
"""

from __future__ import annotations

from typing import Final

from kustos.kube.index import ObjectIndex
from kustos.scan.checking import ConfigDocument, scan_input
from kustos.scan.checks.auditpolicy import CHECKS
from kustos.scan.scanning import ScanResult, scan

RECOMMENDED: Final = """\
# Audit Policy recommended by Kustos (kustos audit policy).
# Give it to kube-apiserver with --audit-policy-file; `kustos audit lint` checks it.
apiVersion: audit.k8s.io/v1
kind: Policy
# Every request is logged when it completes, not also when it arrives: RequestReceived
# would double the volume and carries no response code.
omitStages:
  - RequestReceived
rules:
  # 1. Health and version probes are frequent and say nothing about Secrets.
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
  # 2. Objects that hold values or tokens: who did what, never the bodies. This rule comes
  #    before any Request or RequestResponse rule, because the first matching rule wins.
  - level: Metadata
    resources:
      - group: ""  # core
        # Secret and ConfigMap values, and the tokens TokenRequest issues.
        resources: ["secrets", "configmaps", "serviceaccounts/token"]
      - group: authentication.k8s.io
        # A TokenReview carries the bearer token under review.
        resources: ["tokenreviews"]
  # 3. Noisy reads by the control plane itself (leases, events) are not needed.
  - level: None
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
      - group: ""
        resources: ["events"]
  # 4. Access control changes, with what changed: who may read Secrets depends on them.
  - level: RequestResponse
    resources:
      - group: rbac.authorization.k8s.io
        resources: ["roles", "rolebindings", "clusterroles", "clusterrolebindings"]
  # 5. exec, attach and port-forward into pods: a way around RBAC on Secrets.
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers"]
  # 6. Everything else at Metadata: who, what, when, from where.
  - level: Metadata
"""


def lint(policy: ConfigDocument) -> ScanResult:
    """The audit-policy findings on one policy file, exactly as ``kustos scan`` reports them."""
    return scan(scan_input(ObjectIndex(), audit_policy=policy), checks=CHECKS)
