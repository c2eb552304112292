"""Every ``kustos.io/`` name Kustos reads or writes on Kubernetes objects, defined once.

Labels select; annotations describe. A key not listed here is not Kustos's.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "kustos.io"
API_VERSION: Final = "kustos.io/v1alpha1"
PREFIX: Final = "kustos.io/"

# --- labels -----------------------------------------------------------------------------
#: Marks every object Kustos created, so it can find and clean up its own objects.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "kustos"
#: On a versioned Secret: the ManagedSecret it belongs to.
LABEL_MANAGED_SECRET: Final = PREFIX + "managed-secret"
#: On a versioned Secret: its version number (a decimal string).
LABEL_VERSION: Final = PREFIX + "version"
#: On namespaces and objects created by the local control plane for tests.
LABEL_TEST_NAMESPACE: Final = PREFIX + "test-namespace"

# --- annotations ------------------------------------------------------------------------
#: Comma-separated check ids (``KST001,KST004``) a scan must not report for this object.
ANNOTATION_IGNORE: Final = PREFIX + "ignore"
#: Free-text reason for ``kustos.io/ignore``; shown in reports.
ANNOTATION_IGNORE_REASON: Final = PREFIX + "ignore-reason"
#: On a pod template: written by a rolling restart so the controller rolls the pods.
ANNOTATION_RESTARTED_AT: Final = PREFIX + "restarted-at"
#: On a workload: Secrets whose change should roll this workload (comma-separated names).
ANNOTATION_WATCH_SECRETS: Final = PREFIX + "watch-secrets"
#: On a Secret: the time the value was last rotated (RFC 3339).
ANNOTATION_ROTATED_AT: Final = PREFIX + "rotated-at"

ALL_LABELS: Final = (LABEL_MANAGED_SECRET, LABEL_VERSION, LABEL_TEST_NAMESPACE)
ALL_ANNOTATIONS: Final = (
    ANNOTATION_IGNORE,
    ANNOTATION_IGNORE_REASON,
    ANNOTATION_RESTARTED_AT,
    ANNOTATION_WATCH_SECRETS,
    ANNOTATION_ROTATED_AT,
)
