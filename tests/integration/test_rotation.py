"""Rotation on the real control plane: versions, watched rollouts, rollback, resume.

Aspects: the first rotation makes ``<name>-v1`` (immutable, owned, labelled) and the live
Secret, and rolls the Deployment that reads it until its new pods are available; a second
rotation makes v2 with a new value and rolls again; history beyond ``keep`` is pruned
(never the current and previous); ``kustos rollback --to 1`` makes a new version holding
v1's value; a rollout that cannot complete restores the previous value to the live Secret
and says why in ``RolledBack``; a rotation interrupted after each persisted step resumes
without generating a second value or restarting a workload twice; a stale copy of the
object (a watch's) cannot make a version or overwrite a newer status (409, read again),
and a fresh one is used without a GET; a spec Kustos cannot use
gives ``Ready=False`` with the field named; every generator produces its keys in a live
Secret of its type; no generated value appears in status, Events or command output.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Container,
    EnvVar,
    EnvVarSource,
    PodSpec,
    PodTemplateSpec,
    SecretKeySelector,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Secret
from lightkube.types import PatchType

from kustos.cli.main import main
from kustos.crypto.certificates import make_self_signed_ca
from kustos.errors import InvalidSpecError, KubeError
from kustos.kube.client import ClientSettings, make_async_client
from kustos.rotation.rotating import Engine, NullObserver, Result
from kustos.rotation.versions import Step
from kustos.sources.reading import StoreReader
from kustos.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration
CRD = Path(__file__).resolve().parents[2] / "deploy" / "rotation" / "crd-managedsecret.yaml"
MS = create_namespaced_resource("kustos.io", "v1alpha1", "ManagedSecret", "managedsecrets")
T = TypeVar("T")


def _run(plane: ControlPlane, call: Callable[[Engine], Awaitable[T]], **engine: Any) -> T:
    """Run *call* on an engine with store access, as `kustos rotate` builds it."""

    async def go() -> T:
        client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig))
        stores = StoreReader(client)
        try:
            return await call(Engine(client, poll=0.2, stores=stores, **engine))
        finally:
            await stores.close()
            await client.close()

    return asyncio.run(go())


def _managed(namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return MS(
        apiVersion="kustos.io/v1alpha1",
        kind="ManagedSecret",
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=spec,
    )


def _deployment(namespace: str, name: str, secret: str, key: str) -> Deployment:
    labels = {"app": name}
    env = EnvVar(
        name="VALUE",
        valueFrom=EnvVarSource(secretKeyRef=SecretKeySelector(name=secret, key=key)),
    )
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=2,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(
                    containers=[
                        Container(name="app", image="registry.example.invalid/a:1", env=[env])
                    ]
                ),
            ),
        ),
    )


def _data(kube: Client, namespace: str, name: str) -> dict[str, bytes]:
    secret = kube.get(Secret, name, namespace=namespace)
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _status(kube: Client, namespace: str, name: str) -> dict[str, Any]:
    obj: Any = kube.get(MS, name, namespace=namespace)
    return dict(obj.to_dict().get("status") or {})


def _events_text(kube: Client, namespace: str) -> str:
    """The reason and message of every Event in *namespace*: what a canary must not be in."""
    return " ".join(f"{e.reason} {e.message}" for e in kube.list(Event, namespace=namespace))


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def _wait_available(kube: Client, namespace: str, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dep = kube.get(Deployment, name, namespace=namespace)
        if dep.status and (dep.status.availableReplicas or 0) >= 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never became available")


PASSWORD_SPEC: dict[str, Any] = {
    "secretName": "db",
    "data": {
        "password": {"password": {"length": 24}},
        "username": {"template": "app"},
        "url": {"template": "postgres://{{ username }}:{{ password }}@db:5432/app"},
    },
    "history": {"keep": 2},
    "rollout": {"timeout": "60s"},
}


def test_rotate_versions_roll_out_prune_and_roll_back(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kube.create(_managed(namespace, "db", PASSWORD_SPEC))
    kube.create(_deployment(namespace, "api", "db", "password"))
    _wait_available(kube, namespace, "api")

    first = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert first.outcome == "rotated", first.message
    assert first.version == 1
    assert first.restarted == (f"Deployment.apps {namespace}/api",)
    live = _data(kube, namespace, "db")
    assert set(live) == {"password", "username", "url"}
    assert len(live["password"]) == 24
    assert live["url"] == b"postgres://app:" + live["password"] + b"@db:5432/app"
    v1 = kube.get(Secret, "db-v1", namespace=namespace)
    assert v1.immutable is True
    assert v1.metadata is not None
    assert (v1.metadata.labels or {})["kustos.io/version"] == "1"
    assert [o.kind for o in v1.metadata.ownerReferences or []] == ["ManagedSecret"]
    assert _data(kube, namespace, "db-v1") == live
    dep = kube.get(Deployment, "api", namespace=namespace)
    assert dep.spec is not None
    assert dep.spec.template.metadata is not None
    annotations = dep.spec.template.metadata.annotations or {}
    assert annotations["kustos.io/restart-reason"] == "db-v1"
    status = _status(kube, namespace, "db")
    assert status["currentVersion"] == 1
    assert _condition(status, "Ready")["status"] == "True"
    assert "rotation" not in status or status["rotation"] is None

    for expected in (2, 3, 4):
        result = _run(control_plane, lambda e: e.rotate(namespace, "db", reason="test"))
        assert result.version == expected
    assert _data(kube, namespace, "db")["password"] != live["password"]
    versions = {
        s.metadata.name
        for s in kube.list(Secret, namespace=namespace, labels={"kustos.io/managed-secret": "db"})
        if s.metadata and s.metadata.name != "db"
    }
    assert versions == {"db-v3", "db-v4"}, "keep: 2 prunes all but the current and previous"

    # `kustos versions` lists them without values; `kustos rollback` restores v3's value.
    v3 = _data(kube, namespace, "db-v3")
    v3_meta = kube.get(Secret, "db-v3", namespace=namespace).metadata
    assert v3_meta is not None
    v3_hash = (v3_meta.annotations or {})["kustos.io/content-hash"]
    assert (
        main(
            [
                "versions",
                f"{namespace}/db",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--format",
                "json",
            ]
        )
        == 0
    )
    listed = capsys.readouterr().out
    assert '"number": 4' in listed
    assert '"number": 3' in listed
    code = main(
        ["rollback", f"{namespace}/db", "--to", "3", "--kubeconfig", str(control_plane.kubeconfig)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert _data(kube, namespace, "db") == v3
    status = _status(kube, namespace, "db")
    assert status["currentVersion"] == 5
    assert status["versions"][0]["origin"] == "rollback of v3"
    assert status["versions"][0]["contentHash"] == v3_hash

    # Canary: no value in status, events, or any command output.
    text = str(status) + _events_text(kube, namespace) + listed + out.out + out.err
    for secret_value in (live["password"], v3["password"], v3["url"]):
        assert secret_value.decode() not in text


def test_failed_rollout_restores_the_previous_value(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    spec = {**PASSWORD_SPEC, "rollout": {"timeout": "4s"}}
    kube.create(_managed(namespace, "db", spec))
    kube.create(_deployment(namespace, "web", "db", "password"))
    _wait_available(kube, namespace, "web")
    assert _run(control_plane, lambda e: e.rotate(namespace, "db")).outcome == "rotated"
    good = _data(kube, namespace, "db")
    # From now on no new pod can be scheduled: the next rollout cannot complete.
    kube.patch(
        Deployment,
        "web",
        {"spec": {"template": {"spec": {"nodeSelector": {"kustos.io/no-such-node": "x"}}}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )

    result = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert result.outcome == "rolled_back"
    assert result.version == 1
    assert _data(kube, namespace, "db") == good
    status = _status(kube, namespace, "db")
    assert status["currentVersion"] == 1
    rolled = _condition(status, "RolledBack")
    assert rolled["status"] == "True"
    assert "version 2 rolled back to 1" in rolled["message"]
    assert "not complete after 4s" in rolled["message"]
    states = {v["number"]: v["state"] for v in status["versions"]}
    assert states == {2: "Failed", 1: "Current"}
    reasons = {e.reason for e in kube.list(Event, namespace=namespace)}
    assert {"RotationStarted", "RolloutFailed", "RolledBack"} <= reasons


class _Crash(BaseException):
    """Stands in for the process dying right after a step was recorded."""


@pytest.mark.parametrize(
    ("step", "after_restart"),
    [
        (Step.PENDING, False),
        (Step.CREATED, False),
        (Step.APPLIED, False),
        (Step.ROLLING_OUT, False),  # recorded, consumers not yet restarted
        (Step.ROLLING_OUT, True),  # consumers restarted, rollout being watched
    ],
)
def test_a_rotation_interrupted_after_each_step_resumes_once(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    step: Step,
    after_restart: bool,
) -> None:
    kube.create(_managed(namespace, "db", PASSWORD_SPEC))
    kube.create(_deployment(namespace, "api", "db", "password"))
    _wait_available(kube, namespace, "api")
    assert _run(control_plane, lambda e: e.rotate(namespace, "db")).version == 1

    async def crash_after(engine: Engine) -> Result:
        original = engine._save

        async def save(ctx: Any, state: Any, **extra: Any) -> None:
            await original(ctx, state, **extra)
            if state is not None and state.step is step and not after_restart:
                raise _Crash

        async def wait(ref: Any, timeout: float) -> None:  # noqa: ASYNC109 - the engine's signature
            raise _Crash  # the restart patch is written; the process dies while watching

        engine._save = save  # type: ignore[method-assign]
        if after_restart:
            engine._wait = wait  # type: ignore[method-assign]
        return await engine.rotate(namespace, "db")

    with pytest.raises(_Crash):
        _run(control_plane, crash_after)
    status = _status(kube, namespace, "db")
    assert status["rotation"]["step"] == step.value
    assert status["rotation"]["version"] == 2
    made = {s.metadata.name for s in kube.list(Secret, namespace=namespace) if s.metadata}
    assert ("db-v2" in made) is (step is not Step.PENDING)
    value = _data(kube, namespace, "db-v2") if step is not Step.PENDING else None
    dep = kube.get(Deployment, "api", namespace=namespace)
    generation = dep.metadata.generation if dep.metadata else None

    resumed = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert resumed.outcome == "rotated"
    assert resumed.version == 2, "the resumed rotation finishes version 2, not a new one"
    stored = _data(kube, namespace, "db-v2")
    if value is not None:
        assert stored == value, "the value is generated once"
    assert _data(kube, namespace, "db")["password"] == stored["password"]
    dep = kube.get(Deployment, "api", namespace=namespace)
    assert dep.metadata is not None
    assert generation is not None
    if after_restart:
        assert dep.metadata.generation == generation, "not restarted a second time"
    else:
        assert dep.metadata.generation == generation + 1, "restarted exactly once"
    assert _status(kube, namespace, "db")["currentVersion"] == 2
    names = {s.metadata.name for s in kube.list(Secret, namespace=namespace) if s.metadata}
    assert "db-v3" not in names


def test_a_stale_watched_copy_cannot_overwrite_a_newer_status(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    spec = {**PASSWORD_SPEC, "rollout": {"strategy": "none"}}
    kube.create(_managed(namespace, "db", spec))
    obj: Any = kube.get(MS, "db", namespace=namespace)
    stale = obj.to_dict()  # as a watch delivered it before the first rotation
    assert _run(control_plane, lambda e: e.rotate(namespace, "db")).version == 1
    before = _status(kube, namespace, "db")

    # The copy says "no version yet": acted on blindly it would make v2. Its write needs
    # its resourceVersion, gets 409, and the engine reads the object again: nothing due.
    result, _ = _run(control_plane, lambda e: e.reconcile(namespace, "db", observed=stale))
    assert result is None
    after = _status(kube, namespace, "db")
    assert after["currentVersion"] == 1
    assert after["versions"] == before["versions"]
    names = {s.metadata.name for s in kube.list(Secret, namespace=namespace) if s.metadata}
    assert "db-v2" not in names

    # A fresh copy is used as it is: no GET of the ManagedSecret at all.
    fresh: Any = kube.get(MS, "db", namespace=namespace)

    async def counted(engine: Engine) -> tuple[Any, list[str]]:
        gets: list[str] = []
        original = engine.client.get

        async def get(resource: Any, *args: Any, **kwargs: Any) -> Any:
            gets.append(getattr(resource, "__name__", str(resource)))
            return await original(resource, *args, **kwargs)

        engine.client.get = get  # type: ignore[method-assign,assignment]  # count, then call it
        return await engine.reconcile(namespace, "db", observed=fresh.to_dict()), gets

    (result, _), gets = _run(control_plane, counted)
    assert result is None
    assert "ManagedSecret" not in gets


def test_unusable_spec_sets_ready_false_and_exits_2(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = {
        "secretName": "db",
        "data": {"p": {"password": {}}},
        "rotation": {"every": "3 fortnights"},
    }
    kube.create(_managed(namespace, "bad", spec))
    with pytest.raises(InvalidSpecError):
        _run(control_plane, lambda e: e.rotate(namespace, "bad"))
    ready = _condition(_status(kube, namespace, "bad"), "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "InvalidSpec"
    assert "spec.rotation" in ready["message"]
    code = main(["rotate", f"{namespace}/bad", "--kubeconfig", str(control_plane.kubeconfig)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("kustos: error: spec.rotation")
    assert "Traceback" not in err


async def _rotate_one(engine: Engine, *, namespace: str, name: str) -> Result:
    return await engine.rotate(namespace, name)


def test_every_generator_makes_a_secret_of_its_type(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    import datetime as dt  # noqa: PLC0415

    ca = make_self_signed_ca("kustos test CA", dt.datetime.now(dt.UTC), 30)
    kube.create(
        Secret(
            metadata=ObjectMeta(name="ca", namespace=namespace),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(ca.cert_pem).decode(),
                "tls.key": base64.b64encode(ca.key_pem.reveal()).decode(),
            },
        )
    )
    specs: dict[str, dict[str, Any]] = {
        "opaque": {
            "secretName": "opaque",
            "data": {"t": {"token": {"bytes": 32, "encoding": "base64url"}}, "id": {"uuid": {}}},
        },
        "tls": {
            "secretName": "tls",
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": {
                    "x509": {
                        "issuer": {"name": "ca"},
                        "commonName": "api.example",
                        "dnsNames": ["api.example"],
                        "caKey": "ca.crt",
                    }
                }
            },
        },
        "ssh": {
            "secretName": "ssh",
            "type": "kubernetes.io/ssh-auth",
            "data": {"ssh-privatekey": {"sshKeypair": {"algorithm": "ed25519"}}},
        },
        "basic": {
            "secretName": "basic",
            "type": "kubernetes.io/basic-auth",
            "data": {"username": {"template": "bot"}, "password": {"password": {"length": 16}}},
        },
        "docker": {
            "secretName": "pull",
            "type": "kubernetes.io/dockerconfigjson",
            "data": {
                "token": {"password": {"length": 20}},
                ".dockerconfigjson": {
                    "dockerConfig": {
                        "registry": "registry.example.invalid",
                        "username": "bot",
                        "passwordFrom": "token",
                    }
                },
            },
        },
    }
    expected = {
        "opaque": {"t", "id"},
        "tls": {"tls.crt", "tls.key", "ca.crt"},
        "ssh": {"ssh-privatekey", "ssh-privatekey.pub"},
        "basic": {"username", "password"},
        "pull": {"token", ".dockerconfigjson"},
    }
    for name, spec in specs.items():
        kube.create(_managed(namespace, name, {**spec, "rollout": {"strategy": "none"}}))
        result = _run(control_plane, functools.partial(_rotate_one, namespace=namespace, name=name))
        assert result.outcome == "rotated", (name, result.message)
    for secret_name, keys in expected.items():
        secret = kube.get(Secret, secret_name, namespace=namespace)
        assert set(secret.data or {}) == keys, secret_name
    assert kube.get(Secret, "tls", namespace=namespace).type == "kubernetes.io/tls"
    assert b"BEGIN CERTIFICATE" in _data(kube, namespace, "tls")["tls.crt"]


def test_missing_ca_secret_is_a_clear_error(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    spec = {
        "secretName": "tls",
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": {"x509": {"issuer": {"name": "nope"}, "commonName": "x"}}},
        "rollout": {"strategy": "none"},
    }
    kube.create(_managed(namespace, "tls", spec))
    with pytest.raises(KubeError, match="CA Secret nope not found"):
        _run(control_plane, lambda e: e.rotate(namespace, "tls"), observer=NullObserver())
    status = _status(kube, namespace, "tls")
    rotating = _condition(status, "Rotating")
    assert (rotating["status"], rotating["reason"]) == ("True", "Blocked")
    assert "blocked at step Pending" in rotating["message"]
    assert "CA Secret nope not found" in rotating["message"]
    made = kube.list(Secret, namespace=namespace, labels={"kustos.io/managed-secret": "tls"})
    assert not list(made), "nothing half-applied: no version, no live Secret"
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RotationFailed")
    # The CA appears: the recorded rotation resumes and finishes.
    import datetime as dt  # noqa: PLC0415

    ca = make_self_signed_ca("late CA", dt.datetime.now(dt.UTC), 30)
    kube.create(
        Secret(
            metadata=ObjectMeta(name="nope", namespace=namespace),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(ca.cert_pem).decode(),
                "tls.key": base64.b64encode(ca.key_pem.reveal()).decode(),
            },
        )
    )
    assert _run(control_plane, lambda e: e.rotate(namespace, "tls")).version == 1
    assert _condition(_status(kube, namespace, "tls"), "Ready")["status"] == "True"


def test_scan_of_the_live_cluster_finds_stale_managed_secrets_and_expired_certificates(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import datetime as dt  # noqa: PLC0415
    import json  # noqa: PLC0415

    spec = {**PASSWORD_SPEC, "rotation": {"maxAge": "30d"}, "rollout": {"strategy": "none"}}
    kube.create(_managed(namespace, "db", spec))
    assert _run(control_plane, lambda e: e.rotate(namespace, "db")).version == 1
    status = _status(kube, namespace, "db")
    status["versions"][0]["created"] = "2020-01-01T00:00:00Z"
    kube.patch(
        MS.Status,
        "db",
        {"status": {"versions": status["versions"]}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    old = make_self_signed_ca("expired", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 30)
    kube.create(
        Secret(
            metadata=ObjectMeta(name="old-tls", namespace=namespace),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(old.cert_pem).decode(),
                "tls.key": base64.b64encode(old.key_pem.reveal()).decode(),
            },
        )
    )
    argv = ["scan", "--cluster", "-n", namespace, "--kubeconfig", str(control_plane.kubeconfig)]
    code = main([*argv, "--format", "json"])
    out = capsys.readouterr().out
    assert code == 1
    found = {(f["rule_id"], f["resource"]["name"]) for f in json.loads(out)["findings"]}
    assert ("KST049", "db") in found
    assert ("KST047", "old-tls") in found
    assert "BEGIN CERTIFICATE" not in out


def test_statefulsets_and_daemonsets_roll_and_are_watched(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    from lightkube.models.apps_v1 import DaemonSetSpec, StatefulSetSpec  # noqa: PLC0415
    from lightkube.resources.apps_v1 import DaemonSet, StatefulSet  # noqa: PLC0415

    template = _deployment(namespace, "x", "db", "password").spec
    assert template is not None
    for name in ("store", "agent"):
        labels = {"app": name}
        pod = PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=template.template.spec)
        if name == "store":
            kube.create(
                StatefulSet(
                    metadata=ObjectMeta(name=name, namespace=namespace),
                    spec=StatefulSetSpec(
                        replicas=2,
                        serviceName=name,
                        selector=LabelSelector(matchLabels=labels),
                        template=pod,
                    ),
                )
            )
        else:
            kube.create(
                DaemonSet(
                    metadata=ObjectMeta(name=name, namespace=namespace),
                    spec=DaemonSetSpec(selector=LabelSelector(matchLabels=labels), template=pod),
                )
            )
    kube.create(_managed(namespace, "db", {**PASSWORD_SPEC, "rollout": {"timeout": "90s"}}))
    first = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert first.outcome == "rotated", first.message
    assert set(first.restarted) == {
        f"DaemonSet.apps {namespace}/agent",
        f"StatefulSet.apps {namespace}/store",
    }
    second = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert second.outcome == "rotated", second.message
    sts = kube.get(StatefulSet, "store", namespace=namespace)
    assert sts.status is not None
    assert sts.status.updateRevision == sts.status.currentRevision
    assert (sts.status.readyReplicas or 0) == 2
    ds = kube.get(DaemonSet, "agent", namespace=namespace)
    assert ds.status is not None
    assert ds.status.updatedNumberScheduled == ds.status.desiredNumberScheduled == 3
    for obj in (sts, ds):
        assert obj.spec is not None
        assert obj.spec.template.metadata is not None
        assert (obj.spec.template.metadata.annotations or {})["kustos.io/restart-reason"] == "db-v2"


def _deployment_revision(kube: Client, namespace: str, name: str) -> str:
    meta = kube.get(Deployment, name, namespace=namespace).metadata
    assert meta is not None
    return str((meta.annotations or {})["deployment.kubernetes.io/revision"])


def test_a_killed_kustos_rotate_resumes_without_a_second_restart(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    kube.create(_managed(namespace, "db", {**PASSWORD_SPEC, "rollout": {"timeout": "120s"}}))
    kube.create(_deployment(namespace, "api", "db", "password"))
    _wait_available(kube, namespace, "api")
    assert _run(control_plane, lambda e: e.rotate(namespace, "db")).version == 1
    # Hold the next rollout: new pods cannot be scheduled until the selector is lifted.
    hold = {"spec": {"template": {"spec": {"nodeSelector": {"kustos.io/hold": "x"}}}}}
    kube.patch(Deployment, "api", hold, namespace=namespace, patch_type=PatchType.MERGE)
    argv = [
        sys.executable,
        "-m",
        "kustos",
        "rotate",
        f"{namespace}/db",
        "--kubeconfig",
        str(control_plane.kubeconfig),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rotation = _status(kube, namespace, "db").get("rotation") or {}
            dep = kube.get(Deployment, "api", namespace=namespace)
            template = dep.spec.template.metadata if dep.spec else None
            restarted = (
                (template.annotations or {}).get("kustos.io/restart-reason") if template else None
            )
            if rotation.get("step") == "RollingOut" and restarted == "db-v2":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the rotation never reached RollingOut")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process dies as a node would take it
        proc.wait(timeout=10)
    revision = _deployment_revision(kube, namespace, "api")
    value = _data(kube, namespace, "db-v2")
    kube.patch(
        Deployment,
        "api",
        {"spec": {"template": {"spec": {"nodeSelector": None}}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    # Lifting the selector is itself a template change: one more revision, by us.
    resumed = _run(control_plane, lambda e: e.rotate(namespace, "db"))
    assert resumed.outcome == "rotated", resumed.message
    assert resumed.version == 2
    assert _data(kube, namespace, "db-v2") == value
    assert _data(kube, namespace, "db")["password"] == value["password"]
    after = _deployment_revision(kube, namespace, "api")
    assert int(after) == int(revision) + 1, (
        "only the selector change rolled: Kustos did not restart again"
    )
