"""Image pull secrets: create one and attach it to exactly the ServiceAccounts named.

``kustos pull-secret create`` calls :func:`create_pull_secret`; a ``dockerConfig``
generator rotates the same kind of Secret later. Attaching adds the Secret to each named
ServiceAccount's ``imagePullSecrets`` (once, keeping the others) with an optimistic write
that retries on conflict; ServiceAccounts that were not named are never touched, which is
what least privilege means for pull credentials (kustos scan's KST check for shared pull
secrets flags the opposite).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import orjson
from lightkube import AsyncClient
from lightkube.models.core_v1 import LocalObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources import core_v1

from kustos import conventions as c
from kustos.errors import InputError, KubeConflictError
from kustos.kube.client import api_errors
from kustos.sensitive import Sensitive

CONFLICT_RETRIES = 5


def docker_config_json(
    registry: str, username: str, password: Sensitive, email: str | None = None
) -> Sensitive:
    """The ``.dockerconfigjson`` body for one registry (``auth`` is base64 user:password)."""
    host = registry.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if not host or any(ch.isspace() for ch in registry):
        raise InputError("--registry must name a registry host (registry.example.com[:port])")
    if not username or ":" in username:
        raise InputError("--username must be non-empty and contain no ':'")
    auth = base64.b64encode(username.encode() + b":" + password.reveal()).decode()
    entry: dict[str, str] = {"username": username, "password": password.reveal_text(), "auth": auth}
    if email:
        entry["email"] = email
    return Sensitive(orjson.dumps({"auths": {registry: entry}}))


async def create_pull_secret(
    client: AsyncClient,
    *,
    namespace: str,
    name: str,
    config: Sensitive,
    service_accounts: Sequence[str] = (),
) -> list[str]:
    """Create the Secret and attach it; return the ServiceAccounts changed."""
    secret = core_v1.Secret(
        metadata=ObjectMeta(
            name=name, namespace=namespace, labels={c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE}
        ),
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": base64.b64encode(config.reveal()).decode()},
    )
    with api_errors(f"create Secret {namespace}/{name}"):
        await client.create(secret)
    changed = []
    for account in service_accounts:
        if await _attach(client, namespace, account, name):
            changed.append(account)
    return changed


async def _attach(client: AsyncClient, namespace: str, account: str, secret: str) -> bool:
    for _ in range(CONFLICT_RETRIES):
        with api_errors(f"read ServiceAccount {namespace}/{account}"):
            sa = await client.get(core_v1.ServiceAccount, account, namespace=namespace)
        current = list(sa.imagePullSecrets or [])
        if any(ref.name == secret for ref in current):
            return False
        sa.imagePullSecrets = [*current, LocalObjectReference(name=secret)]
        try:
            with api_errors(f"update ServiceAccount {namespace}/{account}"):
                await client.replace(sa)
        except KubeConflictError:
            continue
        return True
    raise KubeConflictError(f"ServiceAccount {namespace}/{account} kept changing; not attached")
