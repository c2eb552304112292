"""Judging a rollout from a workload's status, as ``kubectl rollout status`` does.

Aspects: Deployments (controller lag, updated/old/available replicas, progress deadline),
StatefulSets (revisions, readiness) and DaemonSets; unsupported kinds refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from kustos.errors import UsageError
from kustos.kube.rollout import rollout_progress


def _dep(status: dict[str, Any], *, replicas: int = 3, generation: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "done", "message"),
    [
        ({"observedGeneration": 1}, False, "waiting for the controller to see the change"),
        (
            {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 4},
            False,
            "1 of 3 replicas updated",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4},
            False,
            "1 old replicas pending termination",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            False,
            "2 of 3 updated replicas available",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            True,
            "3 replicas available",
        ),
    ],
)
def test_deployment(status: dict[str, Any], done: bool, message: str) -> None:
    progress = rollout_progress("Deployment", _dep(status))
    assert (progress.done, progress.failed, progress.message) == (done, False, message)


def test_deployment_past_its_deadline_has_failed() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    }
    progress = rollout_progress("Deployment", _dep(status))
    assert progress.failed
    assert not progress.done


def test_statefulset_waits_for_the_new_revision() -> None:
    body = _dep(
        {
            "observedGeneration": 2,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "currentRevision": "a",
            "updateRevision": "b",
        }
    )
    assert not rollout_progress("StatefulSet", body).done
    body["status"]["currentRevision"] = "b"
    assert rollout_progress("StatefulSet", body).done


def test_daemonset_counts_scheduled_pods() -> None:
    body = _dep(
        {
            "observedGeneration": 2,
            "desiredNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 1,
        }
    )
    assert rollout_progress("DaemonSet", body).message == "1 of 3 updated pods available"
    body["status"]["numberAvailable"] = 3
    assert rollout_progress("DaemonSet", body).done


def test_other_kinds_are_refused() -> None:
    with pytest.raises(UsageError, match="cannot follow the rollout of a Job"):
        rollout_progress("Job", _dep({}))
