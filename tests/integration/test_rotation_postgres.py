"""Zero-downtime PostgreSQL credentials on a real PostgreSQL and the real control plane.

Aspects: with ``alternating`` the first version logs in as ``<role>_a``, the next as
``<role>_b``, and a client holding the previous credential keeps working (an open session
and a new login) through the rotation and its rollout; the one after reuses ``_a`` with a
new password, so the credential from two rotations ago stops working; with ``single`` the
password changes in place, open sessions survive and only the new password logs in; the
server's own DDL log never contains a password (Kustos sends a SCRAM verifier); a database
that does not answer leaves the last good value live and says why.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from kustos.errors import DatabaseError
from kustos.kube.client import ClientSettings, make_async_client
from kustos.rotation.postgres import PostgresApplier
from kustos.rotation.rotating import Engine
from kustos.testing.controlplane import ControlPlane
from kustos.testing.postgres import ADMIN, PostgresServer
from tests.integration.test_rotation import MS, _data, _managed, _status

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for this module."""
    with PostgresServer(Path(tmp_path_factory.mktemp("pg")) / "cluster") as server:
        yield server


def _rotate(plane: ControlPlane, namespace: str, name: str) -> Any:
    async def go() -> Any:
        client = make_async_client(ClientSettings(kubeconfig=plane.kubeconfig))
        try:
            return await Engine(client, database=PostgresApplier(), poll=0.2).rotate(
                namespace, name
            )
        finally:
            await client.close()

    return asyncio.run(go())


def _login(server: PostgresServer, user: bytes, password: bytes) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        dbname="postgres",
        user=user.decode(),
        password=password.decode(),
        connect_timeout=5,
    )


def _admin_secret(kube: Client, namespace: str, server: PostgresServer) -> None:
    kube.create(
        Secret(
            metadata=ObjectMeta(name="pg-admin", namespace=namespace),
            stringData={"username": ADMIN, "password": server.password},
        )
    )


def _spec(
    server: PostgresServer, role: str, strategy: str, port: int | None = None
) -> dict[str, Any]:
    return {
        "secretName": "db",
        "data": {
            "password": {
                "postgresRole": {
                    "host": "127.0.0.1",
                    "port": port or server.port,
                    "sslmode": "disable",
                    "adminSecret": {"name": "pg-admin"},
                    "role": role,
                    "strategy": strategy,
                }
            },
            "url": {"template": "postgresql://{{ username }}:{{ password }}@127.0.0.1/postgres"},
        },
        "rollout": {"strategy": "none"},
    }


def test_alternating_users_keep_the_previous_credential_working(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    postgres: PostgresServer,
) -> None:
    _admin_secret(kube, namespace, postgres)
    kube.create(_managed(namespace, "db", _spec(postgres, "shop", "alternating")))

    assert _rotate(control_plane, namespace, "db").version == 1
    first = _data(kube, namespace, "db")
    assert first["username"] == b"shop_a"
    held = _login(postgres, first["username"], first["password"])  # a pod's open session

    assert _rotate(control_plane, namespace, "db").version == 2
    second = _data(kube, namespace, "db")
    assert second["username"] == b"shop_b"
    assert second["password"] != first["password"]
    assert held.execute("select 1").fetchone() == (1,), "the open session survives"
    with _login(
        postgres, first["username"], first["password"]
    ) as again:  # a new pod on the old value
        assert again.execute("select current_user").fetchone() == ("shop_a",)
    with _login(postgres, second["username"], second["password"]) as new:
        assert new.execute("select current_user").fetchone() == ("shop_b",)
        member = new.execute("select pg_has_role('shop_b', 'shop', 'member')").fetchone()
        assert member == (True,), "both login roles inherit the group role's privileges"
    held.close()

    assert _rotate(control_plane, namespace, "db").version == 3
    third = _data(kube, namespace, "db")
    assert third["username"] == b"shop_a"
    with pytest.raises(psycopg.OperationalError):
        _login(postgres, first["username"], first["password"])
    with _login(postgres, second["username"], second["password"]):
        pass
    log = postgres.log_text
    for value in (first["password"], second["password"], third["password"]):
        assert value.decode() not in log
    assert "SCRAM-SHA-256$" in log, "the DDL log shows a verifier, not a password"


def test_single_role_changes_in_place(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    postgres: PostgresServer,
) -> None:
    _admin_secret(kube, namespace, postgres)
    kube.create(_managed(namespace, "db", _spec(postgres, "solo", "single")))
    _rotate(control_plane, namespace, "db")
    first = _data(kube, namespace, "db")
    assert first["username"] == b"solo"
    held = _login(postgres, b"solo", first["password"])
    _rotate(control_plane, namespace, "db")
    second = _data(kube, namespace, "db")
    assert held.execute("select 1").fetchone() == (1,)
    held.close()
    with pytest.raises(psycopg.OperationalError):
        _login(postgres, b"solo", first["password"])
    with _login(postgres, b"solo", second["password"]):
        pass


def test_unreachable_database_keeps_the_last_good_value(
    control_plane: ControlPlane,
    kube: Client,
    namespace: str,
    crd: None,
    postgres: PostgresServer,
) -> None:
    _admin_secret(kube, namespace, postgres)
    kube.create(_managed(namespace, "db", _spec(postgres, "gone", "alternating")))
    _rotate(control_plane, namespace, "db")
    good = _data(kube, namespace, "db")
    kube.patch(
        MS,
        "db",
        {"spec": _spec(postgres, "gone", "alternating", port=1)},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    with pytest.raises(DatabaseError, match="cannot connect"):
        _rotate(control_plane, namespace, "db")
    assert _data(kube, namespace, "db") == good
    status = _status(kube, namespace, "db")
    assert status["currentVersion"] == 1
    assert status["rotation"]["step"] == "Created", "the rotation waits, recorded, for a retry"
    assert base64.b64encode(good["password"]).decode() not in str(status)
