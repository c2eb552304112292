"""The Vault KV v2 client against a fake Vault behind ``httpx.MockTransport``.

Aspects: one login serves 100 concurrent reads; the token is renewed at two thirds of its
TTL and replaced by a fresh login when the max TTL caps renewals or when it expired while
idle; a revoked token (403, ``lookup-self`` refuses it too) costs one re-login and one
retry, shared by 100 concurrent calls; a 403 on a valid token (policy) is an auth error
with no login; ``current_version`` reads metadata only; ``read`` by version and by key;
404 paths, deleted versions and missing keys are clear not-found errors; 5xx, 429,
transport failures and slow answers are ``StoreUnavailableError``; a lost check-and-set is
``StoreConflictError``; refused logins are ``StoreAuthError``; kubernetes logins ask the
JWT provider (sync or async) at each login; ``close`` revokes the token; bad paths are
refused before any request, a CA bundle that is not PEM when the client is made; canary:
the value, the token, the JWT and the secret id appear in no error text or repr, even
when Vault echoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from kustos.errors import (
    ConfigError,
    InvalidSpecError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from kustos.sensitive import Sensitive
from kustos.sources.vault import (
    AppRoleAuth,
    KubernetesAuth,
    StoredValue,
    VaultClient,
    VaultSettings,
)

ADDRESS = "http://vault.test:8200"
CANARY = "canary-Zq8vX1-value-never-printed"
SECRET_ID = "secret-id-7f3c9a1e55d0"
JWT = "eyJhbGciOiJSUzI1NiJ9.jwt-canary-payload.sig"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeVault:
    """Enough of Vault's HTTP API: logins, token self-service, KV v2 data and metadata."""

    ttl: int = 3600
    max_ttl: int = 10**9
    renewable: bool = True
    tokens: dict[str, int] = field(default_factory=dict)  # token -> remaining max TTL
    kv: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)
    fail_with: int | None = None
    echo: bool = False
    delay: float = 0.0
    refuse_login: bool = False
    jwts: list[str] = field(default_factory=list)
    count: int = 0

    def count_of(self, prefix: str) -> int:
        return sum(1 for c in self.calls if c.startswith(prefix))

    def revoke_all(self) -> None:
        self.tokens.clear()

    def put(self, path: str, values: dict[str, Any]) -> None:
        self.kv.setdefault(path, []).append(values)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")
        self.calls.append(f"{request.method} {path}")
        await asyncio.sleep(self.delay)  # even 0 lets concurrent calls interleave
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        token = request.headers.get("X-Vault-Token", "")
        if path.endswith("/login"):
            return self._login(path, body)
        if token not in self.tokens:
            return self._error(403, "permission denied", body, token)
        if path.startswith("auth/token/"):
            return self._self(path, token)
        if self.fail_with is not None:
            return self._error(self.fail_with, "local node not active but active cluster node not found", body, token)  # fmt: skip
        kind, _, name = path.partition("/")[2].partition("/")
        if name in self.denied:
            return self._error(403, "1 error occurred:\n\t* permission denied\n\n", body, token)
        return self._kv(request, kind, name, body, token)

    def _error(self, status: int, message: str, body: Mapping[str, Any], token: str) -> httpx.Response:  # fmt: skip
        errors = [message]
        if self.echo:  # a server that quotes back what it was sent
            errors.append(f"request {json.dumps(body)} with token {token}")
        return httpx.Response(status, json={"errors": errors})

    def _login(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        if "jwt" in body:
            self.jwts.append(str(body["jwt"]))
        if self.refuse_login or body.get("secret_id", SECRET_ID) != SECRET_ID:
            return self._error(400, "invalid role or secret ID", body, "")
        self.count += 1
        token = f"hvs.token-{self.count}-abcdef"
        self.tokens[token] = self.max_ttl
        return httpx.Response(
            200,
            json={
                "auth": {
                    "client_token": token,
                    "lease_duration": min(self.ttl, self.max_ttl),
                    "renewable": self.renewable,
                    "policies": ["default"],
                }
            },
        )

    def _self(self, path: str, token: str) -> httpx.Response:
        if path == "auth/token/lookup-self":
            return httpx.Response(200, json={"data": {"ttl": self.ttl}})
        if path == "auth/token/revoke-self":
            del self.tokens[token]
            return httpx.Response(204)
        granted = min(self.ttl, self.tokens[token])
        return httpx.Response(
            200,
            json={"auth": {"client_token": token, "lease_duration": granted, "renewable": True}},
        )

    def _kv(self, request: httpx.Request, kind: str, name: str, body: dict[str, Any], token: str) -> httpx.Response:  # fmt: skip
        versions = self.kv.get(name)
        if kind == "metadata":
            if versions is None:
                return httpx.Response(404, json={"errors": []})
            return httpx.Response(200, json={"data": {"current_version": len(versions)}})
        if request.method == "POST":
            cas = body.get("options", {}).get("cas")
            if cas is not None and cas != len(versions or []):
                return self._error(400, "check-and-set parameter did not match the current version", body, token)  # fmt: skip
            self.put(name, body["data"])
            return httpx.Response(200, json={"data": {"version": len(self.kv[name])}})
        if not versions:
            return httpx.Response(404, json={"errors": []})
        wanted = int(request.url.params.get("version", len(versions)))
        if wanted > len(versions):
            return httpx.Response(404, json={"errors": []})
        values = versions[wanted - 1]
        meta = {"version": wanted, "created_time": "2026-01-01T00:00:00Z", "destroyed": False}
        if values is None:
            meta["deletion_time"] = "2026-01-02T00:00:00Z"
            return httpx.Response(404, json={"data": {"data": None, "metadata": meta}})
        return httpx.Response(200, json={"data": {"data": values, "metadata": meta}})


def _settings(auth: KubernetesAuth | AppRoleAuth | None = None, timeout: float = 5.0) -> VaultSettings:  # fmt: skip
    return VaultSettings(
        ADDRESS, auth or AppRoleAuth("role-id-1", Sensitive(SECRET_ID)), timeout=timeout
    )


@contextlib.asynccontextmanager
async def _vault(
    fake: FakeVault,
    clock: Clock | None = None,
    *,
    auth: KubernetesAuth | AppRoleAuth | None = None,
    limit: float = 5.0,
) -> AsyncIterator[VaultClient]:
    """A client on *fake*; closed (token revoked) on exit."""
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http,
        VaultClient(_settings(auth, limit), http=http, clock=clock or Clock()) as client,
    ):
        yield client


# --------------------------------------------------------------------------- logins
@pytest.mark.asyncio
async def test_one_login_serves_a_hundred_concurrent_reads() -> None:
    fake = FakeVault()
    fake.put("app/db", {"password": CANARY})
    async with _vault(fake) as client:
        got = await asyncio.gather(*(client.read("app/db") for _ in range(100)))
    assert {v.values["password"].reveal_text() for v in got} == {CANARY}
    assert fake.count_of("POST auth/approle/login") == 1
    assert fake.count_of("GET secret/data/app/db") == 100
    assert fake.count_of("POST auth/token/revoke-self") == 1


@pytest.mark.asyncio
async def test_token_renewed_at_two_thirds_of_its_ttl_and_kept() -> None:
    fake, clock = FakeVault(ttl=300), Clock()
    fake.put("a", {"k": "v"})
    async with _vault(fake, clock) as client:
        await client.read("a")
        clock.now += 150  # half the TTL: nothing to do
        await client.read("a")
        assert fake.count_of("POST auth/token/renew-self") == 0
        clock.now += 60  # past two thirds
        await client.read("a")
        assert fake.count_of("POST auth/token/renew-self") == 1
        clock.now += 150  # the renewal restarted the TTL: not due again yet
        await client.read("a")
    assert fake.count_of("POST auth/token/renew-self") == 1
    assert fake.count_of("POST auth/approle/login") == 1


@pytest.mark.asyncio
async def test_a_token_capped_by_its_max_ttl_is_replaced_by_a_login_before_it_expires() -> None:
    fake, clock = FakeVault(ttl=300, max_ttl=400), Clock()
    fake.put("a", {"k": "v"})
    async with _vault(fake, clock) as client:
        await client.read("a")
        fake.tokens = dict.fromkeys(fake.tokens, 100)  # 100 s of max TTL left
        clock.now += 250
        await client.read("a")  # renewal granted only 100 s: less than asked
        clock.now += 70
        await client.read("a")  # due again, not renewable any further: log in
    assert fake.count_of("POST auth/token/renew-self") == 1
    assert fake.count_of("POST auth/approle/login") == 2
    assert fake.count_of("GET auth/token/lookup-self") == 0  # never waited for a 403


@pytest.mark.asyncio
async def test_a_token_that_expired_while_idle_is_replaced_without_renewing() -> None:
    fake, clock = FakeVault(ttl=60), Clock()
    fake.put("a", {"k": "v"})
    async with _vault(fake, clock) as client:
        await client.read("a")
        clock.now += 3600
        await client.read("a")
    assert fake.count_of("POST auth/approle/login") == 2
    assert fake.count_of("POST auth/token/renew-self") == 0


@pytest.mark.asyncio
async def test_a_revoked_token_costs_one_login_and_one_retry() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "v"})
    async with _vault(fake) as client:
        await client.read("a")
        fake.revoke_all()  # the server restarted or the lease was revoked
        got = await client.read("a")
    assert got.values["k"].reveal_text() == "v"
    assert fake.calls == [
        "POST auth/approle/login",
        "GET secret/data/a",
        "GET secret/data/a",
        "GET auth/token/lookup-self",
        "POST auth/approle/login",
        "GET secret/data/a",
        "POST auth/token/revoke-self",
    ]


@pytest.mark.asyncio
async def test_a_hundred_calls_on_a_revoked_token_share_one_login() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "v"})
    async with _vault(fake) as client:
        await client.read("a")
        fake.revoke_all()
        await asyncio.gather(*(client.read("a") for _ in range(100)))
    assert fake.count_of("POST auth/approle/login") == 2
    assert fake.count_of("GET auth/token/lookup-self") == 1


@pytest.mark.asyncio
async def test_a_denied_path_is_an_auth_error_without_a_new_login() -> None:
    fake = FakeVault()
    fake.put("other/x", {"k": "v"})
    fake.denied.add("other/x")
    async with _vault(fake) as client:
        with pytest.raises(StoreAuthError) as caught:
            await client.read("other/x")
    assert str(caught.value).startswith("vault GET secret/data/other/x: HTTP 403: ")
    assert "policy does not allow" in str(caught.value)
    assert fake.count_of("POST auth/approle/login") == 1


@pytest.mark.asyncio
async def test_a_refused_login_is_an_auth_error_naming_the_method() -> None:
    fake = FakeVault(refuse_login=True)
    async with _vault(fake) as client:
        with pytest.raises(StoreAuthError, match=r"^vault login refused \(approle\): .*HTTP 400"):
            await client.read("a")


@pytest.mark.asyncio
@pytest.mark.parametrize("provider_kind", ["sensitive", "sync", "async"])
async def test_kubernetes_login_asks_for_a_jwt_at_each_login(provider_kind: str) -> None:
    fake = FakeVault()
    fake.put("a", {"k": "v"})
    served: list[int] = []

    def sync_jwt() -> Sensitive:
        served.append(1)
        return Sensitive(JWT)

    async def async_jwt() -> Sensitive:
        served.append(1)
        return Sensitive(JWT)

    providers: dict[str, Sensitive | Callable[[], Sensitive | Awaitable[Sensitive]]] = {
        "sensitive": Sensitive(JWT),
        "sync": sync_jwt,
        "async": async_jwt,
    }
    async with _vault(fake, auth=KubernetesAuth("reader", providers[provider_kind])) as client:
        await client.read("a")
        fake.revoke_all()
        await client.read("a")
    assert fake.jwts == [JWT, JWT]
    assert fake.count_of("POST auth/kubernetes/login") == 2
    assert len(served) == (0 if provider_kind == "sensitive" else 2)


# --------------------------------------------------------------------------- KV v2
@pytest.mark.asyncio
async def test_current_version_reads_metadata_only() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "1"})
    fake.put("a", {"k": "2"})
    async with _vault(fake) as client:
        assert await client.current_version("a") == 2
    assert not [c for c in fake.calls if "secret/data" in c]


@pytest.mark.asyncio
async def test_read_by_version_and_by_key() -> None:
    fake = FakeVault()
    fake.put("a", {"user": "u1", "password": "p1"})
    fake.put("a", {"user": "u2", "password": "p2", "port": 5432, "tags": ["x"]})
    async with _vault(fake) as client:
        latest = await client.read("a")
        first = await client.read("a", version=1, key="password")
    assert latest.version == 2
    assert latest.created == "2026-01-01T00:00:00Z"
    assert latest.values["port"].reveal_text() == "5432"
    assert latest.values["tags"].reveal_text() == '["x"]'
    assert first.version == 1
    assert list(first.values) == ["password"]
    assert first.values["password"].reveal_text() == "p1"


@pytest.mark.asyncio
async def test_write_returns_the_new_version_and_sends_cas() -> None:
    fake = FakeVault()
    async with _vault(fake) as client:
        assert await client.write("a", {"k": Sensitive("v1")}, cas=0) == 1
        assert await client.write("a", {"k": Sensitive("v2")}, cas=1) == 2
        assert await client.write("a", {"k": Sensitive("v3")}) == 3
    assert fake.kv["a"] == [{"k": "v1"}, {"k": "v2"}, {"k": "v3"}]


@pytest.mark.asyncio
async def test_a_lost_check_and_set_is_a_conflict() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "old"})
    fake.put("a", {"k": "written meanwhile"})
    async with _vault(fake) as client:
        with pytest.raises(StoreConflictError, match=r"^vault POST secret/data/a: check-and-set"):
            await client.write("a", {"k": Sensitive(CANARY)}, cas=1)
    assert len(fake.kv["a"]) == 2


@pytest.mark.asyncio
async def test_not_found_errors_say_what_is_missing() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "v"})
    fake.kv["gone"] = [{"k": "v"}, None]  # latest version soft-deleted
    async with _vault(fake) as client:
        with pytest.raises(StoreNotFoundError, match=r"^vault GET secret/data/nope: no secret"):
            await client.read("nope")
        with pytest.raises(StoreNotFoundError, match=r"no version 7"):
            await client.read("a", version=7)
        with pytest.raises(StoreNotFoundError, match=r"\(2\) was deleted at 2026-01-02"):
            await client.read("gone")
        with pytest.raises(StoreNotFoundError, match=r"no key 'user' \(keys: k\)"):
            await client.read("a", key="user")
        with pytest.raises(StoreNotFoundError, match=r"^vault GET secret/metadata/nope: HTTP 404"):
            await client.current_version("nope")


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_failures_are_unavailable(status: int) -> None:
    fake = FakeVault()
    async with _vault(fake) as client:
        await client.write("a", {"k": Sensitive("v")})
        fake.fail_with = status
        with pytest.raises(
            StoreUnavailableError, match=rf"^vault GET secret/data/a: HTTP {status}"
        ):
            await client.read("a")


@pytest.mark.asyncio
async def test_transport_failures_and_slow_answers_are_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http,
        VaultClient(_settings(), http=http) as client,
    ):
        with pytest.raises(StoreUnavailableError, match=r"cannot reach http://vault.test:8200"):
            await client.read("a")

    slow = FakeVault(delay=5.0)
    async with _vault(slow, limit=0.2) as client:
        with pytest.raises(StoreUnavailableError, match=r"no answer .* within 0.2s"):
            await client.read("a")
    assert slow.calls == ["POST auth/approle/login"]  # no retry after a timeout


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "a/../b", "./a", "a\nb"])
async def test_bad_paths_are_refused_before_any_request(bad: str) -> None:
    fake = FakeVault()
    async with _vault(fake) as client:
        with pytest.raises(InvalidSpecError, match="vault path"):
            await client.read(bad)
    assert fake.calls == []


@pytest.mark.asyncio
async def test_path_segments_are_quoted() -> None:
    fake = FakeVault()
    fake.put("team a/db?x", {"k": "v"})
    async with _vault(fake) as client:
        await client.read("team a/db?x")
    assert "GET secret/data/team a/db?x" in fake.calls  # one path, not a query string


@pytest.mark.asyncio
async def test_close_revokes_the_token_and_leaves_an_injected_client_open() -> None:
    fake = FakeVault()
    fake.put("a", {"k": "v"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        async with VaultClient(_settings(), http=http) as client:
            await client.read("a")
            assert len(fake.tokens) == 1
        assert fake.tokens == {}
        assert not http.is_closed


def test_a_ca_bundle_that_is_not_pem_is_a_config_error() -> None:
    settings = VaultSettings(ADDRESS, AppRoleAuth("r", Sensitive(SECRET_ID)), ca_bundle="nope")
    with pytest.raises(ConfigError, match=r"^vault http://vault.test:8200: the CA bundle"):
        VaultClient(settings)


# --------------------------------------------------------------------------- canary
@pytest.mark.asyncio
async def test_canary_no_value_token_jwt_or_secret_id_in_errors_or_reprs() -> None:
    fake = FakeVault(echo=True)
    fake.put("a", {"password": CANARY})
    texts: list[str] = []
    async with _vault(fake) as client:
        value = await client.read("a")
        texts += [repr(value), str(value), repr(client), repr(_settings())]
        token = next(iter(fake.tokens))
        fake.put("b", {"k": "v"})
        fake.put("b", {"k": "v"})
        fake.denied.add("d")
        fake.put("d", {"k": "v"})
        failures: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.write("b", {"password": Sensitive(CANARY)}, cas=1),  # echoed 400
            lambda: client.read("d"),  # echoed 403
        ]
        for attempt in failures:
            with pytest.raises(StoreError) as caught:
                await attempt()
            texts += [str(caught.value), repr(caught.value)]
        fake.fail_with = 500
        with pytest.raises(StoreUnavailableError) as down:
            await client.write("b", {"password": Sensitive(CANARY)})
        texts += [str(down.value), repr(down.value)]

    refused = FakeVault(echo=True, refuse_login=True)
    async with _vault(refused, auth=KubernetesAuth("r", Sensitive(JWT))) as k8s:
        with pytest.raises(StoreAuthError) as login:
            await k8s.read("a")
        texts += [str(login.value), repr(_settings(KubernetesAuth("r", Sensitive(JWT))))]

    assert any("***" in t for t in texts)  # the echoes were there, and were scrubbed
    for text in texts:
        for secret in (CANARY, token, JWT, SECRET_ID):
            assert secret not in text, text


def test_stored_value_repr_masks_values() -> None:
    value = StoredValue({"password": Sensitive(CANARY)}, 3, "2026-01-01T00:00:00Z")
    assert CANARY not in repr(value)
    assert "Sensitive(***)" in repr(value)
