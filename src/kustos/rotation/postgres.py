"""PostgreSQL login roles for ``postgresRole`` values (an adapter, psycopg 3, asyncio).

Two strategies (see docs/rotate.md):
- ``alternating`` (AWS's "alternating users"): the privileges belong to a ``NOLOGIN``
  group role ``<role>``; two login roles ``<role>_a`` and ``<role>_b`` are members of it.
  Each rotation gives the *inactive* login role a new password and switches the Secret to
  it, so the credential that running pods hold stays valid until the rotation after next.
- ``single``: the one role's password changes in place; sessions already open stay open,
  new logins need the new password (clients should retry once on authentication failure).

The password never reaches the server in clear: Kustos computes the SCRAM-SHA-256
verifier itself (as psql's ``\\password`` does) and sends only that, so a server logging
DDL statements logs no usable password. Errors carry SQLSTATE and the server's primary
message, never a statement.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Final

import psycopg
from psycopg import sql

from kustos.errors import DatabaseError, quote_foreign
from kustos.rotation.spec import PostgresRole, PostgresStrategy
from kustos.sensitive import Sensitive

SCRAM_ITERATIONS: Final = 4096  # PostgreSQL's default (scram_iterations)
CONNECT_TIMEOUT: Final = 10


def scram_verifier(
    password: Sensitive, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$...`` verifier PostgreSQL stores for *password* (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.reveal(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _why(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    state = getattr(exc, "sqlstate", None)
    text = primary or type(exc).__name__
    return f"{quote_foreign(text, 160)}" + (f" (SQLSTATE {state})" if state else "")


class PostgresApplier:
    """Sets login-role passwords on a PostgreSQL server with an admin credential."""

    async def set_password(
        self,
        config: PostgresRole,
        *,
        admin: Mapping[str, Sensitive],
        role: str,
        password: Sensitive,
    ) -> None:
        """Make *role* log in with *password* (creating it and its group role if needed)."""
        if role not in config.roles():
            raise DatabaseError(f"role {role!r} is not one of {', '.join(config.roles())}")
        if "username" not in admin or "password" not in admin:
            raise DatabaseError(
                f"admin Secret {config.admin_secret.name} needs the keys username and password"
            )
        where = f"postgresql {config.host}:{config.port}/{config.database}"
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=config.host,
                port=config.port,
                dbname=config.database,
                user=admin["username"].reveal_text(),
                password=admin["password"].reveal_text(),
                sslmode=config.sslmode,
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"{where}: cannot connect as the admin role: {_why(exc)}") from None
        try:
            async with conn:
                await self._apply(conn, config, role, password)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"{where}: cannot set the password of {role}: {_why(exc)}"
            ) from None

    @staticmethod
    async def _apply(
        conn: psycopg.AsyncConnection[object], config: PostgresRole, role: str, password: Sensitive
    ) -> None:
        verifier = sql.Literal(scram_verifier(password))
        async with conn.cursor() as cur:
            if config.strategy is PostgresStrategy.ALTERNATING:
                await cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (config.role,))
                if await cur.fetchone() is None:
                    await cur.execute(
                        sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(config.role))
                    )
            await cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            exists = await cur.fetchone() is not None
            if not exists:
                statement = sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}")
            else:
                statement = sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}")
            await cur.execute(statement.format(sql.Identifier(role), verifier))
            if config.strategy is PostgresStrategy.ALTERNATING:
                await cur.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(config.role), sql.Identifier(role)
                    )
                )
