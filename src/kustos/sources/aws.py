"""AWS Secrets Manager for ``awsSecretsManager`` values (an adapter, asyncio).

Requests are signed with botocore's own SigV4 signer (the AWS SDK's code, not ours) and
sent with httpx, so the client is asyncio end to end and shares one connection pool per
source. Change detection asks ``DescribeSecret`` for the version id that carries the
wanted stage (``AWSCURRENT`` by default): no value crosses the wire until it changed.

Every failure is one :class:`~kustos.errors.StoreError` naming the secret id and the AWS
error code, never a value or a credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Self

import httpx

from kustos.errors import StoreError, StoreNotFoundError, StoreUnavailableError, quote_foreign
from kustos.sensitive import Sensitive

SERVICE: Final = "secretsmanager"
TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Where the service is and who we are (keys from the Secret a SecretSource names)."""

    region: str
    access_key_id: Sensitive
    secret_access_key: Sensitive
    session_token: Sensitive | None = None
    endpoint: str | None = None  # VPC endpoint, or a local moto server in tests

    @property
    def url(self) -> str:
        """The service endpoint."""
        return self.endpoint or f"https://{SERVICE}.{self.region}.amazonaws.com"


@dataclass(frozen=True, slots=True)
class AwsValue:
    """One secret version: its string (or binary) value and the version id it came from."""

    value: Sensitive
    version: str


class AwsSecretsManager:
    """A client for one account and region; use it as an async context manager."""

    def __init__(
        self, settings: AwsSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(timeout=TIMEOUT, transport=transport)
        self.requests = 0  # how many calls this client made (metrics, benchmarks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, action: str, body: dict[str, Any], *, secret_id: str) -> dict[str, Any]:
        # botocore takes a good part of a second to import: only AWS sources pay for it.
        from botocore.auth import SigV4Auth  # noqa: PLC0415
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415
        from botocore.credentials import Credentials  # noqa: PLC0415

        s = self.settings
        payload = json.dumps(body).encode()
        request = AWSRequest(
            method="POST",
            url=s.url + "/",
            data=payload,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"secretsmanager.{action}",
            },
        )
        credentials = Credentials(
            s.access_key_id.reveal_text(),
            s.secret_access_key.reveal_text(),
            s.session_token.reveal_text() if s.session_token else None,
        )
        SigV4Auth(credentials, SERVICE, s.region).add_auth(request)
        self.requests += 1
        try:
            response = await self._http.post(
                request.url, content=payload, headers=dict(request.headers.items())
            )
        except httpx.TransportError as exc:
            where = f"AWS Secrets Manager {s.url}: {action} {secret_id}"
            raise StoreUnavailableError(f"{where}: unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400:
            try:
                error = response.json()
            except ValueError:
                error = {}
            code = str(error.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP {response.status_code}"
            message = quote_foreign(str(error.get("message") or error.get("Message") or ""), 160)
            where = f"AWS Secrets Manager: {action} {secret_id}: {code}"
            if code == "ResourceNotFoundException":
                raise StoreNotFoundError(f"{where}: {message}")
            if response.status_code >= 500 or code in {
                "ThrottlingException",
                "InternalServiceError",
            }:
                raise StoreUnavailableError(f"{where}: {message}")
            raise StoreError(f"{where}: {message}")
        result: dict[str, Any] = response.json()
        return result

    async def current_version(self, secret_id: str, stage: str = "AWSCURRENT") -> str:
        """The version id carrying *stage*, without reading the value."""
        described = await self._call("DescribeSecret", {"SecretId": secret_id}, secret_id=secret_id)
        for version, stages in (described.get("VersionIdsToStages") or {}).items():
            if stage in stages:
                return str(version)
        raise StoreNotFoundError(
            f"AWS Secrets Manager: {secret_id} has no version in stage {stage}"
        )

    async def get(self, secret_id: str, stage: str = "AWSCURRENT") -> AwsValue:
        """The value at *stage* and its version id."""
        got = await self._call(
            "GetSecretValue", {"SecretId": secret_id, "VersionStage": stage}, secret_id=secret_id
        )
        if "SecretString" in got:
            value = Sensitive(str(got["SecretString"]))
        elif "SecretBinary" in got:
            import base64  # noqa: PLC0415

            value = Sensitive(base64.b64decode(got["SecretBinary"]))
        else:
            raise StoreError(f"AWS Secrets Manager: {secret_id}: the version holds no value")
        return AwsValue(value, str(got.get("VersionId", "")))

    async def put(self, secret_id: str, value: Sensitive) -> str:
        """Store *value* as the new ``AWSCURRENT`` (the secret created if needed); its version."""
        try:
            put = await self._call(
                "PutSecretValue",
                {"SecretId": secret_id, "SecretString": value.reveal_text()},
                secret_id=secret_id,
            )
        except StoreNotFoundError:
            put = await self._call(
                "CreateSecret",
                {"Name": secret_id, "SecretString": value.reveal_text()},
                secret_id=secret_id,
            )
        return str(put.get("VersionId", ""))


def json_value(secret_id: str, raw: Sensitive, key: str | None) -> Sensitive:
    """The whole value, or field *key* of its JSON object (names only in errors)."""
    if key is None:
        return raw
    try:
        doc = json.loads(raw.reveal())
    except ValueError:
        raise StoreError(
            f"AWS Secrets Manager: {secret_id} is not JSON; jsonKey {key!r} cannot be read"
        ) from None
    if not isinstance(doc, dict) or key not in doc:
        raise StoreNotFoundError(f"AWS Secrets Manager: {secret_id} has no JSON key {key!r}")
    field = doc[key]
    return Sensitive(field if isinstance(field, str) else json.dumps(field))
