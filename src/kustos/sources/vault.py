"""HashiCorp Vault KV v2 for ManagedSecret sources: an asyncio client (an adapter).

``VaultClient(settings)`` logs in once (Kubernetes ServiceAccount token or AppRole), keeps
that token and renews it before it expires, so that a source shared by many
ManagedSecrets costs one login, not one per read (External Secrets' Vault provider logged
in per reconcile and leaked leases until Vault fell over, ESO #376). After a 403 the client
asks ``lookup-self`` whether its token still lives: if not (revoked, server restarted) it
logs in again, at most once per call, and one fresh login serves every call that saw the
same stale token; if it does, the policy denies the path and no login is wasted.

Per refresh a caller asks :meth:`VaultClient.current_version` (one metadata read, no value
leaves Vault) and calls :meth:`VaultClient.read` only when that version moved.

Every failure is one :class:`StoreError` naming the method, the path and the HTTP status;
Vault's own words are quoted cut to 256 characters with the token, the login secrets and
the values of the call scrubbed out. Values travel as :class:`~kustos.sensitive.Sensitive`.

The HTTP library is ``httpx`` (asyncio client): the harness already uses it, and this
module has no reason to share lightkube's transport (``httpx2``).

Requests (``docs/sources-vault.md``)::

    POST auth/<path>/login                  once, and after a 403 or an expiry
    POST auth/token/renew-self              at two thirds of the token's TTL
    GET  auth/token/lookup-self             after a 403: revoked token or denied path?
    GET  <mount>/metadata/<path>            current_version
    GET  <mount>/data/<path>[?version=N]    read
    POST <mount>/data/<path>                write (options.cas for check-and-set)
    POST auth/token/revoke-self             close
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import httpx

from kustos.errors import (
    ConfigError,
    InvalidSpecError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    quote_foreign,
)
from kustos.sensitive import Sensitive

__all__ = [
    "AppRoleAuth",
    "KubernetesAuth",
    "StoredValue",
    "VaultClient",
    "VaultSettings",
]

log = logging.getLogger(__name__)

#: Renew (or log in again) once this share of the token's TTL has passed.
RENEW_AT: Final = 2 / 3
#: ``close`` revokes the token with at most this many seconds of patience.
REVOKE_TIMEOUT: Final = 2.0
#: Foreign text shorter than this is not scrubbed (it would eat ordinary words).
_MIN_SCRUB: Final = 3
_CAS_MISMATCH: Final = "did not match the current version"


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- settings
#: Returns the ServiceAccount JWT for a login; called at each login (projected tokens
#: rotate), sync or async.
JwtProvider = Callable[[], Sensitive | Awaitable[Sensitive]]


@dataclass(frozen=True, slots=True)
class KubernetesAuth:
    """Log in with a ServiceAccount token through Vault's kubernetes auth method."""

    role: str
    #: The JWT itself, or a callable that returns a current one at each login.
    jwt: JwtProvider | Sensitive
    #: Where the auth method is mounted (``auth/<path>/login``).
    path: str = "kubernetes"


@dataclass(frozen=True, slots=True)
class AppRoleAuth:
    """Log in with an AppRole ``role_id`` and ``secret_id``."""

    role_id: str
    secret_id: Sensitive
    path: str = "approle"


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Where Vault is and how to log in. One client (and one token) per settings."""

    address: str
    auth: KubernetesAuth | AppRoleAuth
    #: The KV v2 mount.
    mount: str = "secret"
    #: PEM text of the CAs to trust (a SecretSource's ``caBundle``); the system's if unset.
    ca_bundle: str | None = None
    #: Skip TLS verification (tests against a throwaway server only).
    insecure: bool = False
    #: Seconds one request may take, all phases included.
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class StoredValue:
    """One KV v2 version: its values, its version number and when it was written."""

    values: dict[str, Sensitive]
    version: int
    #: ``metadata.created_time`` as Vault writes it (RFC 3339).
    created: str
    #: The API path it was read from (named in errors).
    where: str = ""

    def only(self, key: str) -> StoredValue:
        """This version with *key* alone; ``StoreNotFoundError`` naming the keys if absent."""
        if key not in self.values:
            names = ", ".join(sorted(self.values)) or "none"
            raise StoreNotFoundError(
                f"vault {self.where} version {self.version}: no key {key!r} (keys: {names})"
            )
        return replace(self, values={key: self.values[key]})


@dataclass(frozen=True, slots=True)
class _Token:
    value: Sensitive
    renewable: bool
    #: Seconds of life from ``obtained``; 0 means it does not expire.
    ttl: float
    obtained: float
    #: Counts logins, so that one fresh login serves every call that saw the stale token.
    generation: int
    #: The TTL the login granted: what a renewal asks for again.
    granted: float

    def expired(self, now: float) -> bool:
        return self.ttl > 0 and now >= self.obtained + self.ttl

    def due(self, now: float) -> bool:
        return self.ttl > 0 and now >= self.obtained + self.ttl * RENEW_AT


# --------------------------------------------------------------------------- pure helpers
def _segments(path: str, what: str) -> str:
    """*path* checked and URL-quoted segment by segment; ``InvalidSpecError`` if unusable."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts):
        raise InvalidSpecError(
            f"vault {what} {path!r}: use segments separated by single '/', "
            "without a leading or trailing '/', '.' or '..'"
        )
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise InvalidSpecError(f"vault {what} {path!r}: control characters are not allowed")
    return "/".join(quote(p, safe="") for p in parts)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """*text* with every known secret replaced by ``***`` (Vault may echo what it was sent)."""
    for secret in sorted(secrets, key=len, reverse=True):  # a longer one may hold a shorter
        if len(secret) >= _MIN_SCRUB:
            text = text.replace(secret, "***")
    return text


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _foreign(response: httpx.Response, secrets: Iterable[str]) -> str:
    """Vault's ``errors`` (or the raw body) on one line, scrubbed and cut."""
    errors = _body(response).get("errors")
    if isinstance(errors, list) and errors:
        text = "; ".join(str(e) for e in errors)
    elif errors is not None:
        text = ""
    else:
        text = response.text
    return quote_foreign(_scrub(text, secrets)) if text.strip() else ""


def _status_error(
    method: str, path: str, response: httpx.Response, secrets: Iterable[str]
) -> StoreError:
    """The one error for a non-2xx answer to ``method path``."""
    code = response.status_code
    said = _foreign(response, secrets)
    if code == 404 and not said:
        said = "not found"
    message = f"vault {method} {path}: HTTP {code}" + (f": {said}" if said else "")
    if code == 404:
        return StoreNotFoundError(message)
    if code in (401, 403):
        return StoreAuthError(message)
    if code == 400 and _CAS_MISMATCH in said:
        return StoreConflictError(
            f"vault {method} {path}: check-and-set refused: the secret has another version "
            "than the one expected (written meanwhile)"
        )
    if code == 429 or code >= 500:
        return StoreUnavailableError(message)
    return StoreError(message)


def _as_sensitive(value: Any) -> Sensitive:
    """A KV value as bytes: strings as they are, other JSON values as compact JSON."""
    if isinstance(value, str):
        return Sensitive(value)
    return Sensitive(json.dumps(value, separators=(",", ":"), sort_keys=True))


def _verify(settings: VaultSettings) -> ssl.SSLContext | bool:
    if settings.insecure:
        return False
    if settings.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cadata=settings.ca_bundle)
    except (ValueError, ssl.SSLError) as exc:
        raise ConfigError(
            f"vault {settings.address}: the CA bundle is not PEM certificates "
            f"({quote_foreign(str(exc), 80)})"
        ) from exc


# --------------------------------------------------------------------------- the client
class VaultClient:
    """A KV v2 client with one token, logged in lazily, renewed, and revoked on close."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Use *http* (its transport and TLS settings) if given; it is then not closed here."""
        self._settings = settings
        self._mount = _segments(settings.mount, "mount")
        self._base = settings.address.rstrip("/") + "/v1/"
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            verify=_verify(settings), timeout=httpx.Timeout(settings.timeout)
        )
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._generation = 0

    def __repr__(self) -> str:
        return f"VaultClient({self._settings.address!r}, mount={self._settings.mount!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ KV v2
    async def read(
        self, path: str, *, key: str | None = None, version: int | None = None
    ) -> StoredValue:
        """The values at *path* (the latest version, or *version*); only *key* if named."""
        api = f"{self._mount}/data/{_segments(path, 'path')}"
        params = {"version": str(version)} if version is not None else None
        response = await self._call("GET", api, params=params, absent_ok=True)
        body = _body(response)
        data = _object(body.get("data"))
        meta = _object(data.get("metadata"))
        values = data.get("data")
        if response.status_code == 404 or values is None:
            raise self._missing(api, version, meta, response.status_code)
        if not isinstance(values, dict):
            raise StoreError(f"vault GET {api}: data.data is not an object")
        found = {str(k): _as_sensitive(v) for k, v in values.items()}
        number = self._version(meta.get("version"), api)
        stored = StoredValue(found, number, str(meta.get("created_time", "")), api)
        return stored.only(key) if key is not None else stored

    async def current_version(self, path: str) -> int:
        """The latest version number at *path*, from its metadata (no value is read)."""
        api = f"{self._mount}/metadata/{_segments(path, 'path')}"
        response = await self._call("GET", api)
        data = _body(response).get("data")
        number = data.get("current_version") if isinstance(data, dict) else None
        return self._version(number, api)

    async def write(
        self, path: str, values: Mapping[str, Sensitive], *, cas: int | None = None
    ) -> int:
        """Write *values* as a new version; with *cas*, only if the latest is version *cas*.

        ``cas=0`` writes only if nothing is there yet. Returns the new version number;
        ``StoreConflictError`` when the check-and-set loses.
        """
        api = f"{self._mount}/data/{_segments(path, 'path')}"
        plain: dict[str, str] = {}
        for name, value in values.items():
            try:
                plain[name] = value.reveal().decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidSpecError(
                    f"vault {api}: the value of key {name!r} is not UTF-8 text"
                ) from None
        body: dict[str, Any] = {"data": plain}
        if cas is not None:
            body["options"] = {"cas": cas}
        response = await self._call("POST", api, body=body, secrets=plain.values())
        data = _body(response).get("data")
        return self._version(data.get("version") if isinstance(data, dict) else None, api)

    async def close(self) -> None:
        """Revoke the token (best effort, briefly) and close the HTTP client if it is ours."""
        token, self._token = self._token, None
        try:
            if token is not None and token.ttl > 0:
                with contextlib.suppress(StoreError):
                    await self._send(
                        "POST", "auth/token/revoke-self", token=token, limit=REVOKE_TIMEOUT
                    )
        finally:
            if self._owns_http:
                await self._http.aclose()

    # ------------------------------------------------------------------ requests
    async def _call(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        secrets: Iterable[str] = (),
        absent_ok: bool = False,
    ) -> httpx.Response:
        """One authenticated request; one fresh login and retry if the token was revoked.

        A 404 is returned as it is with *absent_ok* (KV reads explain it from the body).
        """
        hidden = list(secrets)
        token = await self._valid_token()
        response = await self._send(
            method, api, token=token, params=params, body=body, secrets=hidden
        )
        if response.status_code == 403:
            fresh = await self._relogin(token)
            if fresh is not None:
                token = fresh
                response = await self._send(
                    method, api, token=token, params=params, body=body, secrets=hidden
                )
        if response.is_success or (absent_ok and response.status_code == 404):
            return response
        error = _status_error(method, api, response, [*hidden, *self._secrets(token)])
        if response.status_code == 403:
            raise StoreAuthError(f"{error} (the token is valid: its policy does not allow this)")
        raise error

    async def _send(
        self,
        method: str,
        api: str,
        *,
        token: _Token | None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        secrets: Iterable[str] = (),
        limit: float | None = None,
    ) -> httpx.Response:
        """One HTTP request with an overall deadline; transport failures translated."""
        headers = {"X-Vault-Request": "true"}
        if token is not None:
            headers["X-Vault-Token"] = token.value.reveal_text()
        limit = limit if limit is not None else self._settings.timeout
        try:
            async with asyncio.timeout(limit):
                response = await self._http.request(
                    method, self._base + api, params=params, json=body, headers=headers
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise StoreUnavailableError(
                f"vault {method} {api}: no answer from {self._settings.address} within {limit:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            hidden = [*secrets, *self._secrets(token)]
            raise StoreUnavailableError(
                f"vault {method} {api}: cannot reach {self._settings.address}: "
                f"{type(exc).__name__}: {quote_foreign(_scrub(str(exc), hidden))}"
            ) from exc
        except httpx.InvalidURL as exc:
            raise ConfigError(
                f"vault address {self._settings.address!r}: {quote_foreign(str(exc), 80)}"
            ) from exc
        log.debug("vault %s %s: HTTP %d", method, api, response.status_code)
        return response

    def _secrets(self, token: _Token | None) -> list[str]:
        """Strings that must never be quoted back: the token and the login secrets."""
        found = [token.value.reveal_text()] if token is not None else []
        auth = self._settings.auth
        if isinstance(auth, AppRoleAuth):
            found += [auth.secret_id.reveal_text(), auth.role_id]
        elif isinstance(auth.jwt, Sensitive):
            found.append(auth.jwt.reveal_text())
        return found

    # ------------------------------------------------------------------ the token
    async def _valid_token(self) -> _Token:
        """The current token, renewed or replaced first if it is due."""
        token = self._token
        if token is not None and not token.due(self._clock()):
            return token
        async with self._lock:
            token, now = self._token, self._clock()
            if token is None or token.expired(now) or (token.due(now) and not token.renewable):
                token = await self._login()
            elif token.due(now):
                token = await self._renew(token)
            self._token = token
            return token

    async def _relogin(self, refused: _Token) -> _Token | None:
        """A fresh token after *refused* got a 403, or ``None`` if it is still valid.

        A 403 means either a revoked or unknown token (server restarted, lease gone) or a
        policy that denies the path. ``lookup-self`` tells them apart, so that a denied
        path costs one cheap request per call instead of a login (logins create tokens and
        leases in Vault's storage). Calls that saw the same stale token share one login.
        """
        async with self._lock:
            current = self._token
            if current is not None and current.generation != refused.generation:
                return current
            check = await self._send("GET", "auth/token/lookup-self", token=refused)
            if check.is_success:
                return None
            if check.status_code not in (400, 401, 403):
                api = "auth/token/lookup-self"
                raise _status_error("GET", api, check, self._secrets(refused))
            log.debug("vault token refused (HTTP %d): logging in again", check.status_code)
            self._token = await self._login()
            return self._token

    async def _login(self) -> _Token:
        auth = self._settings.auth
        api = f"auth/{_segments(auth.path, 'auth path')}/login"
        if isinstance(auth, AppRoleAuth):
            who = "approle"
            secret = auth.secret_id.reveal_text()
            body = {"role_id": auth.role_id, "secret_id": secret}
            hidden = [secret, auth.role_id]
        else:
            who = f"kubernetes role {auth.role!r}"
            jwt = (await self._jwt(auth.jwt)).reveal_text()
            body = {"role": auth.role, "jwt": jwt}
            hidden = [jwt]
        response = await self._send("POST", api, token=None, body=body, secrets=hidden)
        if not response.is_success:
            error = _status_error("POST", api, response, hidden)
            if response.status_code in (400, 401, 403):
                raise StoreAuthError(f"vault login refused ({who}): {error}")
            raise error
        granted = _body(response).get("auth")
        token = granted.get("client_token") if isinstance(granted, dict) else None
        if not isinstance(granted, dict) or not isinstance(token, str) or not token:
            raise StoreAuthError(f"vault POST {api}: the login answer holds no token")
        ttl = float(granted.get("lease_duration") or 0)
        self._generation += 1
        log.debug("vault login (%s): token valid %.0fs", who, ttl)
        return _Token(
            value=Sensitive(token),
            renewable=bool(granted.get("renewable")),
            ttl=ttl,
            obtained=self._clock(),
            generation=self._generation,
            granted=ttl,
        )

    async def _renew(self, token: _Token) -> _Token:
        """Extend *token* by its original TTL; a fresh login if Vault refuses."""
        api = "auth/token/renew-self"
        body = {"increment": f"{int(token.granted)}s"}
        response = await self._send("POST", api, token=token, body=body)
        granted = _body(response).get("auth")
        if response.status_code in (400, 401, 403) or (
            response.is_success and not isinstance(granted, dict)
        ):
            log.debug("vault renew-self refused (HTTP %d): logging in again", response.status_code)
            return await self._login()
        if not response.is_success or not isinstance(granted, dict):
            raise _status_error("POST", api, response, self._secrets(token))
        ttl = float(granted.get("lease_duration") or 0)
        # Less than asked means the max TTL caps it: later renewals cannot extend it, so
        # the next due point logs in again instead (still before it expires).
        renewable = bool(granted.get("renewable")) and ttl >= token.granted
        log.debug("vault token renewed: valid %.0fs", ttl)
        return replace(token, ttl=ttl, obtained=self._clock(), renewable=renewable)

    @staticmethod
    async def _jwt(source: JwtProvider | Sensitive) -> Sensitive:
        if isinstance(source, Sensitive):
            return source
        try:
            result = source()
            if inspect.isawaitable(result):
                result = await result
        except OSError as exc:
            raise StoreAuthError(
                f"vault kubernetes login: cannot read the ServiceAccount token: "
                f"{exc.strerror or type(exc).__name__}"
            ) from exc
        return result

    # ------------------------------------------------------------------ answers
    @staticmethod
    def _version(value: Any, api: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StoreError(f"vault {api}: the answer carries no version number")
        return value

    @staticmethod
    def _missing(
        api: str, version: int | None, meta: Mapping[str, Any], status: int
    ) -> StoreNotFoundError:
        which = f"version {version}" if version is not None else "the latest version"
        if meta.get("destroyed"):
            reason = f"{which} ({meta.get('version')}) is destroyed"
        elif meta.get("deletion_time"):
            reason = f"{which} ({meta.get('version')}) was deleted at {meta['deletion_time']}"
        elif version is not None:
            reason = f"no version {version} (or no secret) at this path"
        else:
            reason = "no secret at this path"
        return StoreNotFoundError(f"vault GET {api}: {reason}")
