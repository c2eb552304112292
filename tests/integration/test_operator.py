"""The operator on the real control plane: schedules, restarts, two replicas, reloads.

Aspects: a new ManagedSecret gets its first version and its consumers roll without anyone
running ``kustos rotate``; a rotation that becomes due (``every`` elapsed) happens; an
operator restarted with nothing due makes no version and restarts nothing; of two
replicas sharing a Lease only one rotates, and the other takes over when the first stops;
an opted-in workload is not restarted when the operator starts (baseline recorded on its
metadata) and is restarted once for several quick changes of a Secret it uses; Reloader's
annotation is honoured; ``/healthz`` answers and ``/metrics`` counts rotations; ``kustos
pull-secret create`` attaches to exactly the named ServiceAccounts; no value appears in
logs, metrics or Events.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Secret, ServiceAccount
from lightkube.types import PatchType

from kustos.cli.main import main
from kustos.kube.client import ClientSettings, make_async_client
from kustos.operator.leading import LeaseSettings
from kustos.operator.running import Operator, OperatorSettings
from kustos.testing.controlplane import ControlPlane
from tests.integration.test_rotation import (
    MS,
    PASSWORD_SPEC,
    _data,
    _deployment,
    _events_text,
    _managed,
    _status,
)

pytestmark = pytest.mark.integration


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _with_operators(
    plane: ControlPlane,
    namespace: str,
    body: Callable[[list[Operator], list[asyncio.Event]], Awaitable[None]],
    *,
    replicas: int = 1,
    lease: bool = False,
) -> None:
    async def go() -> None:
        client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig))
        stops = [asyncio.Event() for _ in range(replicas)]
        operators = [
            Operator(
                client,
                OperatorSettings(
                    namespaces=(namespace,),
                    listen=f"127.0.0.1:{_port()}",
                    reload_window=1.0,
                    lease=LeaseSettings(
                        namespace,
                        "kustos-operator",
                        f"replica-{i}",
                        lease_seconds=3,
                        renew_every=0.5,
                    )
                    if lease
                    else None,
                ),
            )
            for i in range(replicas)
        ]
        tasks = [
            asyncio.create_task(op.run(stop)) for op, stop in zip(operators, stops, strict=True)
        ]
        try:
            await body(operators, stops)
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    asyncio.run(go())


def _versions(kube: Client, namespace: str, name: str) -> set[str]:
    return {
        s.metadata.name
        for s in kube.list(Secret, namespace=namespace, labels={"kustos.io/managed-secret": name})
        if s.metadata and s.metadata.name and "-v" in s.metadata.name
    }


def _revision(kube: Client, namespace: str, name: str) -> int:
    deadline = time.monotonic() + 10
    while True:  # the controller writes the revision shortly after a template change
        obj = kube.get(Deployment, name, namespace=namespace)
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        status = obj.status
        settled = (
            status is not None
            and obj.metadata is not None
            and status.observedGeneration == obj.metadata.generation
        )
        if settled or time.monotonic() > deadline:
            return int(annotations.get("deployment.kubernetes.io/revision", "0"))
        time.sleep(0.1)


def _backdate(kube: Client, namespace: str, name: str, hours: int) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.patch(
        MS.Status,
        name,
        {"status": {"lastRotation": past}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


def test_operator_rotates_new_and_due_secrets_and_a_restart_changes_nothing(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kube.create(_deployment(namespace, "api", "db", "password"))
    kube.create(_managed(namespace, "db", {**PASSWORD_SPEC, "rotation": {"every": "1h"}}))

    async def first(ops: list[Operator], _: list[asyncio.Event]) -> None:
        await _until(lambda: _status(kube, namespace, "db").get("currentVersion") == 1, what="v1")
        _backdate(kube, namespace, "db", 2)
        await _until(
            lambda: _status(kube, namespace, "db").get("currentVersion") == 2,
            what="v2 after every elapsed",
        )
        port = ops[0].settings.listen.rsplit(":", 1)[1]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).text == "ok\n"
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'kustos_rotations_total{outcome="rotated"} 2.0' in metrics
        assert "kustos_next_rotation_timestamp_seconds" in metrics
        values = _data(kube, namespace, "db")
        for key in ("password", "url"):
            assert values[key].decode() not in metrics

    _with_operators(control_plane, namespace, first)
    status = _status(kube, namespace, "db")
    assert status["nextRotation"] > status["lastRotation"]
    revision = _revision(kube, namespace, "api")

    async def restarted(*_: object) -> None:
        await asyncio.sleep(5)

    _with_operators(control_plane, namespace, restarted)
    assert _status(kube, namespace, "db")["currentVersion"] == 2
    assert _versions(kube, namespace, "db") == {"db-v1", "db-v2"}
    assert _revision(kube, namespace, "api") == revision, "a restart of the operator rolls nothing"
    logged = caplog.text
    values = _data(kube, namespace, "db")
    for key in ("password", "url"):  # "username" is the literal template "app"
        assert values[key].decode() not in logged


def test_two_replicas_rotate_once_and_the_standby_takes_over(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    kube.create(
        _managed(
            namespace,
            "db",
            {**PASSWORD_SPEC, "rotation": {"every": "1h"}, "rollout": {"strategy": "none"}},
        )
    )

    async def body(ops: list[Operator], stops: list[asyncio.Event]) -> None:
        await _until(lambda: _status(kube, namespace, "db").get("currentVersion") == 1, what="v1")
        await asyncio.sleep(2)
        leaders = [i for i, op in enumerate(ops) if op.leading]
        assert len(leaders) == 1
        started = [
            e for e in kube.list(Event, namespace=namespace) if e.reason == "RotationStarted"
        ]
        assert len(started) == 1, "exactly one replica rotated"
        stops[leaders[0]].set()  # the leader shuts down (SIGTERM) and releases the Lease
        other = ops[1 - leaders[0]]
        await _until(lambda: other.leading, timeout=20, what="standby leading")
        _backdate(kube, namespace, "db", 2)
        await _until(
            lambda: _status(kube, namespace, "db").get("currentVersion") == 2,
            what="v2 by the standby",
        )
        assert _versions(kube, namespace, "db") == {"db-v1", "db-v2"}

    _with_operators(control_plane, namespace, body, replicas=2, lease=True)


def test_reload_restarts_once_for_quick_changes_and_never_at_start(
    control_plane: ControlPlane, kube: Client, namespace: str, crd: None
) -> None:
    kube.create(
        Secret(metadata=ObjectMeta(name="plain", namespace=namespace), stringData={"token": "one"})
    )
    kube.create(
        Secret(metadata=ObjectMeta(name="other", namespace=namespace), stringData={"token": "x"})
    )
    dep = _deployment(namespace, "auto", "plain", "token")
    assert dep.metadata is not None
    dep.metadata.annotations = {"kustos.io/reload": "true"}
    kube.create(dep)
    legacy = _deployment(namespace, "legacy", "plain", "token")
    assert legacy.metadata is not None
    legacy.metadata.annotations = {"secret.reloader.stakater.com/reload": "other"}
    kube.create(legacy)
    untouched = _deployment(namespace, "plainuser", "plain", "token")
    kube.create(untouched)

    def generation(name: str) -> int:
        """The rollout revision: it moves only when the pod template changes (pods roll).

        ``metadata.generation`` is no measure here: for Deployments the API server bumps it
        on annotation changes too, and recording a baseline writes one.
        """
        return _revision(kube, namespace, name)

    def recorded(name: str) -> str | None:
        obj = kube.get(Deployment, name, namespace=namespace)
        return (
            (obj.metadata.annotations or {}).get("kustos.io/secret-hashes")
            if obj.metadata
            else None
        )

    before = {n: generation(n) for n in ("auto", "legacy", "plainuser")}

    async def body(*_: object) -> None:
        await _until(
            lambda: recorded("auto") is not None and recorded("legacy") is not None,
            what="baselines",
        )
        await asyncio.sleep(1.5)
        assert {n: generation(n) for n in before} == before, "no restart at start"
        for value in ("two", "three", "four"):
            kube.patch(Secret, "plain", {"stringData": {"token": value}}, namespace=namespace)
            await asyncio.sleep(0.2)
        await _until(lambda: generation("auto") == before["auto"] + 1, what="one restart of auto")
        await asyncio.sleep(2.5)
        assert generation("auto") == before["auto"] + 1, "three quick changes, one restart"
        assert generation("legacy") == before["legacy"], "legacy watches only 'other'"
        assert generation("plainuser") == before["plainuser"], "not opted in"
        kube.patch(Secret, "other", {"stringData": {"token": "y"}}, namespace=namespace)
        await _until(
            lambda: generation("legacy") == before["legacy"] + 1,
            what="Reloader annotation honoured",
        )

    _with_operators(control_plane, namespace, body)
    dep_after = kube.get(Deployment, "auto", namespace=namespace)
    assert dep_after.spec is not None
    assert dep_after.spec.template.metadata is not None
    assert (dep_after.spec.template.metadata.annotations or {})[
        "kustos.io/restart-reason"
    ] == "reload: plain"
    text = _events_text(kube, namespace)
    assert "four" not in text


def test_pull_secret_attaches_to_exactly_the_named_accounts(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io  # noqa: PLC0415

    for name in ("builder", "runner"):
        kube.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)))
    monkeypatch.setattr("sys.stdin", io.StringIO("pull-canary-password\n"))
    code = main(
        [
            "pull-secret",
            "create",
            "regcred",
            "-n",
            namespace,
            "--registry",
            "registry.example.invalid",
            "--username",
            "bot",
            "--password-stdin",
            "--service-account",
            "builder",
            "--kubeconfig",
            str(control_plane.kubeconfig),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pull-canary-password" not in out.out + out.err
    secret = kube.get(Secret, "regcred", namespace=namespace)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    config = base64.b64decode((secret.data or {})[".dockerconfigjson"])
    assert b"registry.example.invalid" in config
    assert base64.b64encode(b"bot:pull-canary-password") in config
    pulls = {
        name: [
            r.name
            for r in kube.get(ServiceAccount, name, namespace=namespace).imagePullSecrets or []
        ]
        for name in ("builder", "runner", "default")
    }
    assert pulls == {"builder": ["regcred"], "runner": [], "default": []}
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert (
        main(
            [
                "pull-secret",
                "create",
                "x",
                "-n",
                namespace,
                "--registry",
                "r.example",
                "--username",
                "u",
                "--kubeconfig",
                str(control_plane.kubeconfig),
            ]
        )
        == 2
    )
