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
#: On the live Secret of a ManagedSecret: the version number it holds.
ANNOTATION_VERSION: Final = PREFIX + "version"
#: On live and version Secrets: a short fingerprint of the data (never the data).
ANNOTATION_CONTENT_HASH: Final = PREFIX + "content-hash"
#: On a version Secret: why it was made (Initial, Scheduled, Manual, Rollback to v3, ...).
ANNOTATION_ROTATION_REASON: Final = PREFIX + "rotation-reason"
#: On a version Secret: where the value came from (generated, rollback of v3, a store).
ANNOTATION_ORIGIN: Final = PREFIX + "origin"
#: In a SealedSecret (encrypted, so authenticated): the namespace/name it may open as.
ANNOTATION_SEALED_FOR: Final = PREFIX + "sealed-for"
#: On a version Secret: the store version each store-sourced key came from (JSON).
ANNOTATION_SOURCE_VERSIONS: Final = PREFIX + "source-versions"
#: On a version Secret: the database role its credentials log in as.
ANNOTATION_DB_ROLE: Final = PREFIX + "db-role"
#: On a pod template: which Secret version the last restart rolled to (``db-v7``).
ANNOTATION_RESTART_REASON: Final = PREFIX + "restart-reason"
#: On a workload: opt in to restarts when any Secret it uses changes.
ANNOTATION_RELOAD: Final = PREFIX + "reload"
#: Reloader's annotation, honoured for users migrating from it.
ANNOTATION_RELOADER_SECRETS: Final = "secret.reloader.stakater.com/reload"
#: On a pod template: fingerprints of the Secrets a reload last rolled to.
ANNOTATION_SECRET_HASHES: Final = PREFIX + "secret-hashes"

ALL_LABELS: Final = (LABEL_MANAGED_SECRET, LABEL_VERSION, LABEL_TEST_NAMESPACE)
ALL_ANNOTATIONS: Final = (
    ANNOTATION_IGNORE,
    ANNOTATION_IGNORE_REASON,
    ANNOTATION_RESTARTED_AT,
    ANNOTATION_WATCH_SECRETS,
    ANNOTATION_ROTATED_AT,
    ANNOTATION_VERSION,
    ANNOTATION_CONTENT_HASH,
    ANNOTATION_ROTATION_REASON,
    ANNOTATION_ORIGIN,
    ANNOTATION_DB_ROLE,
    ANNOTATION_SOURCE_VERSIONS,
    ANNOTATION_SEALED_FOR,
    ANNOTATION_RESTART_REASON,
    ANNOTATION_RELOAD,
    ANNOTATION_SECRET_HASHES,
)
